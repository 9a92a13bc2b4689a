//! The chat plugin's pipeline, run natively against `testing::FakeHost`: the wire shapes of
//! responses and streams, n, max_tokens, seeds, and the `Chat` hooks.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_chat::chat::{Chat, Plan};
use cinder_sdk::testing::{FakeHost, post};
use cinder_sdk::{Error, Route};

/// A fake host whose tools plugin is the first-party one, as in a real server.
fn fake(model: &str) -> FakeHost {
    FakeHost::new(model).with_tools(cinder_plugin_tools::FirstParty)
}
use serde_json::{Value, json};

#[derive(Default)]
struct FirstParty;
impl Chat for FirstParty {}

/// Upper-cases output and refuses `gpt-4`.
#[derive(Default)]
struct Hooked;
impl Chat for Hooked {
    fn prepare(&self, plan: Plan) -> Result<Plan, Error> {
        if plan.model == "gpt-4" {
            return Err(cinder_sdk::invalid_request("not here", Some("model")));
        }
        Ok(plan)
    }
    fn rewrite(&self, _choice: u32, text: String) -> String {
        text.to_uppercase()
    }
}

fn body(extra: Value) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().expect("an object") {
        b[k] = v.clone();
    }
    b
}

fn run(chat: &dyn Chat, host: &FakeHost, extra: Value) -> Result<(), Error> {
    chat.complete(post(&body(extra)), host)
}

#[test]
fn a_whole_response_has_openai_shape() {
    let host = fake("m").generating(&["Hel", "lo"]);
    run(&FirstParty, &host, json!({})).expect("completes");
    let (status, r) = host.response().expect("a response");
    assert_eq!(status, 200);
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(r["system_fingerprint"], "fp_fake");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["message"]["content"], "Hello");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 2);
    assert_eq!(
        r["usage"]["total_tokens"],
        r["usage"]["prompt_tokens"].as_u64().expect("n") + 2
    );
}

#[test]
fn max_tokens_ends_with_length_and_n_uses_seed_plus_i() {
    let host = fake("m").generating(&["a", "b", "c"]);
    run(
        &FirstParty,
        &host,
        json!({"max_tokens": 2, "n": 3, "seed": 7}),
    )
    .expect("completes");
    let (_, r) = host.response().expect("a response");
    let choices = r["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "ab");
        assert_eq!(c["finish_reason"], "length");
    }
    let seeds: Vec<_> = host
        .generate_requests()
        .iter()
        .map(|g| g.sampling.seed)
        .collect();
    assert_eq!(seeds, [Some(7), Some(8), Some(9)]);
}

#[test]
fn a_stream_with_usage_ends_with_a_usage_chunk() {
    let host = fake("m").generating(&["Hel", "lo"]);
    run(
        &FirstParty,
        &host,
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    )
    .expect("streams");
    assert!(host.response().is_none());
    let events = host.events();
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    let last = events.last().expect("events");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 2);
    for e in &events[..events.len() - 1] {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert!(e["usage"].is_null(), "{e}");
    }
    let finish = &events[events.len() - 2]["choices"][0]["finish_reason"];
    assert_eq!(finish, "stop");
}

