//! `POST /v1/responses`: every rule of a create request, checked into [`ResponseParams`].
//! Unlike chat, a field this server does not know is refused by name (OpenAI does the same
//! for this API), and so is a known one it cannot honour yet (`prompt`, built-in tools).

use serde_json::{Map, Value, json};

mod file_search;
mod input;

pub use file_search::FileSearchTool;

pub use input::{InputItem, InputPart, Role, items};

use super::chat::{ResponseFormat, Tools, tools_of};
use super::{Checked, Invalid, SamplingFields, metadata, service_tier};

/// OpenAI's lower bound for `max_output_tokens`.
pub const MIN_OUTPUT_TOKENS: u32 = 16;
/// Items one request's `input` may hold (a client replaying a long history sends them all).
pub const MAX_INPUT_ITEMS: usize = 10_000;
/// Items one conversation `items` request may add (OpenAI's bound).
pub const MAX_NEW_CONVERSATION_ITEMS: usize = 20;
/// OpenAI's bound for `top_logprobs`.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Fields a create request may carry and this server honours (or, for `reasoning`,
/// accepts and documents as ignored).
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tool_calls",
    "text",
    "reasoning",
    "store",
    "metadata",
    "previous_response_id",
    "conversation",
    "truncation",
    "include",
    "background",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
];

/// OpenAI's fields that this server does not serve yet, and why.
const NOT_YET: &[(&str, &str)] = &[
    (
        "prompt",
        "reusable prompts are not supported by this server",
    ),
    (
        "context_management",
        "context management is not supported by this server",
    ),
    ("moderation", "moderation is not supported by this server"),
    ("image", "image inputs are not supported by this server yet"),
    (
        "background_options",
        "background options are not supported by this server",
    ),
    (
        "prompt_cache_options",
        "prompt cache options are not supported by this server (its prefix cache is automatic)",
    ),
    (
        "prompt_cache_retention",
        "prompt cache retention is not supported by this server (its prefix cache is automatic)",
    ),
    (
        "access_programs",
        "access programs are not supported by this server",
    ),
];

/// What `include` may ask for (OpenAI's includables); only logprobs change the answer here,
/// the others name outputs this server never makes.
const INCLUDABLE: &[&str] = &[
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
];

/// A create request with every rule checked.
#[derive(Debug, Clone)]
pub struct ResponseParams {
    pub model: String,
    pub input: Vec<InputItem>,
    pub instructions: Option<String>,
    /// At least [`MIN_OUTPUT_TOKENS`] when given.
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Alternatives per token when `include` asks for logprobs (0 without `top_logprobs`).
    pub logprobs: Option<u32>,
    pub top_logprobs: Option<u32>,
    /// `None` when no function may be called.
    pub tools: Option<Tools>,
    /// The `file_search` tool, when `tool_choice` lets the response search.
    pub file_search: Option<FileSearchTool>,
    /// `include` asks for `file_search_call.results`.
    pub file_search_results: bool,
    /// `tools` and `tool_choice` as given, echoed in the response.
    pub tools_given: Vec<Value>,
    pub tool_choice_given: Value,
    pub parallel_tool_calls: bool,
    /// `None` for plain text.
    pub format: Option<ResponseFormat>,
    /// `text` as echoed in the response (`{"format": {"type": "text"}}` when absent).
    pub text_given: Value,
    pub reasoning: Option<Value>,
    /// Default true, as OpenAI's.
    pub store: bool,
    /// An object of strings (`{}` when absent).
    pub metadata: Value,
    pub previous_response_id: Option<String>,
    pub conversation: Option<String>,
    /// `auto` drops the oldest input items that do not fit the context; `disabled` (the
    /// default) refuses such a request.
    pub truncation_auto: bool,
    pub background: bool,
    pub stream: bool,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub service_tier: Option<String>,
}

fn string(body: &Map<String, Value>, key: &str) -> Checked<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid::new(format!("`{key}` must be a string"), key)),
    }
}

fn boolean(body: &Map<String, Value>, key: &str) -> Checked<Option<bool>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Invalid::new(format!("`{key}` must be a boolean"), key)),
    }
}

fn integer(body: &Map<String, Value>, key: &str) -> Checked<Option<u32>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Invalid::new(format!("`{key}` must be a non-negative integer"), key)),
    }
}

fn number(body: &Map<String, Value>, key: &str) -> Checked<Option<f32>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|n| Some(n as f32))
            .ok_or_else(|| Invalid::new(format!("`{key}` must be a number"), key)),
    }
}

