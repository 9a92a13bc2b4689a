//! Sentence embeddings from a chat model (`[[models]] embeddings = true`): each input's
//! final-normed hidden states, averaged over its tokens and scaled to unit length (llama.cpp's
//! `--pooling mean` with its default normalisation). The work runs on the model's engine
//! thread, one forward pass per loop turn between generation steps, so streams keep flowing
//! while a large request is embedded: a pass takes the next inputs (whole, or chunk by chunk
//! for long ones) under a token budget, all through the weights together.

use tokio::sync::oneshot;

use crate::embed::embedder::unit_length;
use crate::error::{CoreError, catch_panic};
use crate::models::{KvCache, Llama};

/// Tokens of one input per pass (a long input takes several passes, its cache kept).
const CHUNK: usize = 256;
/// Tokens per pass across the inputs in flight.
const PASS_TOKENS: usize = 512;

pub(crate) type EmbedReply = oneshot::Sender<Result<Vec<Vec<f32>>, CoreError>>;

/// One request's inputs on their way through the model.
pub(crate) struct EmbedWork {
    inputs: Vec<Vec<u32>>,
    /// The inputs in flight: (index, cache, tokens done).
    group: Vec<(usize, KvCache, usize)>,
    /// The first input not started yet.
    next: usize,
    /// Per input, the sum of its normed hidden states so far.
    sums: Vec<Vec<f64>>,
    reply: Option<EmbedReply>,
}

impl EmbedWork {
    /// `inputs` must already be checked: non-empty, in the vocabulary, within the context.
    pub(crate) fn new(inputs: Vec<Vec<u32>>, reply: EmbedReply) -> Self {
        EmbedWork {
            sums: Vec::with_capacity(inputs.len()),
            inputs,
            group: Vec::new(),
            next: 0,
            reply: Some(reply),
        }
    }

    /// Whether the requester is gone (nothing left to do for it).
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    /// Runs one forward pass; true once the work is over (answered, failed or abandoned).
    pub(crate) fn pass(&mut self, model: &Llama) -> bool {
        if self.abandoned() {
            return true;
        }
        if self.group.is_empty() {
            let mut tokens = 0;
            while let Some(input) = self.inputs.get(self.next) {
                let first = input.len().min(CHUNK);
                // An input longer than a chunk keeps its cache over several passes: it goes
                // alone, so the work holds at most one long cache (like one chat sequence).
                let long = input.len() > CHUNK;
                if !self.group.is_empty() && (long || tokens + first > PASS_TOKENS) {
                    break;
                }
                tokens += first;
                self.group.push((self.next, model.new_cache(), 0));
                self.sums.push(vec![0.0; model.config().dim]);
                self.next += 1;
                if long {
                    break;
                }
            }
        }
        let EmbedWork {
            inputs,
            group,
            sums,
            ..
        } = self;
        let rows = catch_panic(|| {
            let mut items: Vec<(&[u32], &mut KvCache)> = group
                .iter_mut()
                .map(|(i, cache, done)| {
                    let input = &inputs[*i];
                    (&input[*done..(*done + CHUNK).min(input.len())], cache)
                })
                .collect();
            model.forward_normed(&mut items)
        });
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.answer(Err(e));
                return true;
            }
        };
        let dim = model.config().dim;
        let mut rows = rows.chunks_exact(dim);
        for (i, _, done) in group.iter_mut() {
            let n = (inputs[*i].len() - *done).min(CHUNK);
            for row in rows.by_ref().take(n) {
                for (s, x) in sums[*i].iter_mut().zip(row) {
                    *s += f64::from(*x);
                }
            }
            *done += n;
        }
        group.retain(|(i, _, done)| *done < inputs[*i].len());
        if !group.is_empty() || self.next < self.inputs.len() {
            return false;
        }
        // The mean's direction is the sum's: scaling to unit length makes the division by
        // the token count unnecessary.
        let vectors = self
            .sums
            .iter()
            .map(|sum| unit_length(sum.iter().copied()))
            .collect();
        self.answer(Ok(vectors));
        true
    }

    /// Ends the work with `error`.
    pub(crate) fn fail(mut self, error: CoreError) {
        self.answer(Err(error));
    }

    fn answer(&mut self, result: Result<Vec<Vec<f32>>, CoreError>) {
        if let Some(reply) = self.reply.take() {
            // A requester that went away needs no answer.
            let _ = reply.send(result);
        }
    }
}
