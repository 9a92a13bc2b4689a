//! What `cinder models inspect` shows of a GGUF file, read from its header and tensor table
//! alone (the file is mapped, no weights are read or loaded), of a Hugging Face chat model
//! folder (read as the GGUF it would convert to), or of a sentence-transformers folder, read
//! from its `config.json` and the header of its `model.safetensors`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::formats::tokenizer::{eog_ids, model_refusal, vocabulary};

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
    /// The template is Cinder's built-in one for the architecture (the file has none).
    pub template_built_in: bool,
    /// The ids that end a generation, with their text (when the tokenizer builds).
    pub stop_tokens: Vec<(u32, String)>,
    /// Why Cinder cannot serve it (each reason); empty when it can. A tensor type Cinder
    /// cannot read fails the summary itself, naming the type.
    pub cannot_serve: Vec<String>,
}

/// Reads the summary of the GGUF file (or sentence-transformers folder) at `path`.
pub fn summarize(path: &Path) -> Result<ModelSummary, CoreError> {
    if path.is_dir() && !super::hf::is_causal_lm(path) {
        return summarize_folder(path);
    }
    let gguf = Gguf::open(path)?;
    let architecture = gguf.get_str("general.architecture")?.to_owned();
    let arch_u64 = |key: &str| {
        gguf.get(&format!("{architecture}.{key}"))
            .and_then(|v| v.as_u64())
    };
    let mut cannot_serve: Vec<String> = crate::models::architecture_refusal(&architecture)
        .into_iter()
        .collect();
    match gguf.get("tokenizer.ggml.model").and_then(|v| v.as_str()) {
        Some(model) => cannot_serve.extend(model_refusal(model)),
        None => cannot_serve.push("the file has no tokenizer (tokenizer.ggml.model)".into()),
    }
    let mut tensor_types = BTreeMap::new();
    let mut parameters = 0u64;
    for t in gguf.tensors.values() {
        *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
        parameters += t.n_elements() as u64;
    }
    let own_template = gguf.get("tokenizer.chat_template").and_then(|v| v.as_str());
    let builtin_template = crate::formats::template::builtin(&architecture);
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
        file_bytes: model_bytes(path),
        chat_template: own_template.or(builtin_template).map(str::to_owned),
        template_built_in: own_template.is_none() && builtin_template.is_some(),
        stop_tokens: stop_tokens(&gguf),
        architecture,
        cannot_serve,
    })
}

/// The size of a model file, or of a Hugging Face folder's safetensors shards.
fn model_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    if !path.is_dir() {
        return size(path);
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .map(|p| size(&p))
            .sum()
    })
}

/// The end-of-generation ids and their texts, as the tokenizer would read them (without
/// building it); none when Cinder cannot build that tokenizer.
fn stop_tokens(gguf: &Gguf) -> Vec<(u32, String)> {
    let supported = gguf
        .get("tokenizer.ggml.model")
        .and_then(|v| v.as_str())
        .is_some_and(|m| model_refusal(m).is_none());
    let Some((tokens, types)) = supported.then(|| vocabulary(gguf).ok()).flatten() else {
        return Vec::new();
    };
    eog_ids(gguf, &tokens, &types)
        .into_iter()
        .map(|id| (id, tokens.get(id as usize).cloned().unwrap_or_default()))
        .collect()
}

/// A sentence-transformers folder: its encoder's `config.json`, the token limit of
/// `sentence_bert_config.json`, and parameter counts from the safetensors header (8 bytes of
/// length, then JSON), without reading the weights.
fn summarize_folder(dir: &Path) -> Result<ModelSummary, CoreError> {
    use std::io::Read;
    let weights = |e: std::io::Error| CoreError::Weights(format!("{}: {e}", dir.display()));
    let config = crate::models::bert::read_config(dir)?;
    let max_seq = std::fs::read(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["max_seq_length"].as_u64());
    let path = dir.join("model.safetensors");
    let mut file = std::fs::File::open(&path).map_err(weights)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(weights)?;
    let mut header = vec![0u8; u64::from_le_bytes(len).min(100 << 20) as usize];
    file.read_exact(&mut header).map_err(weights)?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
    let mut parameters: u64 = 0;
    let mut tensor_types = BTreeMap::new();
    for (name, t) in &header {
        if name == "__metadata__" {
            continue;
        }
        let shape = t["shape"].as_array().map_or(0, |s| {
            s.iter()
                .map(|d| d.as_u64().unwrap_or(0))
                .fold(1u64, u64::saturating_mul)
        });
        parameters = parameters.saturating_add(shape);
        let dtype = t["dtype"].as_str().unwrap_or("?").to_owned();
        *tensor_types.entry(dtype).or_insert(0) += 1;
    }
    let usize_u64 = |v: usize| Some(v as u64);
    Ok(ModelSummary {
        architecture: config.model_type.clone(),
        name: dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned()),
        context_length: max_seq.or(usize_u64(config.max_position_embeddings)),
        layers: usize_u64(config.num_hidden_layers),
        embedding: usize_u64(config.hidden_size),
        heads: usize_u64(config.num_attention_heads),
        kv_heads: usize_u64(config.num_attention_heads),
        vocab_size: config.vocab_size,
        parameters,
        tensor_types,
        file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
        chat_template: None,
        template_built_in: false,
        stop_tokens: Vec::new(),
        // The embedder read this config to get here; its weights are checked at load.
        cannot_serve: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with string metadata `kv` and one 1-D tensor of GGML type `ty` and 32
    /// elements.
    fn tiny_gguf(kv: &[(&str, &str)], ty: u32) -> std::path::PathBuf {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            string(&mut b, k);
            b.extend(8u32.to_le_bytes());
            string(&mut b, v);
        }
        string(&mut b, "t.weight");
        b.extend(1u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.resize(b.len().next_multiple_of(32) + 256, 0);
        let path = std::env::temp_dir().join(format!(
            "cinder-summary-{}-{ty}-{}.gguf",
            std::process::id(),
            kv.len()
        ));
        std::fs::write(&path, b).unwrap();
        path
    }

    #[test]
    fn a_model_cinder_cannot_serve_says_why() {
        let path = tiny_gguf(
            &[
                ("general.architecture", "qwen9"),
                ("tokenizer.ggml.model", "bert"),
            ],
            0,
        );
        let s = summarize(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(s.architecture, "qwen9");
        assert_eq!(s.tensor_types.get("F32"), Some(&1));
        assert_eq!(s.cannot_serve.len(), 2, "{:?}", s.cannot_serve);
        assert!(s.cannot_serve[0].contains("`qwen9`"));
        assert!(s.cannot_serve[1].contains("`bert`"));

        let path = tiny_gguf(&[("general.architecture", "llama")], 0);
        let s = summarize(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            s.cannot_serve,
            ["the file has no tokenizer (tokenizer.ggml.model)"]
        );
    }

    #[test]
    fn a_tensor_type_cinder_cannot_read_is_named_with_the_file() {
        let path = tiny_gguf(&[("general.architecture", "llama")], 16);
        let e = summarize(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("IQ2_XXS") && e.contains("t.weight"), "{e}");
        assert!(e.contains("cinder-summary-"), "{e}");
    }
}
