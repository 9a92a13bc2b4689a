//! From the OpenAI request body to a validated plan: every parameter honoured or refused with
//! a 400 that names it.

use serde_json::Value;

use super::{EmbedInput, Overflow};
use crate::host::Host;
use crate::openai::embeddings::EmbeddingRequest;
use crate::{Error, invalid_request, validate};

/// OpenAI's bound on inputs per request.
pub const MAX_INPUTS: usize = 2048;
/// OpenAI's bound on the tokens of all inputs of one request, unless the plugin setting
/// `max_tokens_per_request` says otherwise.
pub const MAX_TOKENS_PER_REQUEST: u32 = 300_000;

/// How vectors go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Little-endian float32 bytes in base64 (the OpenAI SDKs' default).
    Base64,
}

/// A validated embeddings request: what [`super::Embeddings::prepare`] may inspect and rewrite.
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
    pub token_ids: super::TokenIds,
}

/// Parses and validates a `/v1/embeddings` body.
pub fn plan(body: &str, host: &dyn Host) -> Result<Plan, Error> {
    let req: EmbeddingRequest = validate::parse_body(body)?;
    if req.model.is_empty() {
        return Err(invalid_request("model must not be empty", Some("model")));
    }
    let encoding = match req.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(invalid_request(
                &format!("encoding_format must be `float` or `base64`, got `{other}`"),
                Some("encoding_format"),
            ));
        }
    };
    let dimensions = match req.dimensions {
        None => None,
        Some(d) if d >= 1 && d <= i64::from(u32::MAX) => Some(d as u32),
        Some(d) => {
            return Err(invalid_request(
                &format!("dimensions must be between 1 and {}, got {d}", u32::MAX),
                Some("dimensions"),
            ));
        }
    };
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
        token_ids: super::token_ids_of(&req.model),
        model: req.model,
        inputs: inputs(&req.input)?,
        encoding,
        dimensions,
        overflow,
        user: req.user,
    })
}

fn shape_error() -> Error {
    invalid_request(
        "input must be a string, an array of strings, an array of token ids, or an array of arrays of token ids",
        Some("input"),
    )
}

/// A token id: an integer from 0 to 2³²−1.
fn token(v: &Value) -> Result<u32, Error> {
    v.as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| {
            invalid_request(
                &format!("token ids are integers from 0 to {}, got {v}", u32::MAX),
                Some("input"),
            )
        })
}

fn tokens(items: &[Value]) -> Result<Vec<u32>, Error> {
    items.iter().map(token).collect()
}

/// `input` in its four shapes. Emptiness is refused here (an empty string, an empty list,
/// an empty list of ids), so the model never sees a zero-length input.
fn inputs(input: &Value) -> Result<Vec<EmbedInput>, Error> {
    let empty = |what: &str| invalid_request(&format!("input {what}"), Some("input"));
    let out = match input {
        Value::String(s) if s.is_empty() => return Err(empty("must not be an empty string")),
        Value::String(s) => vec![EmbedInput::Text(s.clone())],
        Value::Array(items) if items.is_empty() => {
            return Err(empty("must not be an empty array"));
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if s.is_empty() => {
                        Err(empty(&format!("{i} is an empty string")))
                    }
                    Value::String(s) => Ok(EmbedInput::Text(s.clone())),
                    _ => Err(shape_error()),
                })
                .collect::<Result<_, _>>()?,
            Value::Number(_) => vec![EmbedInput::Tokens(tokens(items)?)],
            Value::Array(_) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Array(ids) if ids.is_empty() => {
                        Err(empty(&format!("{i} is an empty array of token ids")))
                    }
                    Value::Array(ids) => Ok(EmbedInput::Tokens(tokens(ids)?)),
                    _ => Err(shape_error()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(shape_error()),
        },
        _ => return Err(shape_error()),
    };
    if out.len() > MAX_INPUTS {
        return Err(invalid_request(
            &format!(
                "input has {} items; at most {MAX_INPUTS} per request",
                out.len()
            ),
            Some("input"),
        ));
    }
    Ok(out)
}
