//! `POST /v1/chat/completions`: every rule of a chat request, checked into [`ChatParams`].

use serde_json::{Value, json};

use super::{Checked, Invalid, Sampling, SamplingFields, Stop};
use crate::chat::{ChatCompletionRequest, MessageContent};

/// OpenAI's bound for `top_logprobs`.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// OpenAI's bound on `tools` per request.
pub const MAX_TOOLS: usize = 128;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    /// The newer name of `system`.
    Developer,
    User,
    Assistant,
    Tool,
    /// The deprecated role that carried a function's result.
    Function,
}

impl Role {
    fn parse(role: &str, i: usize) -> Checked<Role> {
        Ok(match role {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            other => {
                return Err(Invalid::new(
                    format!(
                        "Invalid role `{other}`: expected system, developer, user, assistant or tool"
                    ),
                    format!("messages[{i}].role"),
                ));
            }
        })
    }
}

/// A call an assistant message made earlier in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastCall {
    /// The call's id (made up for the deprecated `function_call`, which had none).
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// One checked input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    /// The text content (parts joined); empty for an assistant message with only calls.
    pub content: String,
    /// A participant's name: 1 to 64 letters, digits, `_` or `-`.
    pub name: Option<String>,
    /// The calls an assistant message made.
    pub calls: Vec<PastCall>,
    /// The call a tool result answers.
    pub tool_call_id: Option<String>,
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    /// `json_schema.schema`, as given.
    JsonSchema(Value),
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// 1 to 64 letters, digits, `_` or `-`.
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema object (an empty object schema when the request gave none).
    pub parameters: Value,
}

/// `tool_choice` when a tool may be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Required,
    /// This function, by name (one of the tools).
    Function(String),
}

/// The tools the model may call, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub functions: Vec<Tool>,
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true; false for the deprecated `functions`).
    pub parallel: bool,
}

/// A chat request with every OpenAI rule checked.
#[derive(Debug, Clone)]
pub struct ChatParams {
    pub model: String,
    /// At least one.
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    /// `max_completion_tokens`, else `max_tokens` (at least 1 when given).
    pub max_tokens: Option<u32>,
    pub stop: Stop,
    /// `Some(k)` when `logprobs` was asked for, with k alternatives per token.
    pub top_logprobs: Option<u32>,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
    pub service_tier: Option<String>,
    pub store: bool,
    pub metadata: Option<Value>,
    /// `None` for absent or `text`.
    pub response_format: Option<ResponseFormat>,
    /// `None` when no tool may be called (none given, or `tool_choice: none`).
    pub tools: Option<Tools>,
    /// The request used the deprecated `functions`: answer with `message.function_call`.
    pub legacy_functions: bool,
    pub n: u32,
}

impl ChatParams {
    /// Checks a parsed chat request.
    pub fn check(req: ChatCompletionRequest) -> Checked<ChatParams> {
        if req.messages.is_empty() {
            return Err(Invalid::new(
                "`messages` must contain at least one message",
                "messages",
            ));
        }
        let legacy_functions = req.functions.as_ref().is_some_and(|f| !f.is_null());
        let tools = if legacy_functions {
            if req.tools.as_ref().is_some_and(|t| !t.is_null()) {
                return Err(Invalid::new(
                    "Use `tools` or the deprecated `functions`, not both",
                    "functions",
                ));
            }
            let (tools, choice) = from_legacy(req.functions.as_ref(), req.function_call.as_ref())?;
            tools_of(Some(&tools), choice.as_ref(), Some(false))?
        } else {
            if req.function_call.as_ref().is_some_and(|c| !c.is_null()) {
                return Err(Invalid::new(
                    "function_call needs `functions`",
                    "function_call",
                ));
            }
            tools_of(
                req.tools.as_ref(),
                req.tool_choice.as_ref(),
                req.parallel_tool_calls,
            )?
        };
        let response_format = response_format(req.response_format.as_ref())?;
        let metadata = super::metadata(req.metadata)?;
        let service_tier = super::service_tier(req.service_tier)?;
        let n = super::n(req.n)?;
        let messages = req
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let role = Role::parse(&m.role, i)?;
                if role != Role::Assistant && m.content.is_none() {
                    return Err(Invalid::new(
                        "This message needs `content`",
                        format!("messages[{i}].content"),
                    ));
                }
                let content = message_text(i, m.content)?;
                let calls = if role == Role::Assistant {
                    past_calls(i, m.tool_calls.as_ref(), m.function_call.as_ref())?
                } else {
                    Vec::new()
                };
                if let Some(name) = &m.name
                    && !is_name(name)
                {
                    return Err(Invalid::new(
                        "A name is 1 to 64 letters, digits, `_` or `-`",
                        format!("messages[{i}].name"),
                    ));
                }
                let answers_a_call = matches!(role, Role::Tool | Role::Function);
                Ok(Message {
                    role,
                    content,
                    name: m.name,
                    calls,
                    tool_call_id: m.tool_call_id.filter(|_| answers_a_call),
                })
            })
            .collect::<Checked<Vec<_>>>()?;
        let sampling = SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias,
        }
        .check()?;
        if let Some(k) = req.top_logprobs
            && k > MAX_TOP_LOGPROBS
        {
            return Err(Invalid::new(
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
                "top_logprobs",
            ));
        }
        super::at_least_one("max_tokens", req.max_tokens)?;
        super::at_least_one("max_completion_tokens", req.max_completion_tokens)?;
        let top_logprobs = match (req.logprobs, req.top_logprobs) {
            (true, n) => Some(n.unwrap_or(0)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Invalid::new(
                    "top_logprobs requires logprobs to be true",
                    "top_logprobs",
                ));
            }
        };
        let forced_call = tools
            .as_ref()
            .is_some_and(|t| matches!(t.choice, ToolChoice::Required | ToolChoice::Function(_)));
        if forced_call && response_format.is_some() {
            return Err(Invalid::new(
                "response_format cannot be combined with a required or named tool call",
                "response_format",
            ));
        }
        let stop = Stop::check(req.stop)?;
        let include_usage = super::include_usage(req.stream_options.as_ref(), req.stream)?;
        Ok(ChatParams {
            model: req.model,
            messages,
            sampling,
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            stop,
            top_logprobs,
            stream: req.stream,
            include_usage,
            user: req.user,
            service_tier,
            store: req.store.unwrap_or(false),
            metadata,
            response_format,
            tools,
            legacy_functions,
            n,
        })
    }
}

