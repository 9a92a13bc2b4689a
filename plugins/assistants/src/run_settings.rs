//! A new run's settings, checked: its assistant, what it overrides, each against OpenAI's
//! ranges, and what Cinder does not run yet refused by name.

use serde_json::{Map, Value};

use cinder_sdk::Error;
use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::metadata;

use crate::assistants;
use crate::bad;

/// A positive whole number, or null.
fn count(v: &Value, param: &str) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(Value::Null),
        v if v.as_u64().is_some_and(|n| n >= 1) => Ok(v.clone()),
        _ => Err(bad(format!("{param} is a positive integer"), param)),
    }
}

/// The settings of a new run, checked: its assistant, what it overrides, and what Cinder
/// does not run yet refused by name. Returns the assistant's settings.
pub(crate) fn check(given: &Map<String, Value>, host: &dyn AgentHost) -> Result<Value, Error> {
    let assistant_id = given
        .get("assistant_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                "Missing required parameter: 'assistant_id'.",
                "assistant_id",
            )
        })?;
    let assistant = assistants::find(host, assistant_id).map_err(|e| match e {
        Error::NotFound(mut d) => {
            d.param = Some("assistant_id".into());
            Error::NotFound(d)
        }
        other => other,
    })?;
    let settings = serde_json::from_str::<Value>(&assistant.body)
        .map_err(|e| Error::Internal(format!("the stored assistant is unreadable: {e}")))?;
    let tools = match given.get("tools").filter(|t| !t.is_null()) {
        Some(t) => assistants::tools(t.clone())?,
        None => settings["tools"].clone(),
    };
    let format = match given.get("response_format").filter(|f| !f.is_null()) {
        Some(f) => assistants::response_format(f.clone())?,
        None => settings["response_format"].clone(),
    };
    let structured = format["type"] == "json_object" || format["type"] == "json_schema";
    let functions = tools
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["type"] == "function"));
    let no_calls = given.get("tool_choice").is_some_and(|c| c == "none");
    if structured && functions && !no_calls {
        return Err(bad(
            "a structured response_format together with function tools in one run is not \
             built in Cinder yet (tool_choice \"none\" allows it)",
            "response_format",
        ));
    }
    for (param, max) in [
        ("instructions", assistants::MAX_INSTRUCTIONS),
        ("additional_instructions", assistants::MAX_INSTRUCTIONS),
    ] {
        match given.get(param) {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t.chars().count() <= max => {}
            Some(_) => {
                return Err(bad(
                    format!("{param} is a string of at most {max} characters"),
                    param,
                ));
            }
        }
    }
    if given.get("reasoning_effort").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "reasoning_effort is for reasoning models, and no served model is one",
            "reasoning_effort",
        ));
    }
    if let Some(m) = given.get("model").filter(|m| !m.is_null()) {
        let m = m
            .as_str()
            .ok_or_else(|| bad("model must be a string", "model"))?;
        host.describe_model(m)
            .map_err(|e| assistants::name_param(e, "model"))?;
    }
    for (param, max) in [("temperature", 2.0), ("top_p", 1.0)] {
        if let Some(v) = given.get(param).filter(|v| !v.is_null())
            && !v.as_f64().is_some_and(|x| (0.0..=max).contains(&x))
        {
            return Err(bad(format!("{param} is a number from 0 to {max}"), param));
        }
    }
    for param in ["max_prompt_tokens", "max_completion_tokens"] {
        count(given.get(param).unwrap_or(&Value::Null), param)?;
    }
    match given.get("truncation_strategy") {
        None | Some(Value::Null) => {}
        Some(t) if t["type"] == "auto" => {}
        Some(t) if t["type"] == "last_messages" => {
            count(&t["last_messages"], "truncation_strategy.last_messages")?;
        }
        Some(_) => {
            return Err(bad(
                "truncation_strategy is {\"type\": \"auto\"} or {\"type\": \"last_messages\", \
                 \"last_messages\": n}",
                "truncation_strategy",
            ));
        }
    }
    if let Some(m) = given.get("metadata") {
        metadata(Some(m.clone()))?;
    }
    if let Some(tc) = given.get("tool_choice").filter(|v| !v.is_null()) {
        let names: Vec<&str> = tools
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        let ok = match tc {
            Value::String(c) => ["auto", "none", "required"].contains(&c.as_str()),
            Value::Object(_) => {
                tc["type"] == "function"
                    && tc["function"]["name"]
                        .as_str()
                        .is_some_and(|n| names.contains(&n))
            }
            _ => false,
        };
        if !ok {
            return Err(bad(
                "tool_choice is auto, none, required, or {\"type\": \"function\", \"function\": \
                 {\"name\": ...}} naming one of the run's functions",
                "tool_choice",
            ));
        }
    }
    Ok(settings)
}
