//! From the OpenAI request body to a validated plan: every parameter is honoured or refused
//! with a 400 that names it.

use crate::inference::{ChatMessage, LogitBias, Sampling};
use crate::openai::chat::{ChatCompletionRequest, MessageContent};
use crate::{Error, invalid_request};
use serde_json::Value;

/// A validated chat request: what [`super::Chat::prepare`] may inspect and rewrite.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model id (or alias) asked for.
    pub model: String,
    /// The conversation, `developer` already mapped onto `system`.
    pub messages: Vec<ChatMessage>,
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
    /// How many choices to generate.
    pub n: u32,
}

/// OpenAI's own upper bound for `n`.
const MAX_N: u32 = 128;
/// OpenAI's bounds for `top_logprobs` and the number of stop sequences.
const MAX_TOP_LOGPROBS: u32 = 20;
const MAX_STOP: usize = 4;

/// The tiers OpenAI accepts; all are served alike here.
const SERVICE_TIERS: [&str; 5] = ["auto", "default", "flex", "scale", "priority"];

/// OpenAI's rules for `metadata`: up to 16 string pairs, keys ≤ 64 and values ≤ 512 chars.
/// Valid metadata is accepted and not kept: nothing is stored (see `store`).
fn check_metadata(metadata: Option<&Value>) -> Result<(), Error> {
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

/// A 400 naming `param` unless `value` is absent or within `[min, max]`.
fn check_range(param: &str, value: Option<f32>, min: f32, max: f32) -> Result<(), Error> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(invalid_request(
            &format!("{param} must be between {min} and {max}, got {v}"),
            Some(param),
        )),
        _ => Ok(()),
    }
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
        let req: ChatCompletionRequest = serde_json::from_str(body).map_err(|e| {
            let b = crate::openai::ErrorBody::from_json_error(&e);
            invalid_request(&b.error.message, b.error.param.as_deref())
        })?;
        if !req.extra.is_empty() {
            let keys: Vec<&str> = req.extra.keys().map(String::as_str).collect();
            crate::debug(&format!("ignoring unknown fields: {}", keys.join(", ")));
        }
        if req.messages.is_empty() {
            return Err(invalid_request(
                "`messages` must contain at least one message",
                Some("messages"),
            ));
        }
        if req
            .tools
            .as_ref()
            .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(not_supported("tools", "Tool calling"));
        }
        if req
            .tool_choice
            .as_ref()
            .is_some_and(|c| !c.is_null() && c != &Value::from("none"))
        {
            return Err(not_supported("tool_choice", "Tool calling"));
        }
        if req.functions.is_some() {
            return Err(not_supported("functions", "Function calling"));
        }
        if req.function_call.is_some() {
            return Err(not_supported("function_call", "Function calling"));
        }
        if let Some(format) = &req.response_format {
            match format.get("type").and_then(Value::as_str) {
                Some("text") => {}
                Some(other) => {
                    return Err(not_supported(
                        "response_format",
                        &format!("response_format `{other}`"),
                    ));
                }
                None => {
                    return Err(invalid_request(
                        "response_format needs a `type`",
                        Some("response_format"),
                    ));
                }
            }
        }
        check_metadata(req.metadata.as_ref())?;
        if req.store == Some(true) {
            return Err(invalid_request(
                "Stored completions are not supported by this server: leave `store` unset or false",
                Some("store"),
            ));
        }
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
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(invalid_request(
                &format!("n must be between 1 and {MAX_N}"),
                Some("n"),
            ));
        }

        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                // `developer` is the newer name of `system`; chat templates know `system`.
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(invalid_request(
                        &format!(
                            "Invalid role `{other}`: expected system, developer, user, assistant or tool"
                        ),
                        Some(&format!("messages[{i}].role")),
                    ));
                }
            };
            if m.tool_calls.is_some() {
                return Err(not_supported(
                    &format!("messages[{i}].tool_calls"),
                    "Tool calls in messages",
                ));
            }
            if role != "assistant" && m.content.is_none() {
                return Err(invalid_request(
                    "This message needs `content`",
                    Some(&format!("messages[{i}].content")),
                ));
            }
            messages.push(ChatMessage {
                role: role.to_owned(),
                content: message_text(i, m.content)?,
            });
        }

        check_range("temperature", req.temperature, 0.0, 2.0)?;
        check_range("top_p", req.top_p, 0.0, 1.0)?;
        if req.top_p == Some(0.0) {
            return Err(invalid_request(
                "top_p must be greater than 0",
                Some("top_p"),
            ));
        }
        check_range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
        if let Some(k) = req.top_logprobs
            && k > MAX_TOP_LOGPROBS
        {
            return Err(invalid_request(
                &format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
                Some("top_logprobs"),
            ));
        }
        for (param, v) in [
            ("max_tokens", req.max_tokens),
            ("max_completion_tokens", req.max_completion_tokens),
        ] {
            if v == Some(0) {
                return Err(invalid_request(
                    &format!("{param} must be at least 1"),
                    Some(param),
                ));
            }
        }
        let mut logit_bias = Vec::new();
        for (k, v) in req.logit_bias.unwrap_or_default() {
            let token = k.parse::<u32>().map_err(|_| {
                invalid_request(
                    &format!("logit_bias key `{k}` is not a token id"),
                    Some("logit_bias"),
                )
            })?;
            check_range("logit_bias", Some(v), -100.0, 100.0)?;
            logit_bias.push(LogitBias { token, bias: v });
        }
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
        let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
        if stop.len() > MAX_STOP {
            return Err(invalid_request(
                &format!("stop takes at most {MAX_STOP} sequences"),
                Some("stop"),
            ));
        }
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        if req.stream_options.is_some() && !req.stream {
            return Err(invalid_request(
                "stream_options is only allowed when stream is true",
                Some("stream_options"),
            ));
        }
        Ok(Plan {
            model: req.model,
            messages,
            sampling: Sampling {
                temperature: req.temperature.unwrap_or(1.0),
                top_p: req.top_p.unwrap_or(1.0),
                // OpenAI takes any 64-bit integer; its bits are the seed.
                seed: req.seed.map(|s| s as u64),
                presence_penalty: req.presence_penalty.unwrap_or(0.0),
                frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
                logit_bias,
            },
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            stop,
            top_logprobs,
            stream: req.stream,
            include_usage,
            user: req.user,
            service_tier: req.service_tier.map(|_| "default".to_owned()),
            n,
        })
    }
}
