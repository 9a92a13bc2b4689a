//! The embeddings family's first-party pipeline, run natively against `FakeHost`: the four
//! `input` shapes, both encodings, `dimensions`, usage, the `truncate` setting, and the
//! parameters it refuses. (Real vectors are checked end to end in tests/e2e.)

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_embeddings::{EmbedInput, Embeddings, Overflow, Plan};
use cinder_sdk::Error;
use cinder_sdk::testing::{FakeHost, post};
use serde_json::{Value, json};

#[derive(Default)]
struct FirstParty;
impl Embeddings for FirstParty {}

fn host() -> FakeHost {
    FakeHost::new("chat").with_embedder("e", 8, 16)
}

fn run(host: &FakeHost, body: Value) -> Result<Value, Error> {
    FirstParty.embed(post(&body), host)?;
    let (status, body) = host.response().expect("a response");
    assert_eq!(status, 200);
    Ok(body)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn decode_base64(s: &str) -> Vec<f32> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut bytes = Vec::new();
    for quad in s.as_bytes().chunks(4) {
        let n = quad
            .iter()
            .take_while(|&&c| c != b'=')
            .enumerate()
            .fold(0u32, |n, (k, &c)| n | (u32::from(value(c)) << (18 - 6 * k)));
        let keep = quad.iter().filter(|&&c| c != b'=').count() - 1;
        bytes.extend_from_slice(&n.to_be_bytes()[1..=keep]);
    }
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn param_of(e: &Error) -> Option<&str> {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.as_deref(),
        _ => None,
    }
}

#[test]
fn every_input_shape_reaches_the_host_in_order() {
    let cases = [
        (json!("hi"), vec![EmbedInput::Text("hi".into())]),
        (
            json!(["a", "b"]),
            vec![EmbedInput::Text("a".into()), EmbedInput::Text("b".into())],
        ),
        (json!([5, 6, 7]), vec![EmbedInput::Tokens(vec![5, 6, 7])]),
        (
            json!([[5], [6, 7]]),
            vec![EmbedInput::Tokens(vec![5]), EmbedInput::Tokens(vec![6, 7])],
        ),
    ];
    for (input, want) in cases {
        let host = host();
        let body = run(&host, json!({"model": "e", "input": input})).expect("ok");
        assert_eq!(
            format!("{:?}", host.embed_calls()),
            format!("{:?}", vec![want])
        );
        let data = body["data"].as_array().expect("data");
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            assert_eq!(floats(&d["embedding"]).len(), 8);
        }
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], "e");
    }
}

#[test]
fn base64_carries_the_same_floats_and_usage_counts_tokens() {
    let h = host();
    let plain = run(&h, json!({"model": "e", "input": ["abc", "de"]})).expect("ok");
    let h2 = host();
    let encoded = run(
        &h2,
        json!({"model": "e", "input": ["abc", "de"], "encoding_format": "base64"}),
    )
    .expect("ok");
    for i in 0..2 {
        let text = encoded["data"][i]["embedding"].as_str().expect("a string");
        assert_eq!(decode_base64(text), floats(&plain["data"][i]["embedding"]));
    }
    // The fake reads one token per character.
    assert_eq!(
        plain["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
}

#[test]
fn dimensions_cut_and_renormalise() {
    let full = run(&host(), json!({"model": "e", "input": "abc"})).expect("ok");
    let short = run(
        &host(),
        json!({"model": "e", "input": "abc", "dimensions": 3}),
    )
    .expect("ok");
    let full = floats(&full["data"][0]["embedding"]);
    let short = floats(&short["data"][0]["embedding"]);
    let norm = full[..3].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert_eq!(short.len(), 3);
    for (s, f) in short.iter().zip(&full[..3]) {
        assert!((s - f / norm).abs() < 1e-6, "{short:?} vs {full:?}");
    }
}

#[test]
fn the_truncate_setting_picks_the_overflow() {
    let long = "x".repeat(20);
    let cut = run(&host(), json!({"model": "e", "input": long})).expect("truncated by default");
    assert_eq!(cut["usage"]["prompt_tokens"], 16);
    let strict = host().with_setting("truncate", "false");
    let e = FirstParty
        .embed(post(&json!({"model": "e", "input": long})), &strict)
        .expect_err("refused");
    assert_eq!(param_of(&e), Some("input"));
    let odd = host().with_setting("truncate", "maybe");
    let e = FirstParty
        .embed(post(&json!({"model": "e", "input": "x"})), &odd)
        .expect_err("a bad setting");
    assert!(matches!(e, Error::Internal(_)), "{e:?}");
}

#[test]
fn the_token_budget_setting_bounds_a_request() {
    // The fake tokenizer reads one token per character; inputs are cut at 16 first.
    let budget = host().with_setting("max_tokens_per_request", "40");
    let ok = run(
        &budget,
        json!({"model": "e", "input": ["x".repeat(20), "y".repeat(20)]}),
    )
    .expect("32 tokens after truncation fit in 40");
    assert_eq!(ok["usage"]["prompt_tokens"], 32);
    let three = vec!["z".repeat(16); 3];
    let e = FirstParty
        .embed(post(&json!({"model": "e", "input": three})), &budget)
        .expect_err("48 tokens are over 40");
    assert_eq!(param_of(&e), Some("input"));
    assert!(e.to_string().contains("48 tokens"), "{e}");
    let odd = host().with_setting("max_tokens_per_request", "0");
    let e = FirstParty
        .embed(post(&json!({"model": "e", "input": "x"})), &odd)
        .expect_err("a bad setting");
    assert!(matches!(e, Error::Internal(_)), "{e:?}");
}

#[test]
fn bad_requests_name_their_parameter() {
    let cases = [
        (json!({"model": "e", "input": ""}), "input"),
        (json!({"model": "e", "input": []}), "input"),
        (json!({"model": "e", "input": ["a", ""]}), "input"),
        (json!({"model": "e", "input": [[1], []]}), "input"),
        (json!({"model": "e", "input": [1, -2]}), "input"),
        (json!({"model": "e", "input": ["a", 1]}), "input"),
        (json!({"model": "e", "input": true}), "input"),
        (json!({"model": "e", "input": vec!["a"; 2049]}), "input"),
        (
            json!({"model": "e", "input": "a", "dimensions": 0}),
            "dimensions",
        ),
        (
            json!({"model": "e", "input": "a", "dimensions": 9}),
            "dimensions",
        ),
        (
            json!({"model": "e", "input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (json!({"model": "", "input": "a"}), "model"),
        (json!({"model": "chat", "input": "a"}), "model"),
        (json!({"model": "nope", "input": "a"}), "model"),
    ];
    for (body, param) in cases {
        let h = host();
        let e = FirstParty.embed(post(&body), &h).expect_err("refused");
        assert_eq!(param_of(&e), Some(param), "{body}: {e:?}");
        assert!(h.response().is_none());
    }
}

#[test]
fn prepare_sees_and_changes_the_plan() {
    #[derive(Default)]
    struct Strict;
    impl Embeddings for Strict {
        fn prepare(&self, mut plan: Plan) -> Result<Plan, Error> {
            assert_eq!(plan.overflow, Overflow::Truncate);
            plan.overflow = Overflow::Refuse;
            plan.model = "e".into();
            Ok(plan)
        }
    }
    let h = host();
    let e = Strict
        .embed(
            post(&json!({"model": "elsewhere", "input": "y".repeat(17)})),
            &h,
        )
        .expect_err("refused by the plugin's own rule");
    assert_eq!(param_of(&e), Some("input"));
}
