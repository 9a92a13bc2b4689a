//! The `embeddings` import, faked: an embedding model (see [`FakeHost::with_embedder`])
//! reads a character as a token and makes deterministic unit vectors from them, so equal
//! texts embed equally and a text's token spans are its characters.

use super::FakeHost;
use crate::Error;
use crate::embeddings::{EmbedInput, Embedded, EmbedderInfo, Overflow};
use crate::host::Embeddings;

impl Embeddings for FakeHost {
    fn describe_embedder(&self, model: &str) -> Result<EmbedderInfo, Error> {
        self.embedder(model).cloned()
    }

    /// The fake embedder reads a character as a token (as its `embed` counts them).
    fn token_spans(&self, model: &str, text: &str) -> Result<Vec<(u32, u32)>, Error> {
        self.embedder(model)?;
        Ok(text
            .char_indices()
            .map(|(i, c)| (i as u32, (i + c.len_utf8()) as u32))
            .collect())
    }

    fn embed(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
    ) -> Result<Embedded, Error> {
        let info = self.embedder(model)?;
        self.embedded.borrow_mut().push(inputs.to_vec());
        let max = info.max_tokens as usize;
        let (mut vectors, mut prompt_tokens, mut truncated) = (Vec::new(), 0, 0);
        for (i, input) in inputs.iter().enumerate() {
            let mut ids: Vec<u32> = match input {
                EmbedInput::Text(t) => t.chars().map(u32::from).collect(),
                EmbedInput::Tokens(ids) => ids.clone(),
            };
            if ids.len() > max {
                if matches!(overflow, Overflow::Refuse) {
                    return Err(crate::invalid_request(
                        &format!("input {i} is longer than {max} tokens"),
                        Some("input"),
                    ));
                }
                ids.truncate(max);
                truncated += 1;
            }
            prompt_tokens += ids.len() as u32;
            let v: Vec<f64> = (0..info.dimensions)
                .map(|j| {
                    ids.iter()
                        .map(|&t| ((f64::from(t) + 1.0) * (f64::from(j) + 1.0)).sin())
                        .sum()
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            vectors.push(v.iter().map(|x| (x / norm) as f32).collect());
        }
        Ok(Embedded {
            vectors,
            prompt_tokens,
            truncated,
        })
    }
}
