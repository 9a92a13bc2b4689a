//! From the OpenAI request body to a validated plan: every parameter is honoured or refused
//! with a 400 that names it.

use crate::inference::{Constraint, Sampling};
use crate::openai::chat::{ChatCompletionRequest, MessageContent};
use crate::tools::{Call, Message, ToolUse};
use crate::validate;

use super::tools;
use crate::{Error, invalid_request};
use serde_json::Value;

/// A validated chat request: what [`super::Chat::prepare`] may inspect and rewrite.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model id (or alias) asked for.
    pub model: String,
    /// The conversation, `developer` already mapped onto `system`, with the calls assistant
    /// messages made and the call ids tool results answer.
    pub messages: Vec<Message>,
    /// Sampling parameters, ranges checked.
    pub sampling: Sampling,
    /// `max_completion_tokens` or `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Up to four stop strings.
    pub stop: Vec<String>,
    /// `Some(k)` when logprobs were asked for, with k alternatives per token.
    pub top_logprobs: Option<u32>,
    /// Whether to answer with an SSE stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `user`: the end user's id, logged with the request.
    pub user: Option<String>,
    /// `service_tier` as asked; the response echoes `default`, the only tier served.
    pub service_tier: Option<String>,
    /// `store`: keep the completion for the stored-completions endpoints.
    pub store: bool,
    /// `metadata` (validated): kept with a stored completion, used to filter listings.
    pub metadata: Option<Value>,
    /// From `response_format`: what the output must match (`None` for plain text). Required
    /// and named tool calls get their grammar from the tools plugin instead.
    pub constraint: Option<Constraint>,
    /// `tools` the model may call, and how (`None` when it may call none).
    pub tools: Option<ToolUse>,
    /// The request used the deprecated `functions`: answer with `message.function_call`.
    pub legacy_functions: bool,
    /// How many choices to generate.
    pub n: u32,
}

/// OpenAI's bound for `top_logprobs`.
const MAX_TOP_LOGPROBS: u32 = 20;

/// `response_format`: `text`, `json_object`, or `json_schema` with `json_schema.schema`.
fn response_format(format: Option<&Value>) -> Result<Option<Constraint>, Error> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Constraint::JsonObject)),
        Some("json_schema") => {
            let spec = format.get("json_schema").ok_or_else(|| {
                invalid_request(
                    "response_format `json_schema` needs a `json_schema` object",
                    Some("response_format.json_schema"),
                )
            })?;
            let schema = spec
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    invalid_request(
                        "json_schema needs a `schema` object",
                        Some("response_format.json_schema.schema"),
                    )
                })?;
            let closed = crate::schema::close_objects(schema.clone());
            Ok(Some(Constraint::JsonSchema(closed.to_string())))
        }
        Some(other) => Err(invalid_request(
            &format!(
                "Invalid response_format type `{other}`: expected text, json_object or json_schema"
            ),
            Some("response_format.type"),
        )),
        None => Err(invalid_request(
            "response_format needs a `type`",
            Some("response_format"),
        )),
    }
}

/// The tiers OpenAI accepts; all are served alike here.
const SERVICE_TIERS: [&str; 5] = ["auto", "default", "flex", "scale", "priority"];

/// OpenAI's rules for `metadata`: up to 16 string pairs, keys ≤ 64 and values ≤ 512 chars.
/// Valid metadata is kept with a stored completion (`store: true`) and filters listings.
pub(crate) fn check_metadata(metadata: Option<&Value>) -> Result<(), Error> {
    let Some(metadata) = metadata.filter(|m| !m.is_null()) else {
        return Ok(());
    };
    let bad = |why: &str| invalid_request(&format!("Invalid metadata: {why}"), Some("metadata"));
    let map = metadata
        .as_object()
        .ok_or_else(|| bad("expected an object of strings"))?;
    if map.len() > 16 {
        return Err(bad("at most 16 keys"));
    }
    for (k, v) in map {
        let v = v
            .as_str()
            .ok_or_else(|| bad(&format!("the value of `{k}` is not a string")))?;
        if k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(bad("keys are at most 64 and values at most 512 characters"));
        }
    }
    Ok(())
}

fn not_supported(param: &str, what: &str) -> Error {
    invalid_request(
        &format!("{what} is not supported by this server yet"),
        Some(param),
    )
}