/// A function or participant name: 1 to 64 letters, digits, `_` or `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn message_text(i: usize, content: Option<MessageContent>) -> Checked<String> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(t)) => Ok(t),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(Invalid::new(
                            "A text content part needs `text`",
                            format!("messages[{i}].content"),
                        ));
                    }
                    (kind, _) => {
                        return Err(Invalid::new(
                            format!("Content of type `{kind}` is not supported by this server yet"),
                            format!("messages[{i}].content"),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// `response_format`: `text`, `json_object`, or `json_schema` with `json_schema.schema`.
fn response_format(format: Option<&Value>) -> Checked<Option<ResponseFormat>> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let spec = format.get("json_schema").ok_or_else(|| {
                Invalid::new(
                    "response_format `json_schema` needs a `json_schema` object",
                    "response_format.json_schema",
                )
            })?;
            let schema = spec
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    Invalid::new(
                        "json_schema needs a `schema` object",
                        "response_format.json_schema.schema",
                    )
                })?;
            Ok(Some(ResponseFormat::JsonSchema(schema.clone())))
        }
        Some(other) => Err(Invalid::new(
            format!(
                "Invalid response_format type `{other}`: expected text, json_object or json_schema"
            ),
            "response_format.type",
        )),
        None => Err(Invalid::new(
            "response_format needs a `type`",
            "response_format",
        )),
    }
}

/// `tools`, `tool_choice` and `parallel_tool_calls`; `None` when no tool may be called.
pub fn tools_of(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Checked<Option<Tools>> {
    let list = match tools.filter(|t| !t.is_null()) {
        None => Vec::new(),
        Some(Value::Array(items)) if items.len() > MAX_TOOLS => {
            return Err(Invalid::new(
                format!(
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
            .collect::<Checked<_>>()?,
        Some(_) => return Err(Invalid::new("`tools` must be an array", "tools")),
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
                return Err(Invalid::new(
                    format!(
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
                    Invalid::new(
                        "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        "tool_choice",
                    )
                })?;
            if !list.iter().any(|t| t.name == name) {
                return Err(Invalid::new(
                    format!("tool_choice names `{name}`, which is not in tools"),
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
        return Err(Invalid::new("tool_choice needs tools", "tool_choice"));
    }
    Ok(Some(Tools {
        functions: list,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

fn tool(i: usize, t: &Value) -> Checked<Tool> {
    let param = format!("tools[{i}]");
    if t["type"] != "function" {
        return Err(Invalid::new(
            "only tools of type `function` exist",
            format!("{param}.type"),
        ));
    }
    let f = &t["function"];
    let name = f["name"].as_str().unwrap_or("");
    if !is_name(name) {
        return Err(Invalid::new(
            "a function name is 1 to 64 letters, digits, `_` or `-`",
            format!("{param}.function.name"),
        ));
    }
    let parameters = match &f["parameters"] {
        Value::Null => json!({"type": "object", "properties": {}}),
        p @ Value::Object(_) => p.clone(),
        _ => {
            return Err(Invalid::new(
                "parameters must be a JSON schema object",
                format!("{param}.function.parameters"),
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
fn from_legacy(
    functions: Option<&Value>,
    function_call: Option<&Value>,
) -> Checked<(Value, Option<Value>)> {
    let functions = functions
        .and_then(Value::as_array)
        .ok_or_else(|| Invalid::new("`functions` must be an array", "functions"))?;
    let tools = functions
        .iter()
        .map(|f| json!({"type": "function", "function": f}))
        .collect();
    let choice = match function_call.filter(|c| !c.is_null()) {
        None => None,
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        Some(c) => {
            let name = c["name"].as_str().ok_or_else(|| {
                Invalid::new(
                    "function_call is none, auto or {\"name\": ...}",
                    "function_call",
                )
            })?;
            Some(json!({"type": "function", "function": {"name": name}}))
        }
    };
    Ok((Value::Array(tools), choice))
}

/// The calls an assistant message made: `tool_calls`, or the deprecated `function_call`
/// (which had no id; one is made up so the tool result can follow it).
fn past_calls(
    i: usize,
    tool_calls: Option<&Value>,
    function_call: Option<&Value>,
) -> Checked<Vec<PastCall>> {
    let function = |f: &Value, param: String| -> Checked<(String, String)> {
        let name = f["name"].as_str().ok_or_else(|| {
            Invalid::new("A call needs a function `name`", format!("{param}.name"))
        })?;
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
                calls.push(PastCall {
                    id: c["id"].as_str().unwrap_or("").to_owned(),
                    name,
                    arguments,
                });
            }
        }
        Some(_) => {
            return Err(Invalid::new(
                "`tool_calls` must be an array",
                format!("messages[{i}].tool_calls"),
            ));
        }
    }
    if let Some(f) = function_call.filter(|c| !c.is_null()) {
        let (name, arguments) = function(f, format!("messages[{i}].function_call"))?;
        calls.push(PastCall {
            id: format!("call_function_{i}"),
            name,
            arguments,
        });
    }
    Ok(calls)
}
