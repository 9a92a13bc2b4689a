//! What conditions a pipeline's UNet on the prompt: CLIP's hidden states (the Stable
//! Diffusion family: 77 tokens), or a sentence-transformers model's unit vector as a
//! one-token context (Cinder's own pixel models, conditioned on all-MiniLM-L6-v2).

use std::path::Path;

use super::clip::ClipText;
use super::tokenizer::ClipTokenizer;
use crate::embed::embedder::Embedder;
use crate::error::CoreError;
use crate::models::backend::BackendPreference;

pub(crate) enum TextEncoder {
    Clip {
        tokenizer: Box<ClipTokenizer>,
        model: Box<ClipText>,
    },
    Sentence(Box<Embedder>),
}

impl TextEncoder {
    /// A sentence-transformers folder, run on the CPU's own path (a prompt a request).
    pub fn sentence(dir: &Path, pref: BackendPreference) -> Result<Self, CoreError> {
        let pref = match pref {
            BackendPreference::Auto => BackendPreference::Cpu,
            other => other,
        };
        Ok(TextEncoder::Sentence(Box::new(
            Embedder::load(dir, pref, None)?.0,
        )))
    }

    /// The width of each context token.
    pub fn width(&self) -> usize {
        match self {
            TextEncoder::Clip { model, .. } => model.hidden_size(),
            TextEncoder::Sentence(e) => e.dimensions(),
        }
    }

    /// The UNet's context for each prompt, row after row, and its shape `[rows, tokens,
    /// width]`.
    pub fn encode(&self, prompts: &[&str]) -> Result<(Vec<f32>, [usize; 3]), CoreError> {
        let rows = prompts.len();
        match self {
            TextEncoder::Clip { tokenizer, model } => {
                let ids = prompts
                    .iter()
                    .map(|p| tokenizer.encode(p).map(|(ids, _)| ids))
                    .collect::<Result<Vec<_>, _>>()?;
                let states = model.hidden_states(&ids)?;
                Ok((states, [rows, tokenizer.length(), model.hidden_size()]))
            }
            TextEncoder::Sentence(e) => {
                let ids = prompts
                    .iter()
                    .map(|p| e.tokenize(p).map(|(ids, _)| ids))
                    .collect::<Result<Vec<_>, _>>()?;
                let vectors = e.embed(&ids)?;
                Ok((vectors.concat(), [rows, 1, e.dimensions()]))
            }
        }
    }

    /// How many tokens of `prompt` the encoder reads.
    pub fn count(&self, prompt: &str) -> Result<usize, CoreError> {
        match self {
            TextEncoder::Clip { tokenizer, .. } => tokenizer.count(prompt),
            TextEncoder::Sentence(e) => Ok(e.tokenize(prompt)?.0.len()),
        }
    }
}
