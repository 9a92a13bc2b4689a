use super::*;

fn check(body: Value) -> Checked<ResponseParams> {
    ResponseParams::check(&body)
}

fn param_of(body: Value) -> String {
    check(body).unwrap_err().param.unwrap_or_default()
}

#[test]
fn a_string_input_is_one_user_message_and_defaults_are_openais() {
    let p = check(json!({"model": "m", "input": "hi"})).unwrap();
    assert_eq!(
        p.input,
        vec![InputItem::Message {
            role: Role::User,
            content: vec![InputPart::text("hi")]
        }]
    );
    assert!(p.store && !p.stream && !p.background && p.parallel_tool_calls);
    assert_eq!(p.metadata, json!({}));
    assert_eq!(p.tool_choice_given, json!("auto"));
    assert!(p.tools.is_none() && p.format.is_none());
}

#[test]
fn unknown_and_unsupported_fields_are_refused_by_name() {
    let e = check(json!({"model": "m", "input": "x", "frobnicate": 1})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("frobnicate"));
    assert_eq!(e.code.as_deref(), Some("unknown_parameter"));
    assert_eq!(
        param_of(json!({"model": "m", "prompt": {"id": "p"}})),
        "prompt"
    );
    assert_eq!(
        param_of(json!({"model": "m", "tools": [{"type": "web_search"}]})),
        "tools[0].type"
    );
    let url = json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]});
    assert_eq!(param_of(url), "input[0].content[0].file_url");
    let file = json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "read"}, {"type": "input_file", "file_id": "file-1"}]}]});
    assert_eq!(
        check(file).unwrap().input,
        vec![InputItem::Message {
            role: Role::User,
            content: vec![
                InputPart::text("read"),
                InputPart::File {
                    file_id: "file-1".into()
                }
            ]
        }]
    );
    assert_eq!(
        param_of(
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})
        ),
        "input[0].content[0].type"
    );
    assert_eq!(
        param_of(json!({"model": "m", "text": {"shape": 1}})),
        "text.shape"
    );
    assert_eq!(
        param_of(json!({"model": "m", "max_output_tokens": 4})),
        "max_output_tokens"
    );
    assert_eq!(param_of(json!({"model": "m", "input": 3})), "input");
    assert_eq!(param_of(json!({"input": "x"})), "model");
    assert_eq!(
        param_of(json!({"model": "m", "include": ["nope"]})),
        "include[0]"
    );
    assert_eq!(
        param_of(json!({"model": "m", "conversation": "c", "previous_response_id": "r"})),
        "previous_response_id"
    );
}

#[test]
fn items_tools_and_formats_are_read_in_the_responses_shapes() {
    let p = check(json!({
        "model": "m",
        "input": [
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"}
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}},
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2
    }))
    .unwrap();
    assert_eq!(p.input.len(), 4);
    assert_eq!(
        p.input[1],
        InputItem::Message {
            role: Role::User,
            content: vec![InputPart::text("a"), InputPart::text("b")]
        }
    );
    let tools = p.tools.unwrap();
    assert_eq!(tools.functions[0].name, "f");
    assert_eq!(
        tools.choice,
        crate::params::chat::ToolChoice::Function("f".into())
    );
    assert_eq!(
        p.format,
        Some(ResponseFormat::JsonSchema(json!({"type": "object"})))
    );
    assert_eq!(p.logprobs, Some(2));
    // A bad function name is named in the Responses shape, not chat's.
    assert_eq!(
        param_of(json!({"model": "m", "tools": [{"type": "function", "name": "bad name"}]})),
        "tools[0].name"
    );
    assert_eq!(
        param_of(
            json!({"model": "m", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}})
        ),
        "tool_choice"
    );
}

#[test]
fn file_search_tool_is_checked_and_follows_tool_choice() {
    let fs = json!({"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 3,
                    "filters": {"type": "eq", "key": "lang", "value": "en"},
                    "ranking_options": {"ranker": "auto", "score_threshold": 0.2}});
    let p = check(json!({"model": "m", "input": "x", "tools": [fs.clone()]})).unwrap();
    let tool = p.file_search.unwrap();
    assert_eq!(tool.vector_store_ids, vec!["vs_1".to_owned()]);
    assert_eq!(tool.max_num_results, Some(3));
    assert_eq!(tool.score_threshold, Some(0.2));
    assert!(tool.filter.is_some());
    assert!(p.tools.is_none());
    for (choice, searches) in [
        (json!("auto"), true),
        (json!("required"), true),
        (json!("none"), false),
        (json!({"type": "file_search"}), true),
    ] {
        let p = check(
            json!({"model": "m", "input": "x", "tools": [fs.clone()], "tool_choice": choice}),
        )
        .unwrap();
        assert_eq!(p.file_search.is_some(), searches, "{choice}");
    }
    let f = json!({"type": "function", "name": "f", "parameters": {"type": "object"}});
    let both = check(
        json!({"model": "m", "input": "x", "tools": [fs.clone(), f.clone()],
                            "tool_choice": {"type": "function", "name": "f"}}),
    )
    .unwrap();
    assert!(both.file_search.is_none() && both.tools.is_some());
    let both =
        check(json!({"model": "m", "input": "x", "tools": [f.clone(), fs.clone()]})).unwrap();
    assert!(both.file_search.is_some() && both.tools.is_some());
    for (bad, param) in [
        (
            json!([{"type": "file_search"}]),
            "tools[0].vector_store_ids",
        ),
        (
            json!([{"type": "file_search", "vector_store_ids": []}]),
            "tools[0].vector_store_ids",
        ),
        (
            json!([{"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 51}]),
            "tools[0].max_num_results",
        ),
        (
            json!([{"type": "file_search", "vector_store_ids": ["vs_1"], "filters": {"type": "like"}}]),
            "tools[0].filters",
        ),
        (
            json!([{"type": "file_search", "vector_store_ids": ["vs_1"],
                 "ranking_options": {"score_threshold": 2}}]),
            "tools[0].ranking_options.score_threshold",
        ),
        (
            json!([{"type": "file_search", "vector_store_ids": ["vs_1"], "colour": 1}]),
            "tools[0].colour",
        ),
        (json!([fs.clone(), fs.clone()]), "tools[1]"),
        (json!([{"type": "web_search"}]), "tools[0].type"),
    ] {
        assert_eq!(
            param_of(json!({"model": "m", "tools": bad})),
            param,
            "{bad}"
        );
    }
    assert_eq!(
        param_of(json!({"model": "m", "tools": [f], "tool_choice": {"type": "file_search"}})),
        "tool_choice"
    );
    assert_eq!(
        param_of(json!({"model": "m", "tools": [fs.clone()], "tool_choice": "bogus"})),
        "tool_choice"
    );
    let twice = json!([{"type": "file_search", "vector_store_ids": ["vs_1", "vs_2", "vs_1"]}]);
    let p = check(json!({"model": "m", "input": "x", "tools": twice})).unwrap();
    assert_eq!(p.file_search.unwrap().vector_store_ids, ["vs_1", "vs_2"]);
}
