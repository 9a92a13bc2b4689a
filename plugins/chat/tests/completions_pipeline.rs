//! The legacy completions pipeline, run natively against `testing::FakeHost`.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_chat::Chat;
use cinder_sdk::Error;
use cinder_sdk::testing::{FakeHost, post};

/// A fake host whose tools plugin is the first-party one, as in a real server.
fn fake(model: &str) -> FakeHost {
    FakeHost::new(model).with_tools(cinder_plugin_tools::FirstParty)
}
use serde_json::{Value, json};

#[derive(Default)]
struct FirstParty;
impl Chat for FirstParty {}

fn run(host: &FakeHost, body: Value) -> Result<(), Error> {
    let mut b = json!({"model": "m", "prompt": "Once"});
    for (k, v) in body.as_object().expect("object") {
        b[k] = v.clone();
    }
    FirstParty.complete_legacy(post(&b), host)
}

fn param_of(r: Result<(), Error>) -> Option<String> {
    match r {
        Err(Error::InvalidRequest(d)) => d.param,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[test]
fn a_text_prompt_gets_a_text_completion() {
    let host = fake("m").generating(&[" upon", " a", " time"]);
    run(&host, json!({})).expect("completes");
    let (status, r) = host.response().expect("response");
    assert_eq!(status, 200);
    assert_eq!(r["object"], "text_completion");
    assert!(r["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(r["choices"][0]["text"], " upon a time");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["choices"][0]["logprobs"].is_null());
    assert_eq!(r["usage"]["prompt_tokens"], 4);
    assert_eq!(r["usage"]["completion_tokens"], 3);
    // OpenAI's legacy default.
    assert_eq!(host.generate_requests()[0].max_tokens, Some(16));
}

#[test]
fn several_prompts_and_n_index_choices_prompt_major() {
    let host = fake("m").generating(&["x"]);
    run(&host, json!({"prompt": ["a", "b"], "n": 2, "echo": true})).expect("completes");
    let (_, r) = host.response().expect("response");
    let choices = r["choices"].as_array().expect("choices");
    let got: Vec<(u64, &str)> = choices
        .iter()
        .map(|c| {
            (
                c["index"].as_u64().expect("i"),
                c["text"].as_str().expect("t"),
            )
        })
        .collect();
    assert_eq!(got, [(0, "ax"), (1, "ax"), (2, "bx"), (3, "bx")]);
    assert_eq!(r["usage"]["prompt_tokens"], 2);
    assert_eq!(r["usage"]["completion_tokens"], 4);
}

#[test]
fn token_id_prompts_are_used_as_given() {
    let host = fake("m").generating(&["!"]);
    run(&host, json!({"prompt": [[72, 105], [104]]})).expect("completes");
    let prompts: Vec<Vec<u32>> = host
        .generate_requests()
        .into_iter()
        .map(|g| g.prompt)
        .collect();
    assert_eq!(prompts, [vec![72, 105], vec![104]]);
}

#[test]
fn legacy_logprobs_have_parallel_arrays_and_offsets() {
    let host = fake("m").generating(&["ab", "c", "de"]);
    run(&host, json!({"logprobs": 2})).expect("completes");
    let (_, r) = host.response().expect("response");
    let lp = &r["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["ab", "c", "de"]));
    assert_eq!(lp["token_logprobs"].as_array().expect("a").len(), 3);
    assert_eq!(lp["text_offset"], json!([0, 2, 3]));
    assert_eq!(lp["top_logprobs"][0], json!({"ab": -0.5}));
}

#[test]
fn best_of_generates_more_and_returns_n() {
    let host = fake("m").generating(&["x"]);
    run(&host, json!({"best_of": 3, "n": 1, "seed": 5})).expect("completes");
    let gens = host.generate_requests();
    assert_eq!(gens.len(), 3);
    assert!(gens.iter().all(|g| g.top_logprobs == Some(0)));
    let seeds: Vec<_> = gens.iter().map(|g| g.sampling.seed).collect();
    assert_eq!(seeds, [Some(5), Some(6), Some(7)]);
    let (_, r) = host.response().expect("response");
    assert_eq!(r["choices"].as_array().expect("c").len(), 1);
    assert_eq!(r["usage"]["completion_tokens"], 3);
}

#[test]
fn a_stream_has_text_completion_chunks_and_a_usage_chunk() {
    let host = fake("m").generating(&[" upon", " a"]);
    run(
        &host,
        json!({"stream": true, "echo": true, "stream_options": {"include_usage": true}}),
    )
    .expect("streams");
    let events = host.events();
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Once upon a");
    let n = events.len();
    assert_eq!(events[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[n - 1]["choices"], json!([]));
    assert_eq!(events[n - 1]["usage"]["completion_tokens"], 2);
}

#[test]
fn refusals_name_their_parameter() {
    let host = fake("m").generating(&["x"]);
    let cases = [
        (json!({"prompt": null}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": []}), "prompt"),
        (json!({"best_of": 1, "n": 2}), "best_of"),
        (json!({"best_of": 2, "stream": true}), "best_of"),
        (json!({"logprobs": 6}), "logprobs"),
        (json!({"temperature": 3}), "temperature"),
        // The fake tokenizer has no FIM control tokens.
        (json!({"suffix": "end"}), "suffix"),
    ];
    for (body, param) in cases {
        assert_eq!(
            param_of(run(&host, body.clone())).as_deref(),
            Some(param),
            "{body}"
        );
    }
}

#[test]
fn echo_with_logprobs_scores_the_prompt_and_max_tokens_0_generates_nothing() {
    let host = fake("m").generating(&["x"]);
    run(&host, json!({"echo": true, "logprobs": 1, "max_tokens": 0})).expect("completes");
    assert!(host.generate_requests().is_empty(), "nothing generated");
    let (_, r) = host.response().expect("response");
    let c = &r["choices"][0];
    assert_eq!(c["text"], "Once");
    assert_eq!(c["finish_reason"], "length");
    let lp = &c["logprobs"];
    assert_eq!(lp["tokens"], json!(["O", "n", "c", "e"]));
    assert_eq!(lp["token_logprobs"], json!([null, -1.0, -1.0, -1.0]));
    assert!(lp["top_logprobs"][0].is_null());
    assert_eq!(lp["text_offset"], json!([0, 1, 2, 3]));
    assert_eq!(r["usage"]["completion_tokens"], 0);

    // With generation, the generated tokens follow the prompt's.
    let host = fake("m").generating(&["!"]);
    run(&host, json!({"echo": true, "logprobs": 0, "max_tokens": 1})).expect("completes");
    let (_, r) = host.response().expect("response");
    assert_eq!(r["choices"][0]["text"], "Once!");
    assert_eq!(
        r["choices"][0]["logprobs"]["text_offset"],
        json!([0, 1, 2, 3, 4])
    );
}

#[test]
fn fan_out_is_bounded_per_request() {
    let host = fake("m").generating(&["x"]);
    // 512 one-token prompts once held both cores for minutes.
    let prompts: Vec<String> = (0..512).map(|i| format!("p{i}")).collect();
    let r = run(
        &host,
        json!({"model": "m", "prompt": prompts, "max_tokens": 1}),
    );
    assert_eq!(param_of(r).as_deref(), Some("prompt"));
    let r = run(
        &host,
        json!({"model": "m", "prompt": vec!["a"; 10], "best_of": 20, "max_tokens": 1}),
    );
    assert_eq!(param_of(r).as_deref(), Some("prompt"));
    let r = run(
        &host,
        json!({"model": "m", "prompt": "a", "n": 20, "best_of": 20, "max_tokens": 1}),
    );
    assert!(r.is_ok());
    let too_many: Vec<String> = (0..2049).map(|i| format!("p{i}")).collect();
    let r = run(&host, json!({"model": "m", "prompt": too_many}));
    assert_eq!(param_of(r).as_deref(), Some("prompt"));
    let r = run(
        &host,
        json!({"model": "m", "prompt": "a", "stop": ["x".repeat(2000)]}),
    );
    assert_eq!(param_of(r).as_deref(), Some("stop"));
    // The operator's cap.
    let small = fake("m")
        .generating(&["x"])
        .with_setting("max_sequences_per_request", "4");
    let r = run(
        &small,
        json!({"model": "m", "prompt": ["a", "b"], "n": 2, "best_of": 3, "max_tokens": 1}),
    );
    assert_eq!(param_of(r).as_deref(), Some("prompt"));
    let r = run(
        &small,
        json!({"model": "m", "prompt": ["a", "b"], "n": 2, "max_tokens": 1}),
    );
    assert!(r.is_ok());
}

#[test]
fn prompt_tokens_per_request_are_bounded() {
    let small = fake("m")
        .generating(&["x"])
        .with_setting("max_prompt_tokens_per_request", "10");
    let ok = json!({"model": "m", "prompt": ["abc", "def"], "max_tokens": 1});
    assert!(run(&small, ok).is_ok());
    let over = json!({"model": "m", "prompt": ["abcde", "fghij", "klmno"], "max_tokens": 1});
    assert_eq!(param_of(run(&small, over)).as_deref(), Some("prompt"));
    // Chat names the messages.
    let long = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(40)}]});
    let r = FirstParty.complete(post(&long), &small);
    assert_eq!(param_of(r).as_deref(), Some("messages"));
}

#[test]
fn a_text_prompt_starts_with_the_models_bos_and_token_prompts_stay_as_given() {
    // The fake tokenizer reads bytes: "Once" is [79, 110, 99, 101]; its BOS is 2.
    let host = fake("m").with_prompt_prefix(&[2]).generating(&[" upon"]);
    run(&host, json!({})).expect("completes");
    assert_eq!(host.generate_requests()[0].prompt, [2, 79, 110, 99, 101]);
    let (_, r) = host.response().expect("response");
    assert_eq!(r["usage"]["prompt_tokens"], 5);
    // A prompt already starting with it, or given as ids, is left alone.
    for (prompt, want) in [
        (json!("\u{2}Once"), vec![2, 79, 110, 99, 101]),
        (json!([79]), vec![79]),
    ] {
        let host = fake("m").with_prompt_prefix(&[2]).generating(&[" upon"]);
        run(&host, json!({ "prompt": prompt })).expect("completes");
        assert_eq!(host.generate_requests()[0].prompt, want);
    }
}