impl ResponseParams {
    /// Checks a create request's JSON body.
    pub fn check(body: &Value) -> Checked<ResponseParams> {
        let body = body
            .as_object()
            .ok_or_else(|| Invalid::new("The body must be a JSON object", "body"))?;
        for (key, value) in body {
            if let Some((_, why)) = NOT_YET.iter().find(|(k, _)| k == key) {
                // SDKs send what a caller left unset as null: that asks for nothing.
                if value.is_null() {
                    continue;
                }
                return Err(Invalid::new(*why, key.as_str()));
            }
            if !KNOWN.contains(&key.as_str()) {
                let mut e = Invalid::new(format!("Unknown parameter: '{key}'."), key.as_str());
                e.code = Some("unknown_parameter".into());
                return Err(e);
            }
        }
        let model = string(body, "model")?
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Invalid::new("Missing required parameter: 'model'.", "model"))?;
        let input = match body.get("input") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![InputItem::Message {
                role: Role::User,
                content: vec![InputPart::text(s.clone())],
            }],
            Some(Value::Array(list)) => items("input", list, MAX_INPUT_ITEMS)?,
            Some(_) => {
                return Err(Invalid::new(
                    "`input` must be a string or an array of items",
                    "input",
                ));
            }
        };
        let max_output_tokens = integer(body, "max_output_tokens")?;
        if let Some(n) = max_output_tokens.filter(|&n| n < MIN_OUTPUT_TOKENS) {
            return Err(Invalid::new(
                format!(
                    "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}, but got {n} instead."
                ),
                "max_output_tokens",
            ));
        }
        let (temperature, top_p) = (number(body, "temperature")?, number(body, "top_p")?);
        SamplingFields {
            temperature,
            top_p,
            ..SamplingFields::default()
        }
        .check()?;
        let top_logprobs = integer(body, "top_logprobs")?;
        if top_logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(Invalid::new(
                format!("top_logprobs is at most {MAX_TOP_LOGPROBS}"),
                "top_logprobs",
            ));
        }
        let include = includes(body.get("include"))?;
        let logprobs = include
            .iter()
            .any(|i| i == "message.output_text.logprobs")
            .then(|| top_logprobs.unwrap_or(0));
        let tools_given = match body.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(t)) => t.clone(),
            Some(_) => return Err(Invalid::new("`tools` must be an array", "tools")),
        };
        let tool_choice_given = body
            .get("tool_choice")
            .filter(|c| !c.is_null())
            .cloned()
            .unwrap_or_else(|| json!("auto"));
        let parallel_tool_calls = boolean(body, "parallel_tool_calls")?.unwrap_or(true);
        let (tools, file_search) =
            tools(&tools_given, body.get("tool_choice"), parallel_tool_calls)?;
        if integer(body, "max_tool_calls")?.is_some() {
            // Accepted: every call a response makes is one of its own output items, and
            // `parallel_tool_calls` bounds them; a cap beyond that changes nothing here.
        }
        let (format, text_given) = text(body.get("text"))?;
        let conversation = match body.get("conversation") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => Some(
                o.get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Invalid::new("conversation needs an `id`", "conversation.id"))?
                    .to_owned(),
            ),
            Some(_) => {
                return Err(Invalid::new(
                    "`conversation` must be an id or {\"id\": ...}",
                    "conversation",
                ));
            }
        };
        let previous_response_id = string(body, "previous_response_id")?;
        if conversation.is_some() && previous_response_id.is_some() {
            return Err(Invalid::new(
                "previous_response_id cannot be used together with conversation",
                "previous_response_id",
            ));
        }
        let truncation_auto = match string(body, "truncation")?.as_deref() {
            None | Some("disabled") => false,
            Some("auto") => true,
            Some(other) => {
                return Err(Invalid::new(
                    format!("Invalid truncation `{other}`: expected auto or disabled"),
                    "truncation",
                ));
            }
        };
        let stream = boolean(body, "stream")?.unwrap_or(false);
        if body.get("stream_options").is_some_and(|o| !o.is_null()) && !stream {
            return Err(Invalid::new(
                "stream_options is only allowed with stream: true",
                "stream_options",
            ));
        }
        let reasoning = body.get("reasoning").filter(|r| !r.is_null()).cloned();
        if reasoning.as_ref().is_some_and(|r| !r.is_object()) {
            return Err(Invalid::new("`reasoning` must be an object", "reasoning"));
        }
        Ok(ResponseParams {
            model,
            input,
            instructions: string(body, "instructions")?,
            max_output_tokens,
            temperature,
            top_p,
            logprobs,
            top_logprobs,
            tools,
            file_search,
            file_search_results: include.iter().any(|i| i == "file_search_call.results"),
            tools_given,
            tool_choice_given,
            parallel_tool_calls,
            format,
            text_given,
            reasoning,
            store: boolean(body, "store")?.unwrap_or(true),
            metadata: metadata(body.get("metadata").cloned())?.unwrap_or_else(|| json!({})),
            previous_response_id,
            conversation,
            truncation_auto,
            background: boolean(body, "background")?.unwrap_or(false),
            stream,
            user: string(body, "user")?,
            safety_identifier: string(body, "safety_identifier")?,
            prompt_cache_key: string(body, "prompt_cache_key")?,
            service_tier: service_tier(string(body, "service_tier")?)?,
        })
    }
}

fn includes(include: Option<&Value>) -> Checked<Vec<String>> {
    let Some(include) = include.filter(|i| !i.is_null()) else {
        return Ok(Vec::new());
    };
    let list = include
        .as_array()
        .ok_or_else(|| Invalid::new("`include` must be an array of strings", "include"))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if INCLUDABLE.contains(&s) => Ok(s.to_owned()),
            _ => Err(Invalid::new(
                format!(
                    "Invalid include value: expected one of {}",
                    INCLUDABLE.join(", ")
                ),
                format!("include[{i}]"),
            )),
        })
        .collect()
}

