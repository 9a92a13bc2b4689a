//! `POST /v1/chat/completions`: the request, the response, and stream chunks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A chat completion request. Fields Cinder does not know are ignored (and logged).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub seed: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StopSequences>,
    pub n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub user: Option<String>,
    pub metadata: Option<Value>,
    pub store: Option<bool>,
    pub service_tier: Option<String>,
    pub parallel_tool_calls: Option<bool>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub functions: Option<Value>,
    pub function_call: Option<Value>,
    pub response_format: Option<Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

/// One input message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    pub name: Option<String>,
    pub tool_calls: Option<Value>,
    pub tool_call_id: Option<String>,
    /// The deprecated single call of an assistant message (`functions` era).
    pub function_call: Option<Value>,
}

/// `content`: a string or an array of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of an array `content`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// Usage counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache instead of being computed again.
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
        }
    }

    /// The same counts, saying how many prompt tokens came from the prefix cache.
    pub fn with_cached(self, cached_tokens: u32) -> Self {
        Usage {
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens }),
            ..self
        }
    }
}

/// A non-streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    /// Echoed when the request named one: every request is served the same way, `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

/// One choice of a completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

/// The generated message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The deprecated single call, for requests that used `functions`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function_call: Option<ToolCallFunction>,
}

/// One function call in `message.tool_calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// `call_...`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: ToolCallFunction,
}

/// The function a tool call names, with its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFunction {
    pub name: String,
    pub arguments: String,
}

/// `choices[].logprobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
    pub refusal: Option<Vec<TokenLogprob>>,
}

/// One token's log-probability, with alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
}

/// One streamed chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    /// Echoed when the request named one: every request is served the same way, `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    pub choices: Vec<ChunkChoice>,
    /// `null` on every chunk but the last when `stream_options.include_usage` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// One choice in a chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// The deprecated single call, streamed: the name first, then the arguments.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function_call: Option<ToolCallDeltaFunction>,
}

/// A piece of a streamed tool call: the first for a call carries `id`, `type` and the
/// function's name with empty `arguments`; later ones append to `arguments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: ToolCallDeltaFunction,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolCallDeltaFunction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_request_with_unknown_fields() {
        let (r, unknown): (ChatCompletionRequest, _) = crate::ErrorBody::parse_json(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "stop":"x","stream":true,"stream_options":{"include_usage":true},"brand_new":1}"#,
        )
        .unwrap();
        assert!(r.stream);
        assert_eq!(unknown, ["brand_new"]);
        assert_eq!(r.stop.unwrap().into_vec(), vec!["x"]);
    }

    #[test]
    fn chunk_usage_is_null_or_absent() {
        let mut c = ChatCompletionChunk {
            id: "i".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "m".into(),
            system_fingerprint: "f".into(),
            service_tier: None,
            choices: vec![],
            usage: Some(None),
        };
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains(r#""usage":null"#)
        );
        c.usage = None;
        assert!(!serde_json::to_string(&c).unwrap().contains("usage"));
    }

    #[test]
    fn type_errors_in_a_real_request_name_their_path() {
        let param = |change: &str| {
            let messages = if change.contains("messages") {
                ""
            } else {
                r#""messages":[{"role":"user","content":"hi"}],"#
            };
            let body = format!(r#"{{"model":"m",{messages}{change}}}"#);
            crate::ErrorBody::parse_json::<ChatCompletionRequest>(&body)
                .map(|_| ())
                .unwrap_err()
                .error
                .param
        };
        for (change, want) in [
            (r#""max_tokens":"10""#, "max_tokens"),
            (r#""stream":1"#, "stream"),
            (r#""n":-1"#, "n"),
            (r#""stop":7"#, "stop"),
            (r#""logprobs":"yes""#, "logprobs"),
            (r#""temperature":"hot""#, "temperature"),
            (
                r#""messages":[{"role":5,"content":"x"}]"#,
                "messages[0].role",
            ),
            (
                r#""messages":[{"role":"user","content":"x"},{"content":"x"}]"#,
                "messages[1].role",
            ),
        ] {
            assert_eq!(param(change).as_deref(), Some(want), "{change}");
        }
    }
}
