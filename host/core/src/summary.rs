//! What `cinder models inspect` shows of a GGUF file, read from its header and tensor table
//! alone (the file is mapped, no weights are read or loaded).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::CoreError;
use crate::gguf::Gguf;

/// A model file at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// `general.architecture`, e.g. `llama`.
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// Context length in tokens.
    pub context_length: Option<u64>,
    pub layers: Option<u64>,
    pub embedding: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub vocab_size: usize,
    /// Total weights.
    pub parameters: u64,
    /// Tensor count per storage type (`Q4_1`, `F32`, ...): the quantization.
    pub tensor_types: BTreeMap<String, usize>,
    pub file_bytes: u64,
    /// The chat template embedded in the file.
    pub chat_template: Option<String>,
}

/// Reads the summary of the GGUF file at `path`.
pub fn summarize(path: &Path) -> Result<ModelSummary, CoreError> {
    let gguf = Gguf::open(path)?;
    let architecture = gguf.get_str("general.architecture")?.to_owned();
    let arch_u64 = |key: &str| {
        gguf.get(&format!("{architecture}.{key}"))
            .and_then(|v| v.as_u64())
    };
    let mut tensor_types = BTreeMap::new();
    let mut parameters = 0u64;
    for t in gguf.tensors.values() {
        *tensor_types.entry(format!("{:?}", t.ty)).or_insert(0) += 1;
        parameters += t.n_elements() as u64;
    }
    Ok(ModelSummary {
        name: gguf
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        context_length: arch_u64("context_length"),
        layers: arch_u64("block_count"),
        embedding: arch_u64("embedding_length"),
        heads: arch_u64("attention.head_count"),
        kv_heads: arch_u64("attention.head_count_kv"),
        vocab_size: gguf
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map_or(0, <[_]>::len),
        parameters,
        tensor_types,
        file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        chat_template: gguf
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        architecture,
    })
}
