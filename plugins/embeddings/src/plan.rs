//! From the OpenAI request body to a validated plan: every parameter honoured or refused with
//! a 400 that names it.

use cinder_sdk::embeddings::{EmbedInput, Overflow};
use cinder_sdk::openai::params::embeddings::{EmbeddingParams, Input};
use cinder_sdk::{Error, Host};

pub use cinder_sdk::openai::params::embeddings::Encoding;

/// OpenAI's bound on the tokens of all inputs of one request, unless the plugin setting
/// `max_tokens_per_request` says otherwise.
pub const MAX_TOKENS_PER_REQUEST: u32 = 300_000;

/// A validated embeddings request: what [`crate::Embeddings::prepare`] may inspect and rewrite.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model id (or alias) asked for.
    pub model: String,
    /// The inputs, in request order.
    pub inputs: Vec<EmbedInput>,
    /// `encoding_format`.
    pub encoding: Encoding,
    /// `dimensions`: vectors are cut to this length (checked against the model later).
    pub dimensions: Option<u32>,
    /// What happens to an input longer than the model reads: the plugin setting
    /// `truncate` (default `true`, like sentence-transformers; `false` refuses).
    pub overflow: Overflow,
    /// `user`: the end user's id.
    pub user: Option<String>,
    /// The most tokens all inputs together may have (after truncation): the plugin setting
    /// `max_tokens_per_request`, else [`MAX_TOKENS_PER_REQUEST`].
    pub max_tokens: u32,
    /// The vocabulary of token-id inputs: OpenAI's `cl100k_base` under an OpenAI embedding
    /// model's name, the model's own otherwise.
    pub token_ids: crate::openai_ids::TokenIds,
}

/// Parses and validates a `/v1/embeddings` body (OpenAI's rules are
/// [`EmbeddingParams::check`]'s).
pub fn plan(body: &str, host: &dyn Host) -> Result<Plan, Error> {
    let p = EmbeddingParams::check(cinder_sdk::parse_body(body)?)?;
    let overflow = match host.setting("truncate").as_deref() {
        None | Some("true") => Overflow::Truncate,
        Some("false") => Overflow::Refuse,
        Some(other) => {
            return Err(Error::Internal(format!(
                "the embeddings plugin's setting `truncate` must be true or false, not `{other}`"
            )));
        }
    };
    let max_tokens = match host.setting("max_tokens_per_request") {
        None => MAX_TOKENS_PER_REQUEST,
        Some(v) => v.parse().ok().filter(|&n: &u32| n >= 1).ok_or_else(|| {
            Error::Internal(format!(
                "the embeddings plugin's setting `max_tokens_per_request` must be a whole number of at least 1, not `{v}`"
            ))
        })?,
    };
    Ok(Plan {
        max_tokens,
        token_ids: crate::openai_ids::token_ids_of(&p.model),
        model: p.model,
        inputs: p
            .inputs
            .into_iter()
            .map(|i| match i {
                Input::Text(t) => EmbedInput::Text(t),
                Input::Tokens(ids) => EmbedInput::Tokens(ids),
            })
            .collect(),
        encoding: p.encoding,
        dimensions: p.dimensions,
        overflow,
        user: p.user,
    })
}
