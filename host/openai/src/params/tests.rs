use serde_json::json;

use super::chat::{ChatParams, ResponseFormat, Role, ToolChoice, tools_of};
use super::completions::{CompletionParams, PromptInput};
use super::embeddings::{EmbeddingParams, Input};
use super::*;

fn chat(body: serde_json::Value) -> Checked<ChatParams> {
    let (req, _) = parse_body(&body.to_string())?;
    ChatParams::check(req)
}

fn chat_param(body: serde_json::Value) -> String {
    chat(body).unwrap_err().param.unwrap_or_default()
}

fn user() -> serde_json::Value {
    json!([{"role": "user", "content": "hi"}])
}

#[test]
fn every_sampling_range_names_its_parameter() {
    for (field, value) in [
        ("temperature", json!(2.5)),
        ("top_p", json!(0)),
        ("top_p", json!(1.5)),
        ("presence_penalty", json!(-3)),
        ("frequency_penalty", json!(3)),
        ("n", json!(0)),
        ("n", json!(129)),
        ("max_tokens", json!(0)),
        ("max_completion_tokens", json!(0)),
        ("logit_bias", json!({"x": 1})),
        ("logit_bias", json!({"5": 101})),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("stop", json!("x".repeat(MAX_STOP_BYTES + 1))),
        ("service_tier", json!("gold")),
        ("metadata", json!({"k": 1})),
        ("stream_options", json!({"include_usage": true})),
    ] {
        let mut body = json!({"model": "m", "messages": user()});
        body[field] = value;
        assert_eq!(chat_param(body.clone()), field, "{body}");
    }
}

#[test]
fn defaults_fill_in_and_empty_stop_strings_stop_nothing() {
    let p =
        chat(json!({"model": "m", "messages": user(), "stop": ["", "END"], "seed": -1})).unwrap();
    assert_eq!(p.sampling.temperature, 1.0);
    assert_eq!(p.sampling.top_p, 1.0);
    assert_eq!(p.sampling.seed, Some(u64::MAX));
    assert_eq!(p.n, 1);
    assert_eq!(p.stop.into_strings(), ["END"]);
    assert_eq!(p.messages[0].role, Role::User);
}

#[test]
fn messages_are_checked_where_they_are() {
    assert_eq!(
        chat_param(json!({"model": "m", "messages": []})),
        "messages"
    );
    assert_eq!(
        chat_param(
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})
        ),
        "messages[1].role"
    );
    assert_eq!(
        chat_param(json!({"model": "m", "messages": [{"role": "user"}]})),
        "messages[0].content"
    );
    assert_eq!(
        chat_param(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
        ),
        "messages[0].content"
    );
    assert_eq!(
        chat_param(
            json!({"model": "m", "messages": [{"role": "user", "content": "a", "name": "a b"}]})
        ),
        "messages[0].name"
    );
    assert_eq!(
        chat_param(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]})
        ),
        "messages[0].tool_calls[0].function.name"
    );
    let p = chat(json!({"model": "m", "messages": [
        {"role": "assistant", "function_call": {"name": "f", "arguments": {"a": 1}}},
        {"role": "function", "content": "2", "tool_call_id": "call_function_0"},
    ]}))
    .unwrap();
    assert_eq!(p.messages[0].calls[0].id, "call_function_0");
    assert_eq!(p.messages[0].calls[0].arguments, r#"{"a":1}"#);
    assert_eq!(
        p.messages[1].tool_call_id.as_deref(),
        Some("call_function_0")
    );
}

#[test]
fn response_formats_and_their_conflicts() {
    let with = |format: serde_json::Value| json!({"model": "m", "messages": user(), "response_format": format});
    assert_eq!(
        chat(with(json!({"type": "text"}))).unwrap().response_format,
        None
    );
    assert_eq!(
        chat(with(json!({"type": "json_object"})))
            .unwrap()
            .response_format,
        Some(ResponseFormat::JsonObject)
    );
    let schema = json!({"type": "object"});
    assert_eq!(
        chat(with(
            json!({"type": "json_schema", "json_schema": {"schema": schema}})
        ))
        .unwrap()
        .response_format,
        Some(ResponseFormat::JsonSchema(schema))
    );
    assert_eq!(
        chat_param(with(json!({"type": "yaml"}))),
        "response_format.type"
    );
    assert_eq!(chat_param(with(json!({}))), "response_format");
    assert_eq!(
        chat_param(with(json!({"type": "json_schema"}))),
        "response_format.json_schema"
    );
    assert_eq!(
        chat_param(with(
            json!({"type": "json_schema", "json_schema": {"schema": 1}})
        )),
        "response_format.json_schema.schema"
    );
    let mut forced = with(json!({"type": "json_object"}));
    forced["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    forced["tool_choice"] = json!("required");
    assert_eq!(chat_param(forced), "response_format");
}

#[test]
fn tool_choices_are_validated() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    assert!(
        tools_of(Some(&tools), Some(&json!("none")), None)
            .unwrap()
            .is_none()
    );
    assert!(
        tools_of(None, Some(&json!("none")), None)
            .unwrap()
            .is_none()
    );
    let named = json!({"type": "function", "function": {"name": "g"}});
    assert!(tools_of(Some(&tools), Some(&named), None).is_err());
    assert!(tools_of(None, Some(&json!("required")), None).is_err());
    let bad_name = json!([{"type": "function", "function": {"name": "a b"}}]);
    assert_eq!(
        tools_of(Some(&bad_name), None, None)
            .unwrap_err()
            .param
            .as_deref(),
        Some("tools[0].function.name")
    );
    let auto = tools_of(Some(&tools), None, None).unwrap().unwrap();
    assert_eq!(auto.choice, ToolChoice::Auto);
    assert!(auto.parallel);
    assert_eq!(
        auto.functions[0].parameters,
        json!({"type": "object", "properties": {}})
    );
    let too_many: Vec<_> = (0..=chat::MAX_TOOLS).map(|_| tools[0].clone()).collect();
    assert_eq!(
        tools_of(Some(&json!(too_many)), None, None)
            .unwrap_err()
            .param
            .as_deref(),
        Some("tools")
    );
}

