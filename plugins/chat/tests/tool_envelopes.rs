//! What clients get when a tool-call answer is cut short or repeats itself: never the
//! envelope as text; complete calls as `tool_calls`; a call cut short dropped; a repeated call
//! ends the answer. Each case runs aggregated and streamed.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_chat::Chat;
use cinder_sdk::testing::{FakeHost, post};

/// A fake host whose tools plugin is the first-party one, as in a real server.
fn fake(model: &str) -> FakeHost {
    FakeHost::new(model).with_tools(cinder_plugin_tools::FirstParty)
}
use serde_json::{Value, json};

#[derive(Default)]
struct FirstParty;
impl Chat for FirstParty {}

fn body(choice: Value, max_tokens: u32, stream: bool) -> Value {
    json!({"model": "m", "max_tokens": max_tokens, "stream": stream, "tool_choice": choice,
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]})
}

/// The answer as a client assembles it: (content, calls as (name, arguments), finish).
fn answer(host: &FakeHost, stream: bool) -> (String, Vec<(String, String)>, String) {
    if !stream {
        let (status, r) = host.response().expect("a response");
        assert_eq!(status, 200);
        let m = &r["choices"][0]["message"];
        let calls: Vec<(String, String)> = m["tool_calls"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| {
                        let f = &c["function"];
                        (
                            f["name"].as_str().expect("a string").to_owned(),
                            f["arguments"].as_str().expect("a string").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !calls.is_empty() {
            assert!(m["content"].is_null(), "{m}");
        }
        let content = m["content"].as_str().unwrap_or("").to_owned();
        return (
            content,
            calls,
            r["choices"][0]["finish_reason"]
                .as_str()
                .expect("a finish reason")
                .to_owned(),
        );
    }
    let (mut content, mut calls, mut finish) =
        (String::new(), Vec::<(String, String)>::new(), String::new());
    for e in host.events() {
        let c = &e["choices"][0];
        content.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        for d in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = d["index"].as_u64().expect("an index") as usize;
            if calls.len() <= i {
                calls.push((String::new(), String::new()));
            }
            calls[i]
                .0
                .push_str(d["function"]["name"].as_str().unwrap_or(""));
            calls[i]
                .1
                .push_str(d["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_owned();
        }
    }
    (content, calls, finish)
}

fn run(
    choice: Value,
    pieces: &[&str],
    max_tokens: u32,
    stream: bool,
) -> (String, Vec<(String, String)>, String) {
    let host = fake("m").generating(pieces);
    FirstParty
        .complete(post(&body(choice, max_tokens, stream)), &host)
        .expect("ok");
    answer(&host, stream)
}

const PARIS: &str = r#"{"name":"get_weather","arguments":{"city":"Paris"}}"#;

#[test]
fn a_forced_call_cut_by_max_tokens_keeps_its_complete_calls() {
    for stream in [false, true] {
        for choice in [
            json!("required"),
            json!({"type": "function", "function": {"name": "get_weather"}}),
        ] {
            let pieces = [
                "[",
                PARIS,
                ",",
                r#"{"name":"get_weather","arguments":{"city":"City of"#,
                " Paris\"}}]",
            ];
            let (content, calls, finish) = run(choice.clone(), &pieces, 4, stream);
            assert_eq!(content, "", "{choice} stream={stream}");
            assert_eq!(
                calls,
                [("get_weather".to_owned(), r#"{"city":"Paris"}"#.to_owned())]
            );
            assert_eq!(finish, "tool_calls");
        }
    }
}

#[test]
fn an_envelope_cut_before_any_call_completed_is_neither_calls_nor_text() {
    for stream in [false, true] {
        // Forced, and the model's own choice under `auto`.
        for choice in [json!("required"), json!("auto")] {
            let pieces = [
                "[",
                "{\"name\":\"get_weather\",",
                "\"arguments\":{\"city\":\"Pa",
                "ris\"}}]",
            ];
            let (content, calls, finish) = run(choice.clone(), &pieces, 3, stream);
            assert_eq!(
                (content.as_str(), calls.len(), finish.as_str()),
                ("", 0, "length"),
                "{choice} stream={stream}"
            );
        }
    }
}

#[test]
fn a_repeated_call_ends_the_answer_and_the_generation() {
    for stream in [false, true] {
        let london = r#"{"name":"get_weather","arguments":{"city":"London"}}"#;
        let pieces = ["[", PARIS, ",", london, ",", PARIS, ",", london, "]"];
        let host = fake("m").generating(&pieces);
        FirstParty
            .complete(post(&body(json!("required"), 100, stream)), &host)
            .expect("ok");
        let (content, calls, finish) = answer(&host, stream);
        assert_eq!(content, "");
        let cities: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(cities, [r#"{"city":"Paris"}"#, r#"{"city":"London"}"#]);
        assert_eq!(finish, "tool_calls");
        if !stream {
            // Stopped at the repeat: six pieces generated, not nine.
            let (_, r) = host.response().unwrap();
            assert_eq!(r["usage"]["completion_tokens"], 6);
        }
    }
}

#[test]
fn text_that_only_starts_like_a_call_is_text() {
    for stream in [false, true] {
        let (content, calls, finish) = run(json!("auto"), &["[1]", " Paris is sunny."], 10, stream);
        assert_eq!(
            (content.as_str(), calls.len(), finish.as_str()),
            ("[1] Paris is sunny.", 0, "stop")
        );
    }
}
