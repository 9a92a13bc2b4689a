//! One running generation as the engine holds it: after each forward, `advance` samples the
//! next token (under the grammar, if any), detokenizes, applies stop strings and queues
//! events; `flush` delivers them as far as the client's channel has room.

use std::collections::VecDeque;

use llguidance::Matcher;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::engine::constraint;
use crate::engine::request::{FinishReason, GenEvent, GenerateRequest, TokenLogprob};
use crate::engine::sampler::Sampler;
use crate::engine::stop::StopMatcher;
use crate::error::CoreError;
use crate::formats::tokenizer::{IncrementalDecoder, Tokenizer};
use crate::models::KvCache;

/// One running generation: its request, KV cache, sampler and event channel.
pub(crate) struct Sequence {
    /// KV cache bytes counted against the engine's limit while it runs.
    pub(crate) reserved: usize,
    pub(crate) request: GenerateRequest,
    pub(crate) events: mpsc::Sender<GenEvent>,
    matcher: Option<Matcher>,
    pub(crate) cache: KvCache,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    /// The last sampled token, fed on the next step; none before prefill.
    pub(crate) last: Option<u32>,
    /// Prompt tokens already in the cache (chunked prefill).
    pub(crate) prefilled: usize,
    /// Prompt tokens the prefix cache supplied.
    cached: u32,
    generated: u32,
    max_tokens: u32,
    /// Events the channel had no room for yet; while any wait, the sequence is paused.
    pub(crate) outbox: VecDeque<GenEvent>,
    /// The final event is queued; the sequence ends once the outbox drains.
    pub(crate) finished: bool,
    /// Nothing more to do: finished and delivered, or the client is gone.
    pub(crate) done: bool,
    /// A live request before its first token ([`crate::kernels::pools::LiveRequest`]).
    pub(crate) live: Option<crate::kernels::pools::LiveRequest>,
}

impl Sequence {
    /// A sequence admitted with `reused` prompt positions already in `cache` (from the
    /// prefix cache) and `reserved` KV bytes counted for it: nothing sampled yet.
    pub(crate) fn start(
        request: GenerateRequest,
        events: mpsc::Sender<GenEvent>,
        matcher: Option<Matcher>,
        cache: KvCache,
        reused: usize,
        max_tokens: u32,
        reserved: usize,
    ) -> Sequence {
        Sequence {
            reserved,
            cache,
            sampler: Sampler::new(request.sampling.clone()),
            decoder: IncrementalDecoder::default(),
            stop: StopMatcher::new(request.stop.clone()),
            matcher,
            request,
            events,
            last: None,
            prefilled: reused,
            cached: reused as u32,
            generated: 0,
            max_tokens,
            outbox: VecDeque::new(),
            finished: false,
            done: false,
            live: None,
        }
    }

    /// Samples the next token from `logits` and queues what it produces.
    pub(crate) fn advance(
        &mut self,
        logits: &mut [f32],
        tokenizer: &Tokenizer,
        context_length: usize,
    ) {
        #[cfg(feature = "fault-injection")]
        if self.generated == 1 && self.request.stop.iter().any(|x| x == crate::FAULT_IN_TOKEN) {
            panic!("fault injected in the per-token path");
        }
        let top = self.request.top_logprobs.map(|k| k as usize);
        if let Some(m) = &mut self.matcher
            && let Err(e) = constraint::mask(m, logits)
        {
            warn!(request = %self.request.label, error = %e, "grammar failed; ending the sequence");
            self.outbox.push_back(GenEvent::Failed(e));
            self.finished = true;
            return;
        }
        let sampled = self.sampler.sample(logits, top);
        // End-of-generation ends the sequence: the grammar, complete, has nothing to consume.
        if let Some(m) = &mut self.matcher
            && !tokenizer.is_eog(sampled.token)
            && let Err(e) = m.consume_token(sampled.token)
        {
            // The mask allowed it, so this is an engine bug; say so rather than emit junk.
            self.outbox
                .push_back(GenEvent::Failed(CoreError::Backend(format!(
                    "grammar: {e}"
                ))));
            self.finished = true;
            return;
        }
        self.generated += 1;
        self.last = Some(sampled.token);
        let logprobs: Vec<TokenLogprob> = sampled
            .logprobs
            .map(|(logprob, top)| TokenLogprob {
                token: sampled.token,
                logprob,
                top,
            })
            .into_iter()
            .collect();

        let eog = tokenizer.is_eog(sampled.token);
        let out_of_room =
            self.generated >= self.max_tokens || self.cache.len() + 1 >= context_length;
        let mut finish = if eog {
            Some(FinishReason::Stop)
        } else if out_of_room {
            Some(FinishReason::Length)
        } else {
            None
        };
        let mut text = if eog {
            String::new()
        } else {
            self.decoder.push(tokenizer.token_bytes(sampled.token))
        };
        if finish.is_some() {
            text.push_str(&self.decoder.finish());
        }
        let (visible, stopped) = self.stop.push(&text, finish.is_some());
        if stopped {
            finish = Some(FinishReason::Stop);
        }
        self.outbox.push_back(GenEvent::Delta {
            text: visible,
            tokens: vec![sampled.token],
            logprobs,
        });
        if let Some(reason) = finish {
            debug!(
                request = %self.request.label,
                ?reason,
                completion_tokens = self.generated,
                "sequence finished"
            );
            self.outbox.push_back(GenEvent::Finished {
                reason,
                prompt_tokens: self.request.prompt.len() as u32,
                completion_tokens: self.generated,
                cached_tokens: self.cached,
            });
            self.finished = true;
        }
    }

    /// Delivers queued events until the channel is full.
    pub(crate) fn flush(&mut self) {
        while let Some(ev) = self.outbox.pop_front() {
            match self.events.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    self.outbox.push_front(ev);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.done = true;
                    self.outbox.clear();
                    return;
                }
            }
        }
        if self.finished {
            self.done = true;
        }
    }
}
