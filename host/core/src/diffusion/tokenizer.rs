//! The CLIP tokenizer of a pipeline (`tokenizer/tokenizer.json`, read by the `tokenizers`
//! crate), with what the pipeline does around it: start and end tokens, truncation to the
//! model's length keeping the end token, padding with the pad token.

use std::path::Path;

use serde::Deserialize;

use crate::error::CoreError;

/// `tokenizer_config.json`'s fields this reads.
#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    #[serde(default = "default_max")]
    model_max_length: usize,
    pad_token: Option<String>,
    eos_token: Option<String>,
}

fn default_max() -> usize {
    77
}

/// A pipeline's prompt tokenizer.
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    length: usize,
    eos: u32,
    pad: u32,
}

impl ClipTokenizer {
    /// Loads `tokenizer.json` and `tokenizer_config.json` from a pipeline's `tokenizer/`.
    pub fn load(dir: &Path) -> Result<Self, CoreError> {
        let inner = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| CoreError::Tokenizer(format!("tokenizer.json: {e}")))?;
        let path = dir.join("tokenizer_config.json");
        let text = std::fs::read(&path)
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", path.display())))?;
        let config: TokenizerConfig = serde_json::from_slice(&text)
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", path.display())))?;
        let id = |token: Option<&str>, what: &str| {
            let token = token.unwrap_or("<|endoftext|>");
            inner.token_to_id(token).ok_or_else(|| {
                CoreError::Tokenizer(format!("the {what} token {token} is not in the vocabulary"))
            })
        };
        let eos = id(config.eos_token.as_deref(), "end")?;
        let pad = id(config.pad_token.as_deref(), "pad")?;
        if config.model_max_length < 2 {
            return Err(CoreError::Tokenizer(
                "model_max_length is too short for the start and end tokens".into(),
            ));
        }
        Ok(ClipTokenizer {
            inner,
            length: config.model_max_length,
            eos,
            pad,
        })
    }

    /// The length every prompt is cut or padded to.
    pub fn length(&self) -> usize {
        self.length
    }

    /// `prompt` as the pipeline feeds it: start token, its tokens (cut so that the end token
    /// still fits), the end token, pad tokens up to [`Self::length`]. Also how many of its
    /// tokens were cut.
    pub fn encode(&self, prompt: &str) -> Result<(Vec<u32>, usize), CoreError> {
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(|e| CoreError::Tokenizer(format!("tokenizing a prompt: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        let mut cut = 0;
        if ids.len() > self.length {
            cut = ids.len() - self.length;
            ids.truncate(self.length - 1);
            ids.push(self.eos);
        }
        ids.resize(self.length, self.pad);
        Ok((ids, cut))
    }
}