#[test]
fn legacy_functions_become_one_call_at_most() {
    let p = chat(json!({"model": "m", "messages": user(),
        "functions": [{"name": "f"}], "function_call": {"name": "f"}}))
    .unwrap();
    assert!(p.legacy_functions);
    let tools = p.tools.unwrap();
    assert_eq!(tools.choice, ToolChoice::Function("f".into()));
    assert!(!tools.parallel);
    assert_eq!(
        chat_param(json!({"model": "m", "messages": user(), "function_call": "auto"})),
        "function_call"
    );
    assert_eq!(
        chat_param(json!({"model": "m", "messages": user(), "functions": [], "tools": []})),
        "functions"
    );
}

fn legacy(body: serde_json::Value) -> Checked<CompletionParams> {
    let (req, _) = parse_body(&body.to_string())?;
    CompletionParams::check(req)
}

#[test]
fn legacy_rules() {
    let p = legacy(json!({"model": "m", "prompt": [[1, 2], [3]]})).unwrap();
    assert_eq!(
        p.prompts,
        [PromptInput::Ids(vec![1, 2]), PromptInput::Ids(vec![3])]
    );
    assert_eq!(p.max_tokens, completions::DEFAULT_MAX_TOKENS);
    let param = |b: serde_json::Value| legacy(b).unwrap_err().param.unwrap_or_default();
    assert_eq!(param(json!({"model": "m"})), "prompt");
    assert_eq!(param(json!({"model": "m", "prompt": ["a", ""]})), "prompt");
    assert_eq!(
        param(json!({"model": "m", "prompt": "a", "n": 3, "best_of": 2})),
        "best_of"
    );
    assert_eq!(
        param(json!({"model": "m", "prompt": "a", "best_of": 2, "stream": true})),
        "best_of"
    );
    assert_eq!(
        param(json!({"model": "m", "prompt": "a", "logprobs": 6})),
        "logprobs"
    );
    assert_eq!(
        param(json!({"model": "m", "prompt": "a", "echo": true, "suffix": "b"})),
        "echo"
    );
    let many: Vec<_> = (0..=completions::MAX_PROMPTS).map(|_| "a").collect();
    assert_eq!(param(json!({"model": "m", "prompt": many})), "prompt");
}

fn embed(body: serde_json::Value) -> Checked<EmbeddingParams> {
    let (req, _) = parse_body(&body.to_string())?;
    EmbeddingParams::check(req)
}

#[test]
fn embedding_rules() {
    for (input, want) in [
        (json!("hi"), vec![Input::Text("hi".into())]),
        (
            json!(["a", "b"]),
            vec![Input::Text("a".into()), Input::Text("b".into())],
        ),
        (json!([5, 6]), vec![Input::Tokens(vec![5, 6])]),
        (
            json!([[5], [6, 7]]),
            vec![Input::Tokens(vec![5]), Input::Tokens(vec![6, 7])],
        ),
    ] {
        assert_eq!(
            embed(json!({"model": "m", "input": input})).unwrap().inputs,
            want
        );
    }
    let param = |b: serde_json::Value| embed(b).unwrap_err().param.unwrap_or_default();
    for input in [
        json!(""),
        json!([]),
        json!(["a", ""]),
        json!([[]]),
        json!([-1]),
        json!([{}]),
    ] {
        assert_eq!(param(json!({"model": "m", "input": input})), "input");
    }
    assert_eq!(param(json!({"model": "", "input": "a"})), "model");
    assert_eq!(
        param(json!({"model": "m", "input": "a", "dimensions": 0})),
        "dimensions"
    );
    assert_eq!(
        param(json!({"model": "m", "input": "a", "encoding_format": "hex"})),
        "encoding_format"
    );
}
