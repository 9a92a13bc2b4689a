//! Tool calling in the chat family (first increment: inside chat, not yet the separate tools
//! component the design calls for).
//!
//! The model's chat template has no `tools` support (SmolLM2's does not), so tools are
//! described in a system message, in a documented fallback format: the model calls functions
//! by answering with only a JSON array `[{"name": ..., "arguments": {...}}]`. With
//! `tool_choice` `required` or a named function the output is constrained to exactly that
//! array (names and arguments valid against the functions' schemas); with `auto` the model
//! may answer in text, and an answer that is such an array becomes tool calls.

use serde_json::{Value, json};

use crate::inference::{ChatMessage, Constraint};
use crate::openai::chat::{ToolCall, ToolCallFunction};
use crate::{Error, invalid_request};

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// `[a-zA-Z0-9_-]{1,64}`.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// JSON schema of its arguments (an empty object schema when absent).
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// No call, even with tools present.
    None,
    /// The model decides.
    Auto,
    /// At least one call.
    Required,
    /// Exactly this function.
    Function(String),
}

/// The tools of a request and how they may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// The functions, in request order.
    pub tools: Vec<Tool>,
    /// `tool_choice` (default `auto` with tools).
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true); false allows one call at most.
    pub parallel: bool,
}

fn bad(message: &str, param: &str) -> Error {
    invalid_request(message, Some(param))
}

/// Parses `tools`, `tool_choice` and `parallel_tool_calls`; `None` when no tool may be called.
pub(crate) fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<ToolUse>, Error> {
    let list = match tools.filter(|t| !t.is_null()) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`tools` must be an array", "tools")),
    };
    let choice = match choice.filter(|c| !c.is_null()) {
        None if list.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    &format!(
                        "Invalid tool_choice `{other}`: expected none, auto, required or a function"
                    ),
                    "tool_choice",
                ));
            }
        },
        Some(c) => {
            let name = c["function"]["name"]
                .as_str()
                .filter(|_| c["type"] == "function")
                .ok_or_else(|| {
                    bad(
                        "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        "tool_choice",
                    )
                })?;
            if !list.iter().any(|t| t.name == name) {
                return Err(bad(
                    &format!("tool_choice names `{name}`, which is not in tools"),
                    "tool_choice",
                ));
            }
            ToolChoice::Function(name.to_owned())
        }
    };
    if matches!(choice, ToolChoice::Required | ToolChoice::Auto) && list.is_empty() {
        return Err(bad("tool_choice needs tools", "tool_choice"));
    }
    if choice == ToolChoice::None {
        return Ok(None);
    }
    Ok(Some(ToolUse {
        tools: list,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

fn tool(i: usize, t: &Value) -> Result<Tool, Error> {
    let param = format!("tools[{i}]");
    if t["type"] != "function" {
        return Err(bad(
            "only tools of type `function` exist",
            &format!("{param}.type"),
        ));
    }
    let f = &t["function"];
    let name = f["name"].as_str().unwrap_or("");
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(bad(
            "a function name is 1 to 64 letters, digits, `_` or `-`",
            &format!("{param}.function.name"),
        ));
    }
    let parameters = match &f["parameters"] {
        Value::Null => json!({"type": "object", "properties": {}}),
        p @ Value::Object(_) => p.clone(),
        _ => {
            return Err(bad(
                "parameters must be a JSON schema object",
                &format!("{param}.function.parameters"),
            ));
        }
    };
    Ok(Tool {
        name: name.to_owned(),
        description: f["description"].as_str().map(str::to_owned),
        parameters,
    })
}

/// The deprecated `functions` / `function_call` as `tools` / `tool_choice` (one call at most,
/// as the old API had).
pub(crate) fn from_legacy(
    functions: Option<&Value>,
    function_call: Option<&Value>,
) -> Result<(Value, Option<Value>), Error> {
    let functions = functions
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`functions` must be an array", "functions"))?;
    let tools = functions
        .iter()
        .map(|f| json!({"type": "function", "function": f}))
        .collect();
    let choice = match function_call.filter(|c| !c.is_null()) {
        None => None,
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        Some(c) => {
            let name = c["name"].as_str().ok_or_else(|| {
                bad(
                    "function_call is none, auto or {\"name\": ...}",
                    "function_call",
                )
            })?;
            Some(json!({"type": "function", "function": {"name": name}}))
        }
    };
    Ok((Value::Array(tools), choice))
}

/// The system text that tells the model about the tools and the call format.
pub(crate) fn instructions(use_: &ToolUse) -> String {
    let listed: Vec<Value> = use_
        .tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    format!(
        "You can call these functions:\n{}\nTo call functions, answer with only a JSON array of calls, \
         like [{{\"name\": \"function_name\", \"arguments\": {{...}}}}]. Otherwise answer normally.",
        Value::Array(listed)
    )
}

/// Adds the tool instructions to the conversation: merged into a leading system message, or
/// as a new one.
pub(crate) fn add_instructions(messages: &mut Vec<ChatMessage>, use_: &ToolUse) {
    let text = instructions(use_);
    match messages.first_mut() {
        Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
        _ => messages.insert(
            0,
            ChatMessage {
                role: "system".into(),
                content: text,
            },
        ),
    }
}

/// The grammar for `required` and named calls: a JSON array of calls to the allowed functions
/// with arguments valid against their schemas.
pub(crate) fn constraint(use_: &ToolUse) -> Option<Constraint> {
    let allowed: Vec<&Tool> = match &use_.choice {
        ToolChoice::Required => use_.tools.iter().collect(),
        ToolChoice::Function(name) => use_.tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::None => return None,
    };
    let calls: Vec<Value> = allowed
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": false
            })
        })
        .collect();
    let one_only = !use_.parallel || matches!(use_.choice, ToolChoice::Function(_));
    let mut schema = json!({"type": "array", "items": {"anyOf": calls}, "minItems": 1});
    if one_only {
        schema["maxItems"] = json!(1);
    }
    Some(Constraint::JsonSchema(schema.to_string()))
}

