//! The first-party plugins' request parsing under fuzzing (issue 17): arbitrary bodies, and valid bodies with any field
//! set to any JSON value, go through the first-party chat, legacy completions and embeddings
//! pipelines. Each must answer or refuse with a client error (a 400 naming what is wrong, or
//! a 404 for a model it does not know): never a panic, never a 500. `PROPTEST_CASES` raises
//! the number of cases for a longer run than CI's.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_chat::Chat;
use cinder_sdk::testing::{FakeHost, post};
use cinder_sdk::{Error, Route, Serve};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use cinder_plugin_chat::FirstParty;

/// Strings a request's fields often hold, so the fuzz reaches past the first type check.
const WORDS: &[&str] = &[
    "m",
    "e",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image_url",
    "json_schema",
    "json_object",
    "auto",
    "none",
    "required",
    "object",
    "string",
    "integer",
    "array",
    "base64",
    "float",
    "<|im_start|>system",
    "",
];

/// Keys of requests, messages, tools and schemas.
const KEYS: &[&str] = &[
    "role",
    "content",
    "name",
    "type",
    "text",
    "tool_calls",
    "tool_call_id",
    "function",
    "arguments",
    "parameters",
    "description",
    "json_schema",
    "schema",
    "strict",
    "properties",
    "required",
    "items",
    "$ref",
    "$defs",
    "enum",
    "anyOf",
    "pattern",
    "url",
    "id",
];

const CHAT_KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "reasoning_effort",
    "prediction",
    "audio",
];

const LEGACY_KEYS: &[&str] = &[
    "model",
    "prompt",
    "max_tokens",
    "n",
    "best_of",
    "echo",
    "suffix",
    "logprobs",
    "stop",
    "stream",
    "temperature",
    "top_p",
    "seed",
    "logit_bias",
    "presence_penalty",
    "user",
];

const EMBED_KEYS: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];
const IMAGE_KEYS: &[&str] = &[
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "style",
    "stream",
    "partial_images",
    "user",
    "seed",
    "negative_prompt",
    "steps",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_$]{0,8}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..300).prop_map(Value::from),
        prop_oneof![Just(-1.5), Just(0.5), Just(2.5), Just(1e300), Just(-0.0)]
            .prop_map(Value::from),
        "[a-z <|>{}\\[\\]\"\\\\é\u{1F600}\u{0}]{0,12}".prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A message: a known role with any content, or any JSON.
fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (prop::sample::select(WORDS), json()).prop_map(|(role, content)| json!({"role": role, "content": content})),
        1 => json(),
    ]
}

/// `base` with up to five of `keys` set to arbitrary values.
fn mutated(base: Value, keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(keys), json()), 0..5).prop_map(move |edits| {
        let mut body = base.clone();
        for (k, v) in edits {
            body[k] = v;
        }
        body
    })
}

fn chat_body() -> impl Strategy<Value = Value> {
    let base =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    (
        mutated(base, CHAT_KEYS),
        prop::option::of(prop::collection::vec(message(), 0..4)),
    )
        .prop_map(|(mut body, messages)| {
            if let Some(m) = messages {
                body["messages"] = Value::Array(m);
            }
            body
        })
}

fn host() -> FakeHost {
    FakeHost::new("m")
        .generating(&["{", "\"a\"", ":", "1", "}"])
        .with_embedder("e", 8, 16)
        .with_tools(cinder_plugin_tools::FirstParty)
        .with_image_model(cinder_sdk::testing::image_model("i", &[(16, 16), (32, 16)]))
}

/// Answered, or refused as the client's mistake: never a server error.
fn client_outcome(what: &str, r: Result<(), Error>) -> Result<(), TestCaseError> {
    match r {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(Error::InvalidRequest(d)) => {
            prop_assert!(!d.message.is_empty(), "{what}: a 400 without a message");
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!("{what}: {other:?}"))),
    }
}

fn with_path(body: &Value, path: &str) -> cinder_sdk::Request {
    let mut r = post(body);
    r.path = path.into();
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn chat_bodies_are_answered_or_refused_by_name(body in chat_body()) {
        let host = host();
        client_outcome(&body.to_string(), FirstParty.complete(post(&body), &host))?;
    }

    #[test]
    fn legacy_bodies_are_answered_or_refused_by_name(
        body in mutated(json!({"model": "m", "prompt": "Once", "max_tokens": 3}), LEGACY_KEYS)
    ) {
        let host = host();
        let r = FirstParty.complete_legacy(with_path(&body, "/v1/completions"), &host);
        client_outcome(&body.to_string(), r)?;
    }

    #[test]
    fn embeddings_bodies_are_answered_or_refused_by_name(
        body in mutated(json!({"model": "e", "input": "hi"}), EMBED_KEYS)
    ) {
        let host = host();
        let request = with_path(&body, "/v1/embeddings");
        let r = cinder_plugin_embeddings::FirstParty.serve(&Route::new("embeddings.create"), request, &host);
        client_outcome(&body.to_string(), r)?;
    }

    #[test]
    fn image_bodies_are_answered_or_refused_by_name(
        body in mutated(json!({"model": "i", "prompt": "a cat", "steps": 2}), IMAGE_KEYS)
    ) {
        use cinder_sdk::ServeAgent;
        let host = host();
        let request = with_path(&body, "/v1/images/generations");
        let r = cinder_plugin_images::FirstParty.serve(&Route::new("images.generate"), request, &host);
        client_outcome(&body.to_string(), r)?;
    }

    #[test]
    fn text_that_is_not_a_request_is_a_400(text in "\\PC{0,64}", cut in 0usize..80) {
        let valid = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
        let host = host();
        for body in [text.clone(), valid[..cut.min(valid.len() - 1)].to_string()] {
            let request = cinder_sdk::Request { body, ..post(&json!({})) };
            match FirstParty.complete(request, &host) {
                Err(Error::InvalidRequest(_)) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
