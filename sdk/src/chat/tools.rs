//! Tool calling as the chat family reads it from a request: `tools`, `tool_choice`,
//! `parallel_tool_calls` and the deprecated `functions` / `function_call`, validated and
//! turned into the WIT's [`ToolUse`]. What tools do to the prompt and how answers become
//! calls is the tools plugin's part (see [`crate::tools`]), reached through the host.

use serde_json::{Value, json};

use crate::tools::{Function, ToolChoice, ToolUse};
use crate::{Error, invalid_request};

/// OpenAI's bound on `tools` per request.
const MAX_TOOLS: usize = 128;

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
        Some(Value::Array(items)) if items.len() > MAX_TOOLS => {
            return Err(bad(
                &format!(
                    "tools has {} functions; at most {MAX_TOOLS} per request",
                    items.len()
                ),
                "tools",
            ));
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`tools` must be an array", "tools")),
    };
    // `none` (explicit, or no tools at all) means no tool use.
    let choice = match choice.filter(|c| !c.is_null()) {
        None if list.is_empty() => None,
        None => Some(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "none" => None,
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
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
            Some(ToolChoice::Function(name.to_owned()))
        }
    };
    let Some(choice) = choice else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(bad("tool_choice needs tools", "tool_choice"));
    }
    Ok(Some(ToolUse {
        functions: list,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

fn tool(i: usize, t: &Value) -> Result<Function, Error> {
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
    Ok(Function {
        name: name.to_owned(),
        description: f["description"].as_str().map(str::to_owned),
        parameters: parameters.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            parse(Some(&tools), None, None).unwrap().unwrap().choice,
            ToolChoice::Auto
        ));
        assert!(
            parse(Some(&tools), Some(&json!("required")), Some(false))
                .unwrap()
                .is_some()
        );
    }
}
