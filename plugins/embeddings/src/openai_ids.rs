//! Token ids sent under an OpenAI embedding model's name are OpenAI's ids.
//!
//! LangChain's `OpenAIEmbeddings` (and anything else that counts tokens with tiktoken before
//! it sends them) sends `input` as `cl100k_base` token ids for `text-embedding-3-*` and
//! `text-embedding-ada-002`. A local model served under that name has another vocabulary;
//! reading those numbers as its own ids embeds unrelated tokens (cosine ~0.03 to the same
//! sentence as text), silently. So under those names the ids are decoded with OpenAI's own
//! vocabulary (tiktoken-rs, which carries the ranks file) and embedded as text. Under the
//! model's own id, ids keep their meaning: the model's vocabulary.

use cinder_sdk::embeddings::EmbedInput;
use cinder_sdk::{Error, invalid_request};

/// The vocabulary of token-id inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIds {
    /// The model's own token ids.
    Model,
    /// OpenAI's `cl100k_base` ids (decoded to text before embedding).
    Cl100k,
}

/// OpenAI's embedding models, whose names mean `cl100k_base` ids.
const CL100K_MODELS: [&str; 3] = [
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// Which vocabulary token ids sent for `model` (the name in the request) are in.
pub fn token_ids_of(model: &str) -> TokenIds {
    if CL100K_MODELS.iter().any(|m| m.eq_ignore_ascii_case(model)) {
        TokenIds::Cl100k
    } else {
        TokenIds::Model
    }
}

/// Turns `cl100k_base` token-id inputs into their text; text inputs are left alone. The
/// vocabulary is built only when an input has ids.
pub fn decode_cl100k(inputs: Vec<EmbedInput>) -> Result<Vec<EmbedInput>, Error> {
    if !inputs.iter().any(|i| matches!(i, EmbedInput::Tokens(_))) {
        return Ok(inputs);
    }
    let bpe = tiktoken_rs::cl100k_base()
        .map_err(|e| Error::Internal(format!("cl100k_base vocabulary: {e}")))?;
    inputs
        .into_iter()
        .map(|input| match input {
            EmbedInput::Tokens(ids) => {
                let bytes = bpe.decode_bytes(&ids).map_err(|e| {
                    invalid_request(
                        &format!(
                            "token id {} is not in cl100k_base, the vocabulary of OpenAI's embedding models",
                            e.token
                        ),
                        Some("input"),
                    )
                })?;
                // A chunk may end inside a character: keep what is whole, as tiktoken's
                // `decode(errors="replace")` would.
                Ok(EmbedInput::Text(String::from_utf8_lossy(&bytes).into_owned()))
            }
            text => Ok(text),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_names_mean_cl100k_ids() {
        assert_eq!(token_ids_of("text-embedding-3-small"), TokenIds::Cl100k);
        assert_eq!(token_ids_of("Text-Embedding-Ada-002"), TokenIds::Cl100k);
        assert_eq!(token_ids_of("all-minilm-l6-v2"), TokenIds::Model);
        // tiktoken: cl100k_base.encode("Hello world") == [9906, 1917]
        let out = decode_cl100k(vec![
            EmbedInput::Tokens(vec![9906, 1917]),
            EmbedInput::Text("as is".into()),
        ])
        .unwrap();
        assert!(matches!(&out[0], EmbedInput::Text(t) if t == "Hello world"));
        assert!(matches!(&out[1], EmbedInput::Text(t) if t == "as is"));
        match decode_cl100k(vec![EmbedInput::Tokens(vec![4_000_000])]) {
            Err(Error::InvalidRequest(d)) => assert_eq!(d.param.as_deref(), Some("input")),
            _ => panic!("an unknown id is a 400"),
        }
    }
}