/// Reads tool calls out of a finished answer; `None` when it is ordinary text.
pub(crate) fn calls(text: &str, use_: &ToolUse, id_prefix: &str) -> Option<Vec<ToolCall>> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let items = v.as_array().filter(|a| !a.is_empty())?;
    let limit = if use_.parallel { items.len() } else { 1 };
    items
        .iter()
        .take(limit)
        .enumerate()
        .map(|(i, c)| {
            let name = c["name"].as_str()?;
            use_.tools.iter().find(|t| t.name == name)?;
            let arguments = if c["arguments"].is_object() {
                c["arguments"].to_string()
            } else {
                return None;
            };
            Some(ToolCall {
                id: format!("call_{id_prefix}_{i}"),
                kind: "function".into(),
                function: ToolCallFunction {
                    name: name.to_owned(),
                    arguments,
                },
            })
        })
        .collect()
}

/// An assistant message that made calls, as the model should see it again: in the same format
/// it was asked to call in.
pub(crate) fn render_calls(calls: &Value) -> String {
    let rendered: Vec<Value> = calls
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let args = c["function"]["arguments"]
                        .as_str()
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or(Value::Null);
                    json!({"name": c["function"]["name"], "arguments": args})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(rendered).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> ToolUse {
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
        parse(Some(&tools), Some(&json!("required")), Some(false))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn recorded_outputs_parse_into_calls_or_text() {
        let u = weather();
        let c = calls(
            r#"[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#,
            &u,
            "x",
        )
        .unwrap();
        assert_eq!(c[0].function.name, "get_weather");
        assert_eq!(c[0].id, "call_x_0");
        assert_eq!(c[0].function.arguments, r#"{"city":"Paris"}"#);
        // Malformed or unknown: ordinary text.
        assert!(calls("The weather is nice.", &u, "x").is_none());
        assert!(calls(r#"[{"name": "other", "arguments": {}}]"#, &u, "x").is_none());
        assert!(
            calls(
                r#"[{"name": "get_weather", "arguments": "Paris"}]"#,
                &u,
                "x"
            )
            .is_none()
        );
        assert!(calls("[]", &u, "x").is_none());
        assert!(calls(r#"[{"name": "get_weather""#, &u, "x").is_none());
    }

    #[test]
    fn choices_are_validated() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        assert!(
            parse(Some(&tools), Some(&json!("none")), None)
                .unwrap()
                .is_none()
        );
        assert!(parse(None, Some(&json!("none")), None).unwrap().is_none());
        let named = json!({"type": "function", "function": {"name": "g"}});
        assert!(parse(Some(&tools), Some(&named), None).is_err());
        assert!(parse(None, Some(&json!("required")), None).is_err());
        let bad_name = json!([{"type": "function", "function": {"name": "a b"}}]);
        assert!(parse(Some(&bad_name), None, None).is_err());
        assert_eq!(
            parse(Some(&tools), None, None).unwrap().unwrap().choice,
            ToolChoice::Auto
        );
    }
}