fn message_text(i: usize, content: Option<MessageContent>) -> Result<String, Error> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(t)) => Ok(t),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(invalid_request(
                            "A text content part needs `text`",
                            Some(&format!("messages[{i}].content")),
                        ));
                    }
                    (kind, _) => {
                        return Err(not_supported(
                            &format!("messages[{i}].content"),
                            &format!("Content of type `{kind}`"),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

impl Plan {
    /// Parses and validates an OpenAI chat request body.
    pub fn parse(body: &str) -> Result<Plan, Error> {
        let req: ChatCompletionRequest = validate::parse_body(body)?;
        if req.messages.is_empty() {
            return Err(invalid_request(
                "`messages` must contain at least one message",
                Some("messages"),
            ));
        }
        let legacy_functions = req.functions.as_ref().is_some_and(|f| !f.is_null());
        let tools = if legacy_functions {
            if req.tools.as_ref().is_some_and(|t| !t.is_null()) {
                return Err(invalid_request(
                    "Use `tools` or the deprecated `functions`, not both",
                    Some("functions"),
                ));
            }
            let (tools, choice) =
                tools::from_legacy(req.functions.as_ref(), req.function_call.as_ref())?;
            tools::parse(Some(&tools), choice.as_ref(), Some(false))?
        } else {
            if req.function_call.as_ref().is_some_and(|c| !c.is_null()) {
                return Err(invalid_request(
                    "function_call needs `functions`",
                    Some("function_call"),
                ));
            }
            tools::parse(
                req.tools.as_ref(),
                req.tool_choice.as_ref(),
                req.parallel_tool_calls,
            )?
        };
        let constraint = response_format(req.response_format.as_ref())?;
        check_metadata(req.metadata.as_ref())?;
        if let Some(tier) = &req.service_tier
            && !SERVICE_TIERS.contains(&tier.as_str())
        {
            return Err(invalid_request(
                &format!(
                    "Invalid service_tier `{tier}`: expected one of {}",
                    SERVICE_TIERS.join(", ")
                ),
                Some("service_tier"),
            ));
        }
        let n = validate::n(req.n)?;

        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                // `developer` is the newer name of `system`; chat templates know `system`.
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                // The deprecated `function` role carried a function's result.
                "tool" | "function" => "tool",
                other => {
                    return Err(invalid_request(
                        &format!(
                            "Invalid role `{other}`: expected system, developer, user, assistant or tool"
                        ),
                        Some(&format!("messages[{i}].role")),
                    ));
                }
            };
            if role != "assistant" && m.content.is_none() {
                return Err(invalid_request(
                    "This message needs `content`",
                    Some(&format!("messages[{i}].content")),
                ));
            }
            let mut content = message_text(i, m.content)?;
            // Calls the assistant made go back to the model (the tools plugin renders them
            // the way the model calls).
            let calls = if role == "assistant" {
                history_calls(i, m.tool_calls.as_ref(), m.function_call.as_ref())?
            } else {
                Vec::new()
            };
            if let Some(name) = &m.name {
                // Chat templates have no field for a participant's name (nor has the WIT's
                // chat-message), so it goes where the model can read it: before the text.
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(invalid_request(
                        "A name is 1 to 64 letters, digits, `_` or `-`",
                        Some(&format!("messages[{i}].name")),
                    ));
                }
                content = format!("{name}: {content}");
            }
            messages.push(Message {
                role: role.to_owned(),
                content,
                calls,
                tool_call_id: m.tool_call_id.filter(|_| role == "tool"),
            });
        }

        let sampling = validate::sampling(validate::SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias,
        })?;
        if let Some(k) = req.top_logprobs
            && k > MAX_TOP_LOGPROBS
        {
            return Err(invalid_request(
                &format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
                Some("top_logprobs"),
            ));
        }
        validate::at_least_one("max_tokens", req.max_tokens)?;
        validate::at_least_one("max_completion_tokens", req.max_completion_tokens)?;
        let top_logprobs = match (req.logprobs, req.top_logprobs) {
            (true, n) => Some(n.unwrap_or(0)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(invalid_request(
                    "top_logprobs requires logprobs to be true",
                    Some("top_logprobs"),
                ));
            }
        };
        if constraint.is_some()
            && tools.as_ref().is_some_and(|t| {
                matches!(
                    t.choice,
                    crate::tools::ToolChoice::Required | crate::tools::ToolChoice::Function(_)
                )
            })
        {
            return Err(invalid_request(
                "response_format cannot be combined with a required or named tool call",
                Some("response_format"),
            ));
        }
        let stop = validate::stop(req.stop)?;
        let include_usage = validate::include_usage(req.stream_options.as_ref(), req.stream)?;
        Ok(Plan {
            model: req.model,
            messages,
            sampling,
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            stop,
            top_logprobs,
            stream: req.stream,
            include_usage,
            user: req.user,
            service_tier: req.service_tier.map(|_| "default".to_owned()),
            store: req.store.unwrap_or(false),
            metadata: req.metadata.filter(|m| !m.is_null()),
            constraint,
            tools,
            legacy_functions,
            n,
        })
    }
}

/// The calls an assistant message made: `tool_calls`, or the deprecated `function_call`
/// (which had no id; one is made up so the tool result can follow it).
fn history_calls(
    i: usize,
    tool_calls: Option<&Value>,
    function_call: Option<&Value>,
) -> Result<Vec<Call>, Error> {
    let bad = |what: &str, param: String| invalid_request(what, Some(&param));
    let function = |f: &Value, param: String| -> Result<(String, String), Error> {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| bad("A call needs a function `name`", format!("{param}.name")))?;
        let arguments = match &f["arguments"] {
            Value::String(s) => s.clone(),
            Value::Null => "{}".to_owned(),
            other => other.to_string(),
        };
        Ok((name.to_owned(), arguments))
    };
    let mut calls = Vec::new();
    match tool_calls.filter(|c| !c.is_null()) {
        None => {}
        Some(Value::Array(items)) => {
            for (k, c) in items.iter().enumerate() {
                let param = format!("messages[{i}].tool_calls[{k}]");
                let (name, arguments) = function(&c["function"], format!("{param}.function"))?;
                calls.push(Call {
                    id: c["id"].as_str().unwrap_or("").to_owned(),
                    name,
                    arguments,
                });
            }
        }
        Some(_) => {
            return Err(bad(
                "`tool_calls` must be an array",
                format!("messages[{i}].tool_calls"),
            ));
        }
    }
    if let Some(f) = function_call.filter(|c| !c.is_null()) {
        let (name, arguments) = function(f, format!("messages[{i}].function_call"))?;
        calls.push(Call {
            id: format!("call_function_{i}"),
            name,
            arguments,
        });
    }
    Ok(calls)
}
