//! From the OpenAI request body to a validated plan: every parameter is honoured or refused
//! with a 400 that names it.

use serde_json::Value;

use cinder_sdk::Error;
use cinder_sdk::inference::{Constraint, Sampling};
use cinder_sdk::openai::params::chat::{self as params, ChatParams, ResponseFormat, Role};
use cinder_sdk::tools::{Call, Message, ToolUse};

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

impl Plan {
    /// Parses and validates an OpenAI chat request body (OpenAI's rules are
    /// [`ChatParams::check`]'s) and turns it into the WIT's terms.
    pub fn parse(body: &str) -> Result<Plan, Error> {
        let p = ChatParams::check(cinder_sdk::parse_body(body)?)?;
        let messages = p.messages.into_iter().map(message).collect();
        let constraint = p.response_format.and_then(|f| match f {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(Constraint::JsonObject),
            ResponseFormat::JsonSchema(schema) => Some(Constraint::JsonSchema(
                cinder_sdk::schema::close_objects(schema).to_string(),
            )),
        });
        let tools = p.tools.map(ToolUse::from);
        Ok(Plan {
            model: p.model,
            messages,
            sampling: p.sampling.into(),
            max_tokens: p.max_tokens,
            stop: p.stop.into_strings(),
            top_logprobs: p.top_logprobs,
            stream: p.stream,
            include_usage: p.include_usage,
            user: p.user,
            // The response echoes `default`, the only tier served.
            service_tier: p.service_tier.map(|_| "default".to_owned()),
            store: p.store,
            metadata: p.metadata,
            constraint,
            tools,
            legacy_functions: p.legacy_functions,
            n: p.n,
        })
    }
}

/// A checked message as the chat template and the tools plugin read it.
fn message(m: params::Message) -> Message {
    let role = match m.role {
        // `developer` is the newer name of `system`; chat templates know `system`.
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool | Role::Function => "tool",
    };
    // Chat templates have no field for a participant's name (nor has the WIT's chat-message),
    // so it goes where the model can read it: before the text.
    let content = match m.name {
        Some(name) => format!("{name}: {}", m.content),
        None => m.content,
    };
    Message {
        role: role.to_owned(),
        content,
        // Calls the assistant made go back to the model (the tools plugin renders them the
        // way the model calls).
        calls: m
            .calls
            .into_iter()
            .map(|c| Call {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
    }
}
