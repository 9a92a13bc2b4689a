//! Grammar-constrained decoding on the real model through the engine: whatever a 135M model
//! would rather say, the output matches the schema or regex, and a grammar the engine
//! cannot support is a 400 naming `response_format` before anything runs.

use std::sync::{Arc, OnceLock};

use cinder_core::{
    Constraint, CoreError, FinishReason, GenEvent, GenerateRequest, LoadedModel, SamplingParams,
    TemplateMessage,
};

fn model() -> &'static Arc<LoadedModel> {
    static M: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    M.get_or_init(|| Arc::new(crate::load_smollm2()))
}

fn prompt(question: &str) -> Vec<u32> {
    let m = model();
    let text = m
        .template
        .render(
            &[TemplateMessage {
                role: "user".into(),
                content: question.into(),
            }],
            true,
        )
        .expect("template renders");
    m.tokenizer.encode(&text, true).expect("tokenizes")
}

fn request(question: &str, constraint: Constraint, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt(question),
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        stop: Vec::new(),
        top_logprobs: None,
        constraint: Some(constraint),
        group: 0,
        label: "test".into(),
        background: false,
        adapter: None,
    }
}

/// Runs a request to the end: (text, finish reason).
fn run(request: GenerateRequest) -> (String, FinishReason) {
    let mut rx = model().engine.submit(request).expect("submitted");
    let mut text = String::new();
    loop {
        match rx.blocking_recv().expect("an event") {
            GenEvent::Delta { text: t, .. } => text.push_str(&t),
            GenEvent::Finished { reason, .. } => return (text, reason),
            GenEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

#[test]
fn output_is_valid_against_a_json_schema() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "kind": {"enum": ["cat", "dog"]}
        },
        "required": ["name", "age", "kind"],
        "additionalProperties": false
    });
    let (text, reason) = run(request(
        "Describe a pet as JSON.",
        Constraint::JsonSchema(schema),
        80,
    ));
    assert_eq!(reason, FinishReason::Stop, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        v["name"].as_str().is_some_and(|n| n.chars().count() <= 20),
        "{v}"
    );
    assert!(v["age"].as_u64().is_some_and(|a| a <= 30), "{v}");
    assert!(
        ["cat", "dog"].contains(&v["kind"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
}

#[test]
fn a_regex_shapes_the_whole_output() {
    let (text, reason) = run(request(
        "What is the capital of France?",
        Constraint::Regex("[0-9]{3}-[0-9]{2}".into()),
        20,
    ));
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(text.len(), 6, "{text}");
    assert!(
        text.chars()
            .enumerate()
            .all(|(i, c)| if i == 3 { c == '-' } else { c.is_ascii_digit() }),
        "{text}"
    );
}

#[test]
fn unsupported_grammars_are_refused_before_anything_runs() {
    for bad in [
        Constraint::JsonSchema(serde_json::json!({"type": 5})),
        Constraint::Regex("(unclosed".into()),
        // A $ref cycle with no terminal compiles, then has no first token.
        Constraint::JsonSchema(serde_json::json!({
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            "$ref": "#/$defs/a"
        })),
        // Nothing satisfies it.
        Constraint::JsonSchema(
            serde_json::json!({"allOf": [{"type": "string"}, {"type": "integer"}]}),
        ),
        Constraint::Lark("start: a\na: a".into()),
    ] {
        match model().engine.submit(request("hi", bad.clone(), 5)) {
            Err(e @ CoreError::GrammarRejected(_)) => {
                let message = e.to_string();
                assert!(!message.contains('\n'), "{bad:?}: {message}");
            }
            Err(other) => panic!("{bad:?}: {other}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
}

#[test]
fn constrained_json_is_compact() {
    // Free whitespace would let the model pad until max_tokens cuts the JSON.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "array", "items": {"type": "integer"}}},
        "required": ["zeta", "alpha"],
        "additionalProperties": false
    });
    for c in [Constraint::JsonSchema(schema), Constraint::JsonObject] {
        let (text, _) = run(request("Describe Paris as JSON.", c.clone(), 60));
        let mut in_string = false;
        let mut escaped = false;
        for ch in text.chars() {
            match (in_string, escaped, ch) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => in_string = !in_string,
                (false, _, w) => assert!(!w.is_whitespace(), "{c:?}: {text:?}"),
                _ => {}
            }
        }
        if matches!(c, Constraint::JsonSchema(_)) {
            assert!(text.starts_with("{\"zeta\":"), "schema order: {text}");
        }
    }
}

/// A chain of `n` `$ref` hops ending in a short string.
fn ref_chain(n: usize) -> serde_json::Value {
    let mut defs = serde_json::Map::new();
    for i in 0..n {
        defs.insert(
            format!("d{i}"),
            serde_json::json!({"$ref": format!("#/$defs/d{}", i + 1)}),
        );
    }
    defs.insert(
        format!("d{n}"),
        serde_json::json!({"type": "string", "maxLength": 3}),
    );
    serde_json::json!({"$defs": defs, "$ref": "#/$defs/d0"})
}

#[test]
fn killer_schemas_are_refused_or_compiled_without_taking_the_process_down() {
    // Over the budget: a 400 before llguidance sees them (each once aborted the server).
    let wide: serde_json::Map<String, serde_json::Value> = (0..8000)
        .map(|i| (format!("p{i}"), serde_json::json!({"type": "integer"})))
        .collect();
    let required: Vec<String> = (0..8000).map(|i| format!("p{i}")).collect();
    for bad in [
        ref_chain(1000),
        ref_chain(3000),
        serde_json::json!({"type": "object", "properties": wide, "required": required}),
    ] {
        match model()
            .engine
            .submit(request("hi", Constraint::JsonSchema(bad), 5))
        {
            Err(CoreError::GrammarRejected(message)) => {
                assert!(message.contains("more than"), "{message}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted"),
        }
    }
    // Within it, a long chain compiles on the grammar thread's stack (500 hops overflowed a
    // 2 MiB stack) and generates.
    let (text, _) = run(request("hi", Constraint::JsonSchema(ref_chain(900)), 8));
    assert!(text.starts_with('"'), "{text}");
}
