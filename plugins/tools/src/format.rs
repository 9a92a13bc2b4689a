//! The call formats the first-party tools plugin speaks.
//!
//! The fallback, for templates without `tools` support (SmolLM2's): tools are described in a
//! system message and the model calls by answering with only a JSON array
//! `[{"name": ..., "arguments": {...}}]`. Answers are also read in the formats templates with
//! `tools` support teach their models: Hermes/Qwen `<tool_call>{...}</tool_call>` blocks, a
//! bare call object (Llama 3.1, with `parameters`), and Mistral's `[TOOL_CALLS]` prefix.

use serde_json::{Value, json};

use cinder_sdk::inference::Constraint;
use cinder_sdk::tools::{Call, ToolChoice, ToolUse};

/// What a streamed answer that is a call may start with.
pub(crate) const CALL_PREFIXES: [&str; 4] = ["[", "{", "<tool_call>", "[TOOL_CALLS]"];

fn schema_of(parameters: &str) -> Value {
    serde_json::from_str(parameters).unwrap_or_else(|_| json!({"type": "object"}))
}

/// A function's parameters as the grammar reads them: objects that declare properties and
/// say nothing of `additionalProperties` are closed (see [`crate::schema`]).
fn grammar_schema_of(parameters: &str) -> Value {
    cinder_sdk::schema::close_objects(schema_of(parameters))
}

/// The system text that tells the model about the tools and the call format.
pub(crate) fn instructions(tools: &ToolUse) -> String {
    let listed: Vec<Value> = tools
        .functions
        .iter()
        .map(|f| json!({"name": f.name, "description": f.description, "parameters": schema_of(&f.parameters)}))
        .collect();
    format!(
        "You can call these functions:\n{}\nTo call functions, answer with only a JSON array of calls, \
         like [{{\"name\": \"function_name\", \"arguments\": {{...}}}}]. Otherwise answer normally.",
        Value::Array(listed)
    )
}

/// For `required` and named calls: a JSON array of calls to the allowed functions, with
/// arguments valid against their schemas (at most one without `parallel`).
pub(crate) fn constraint(tools: &ToolUse) -> Option<Constraint> {
    let allowed = tools.functions.iter().filter(|f| match &tools.choice {
        ToolChoice::Required => true,
        ToolChoice::Function(name) => &f.name == name,
        ToolChoice::Auto => false,
    });
    // Each function's parameters live under `$defs` of the envelope's schema, and their
    // root-relative `$ref`s (pydantic's `#/$defs/Model`) are rewritten to point there: nested
    // inside the envelope, `#` is no longer their root.
    let mut defs = serde_json::Map::new();
    let calls: Vec<Value> = allowed
        .enumerate()
        .map(|(i, f)| {
            let key = format!("fn{i}");
            let mut params = grammar_schema_of(&f.parameters);
            rebase_refs(&mut params, &format!("#/$defs/{key}"));
            defs.insert(key.clone(), params);
            json!({
                "type": "object",
                // `name` first: the model chooses the function before writing its arguments.
                "properties": {"name": {"const": f.name}, "arguments": {"$ref": format!("#/$defs/{key}")}},
                "required": ["name", "arguments"],
                "additionalProperties": false
            })
        })
        .collect();
    if calls.is_empty() {
        return None;
    }
    let mut schema =
        json!({"type": "array", "items": {"anyOf": calls}, "minItems": 1, "$defs": defs});
    if !tools.parallel || matches!(tools.choice, ToolChoice::Function(_)) {
        schema["maxItems"] = json!(1);
    }
    Some(Constraint::JsonSchema(schema.to_string()))
}

