//! `POST /v1/completions` (legacy text completions): the request, the response, and stream
//! chunks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chat::{StopSequences, StreamOptions, Usage};

/// `prompt`: a string, a list of strings, token ids, or lists of token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// A legacy completion request. Unknown fields are ignored (and logged).
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Option<Prompt>,
    pub suffix: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// How many alternatives per token to report (0–5); `Some(0)` still reports each
    /// sampled token's own logprob.
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub stop: Option<StopSequences>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub best_of: Option<u32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    pub user: Option<String>,
    pub seed: Option<i64>,
}

/// The legacy logprobs shape: parallel arrays over the tokens of `text`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    /// Per token: the alternatives, token text → logprob (`null` for an echoed prompt's
    /// first token, which has nothing before it).
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Where each token starts in `text`, in characters.
    pub text_offset: Vec<u32>,
}

/// One choice of a response or a chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<String>,
}

/// A response, or with `object: text_completion` and partial choices, a stream chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    /// Always `text_completion` (also for stream chunks, as OpenAI sends them).
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<CompletionChoice>,
    /// A response always has usage; a chunk has `null` with `include_usage` (numbers on the
    /// last chunk) and no key without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_prompt_form_parses() {
        let p = |v: Value| {
            serde_json::from_value::<CompletionRequest>(
                serde_json::json!({"model": "m", "prompt": v}),
            )
            .unwrap()
            .prompt
            .unwrap()
        };
        assert!(matches!(p(serde_json::json!("hi")), Prompt::Text(_)));
        assert!(matches!(p(serde_json::json!(["a", "b"])), Prompt::Texts(_)));
        assert!(matches!(p(serde_json::json!([1, 2])), Prompt::Tokens(_)));
        assert!(matches!(
            p(serde_json::json!([[1], [2, 3]])),
            Prompt::TokenLists(_)
        ));
    }
}
