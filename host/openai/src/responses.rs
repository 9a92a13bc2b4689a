//! The Responses API (`/v1/responses`): the `response` object, its items, and the semantic
//! stream events, as OpenAI's SDKs parse them. Requests are checked in
//! [`crate::params::responses`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `response` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    /// `queued`, `in_progress`, `completed`, `incomplete`, `failed` or `cancelled`.
    pub status: String,
    #[serde(default)]
    pub completed_at: Option<u64>,
    #[serde(default)]
    pub error: Option<ResponseError>,
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub conversation: Option<ConversationRef>,
    /// Accepted for reasoning models and echoed; Cinder's models do not reason.
    #[serde(default)]
    pub reasoning: Option<Value>,
    pub store: bool,
    pub background: bool,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// `text` as asked: `{"format": {...}}`.
    pub text: Value,
    /// `tool_choice` as asked (`auto` when absent).
    pub tool_choice: Value,
    /// `tools` as asked.
    pub tools: Vec<Value>,
    pub truncation: String,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    /// Always an object (`{}` when none was given).
    pub metadata: Value,
}

/// `response.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

/// `response.incomplete_details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` here (OpenAI also has `content_filter`).
    pub reason: String,
}

/// `response.conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRef {
    pub id: String,
}

/// `response.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(input_tokens: u32, cached_tokens: u32, output_tokens: u32) -> Self {
        Usage {
            input_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens,
                cache_write_tokens: 0,
            },
            output_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        }
    }
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
    #[serde(default)]
    pub cache_write_tokens: u32,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

/// One item of `output` (and, stored, of a conversation or a response's input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// A message: the assistant's answer (or, as an input item, anyone's).
    Message {
        id: String,
        role: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
        content: Vec<ContentPart>,
    },
    /// A call of one of the request's functions.
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: String,
    },
    /// A function's result, given back by the client (an input item).
    FunctionCallOutput {
        id: String,
        call_id: String,
        output: String,
        status: String,
    },
    /// A search of vector stores by the `file_search` tool.
    FileSearchCall {
        id: String,
        /// `in_progress`, `searching`, `completed` or `failed`.
        status: String,
        queries: Vec<String>,
        /// The chunks found, when `include` asks for `file_search_call.results`.
        #[serde(default)]
        results: Option<Vec<Value>>,
    },
}

impl OutputItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            OutputItem::Message { id, .. }
            | OutputItem::FunctionCall { id, .. }
            | OutputItem::FunctionCallOutput { id, .. }
            | OutputItem::FileSearchCall { id, .. } => id,
        }
    }
}

/// One part of a message's `content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// The model's text.
    OutputText {
        text: String,
        annotations: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<Vec<Value>>,
    },
    /// A person's text (user, system and developer messages).
    InputText { text: String },
    /// A file uploaded through `/v1/files`, given in a message.
    InputFile {
        file_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
}

impl ContentPart {
    /// The model's text, with no annotations.
    pub fn output_text(text: impl Into<String>) -> Self {
        ContentPart::OutputText {
            text: text.into(),
            annotations: Vec::new(),
            logprobs: None,
        }
    }

    /// The text of the part (none for a file, whose content is read apart).
    pub fn text(&self) -> &str {
        match self {
            ContentPart::OutputText { text, .. } | ContentPart::InputText { text } => text,
            ContentPart::InputFile { .. } => "",
        }
    }
}

/// A page of `GET /v1/responses/{id}/input_items` (and of conversation items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemList {
    pub object: String,
    pub data: Vec<OutputItem>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// A conversation (`/v1/conversations`): its items are listed apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    /// Always an object (`{}` when none was given).
    pub metadata: Value,
}

/// `DELETE /v1/responses/{id}` and `DELETE /v1/conversations/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}

/// One semantic stream event; `sequence_number` counts from 0 across the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: Box<Response>,
    },
    /// A background response waits for its turn.
    #[serde(rename = "response.queued")]
    Queued {
        sequence_number: u64,
        response: Box<Response>,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        sequence_number: u64,
        response: Box<Response>,
    },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: ContentPart,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
        logprobs: Vec<Value>,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        content_index: u32,
        text: String,
        logprobs: Vec<Value>,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: ContentPart,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        name: String,
        arguments: String,
    },
    #[serde(rename = "response.file_search_call.in_progress")]
    FileSearchCallInProgress {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
    },
    #[serde(rename = "response.file_search_call.searching")]
    FileSearchCallSearching {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
    },
    #[serde(rename = "response.file_search_call.completed")]
    FileSearchCallCompleted {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
    },
    /// An annotation of output text (a `file_citation`), once its text is said.
    #[serde(rename = "response.output_text.annotation.added")]
    OutputTextAnnotationAdded {
        sequence_number: u64,
        item_id: String,
        output_index: u32,
        content_index: u32,
        annotation_index: u32,
        annotation: Value,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: Box<Response>,
    },
    #[serde(rename = "response.incomplete")]
    Incomplete {
        sequence_number: u64,
        response: Box<Response>,
    },
    #[serde(rename = "response.failed")]
    Failed {
        sequence_number: u64,
        response: Box<Response>,
    },
    /// A failure the stream reports on its own (OpenAI's `error` event).
    #[serde(rename = "error")]
    Error {
        sequence_number: u64,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
}

impl StreamEvent {
    /// The event's SSE name (`event:` line), the same as its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Created { .. } => "response.created",
            StreamEvent::Queued { .. } => "response.queued",
            StreamEvent::InProgress { .. } => "response.in_progress",
            StreamEvent::OutputItemAdded { .. } => "response.output_item.added",
            StreamEvent::ContentPartAdded { .. } => "response.content_part.added",
            StreamEvent::OutputTextDelta { .. } => "response.output_text.delta",
            StreamEvent::OutputTextDone { .. } => "response.output_text.done",
            StreamEvent::ContentPartDone { .. } => "response.content_part.done",
            StreamEvent::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            StreamEvent::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            StreamEvent::FileSearchCallInProgress { .. } => "response.file_search_call.in_progress",
            StreamEvent::FileSearchCallSearching { .. } => "response.file_search_call.searching",
            StreamEvent::FileSearchCallCompleted { .. } => "response.file_search_call.completed",
            StreamEvent::OutputTextAnnotationAdded { .. } => {
                "response.output_text.annotation.added"
            }
            StreamEvent::OutputItemDone { .. } => "response.output_item.done",
            StreamEvent::Completed { .. } => "response.completed",
            StreamEvent::Incomplete { .. } => "response.incomplete",
            StreamEvent::Failed { .. } => "response.failed",
            StreamEvent::Error { .. } => "error",
        }
    }
}
