//! The host side of the `embeddings` import (WIT 0.1.4): inputs become token ids here (text
//! through the model's own tokenizer), and the core's batching thread for the model embeds
//! them together with whatever other requests are waiting.

use cinder_core::{CoreError, LoadedEmbedder};

use crate::bindings::cinder::plugin::types;
use crate::bindings::embeddings_world::cinder::plugin::embeddings::{
    self, EmbedInput, Embedded, EmbedderInfo, Overflow, TokenSpan,
};
use crate::imports::{invalid_argument, wit_error};
use crate::state::HostState;

impl embeddings::Host for HostState {
    fn describe_embedder(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<EmbedderInfo, types::Error>> {
        Ok(self.models.embedder(&model).map_err(wit_error).map(|m| {
            let i = &m.info;
            EmbedderInfo {
                id: i.id.clone(),
                architecture: i.architecture.clone(),
                dimensions: i.dimensions,
                max_tokens: i.max_tokens,
                normalized: i.normalized,
                created: i.created,
                fingerprint: i.fingerprint.clone(),
            }
        }))
    }

    async fn embed(
        &mut self,
        model: String,
        inputs: Vec<EmbedInput>,
        overflow: Overflow,
    ) -> wasmtime::Result<Result<Embedded, types::Error>> {
        self.embed_bounded(model, inputs, overflow, None).await
    }

    async fn embed_within(
        &mut self,
        model: String,
        inputs: Vec<EmbedInput>,
        overflow: Overflow,
        max_tokens: u32,
    ) -> wasmtime::Result<Result<Embedded, types::Error>> {
        self.embed_bounded(model, inputs, overflow, Some(max_tokens))
            .await
    }

    async fn token_spans(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<Vec<TokenSpan>, types::Error>> {
        if text.len() > MAX_SPAN_TEXT {
            return Ok(Err(invalid_argument(
                "text",
                format!("a text is at most {MAX_SPAN_TEXT} bytes; cut it first"),
                None,
            )));
        }
        let model = match self.models.embedder(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(wit_error(e))),
        };
        // A long document's tokenization is real work: off the async workers.
        let spans = self
            .blocking(move || model.engine.token_spans(&text).map_err(wit_error))
            .await?;
        self.touch();
        Ok(spans.map(|s| {
            s.into_iter()
                .map(|(start, end)| TokenSpan { start, end })
                .collect()
        }))
    }
}

/// The longest text one `token-spans` call takes (a family cuts longer documents first).
const MAX_SPAN_TEXT: usize = 8 << 20;

impl HostState {
    async fn embed_bounded(
        &mut self,
        model: String,
        inputs: Vec<EmbedInput>,
        overflow: Overflow,
        budget: Option<u32>,
    ) -> wasmtime::Result<Result<Embedded, types::Error>> {
        let model = match self.models.embedder(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(wit_error(e))),
        };
        // Tokenizing 2048 inputs is real work: off the async workers.
        let tokenized = {
            let model = model.clone();
            self.blocking(move || token_ids(&model, inputs, overflow).map_err(wit_error))
                .await?
        };
        let (ids, truncated) = match tokenized {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let prompt_tokens: u64 = ids.iter().map(|v| v.len() as u64).sum();
        if let Some(max) = budget
            && prompt_tokens > u64::from(max)
        {
            return Ok(Err(invalid_argument(
                "inputs",
                format!("the inputs have {prompt_tokens} tokens; at most {max} per request"),
                Some("max_tokens_per_request"),
            )));
        }
        let vectors = model.engine.embed_as(ids, self.jobs.background).await;
        self.touch();
        Ok(vectors.map_err(wit_error).map(|vectors| Embedded {
            vectors,
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            truncated,
        }))
    }
}

/// Every input as the model's token ids, cut to its limit or refused as `overflow` says,
/// and how many were cut.
fn token_ids(
    model: &LoadedEmbedder,
    inputs: Vec<EmbedInput>,
    overflow: Overflow,
) -> Result<(Vec<Vec<u32>>, u32), CoreError> {
    let max = model.info.max_tokens as usize;
    let mut truncated = 0;
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let (mut ids, cut) = match input {
            EmbedInput::Text(text) if text.is_empty() => {
                return Err(CoreError::InputRejected {
                    index: i,
                    problem: "is an empty string".into(),
                    too_long: false,
                });
            }
            EmbedInput::Text(text) => {
                model
                    .engine
                    .tokenize(&text)
                    .map_err(|e| CoreError::InputRejected {
                        index: i,
                        problem: format!("cannot be tokenized: {e}"),
                        too_long: false,
                    })?
            }
            EmbedInput::Tokens(ids) => {
                let cut = ids.len() > max;
                (ids, cut)
            }
        };
        if cut {
            if matches!(overflow, Overflow::Refuse) {
                return Err(CoreError::InputRejected {
                    index: i,
                    problem: format!(
                        "is longer than the {max} tokens `{}` reads; shorten it",
                        model.info.id
                    ),
                    too_long: true,
                });
            }
            ids.truncate(max);
            truncated += 1;
        }
        out.push(ids);
    }
    Ok((out, truncated))
}