/// Points every local `$ref` of `schema` (`#`, `#/...`) at `base` instead of the root.
/// Iterative: the schema is the client's.
fn rebase_refs(schema: &mut Value, base: &str) {
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    if r == "#" {
                        *r = base.to_owned();
                    } else if let Some(rest) = r.strip_prefix("#/") {
                        *r = format!("{base}/{rest}");
                    }
                }
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Calls an assistant made, in the fallback format (so the model sees its own calls again
/// the way it was asked to make them).
pub(crate) fn render_calls(calls: &[Call]) -> String {
    let rendered: Vec<Value> = calls
        .iter()
        .map(|c| json!({"name": c.name, "arguments": arguments_value(&c.arguments)}))
        .collect();
    Value::Array(rendered).to_string()
}

/// A call's arguments as a JSON value (templates iterate over them as a mapping).
pub(crate) fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// Reads calls out of an answer, finished or cut short.
///
/// - `None`: ordinary text (not in a call format, a call to an unknown function, arguments
///   that are not an object, or JSON that is complete but not calls).
/// - `Some(calls)`: the answer is a call envelope. `calls` are its complete calls in order; a
///   call cut short (by `max_tokens`, say) is dropped, so an envelope cut before its first
///   call completed is `Some([])`: no calls, and no text either.
pub(crate) fn parse(text: &str, tools: &ToolUse) -> Option<Vec<Call>> {
    let text = text.trim();
    let text = text.strip_prefix("[TOOL_CALLS]").unwrap_or(text).trim();
    let items: Vec<Value> = if text.starts_with("<tool_call>") {
        tagged(text)?
    } else {
        match serde_json::from_str(text) {
            Ok(Value::Array(items)) if !items.is_empty() => items,
            Ok(object @ Value::Object(_)) => vec![object],
            Ok(_) => return None,
            Err(e) if e.is_eof() && looks_like_a_call(text) => complete_items(text),
            Err(_) => return None,
        }
    };
    let limit = if tools.parallel { items.len() } else { 1 };
    items.iter().take(limit).map(|c| call(c, tools)).collect()
}

/// Whether JSON cut short is the start of a call: an object (alone or first in an array)
/// whose first key is, or may still become, `name` (or `arguments`/`parameters`, which some
/// models write first).
fn looks_like_a_call(text: &str) -> bool {
    let rest = text.strip_prefix('[').unwrap_or(text).trim_start();
    let Some(rest) = rest.strip_prefix('{') else {
        return rest.is_empty();
    };
    let rest = rest.trim_start();
    let Some(key) = rest.strip_prefix('"') else {
        return rest.is_empty();
    };
    match key.split_once('"') {
        Some((key, _)) => ["name", "arguments", "parameters"].contains(&key),
        None => ["name", "arguments", "parameters"]
            .iter()
            .any(|k| k.starts_with(key)),
    }
}

/// The complete items of a JSON array (or a lone object) that was cut short: each item that
/// closed before the text ended. A lone object that never closed has none.
fn complete_items(text: &str) -> Vec<Value> {
    let Some(body) = text.strip_prefix('[') else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = None;
    for (i, ch) in body.char_indices() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 0 {
                    start = Some(i);
                }
                depth += 1;
            }
            '}' | ']' if depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some(s) = start.take()
                    && let Ok(v) = serde_json::from_str(&body[s..=i])
                {
                    items.push(v);
                }
            }
            _ => {}
        }
    }
    items
}

/// `<tool_call>{...}</tool_call>` blocks, whitespace between them; the last closing tag may be
/// missing (generation stops at the end-of-turn token), and a last block cut short is
/// dropped.
fn tagged(mut text: &str) -> Option<Vec<Value>> {
    let mut items = Vec::new();
    while let Some(rest) = text.strip_prefix("<tool_call>") {
        let (body, after, closed) = match rest.find("</tool_call>") {
            Some(end) => (&rest[..end], &rest[end + "</tool_call>".len()..], true),
            None => (rest, "", false),
        };
        match serde_json::from_str(body.trim()) {
            Ok(v) => items.push(v),
            Err(e) if !closed && e.is_eof() => {}
            Err(_) => return None,
        }
        text = after.trim_start();
    }
    // A tag cut short (`<tool_ca`) after complete blocks is part of the envelope too.
    (text.is_empty() || (!items.is_empty() && "<tool_call>".starts_with(text))).then_some(items)
}

