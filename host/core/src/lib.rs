//! Cinder's inference core: GGUF weights, the tokenizer, chat templates, the Llama
//! architecture (on burn for GPUs, in plain Rust on quantized weights for the CPU), sampling,
//! and one engine thread per model.
//!
//! This is the only crate that imports burn. Everything above it sees [`ModelRegistry`],
//! [`LoadedModel`] and [`EngineHandle`].

mod admission;
mod backend;
mod bert;
mod constraint;
mod cpu_bert;
mod cpu_llama;
mod embed_engine;
mod embedder;
mod engine;
mod error;
pub mod gguf;
mod grammar_budget;
mod kv_blocks;
mod llama;
mod llama_embed;
mod memory;
mod model;
pub mod quant;
mod registry;
mod sampler;
mod sequence;
mod stop;
mod summary;
mod template;
mod tokenizer;
mod vecmath;

pub use admission::EngineLimits;
pub use backend::{BackendKind, BackendPreference};
pub use constraint::{Constraint, Grammars, LazyGrammars, mask as constraint_mask};
pub use embed_engine::EmbedHandle;
pub use embedder::Embedder;
pub use engine::{EngineHandle, FinishReason, GenEvent, GenerateRequest, TokenLogprob};
pub use error::{CoreError, ModelKind, SamplingField};
pub use gguf::Gguf;
pub use grammar_budget::GrammarLimits;
pub use llama::LlamaConfig;
pub use model::{KvCache, Llama};
pub use registry::{
    EmbedderInfo, LoadedEmbedder, LoadedModel, ModelInfo, ModelRegistry, ModelSpec,
};
pub use sampler::{Rng, SamplingParams, argmax};
pub use summary::{ModelSummary, summarize};
pub use template::{ChatTemplate, TemplateMessage};
pub use tokenizer::{IncrementalDecoder, Tokenizer};

/// With the `fault-injection` feature, a `stop` string equal to this panics in the per-token
/// path on a sequence's second token.
#[cfg(feature = "fault-injection")]
pub const FAULT_IN_TOKEN: &str = "\u{1}cinder-fault:token\u{1}";
/// With the `fault-injection` feature, a `stop` string equal to this panics while the engine
/// admits the sequence, outside any per-sequence guard: the engine loop restarts.
#[cfg(feature = "fault-injection")]
pub const FAULT_IN_ADMISSION: &str = "\u{1}cinder-fault:admit\u{1}";