#[test]
fn hooks_rewrite_output_and_refuse_requests() {
    let host = fake("m").generating(&["Hel", "lo"]);
    run(&Hooked, &host, json!({})).expect("completes");
    assert_eq!(
        host.response().expect("response").1["choices"][0]["message"]["content"],
        "HELLO"
    );
    let host = fake("m").generating(&["x"]);
    run(&Hooked, &host, json!({"stream": true})).expect("streams");
    assert!(
        host.events()
            .iter()
            .any(|e| e["choices"][0]["delta"]["content"] == "X")
    );
    let host = fake("gpt-4");
    match run(&Hooked, &host, json!({"model": "gpt-4"})) {
        Err(Error::InvalidRequest(d)) => assert_eq!(d.param.as_deref(), Some("model")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_are_typed_and_name_the_param() {
    let host = fake("m");
    match run(&FirstParty, &host, json!({"model": "other"})) {
        Err(Error::NotFound(d)) => assert_eq!(d.code.as_deref(), Some("model_not_found")),
        other => panic!("{other:?}"),
    }
    match run(&FirstParty, &host, json!({"temperature": 3})) {
        Err(Error::InvalidRequest(d)) => assert_eq!(d.param.as_deref(), Some("temperature")),
        other => panic!("{other:?}"),
    }
    assert!(host.response().is_none() && host.events().is_empty());
}

#[test]
fn logprobs_have_openai_shape() {
    let host = fake("m").generating(&["a"]);
    run(
        &FirstParty,
        &host,
        json!({"logprobs": true, "top_logprobs": 2}),
    )
    .expect("completes");
    let (_, r) = host.response().expect("response");
    let content = &r["choices"][0]["logprobs"]["content"][0];
    assert_eq!(content["token"], "a");
    assert_eq!(content["bytes"], json!([97]));
    assert_eq!(content["top_logprobs"].as_array().expect("top").len(), 2);
}

#[test]
fn out_of_range_parameters_are_refused_by_name() {
    let cases = [
        ("temperature", json!({"temperature": 2.5})),
        ("top_p", json!({"top_p": 1.5})),
        ("top_p", json!({"top_p": 0})),
        ("presence_penalty", json!({"presence_penalty": -3})),
        ("frequency_penalty", json!({"frequency_penalty": 2.1})),
        (
            "top_logprobs",
            json!({"logprobs": true, "top_logprobs": 21}),
        ),
        ("stop", json!({"stop": ["a", "b", "c", "d", "e"]})),
        ("max_tokens", json!({"max_tokens": 0})),
        ("logit_bias", json!({"logit_bias": {"5": 101}})),
        ("n", json!({"n": 0})),
    ];
    for (param, extra) in cases {
        let host = fake("m").generating(&["x"]);
        match run(&FirstParty, &host, extra.clone()) {
            Err(Error::InvalidRequest(d)) => {
                assert_eq!(d.param.as_deref(), Some(param), "{extra}")
            }
            other => panic!("{extra}: {other:?}"),
        }
    }
}

#[test]
fn a_participant_name_reaches_the_prompt() {
    let host = fake("m").generating(&["x"]);
    let body =
        json!({"model": "m", "messages": [{"role": "user", "name": "ada", "content": "hi"}]});
    FirstParty.complete(post(&body), &host).expect("completes");
    let prompt: Vec<u8> = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8)
        .collect();
    assert!(String::from_utf8_lossy(&prompt).contains("ada: hi"));
    let bad = json!({"model": "m", "messages": [{"role": "user", "name": "a b", "content": "hi"}]});
    match FirstParty.complete(post(&bad), &host) {
        Err(Error::InvalidRequest(d)) => assert_eq!(d.param.as_deref(), Some("messages[0].name")),
        other => panic!("{other:?}"),
    }
}

/// The route the host would match for the stored-completions paths (`plugins/chat/plugin.toml`).
fn route_of(method: &str, path: &str) -> Route {
    let path = path.split('?').next().unwrap_or(path);
    let rest: Vec<&str> = path
        .trim_start_matches("/v1/chat/completions")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, rest.as_slice()) {
        ("GET", []) => Route::new("chat.list"),
        ("GET", [id]) => Route::new("chat.retrieve").with_param("id", id),
        ("POST", [id]) => Route::new("chat.update").with_param("id", id),
        ("DELETE", [id]) => Route::new("chat.delete").with_param("id", id),
        ("GET", [id, "messages"]) => Route::new("chat.messages").with_param("id", id),
        other => panic!("no stored route for {other:?}"),
    }
}

fn call(host: &FakeHost, method: &str, path: &str, body: Value) -> Value {
    let request = cinder_sdk::Request {
        method: method.into(),
        path: path.into(),
        body: body.to_string(),
        request_id: "r".into(),
    };
    FirstParty
        .stored(&route_of(method, path), request, host)
        .expect("served");
    host.take_response().expect("a response").1
}

#[test]
fn stored_completions_can_be_listed_retrieved_updated_and_deleted() {
    let host = fake("m").generating(&["Hel", "lo"]);
    let mut b = body(json!({"metadata": {"team": "a"}}));
    b["store"] = json!(true);
    FirstParty.complete(post(&b), &host).expect("completes");
    let id = host.take_response().expect("response").1["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = format!("/v1/chat/completions/{id}");

    let got = call(&host, "GET", &one, json!(null));
    assert_eq!(got["choices"][0]["message"]["content"], "Hello");
    assert_eq!(got["metadata"]["team"], "a");
    let list = call(
        &host,
        "GET",
        "/v1/chat/completions?metadata%5Bteam%5D=a&limit=5",
        json!(null),
    );
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().expect("data").len(), 1);
    assert_eq!(list["first_id"], id.as_str());
    let none = call(
        &host,
        "GET",
        "/v1/chat/completions?metadata[team]=b",
        json!(null),
    );
    assert_eq!(none["data"], json!([]));
    let updated = call(&host, "POST", &one, json!({"metadata": {"team": "b"}}));
    assert_eq!(updated["metadata"]["team"], "b");
    let msgs = call(&host, "GET", &format!("{one}/messages"), json!(null));
    assert_eq!(msgs["data"][0]["content"], "hi");
    assert_eq!(msgs["data"][0]["role"], "user");
    let deleted = call(&host, "DELETE", &one, json!(null));
    assert_eq!(deleted["deleted"], true);
    let route = route_of("GET", &one);
    let request = cinder_sdk::Request {
        method: "GET".into(),
        path: one,
        body: String::new(),
        request_id: "r".into(),
    };
    match FirstParty.stored(&route, request, &host) {
        Err(Error::NotFound(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_streamed_completion_is_stored_assembled() {
    let host = fake("m").generating(&["Hel", "lo"]);
    let mut b = body(json!({"stream": true}));
    b["store"] = json!(true);
    FirstParty.complete(post(&b), &host).expect("streams");
    let id = host.events()[0]["id"].as_str().expect("id").to_owned();
    host.take_response();
    let got = call(
        &host,
        "GET",
        &format!("/v1/chat/completions/{id}"),
        json!(null),
    );
    assert_eq!(got["choices"][0]["message"]["content"], "Hello");
    assert_eq!(got["choices"][0]["finish_reason"], "stop");
}

#[test]
fn response_formats_become_constraints() {
    use cinder_sdk::inference::Constraint;
    let host = fake("m").generating(&["{}"]);
    run(
        &FirstParty,
        &host,
        json!({"response_format": {"type": "json_object"}}),
    )
    .expect("ok");
    host.take_response();
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let format = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}});
    run(&FirstParty, &host, json!({"response_format": format})).expect("ok");
    host.take_response();
    run(
        &FirstParty,
        &host,
        json!({"response_format": {"type": "text"}}),
    )
    .expect("ok");
    host.take_response();
    let got = host.constraints();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[0], Constraint::JsonObject));
    match &got[1] {
        Constraint::JsonSchema(s) => {
            // Closed: a missing `additionalProperties` means `false` to the grammar.
            let mut closed = schema.clone();
            closed["additionalProperties"] = json!(false);
            assert_eq!(serde_json::from_str::<Value>(s).expect("json"), closed)
        }
        other => panic!("{other:?}"),
    }
    for (bad, param) in [
        (json!({"type": "xml"}), "response_format.type"),
        (
            json!({"type": "json_schema"}),
            "response_format.json_schema",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            "response_format.json_schema.schema",
        ),
    ] {
        match run(&FirstParty, &host, json!({"response_format": bad})) {
            Err(Error::InvalidRequest(d)) => assert_eq!(d.param.as_deref(), Some(param)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn tool_calls_come_back_as_tool_calls() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let host = fake("m").generating(&[
        r#"[{"name": "get_weather", "#,
        r#""arguments": {"city": "Paris"}}]"#,
    ]);
    run(
        &FirstParty,
        &host,
        json!({"tools": tools, "tool_choice": "required"}),
    )
    .expect("ok");
    let (_, r) = host.take_response().expect("response");
    let m = &r["choices"][0]["message"];
    assert!(m["content"].is_null(), "{r}");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert!(
        m["tool_calls"][0]["id"]
            .as_str()
            .expect("id")
            .starts_with("call_")
    );
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(host.constraints().len(), 1, "required is constrained");

    // auto: a text answer stays text, and nothing is constrained.
    let host = fake("m").generating(&["It is sunny."]);
    run(&FirstParty, &host, json!({"tools": tools})).expect("ok");
    let (_, r) = host.take_response().expect("response");
    assert_eq!(r["choices"][0]["message"]["content"], "It is sunny.");
    assert!(r["choices"][0]["message"].get("tool_calls").is_none());
    assert!(host.constraints().is_empty());

    // The conversation goes on: calls and results render into the next prompt.
    let host = fake("m").generating(&["Sunny."]);
    let body = json!({"model": "m", "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]});
    FirstParty.complete(post(&body), &host).expect("ok");
    let prompt: Vec<u8> = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8)
        .collect();
    let prompt = String::from_utf8_lossy(&prompt);
    assert!(
        prompt.contains(r#"[{"arguments":{"city":"Paris"},"name":"get_weather"}]"#)
            || prompt.contains(r#""name":"get_weather""#),
        "{prompt}"
    );
    assert!(prompt.contains("<|tool|>21 C"), "{prompt}");
}

#[test]
fn streamed_tool_calls_have_openai_deltas_and_text_still_streams() {
    let tools = json!([{"type": "function", "function": {"name": "f",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]);
    let host = fake("m").generating(&[" [{\"name\": \"f\", ", "\"arguments\": {\"x\": 1}}]"]);
    run(&FirstParty, &host, json!({"tools": tools, "stream": true})).expect("ok");
    let events = host.events();
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 2, "{events:?}");
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["type"], "function");
    assert_eq!(calls[0][0]["function"]["name"], "f");
    assert_eq!(calls[0][0]["function"]["arguments"], "");
    assert_eq!(calls[1][0]["function"]["arguments"], r#"{"x":1}"#);
    assert!(
        events
            .iter()
            .all(|e| e["choices"][0]["delta"]["content"] != " [{\"name\": \"f\", ")
    );
    let finish = events
        .iter()
        .rev()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    host.take_response();
    let host = fake("m").generating(&["  Hi", " there"]);
    run(&FirstParty, &host, json!({"tools": tools, "stream": true})).expect("ok");
    let text: String = host
        .events()
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "  Hi there");
}
