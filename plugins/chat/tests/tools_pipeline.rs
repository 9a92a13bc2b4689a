//! Chat with tools, run natively: chat reaches the tools family through the host (here
//! `FakeHost`, serving the first-party tools behaviour), as a real chat plugin reaches the
//! tools plugin. Templates with and without `tools` support, the template formats of calls,
//! legacy history, and chat without a tools plugin.

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

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn prompt_of(host: &FakeHost) -> String {
    let ids = &host.generate_requests()[0].prompt;
    String::from_utf8(ids.iter().map(|&t| t as u8).collect()).expect("utf-8")
}

#[test]
fn a_template_with_tools_support_renders_them_and_its_calls() {
    let host = fake("m").with_template_tools().generating(&[
        "<tool_",
        "call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
    ]);
    let body = json!({"model": "m", "tools": weather(), "stream": true, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "30 C"},
        {"role": "user", "content": "and Oslo?"}]});
    FirstParty.complete(post(&body), &host).expect("ok");
    let prompt = prompt_of(&host);
    // The tools went to the template, not into a system message; calls as objects.
    assert!(
        prompt.starts_with("<|tools|>[{\"type\":\"function\",\"function\""),
        "{prompt}"
    );
    assert!(!prompt.contains("You can call these functions"), "{prompt}");
    assert!(
        prompt.contains(r#""arguments":{"city":"Rome"}"#),
        "{prompt}"
    );
    assert!(prompt.contains(r#""tool_call_id":"call_9""#), "{prompt}");
    // The Hermes-style answer, split mid-tag, was held back and came out as a call.
    let events = host.events();
    assert!(
        events.iter().all(|e| e["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("")
            .is_empty()),
        "{events:?}"
    );
    let call = events
        .iter()
        .find_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["name"].as_str());
    assert_eq!(call, Some("get_weather"));
    let args: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"city":"Oslo"}"#);
}

#[test]
fn without_a_tools_plugin_chat_serves_and_tool_requests_are_unavailable() {
    let host = fake("m").without_tools_plugin().generating(&["Hi."]);
    FirstParty
        .complete(
            post(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
            &host,
        )
        .expect("plain chat needs no tools plugin");
    assert_eq!(
        host.response().expect("a response").1["choices"][0]["message"]["content"],
        "Hi."
    );
    let host = fake("m").without_tools_plugin().generating(&["Hi."]);
    let body =
        json!({"model": "m", "tools": weather(), "messages": [{"role": "user", "content": "hi"}]});
    let e = FirstParty
        .complete(post(&body), &host)
        .expect_err("no tools plugin");
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
}

#[test]
fn legacy_function_call_history_renders_into_the_prompt() {
    let host = fake("m").generating(&["Sunny."]);
    let body = json!({"model": "m",
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null,
                "function_call": {"name": "get_weather", "arguments": "{\"city\": \"Lima\"}"}},
            {"role": "function", "name": "get_weather", "content": "18 C"}]});
    FirstParty.complete(post(&body), &host).expect("ok");
    let prompt = prompt_of(&host);
    assert!(
        prompt.contains(r#"<|assistant|>[{"name":"get_weather","arguments":{"city":"Lima"}}]"#),
        "{prompt}"
    );
    assert!(prompt.contains("<|tool|>get_weather: 18 C"), "{prompt}");
    let (_, r) = host.response().expect("a response");
    assert_eq!(r["choices"][0]["message"]["content"], "Sunny.");
}

#[test]
fn malformed_history_calls_name_their_param() {
    let host = fake("m");
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {}}]}]});
    let Err(Error::InvalidRequest(d)) = FirstParty.complete(post(&body), &host) else {
        panic!("a 400")
    };
    assert_eq!(
        d.param.as_deref(),
        Some("messages[1].tool_calls[0].function.name")
    );
}

#[test]
fn tools_and_choices_are_bounded() {
    let host = fake("m").generating(&["x"]);
    let tool = |i: usize| json!({"type": "function", "function": {"name": format!("f{i}"), "parameters": {"type": "object"}}});
    let tools: Vec<Value> = (0..129).map(tool).collect();
    let body =
        json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "x"}]});
    let Err(Error::InvalidRequest(d)) = FirstParty.complete(post(&body), &host) else {
        panic!("a 400")
    };
    assert_eq!(d.param.as_deref(), Some("tools"));
    let small = fake("m")
        .generating(&["x"])
        .with_setting("max_sequences_per_request", "2");
    let body = json!({"model": "m", "n": 3, "messages": [{"role": "user", "content": "x"}]});
    let Err(Error::InvalidRequest(d)) = FirstParty.complete(post(&body), &small) else {
        panic!("a 400")
    };
    assert_eq!(d.param.as_deref(), Some("n"));
}