fn call(c: &Value, tools: &ToolUse) -> Option<Call> {
    let name = c["name"].as_str()?;
    tools.functions.iter().find(|f| f.name == name)?;
    let args = match c.get("arguments").or_else(|| c.get("parameters"))? {
        object @ Value::Object(_) => object.to_string(),
        // Some models write the arguments as a JSON string, as the API returns them.
        Value::String(s) => match serde_json::from_str::<Value>(s).ok()? {
            object @ Value::Object(_) => object.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    Some(Call {
        id: c["id"].as_str().unwrap_or("").to_owned(),
        name: name.to_owned(),
        arguments: args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cinder_sdk::tools::Function;

    fn weather(parallel: bool) -> ToolUse {
        ToolUse {
            functions: vec![Function {
                name: "get_weather".into(),
                description: None,
                parameters: r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#.into(),
            }],
            choice: ToolChoice::Auto,
            parallel,
        }
    }

    #[test]
    fn recorded_outputs_parse_into_calls_or_text() {
        let u = weather(true);
        // Recorded from SmolLM2-135M under the fallback format.
        let c = parse(
            r#"[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#,
            &u,
        )
        .unwrap();
        assert_eq!(c[0].name, "get_weather");
        assert_eq!(c[0].id, "");
        assert_eq!(c[0].arguments, r#"{"city":"Paris"}"#);
        // Malformed or unknown: ordinary text.
        assert!(parse("The weather is nice.", &u).is_none());
        assert!(parse(r#"[{"name": "other", "arguments": {}}]"#, &u).is_none());
        assert!(parse(r#"[{"name": "get_weather", "arguments": "Paris"}]"#, &u).is_none());
        assert!(parse("[]", &u).is_none());
        assert!(parse("[1, 2]", &u).is_none());
        assert!(parse("[Note] it is sunny", &u).is_none());
    }

    #[test]
    fn an_envelope_cut_short_keeps_its_complete_calls_only() {
        let u = weather(true);
        // Recorded from SmolLM2-135M with `required` and max_tokens 48.
        let cut = r#"[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"get_weather","arguments":{"city":"City of"#;
        let c = parse(cut, &u).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].arguments, r#"{"city":"Paris"}"#);
        // Cut before any call completed: an envelope with no calls, not text.
        for cut in [
            "[",
            "[{",
            r#"[{"na"#,
            r#"[{"name":"get_weather","argu"#,
            r#"{"name": "get_weather", "arguments": {"city": "Pa"#,
            r#"[{"arguments":{"city":"Paris"}"#,
        ] {
            assert_eq!(parse(cut, &u).map(|c| c.len()), Some(0), "{cut}");
        }
        // JSON cut short that is not a call stays text.
        assert!(parse(r#"[{"title": "A"#, &u).is_none());
        assert!(parse(r#"{"answer": "it is"#, &u).is_none());
        assert!(parse(r#"["Paris", "Lon"#, &u).is_none());
        // Hermes blocks: the last one cut short is dropped.
        let tagged = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_wea";
        assert_eq!(parse(tagged, &u).unwrap().len(), 1);
        assert_eq!(parse("<tool_call>\n{\"name\"", &u).unwrap().len(), 0);
    }

    #[test]
    fn the_grammar_writes_name_before_arguments_and_closes_objects() {
        let mut u = weather(true);
        u.choice = ToolChoice::Required;
        let Some(Constraint::JsonSchema(s)) = constraint(&u) else {
            panic!("required is constrained")
        };
        let s: Value = serde_json::from_str(&s).unwrap();
        let call = &s["items"]["anyOf"][0];
        let keys: Vec<&String> = call["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "arguments"]);
        assert_eq!(call["properties"]["arguments"]["$ref"], "#/$defs/fn0");
        assert_eq!(s["$defs"]["fn0"]["additionalProperties"], false);
        assert!(instructions(&u).find("\"name\"") < instructions(&u).find("\"parameters\""));
        assert_eq!(
            render_calls(&[Call {
                id: String::new(),
                name: "f".into(),
                arguments: r#"{"z":1,"a":2}"#.into()
            }]),
            r#"[{"name":"f","arguments":{"z":1,"a":2}}]"#
        );
    }

    #[test]
    fn template_formats_parse_too() {
        let u = weather(true);
        let hermes = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}";
        let c = parse(hermes, &u).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].arguments, r#"{"city":"Rome"}"#);
        let llama = r#"{"name": "get_weather", "parameters": {"city": "Lima"}}"#;
        assert_eq!(parse(llama, &u).unwrap()[0].arguments, r#"{"city":"Lima"}"#);
        let mistral =
            r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": "{\"city\": \"Bern\"}"}]"#;
        assert_eq!(
            parse(mistral, &u).unwrap()[0].arguments,
            r#"{"city":"Bern"}"#
        );
        assert!(parse("<tool_call>\n{\"name\": \"get_weather\"} trailing", &u).is_none());
        assert!(parse("<tool_call>{}</tool_call> and then text", &u).is_none());
    }

    #[test]
    fn parallel_off_keeps_one_call_and_constraint_caps_it() {
        let two = r#"[{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_weather", "arguments": {"city": "B"}}]"#;
        assert_eq!(parse(two, &weather(false)).unwrap().len(), 1);
        assert_eq!(parse(two, &weather(true)).unwrap().len(), 2);
        let mut u = weather(false);
        assert!(constraint(&u).is_none(), "auto is not constrained");
        u.choice = ToolChoice::Required;
        let Some(Constraint::JsonSchema(s)) = constraint(&u) else {
            panic!("required is constrained")
        };
        let s: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(s["maxItems"], 1);
        assert_eq!(
            s["items"]["anyOf"][0]["properties"]["name"]["const"],
            "get_weather"
        );
        assert_eq!(s["$defs"]["fn0"]["required"][0], "city");
    }

    #[test]
    fn nested_models_keep_their_refs_inside_the_envelope() {
        // What pydantic (and so LangChain, instructor, the OpenAI SDK) sends for nested models.
        let params = json!({
            "type": "object",
            "properties": {"home": {"$ref": "#/$defs/Address"}, "tree": {"$ref": "#"}},
            "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}}}
        });
        let u = ToolUse {
            functions: vec![Function {
                name: "save".into(),
                description: None,
                parameters: params.to_string(),
            }],
            choice: ToolChoice::Required,
            parallel: true,
        };
        let Some(Constraint::JsonSchema(s)) = constraint(&u) else {
            panic!("constrained")
        };
        let s: Value = serde_json::from_str(&s).unwrap();
        let fn0 = &s["$defs"]["fn0"];
        assert_eq!(
            fn0["properties"]["home"]["$ref"],
            "#/$defs/fn0/$defs/Address"
        );
        assert_eq!(fn0["properties"]["tree"]["$ref"], "#/$defs/fn0");
        assert_eq!(fn0["$defs"]["Address"]["additionalProperties"], false);
    }
}
