#![doc = include_str!("../README.md")]
//!
//! This is the only crate that imports burn. Everything above it sees [`ModelRegistry`],
//! [`LoadedModel`] and [`EngineHandle`].

mod adapters;
mod diffusion;
mod embed;
mod engine;
mod error;
mod formats;
mod kernels;
mod models;
mod registry;

pub use adapters::AdapterModel;
pub use diffusion::clip::ClipText;
pub use diffusion::edit::{MAX_SOURCE_SIDE, SourceImage, first_step, resize_mask, resize_rgb};
pub use diffusion::engine::{
    ImageEvent, ImageHandle, ImageJob, MAX_IMAGES_PER_JOB, MAX_PARTIAL_IMAGES,
};
pub use diffusion::model::{ImageModelInfo, ImageSettings, LoadedImageModel};
pub use diffusion::pipeline::{ImageRequest, Picture, Pipeline, Step};
pub use diffusion::scheduler::{Kind as SchedulerKind, Scheduler, SchedulerConfig};
pub use diffusion::taesd::TinyDecoder;
pub use diffusion::tokenizer::ClipTokenizer;
pub use diffusion::train::{TrainSettings, Trainer};
pub use diffusion::unet::{UNet, UNetConfig};
pub use diffusion::unet_params::{Param as UNetParam, parameters as unet_parameters};
pub use diffusion::vae::VaeDecoder;
pub use diffusion::vae_encoder::VaeEncoder;
pub use embed::embedder::Embedder;
pub use embed::engine::EmbedHandle;
pub use engine::admission::EngineLimits;
pub use engine::constraint::{Constraint, Grammars, LazyGrammars, mask as constraint_mask};
pub use engine::grammar_budget::GrammarLimits;
pub use engine::request::{FinishReason, GenEvent, GenerateRequest, TokenLogprob};
pub use engine::sampler::{Rng, SamplingParams, argmax};
pub use engine::thread::EngineHandle;
pub use error::{CoreError, ModelKind, SamplingField};
pub use formats::ggml::GgmlType;
pub use formats::gguf::{self, Gguf};
pub use formats::summary::{ModelSummary, summarize};
pub use formats::template::{ChatTemplate, TemplateMessage};
pub use formats::tokenizer::{IncrementalDecoder, Tokenizer};
pub use kernels::pools::{Background, lower_priority, set_background};
pub use kernels::quant;
pub use models::backend::{BackendKind, BackendPreference};
pub use models::llama::LlamaConfig;
pub use models::lora::{
    LoraConfig, LoraPair, LoraTarget, LoraWeights, gguf_rows_to_hf, hf_rows_to_gguf, permutes_qk,
};
pub use models::lora_data::chat_example;
pub use models::lora_file::{from_bytes as lora_from_bytes, to_bytes as lora_to_bytes};
pub use models::lora_peft::{read_peft, write_peft};
pub use models::lora_train::{Example as TrainingExample, Gradients as LoraGradients, LoraTrainer};
pub use models::{KvCache, Llama};
pub use registry::{
    EmbedderInfo, LoadedEmbedder, LoadedModel, ModelInfo, ModelRegistry, ModelSpec,
};

/// With the `fault-injection` feature, a `stop` string equal to this panics in the per-token
/// path on a sequence's second token.
#[cfg(feature = "fault-injection")]
pub const FAULT_IN_TOKEN: &str = "\u{1}cinder-fault:token\u{1}";
/// With the `fault-injection` feature, a `stop` string equal to this panics while the engine
/// admits the sequence, outside any per-sequence guard: the engine loop restarts.
#[cfg(feature = "fault-injection")]
pub const FAULT_IN_ADMISSION: &str = "\u{1}cinder-fault:admit\u{1}";
