//! Scoring a whole token sequence (each token's logprob given the ones before it, and the
//! most likely alternatives at each position): the engine's third kind of job, beside
//! generation and embeddings, run to its end at once on the engine thread.

use std::sync::atomic::Ordering;

use super::{Engine, EngineHandle, Job, MAX_ALTERNATIVES};
use crate::engine::request::TokenLogprob;
use crate::error::CoreError;

/// Prompt positions scored per forward: bounds the logits held at once (64 × vocab floats).
const SCORE_CHUNK: usize = 64;

/// Logprobs of a whole token sequence (each token given the ones before it).
pub(super) struct ScoreJob {
    pub(super) tokens: Vec<u32>,
    pub(super) top: usize,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<Vec<TokenLogprob>, CoreError>>,
}

impl EngineHandle {
    /// Queues scoring `tokens`: for each token after the first, its logprob given the ones
    /// before it and the `top` most likely alternatives at that position.
    pub fn score(
        &self,
        tokens: Vec<u32>,
        top: u32,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Vec<TokenLogprob>, CoreError>>, CoreError>
    {
        self.check_prompt(&tokens, 0)?;
        if top > MAX_ALTERNATIVES {
            return Err(CoreError::TooManyAlternatives {
                asked: top,
                max: MAX_ALTERNATIVES,
            });
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Score(ScoreJob {
                tokens,
                top: top as usize,
                reply,
            }))
            .map_err(|_| CoreError::EngineStopped)?;
        self.live_arrived.store(true, Ordering::Relaxed);
        Ok(rx)
    }
}

impl Engine {
    pub(super) fn score(&self, tokens: &[u32], top: usize) -> Result<Vec<TokenLogprob>, CoreError> {
        let vocab = self.tokenizer.vocab_size();
        let mut cache = self.model.new_cache();
        let mut out = Vec::with_capacity(tokens.len().saturating_sub(1));
        for (c, chunk) in tokens.chunks(SCORE_CHUNK).enumerate() {
            let logits = self.model.forward_all(chunk, &mut cache)?;
            for (i, row) in logits.chunks(logits.len() / chunk.len()).enumerate() {
                let Some(&next) = tokens.get(c * SCORE_CHUNK + i + 1) else {
                    break;
                };
                let row = &row[..vocab.min(row.len())];
                let (lse, top) = crate::engine::sampler::log_softmax_top(row, top);
                out.push(TokenLogprob {
                    token: next,
                    logprob: row
                        .get(next as usize)
                        .map_or(f32::NEG_INFINITY, |l| l - lse),
                    top,
                });
            }
        }
        Ok(out)
    }
}
