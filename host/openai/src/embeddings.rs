//! `/v1/embeddings` request and response bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/embeddings`. `input` stays JSON: its four shapes (a string, strings, token ids,
/// lists of token ids) are told apart by the plugin, which names what is wrong.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Value,
    /// `float` or `base64`; absent means `float`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Shorter vectors, for models that allow it.
    #[serde(default)]
    pub dimensions: Option<i64>,
    /// The end user's id.
    #[serde(default)]
    pub user: Option<String>,
}

/// One vector as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    /// Little-endian float32 bytes, base64-encoded.
    Base64(String),
}

/// One entry of `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// The input's position in the request.
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// `usage` of an embeddings response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

/// The response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}