/// `tools` (flat function tools, and one `file_search`) and `tool_choice`, the functions
/// through chat's rules with chat's shapes; the file_search tool is kept when the choice lets
/// the response search (`auto`, `required`, or `{"type": "file_search"}`).
fn tools(
    given: &[Value],
    choice: Option<&Value>,
    parallel: bool,
) -> Checked<(Option<Tools>, Option<FileSearchTool>)> {
    let mut chat_tools = Vec::with_capacity(given.len());
    let mut search = None;
    for (i, t) in given.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some("file_search") if search.is_some() => {
                return Err(Invalid::new(
                    "A request has at most one file_search tool",
                    format!("tools[{i}]"),
                ));
            }
            Some("file_search") => {
                search = Some(file_search::tool(i, t)?);
                continue;
            }
            Some(kind) => {
                return Err(Invalid::new(
                    format!(
                        "The tool type `{kind}` is not supported by this server yet: only `function` and `file_search` tools are"
                    ),
                    format!("tools[{i}].type"),
                ));
            }
            None => {
                return Err(Invalid::new(
                    "A tool needs a `type`",
                    format!("tools[{i}].type"),
                ));
            }
        }
        let mut function = Map::new();
        for key in ["name", "description", "parameters"] {
            if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                function.insert(key.into(), v.clone());
            }
        }
        chat_tools.push(json!({"type": "function", "function": function}));
    }
    let choice = choice.filter(|c| !c.is_null());
    if let Some(Value::String(c)) = choice
        && !["none", "auto", "required"].contains(&c.as_str())
    {
        return Err(Invalid::new(
            format!(
                "Invalid tool_choice `{c}`: expected none, auto, required, a function or file_search"
            ),
            "tool_choice",
        ));
    }
    let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    let searching = match choice {
        None => true,
        Some(Value::String(s)) => s == "auto" || s == "required",
        Some(_) => kind == Some("file_search"),
    };
    let given_search = search.is_some();
    let search = search.filter(|_| searching);
    let chat_choice = match choice {
        Some(Value::Object(c)) if kind == Some("function") => Some(
            json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}}),
        ),
        Some(Value::Object(_)) if kind == Some("file_search") => {
            if search.is_none() {
                return Err(Invalid::new(
                    "tool_choice names file_search, which is not in tools",
                    "tool_choice",
                ));
            }
            None
        }
        Some(Value::Object(_)) => {
            return Err(Invalid::new(
                format!(
                    "tool_choice of type `{}` is not supported by this server: use none, auto, required, a function or file_search",
                    kind.unwrap_or("")
                ),
                "tool_choice",
            ));
        }
        other => other.cloned(),
    };
    // Only file_search: `auto` and `required` name the search, `none` leaves it out.
    if chat_tools.is_empty() && given_search && chat_choice.as_ref().is_none_or(Value::is_string) {
        return Ok((None, search));
    }
    let functions = tools_of(
        Some(&Value::Array(chat_tools)),
        chat_choice.as_ref(),
        Some(parallel),
    )
    .map_err(|mut e| {
        e.param = e.param.map(|p| p.replace(".function.", "."));
        e
    })?;
    Ok((functions, search))
}

/// `text.format`: `text`, `json_object`, or `json_schema` with its `schema` (flat).
fn text(text: Option<&Value>) -> Checked<(Option<ResponseFormat>, Value)> {
    let Some(text) = text.filter(|t| !t.is_null()) else {
        return Ok((None, json!({"format": {"type": "text"}})));
    };
    let obj = text
        .as_object()
        .ok_or_else(|| Invalid::new("`text` must be an object", "text"))?;
    if let Some(key) = obj
        .keys()
        .find(|k| !["format", "verbosity"].contains(&k.as_str()))
    {
        return Err(Invalid::new(
            format!("Unknown parameter: 'text.{key}'."),
            format!("text.{key}"),
        ));
    }
    let format = match obj.get("format").filter(|f| !f.is_null()) {
        None => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(ResponseFormat::JsonObject),
            Some("json_schema") => {
                let schema = f.get("schema").filter(|s| s.is_object()).ok_or_else(|| {
                    Invalid::new("json_schema needs a `schema` object", "text.format.schema")
                })?;
                if !f.get("name").is_some_and(Value::is_string) {
                    return Err(Invalid::new(
                        "Missing required parameter: 'text.format.name'.",
                        "text.format.name",
                    ));
                }
                Some(ResponseFormat::JsonSchema(schema.clone()))
            }
            Some(other) => {
                return Err(Invalid::new(
                    format!(
                        "Invalid text.format type `{other}`: expected text, json_object or json_schema"
                    ),
                    "text.format.type",
                ));
            }
            None => {
                return Err(Invalid::new(
                    "text.format needs a `type`",
                    "text.format.type",
                ));
            }
        },
    };
    Ok((format, text.clone()))
}

#[cfg(test)]
mod tests;
