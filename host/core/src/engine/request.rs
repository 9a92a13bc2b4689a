//! What a generation is asked for and what it sends back: the engine's request and event
//! types, shared by the engine thread and the sequences it runs.

use std::sync::Arc;

use crate::engine::constraint::Constraint;
use crate::engine::sampler::SamplingParams;
use crate::error::CoreError;

/// A generation to run, already validated against the model by [`crate::EngineHandle::submit`].
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: Option<u32>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub top_logprobs: Option<u32>,
    /// What the output must match (JSON, schema, regex, grammar): tokens that cannot follow
    /// are masked out at every step.
    pub constraint: Option<Constraint>,
    /// The request this sequence belongs to (its n choices share it): admission is fair
    /// between groups. 0 for none.
    pub group: u64,
    /// Who asked, for the log: the engine's lines about this sequence name it (the server's
    /// request id), so one request can be followed from the HTTP edge into the engine.
    pub label: Arc<str>,
    /// Background work (a batch's request): admitted after live requests and to at most half
    /// of the running slots, and paused while a live prompt is read, so that live requests
    /// keep their time to first token.
    pub background: bool,
    /// A LoRA adapter over the model (a fine-tuned model's): its deltas are added to this
    /// sequence's rows, in a batch with any other sequences. Its keys and values differ from
    /// the base model's, so it neither reads nor feeds the prefix cache.
    pub adapter: Option<Arc<crate::models::lora::LoraWeights>>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

/// A sampled token's log-probability and the best alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// What a request receives from the engine.
#[derive(Debug)]
pub enum GenEvent {
    Delta {
        text: String,
        tokens: Vec<u32>,
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        /// Prompt tokens whose keys and values came from the prefix cache.
        cached_tokens: u32,
    },
    Failed(CoreError),
}
