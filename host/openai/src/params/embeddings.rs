//! `POST /v1/embeddings`: every rule of an embeddings request, checked into
//! [`EmbeddingParams`].

use serde_json::Value;

use super::{Checked, Invalid};
use crate::embeddings::EmbeddingRequest;

/// OpenAI's bound on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// How vectors go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Little-endian float32 bytes in base64 (the OpenAI SDKs' default).
    Base64,
}

/// One input: text, or token ids (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text(String),
    Tokens(Vec<u32>),
}

/// An embeddings request with every OpenAI rule checked.
#[derive(Debug, Clone)]
pub struct EmbeddingParams {
    /// Not empty.
    pub model: String,
    /// One to [`MAX_INPUTS`] inputs, in request order.
    pub inputs: Vec<Input>,
    pub encoding: Encoding,
    /// `dimensions`, at least 1 (checked against the model by whoever knows it).
    pub dimensions: Option<u32>,
    pub user: Option<String>,
}

impl EmbeddingParams {
    /// Checks a parsed embeddings request.
    pub fn check(req: EmbeddingRequest) -> Checked<EmbeddingParams> {
        if req.model.is_empty() {
            return Err(Invalid::new("model must not be empty", "model"));
        }
        let encoding = match req.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(Invalid::new(
                    format!("encoding_format must be `float` or `base64`, got `{other}`"),
                    "encoding_format",
                ));
            }
        };
        let dimensions = match req.dimensions {
            None => None,
            Some(d) if d >= 1 && d <= i64::from(u32::MAX) => Some(d as u32),
            Some(d) => {
                return Err(Invalid::new(
                    format!("dimensions must be between 1 and {}, got {d}", u32::MAX),
                    "dimensions",
                ));
            }
        };
        Ok(EmbeddingParams {
            inputs: inputs(&req.input)?,
            model: req.model,
            encoding,
            dimensions,
            user: req.user,
        })
    }
}

fn shape_error() -> Invalid {
    Invalid::new(
        "input must be a string, an array of strings, an array of token ids, or an array of arrays of token ids",
        "input",
    )
}

/// A token id: an integer from 0 to 2³²−1.
fn token(v: &Value) -> Checked<u32> {
    v.as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| {
            Invalid::new(
                format!("token ids are integers from 0 to {}, got {v}", u32::MAX),
                "input",
            )
        })
}

fn tokens(items: &[Value]) -> Checked<Vec<u32>> {
    items.iter().map(token).collect()
}

/// `input` in its four shapes. Emptiness is refused here (an empty string, an empty list,
/// an empty list of ids), so a model never sees a zero-length input.
fn inputs(input: &Value) -> Checked<Vec<Input>> {
    let empty = |what: &str| Invalid::new(format!("input {what}"), "input");
    let out = match input {
        Value::String(s) if s.is_empty() => return Err(empty("must not be an empty string")),
        Value::String(s) => vec![Input::Text(s.clone())],
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
                    Value::String(s) => Ok(Input::Text(s.clone())),
                    _ => Err(shape_error()),
                })
                .collect::<Checked<_>>()?,
            Value::Number(_) => vec![Input::Tokens(tokens(items)?)],
            Value::Array(_) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Array(ids) if ids.is_empty() => {
                        Err(empty(&format!("{i} is an empty array of token ids")))
                    }
                    Value::Array(ids) => Ok(Input::Tokens(tokens(ids)?)),
                    _ => Err(shape_error()),
                })
                .collect::<Checked<_>>()?,
            _ => return Err(shape_error()),
        },
        _ => return Err(shape_error()),
    };
    if out.len() > MAX_INPUTS {
        return Err(Invalid::new(
            format!(
                "input has {} items; at most {MAX_INPUTS} per request",
                out.len()
            ),
            "input",
        ));
    }
    Ok(out)
}
