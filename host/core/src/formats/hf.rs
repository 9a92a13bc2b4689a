//! Hugging Face model folders (`config.json`, `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`) read as the GGUF
//! llama.cpp's `convert_hf_to_gguf.py` would make of them: the same metadata keys, tensor names
//! and layouts. The rest of the core then serves a folder exactly as it serves a file, and a
//! folder and its converted GGUF give the same logits. f32, f16 and bf16 tensors stay in the
//! memory-mapped shards; the few the converter changes (Llama's q and k rows, Gemma's norms)
//! are rewritten at load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value as Json;

use super::ggml::GgmlType;
use super::gguf::{Bytes, Gguf, Source, TensorInfo, Value};
use super::hf_vocab;
use crate::error::CoreError;

/// `config.json`'s `architectures[0]` Cinder reads, and the GGUF architecture each becomes.
const ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
    ("Gemma3ForCausalLM", "gemma3"),
    ("Phi3ForCausalLM", "phi3"),
];

/// Tensors checkpoints carry that a converted GGUF does not (RoPE tables the model
/// recomputes).
const SKIPPED: &[&str] = &["rotary_emb.inv_freq"];

fn weights(dir: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::Weights(format!("{}: {why}", dir.display()))
}

pub(crate) fn read_json(path: &Path) -> Result<Json, CoreError> {
    let bytes =
        std::fs::read(path).map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))
}

/// Whether `dir` holds a causal language model (a chat model) in Hugging Face's layout, as
/// opposed to a sentence-transformers folder.
pub(crate) fn is_causal_lm(dir: &Path) -> bool {
    read_json(&dir.join("config.json")).is_ok_and(|c| {
        c["architectures"].as_array().is_some_and(|a| {
            a.iter()
                .any(|n| n.as_str().is_some_and(|n| n.ends_with("ForCausalLM")))
        })
    })
}

/// The folder `dir` as a GGUF.
pub(crate) fn open(dir: &Path) -> Result<Gguf, CoreError> {
    let config = read_json(&dir.join("config.json"))?;
    let named = config["architectures"][0].as_str().unwrap_or_default();
    let Some(&(_, arch)) = ARCHITECTURES.iter().find(|(hf, _)| *hf == named) else {
        return Err(weights(
            dir,
            format!(
                "config.json names the architecture `{named}`; Cinder reads {} folders",
                ARCHITECTURES
                    .iter()
                    .map(|(hf, _)| *hf)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let h = Hyper::read(dir, &config)?;
    let mut metadata = h.metadata(arch, dir);
    hf_vocab::read(dir, &config, h.vocab_size, &mut metadata)?;

    let (mut sources, found) = shards(dir)?;
    let mut tensors = HashMap::new();
    for (hf_name, t) in found {
        if SKIPPED.iter().any(|s| hf_name.ends_with(s)) {
            continue;
        }
        let Some(name) = gguf_name(arch, &hf_name) else {
            return Err(weights(
                dir,
                format!("tensor `{hf_name}` is not one a {named} model has"),
            ));
        };
        let info = TensorInfo {
            name: name.clone(),
            ..t
        };
        let rewritten = rewrite(arch, &h, &info, &sources)?;
        let info = match rewritten {
            Some((ty, bytes)) => {
                sources.push(Source {
                    bytes: Bytes::Owned(bytes),
                    data_start: 0,
                });
                TensorInfo {
                    ty,
                    offset: 0,
                    source: sources.len() - 1,
                    ..info
                }
            }
            None => info,
        };
        tensors.insert(name, info);
    }
    if let Some(freqs) = h.llama3_rope_factors() {
        let bytes = freqs.iter().flat_map(|f| f.to_le_bytes()).collect();
        sources.push(Source {
            bytes: Bytes::Owned(bytes),
            data_start: 0,
        });
        let name = "rope_freqs.weight".to_owned();
        tensors.insert(
            name.clone(),
            TensorInfo {
                name,
                dims: vec![freqs.len() as u64],
                ty: GgmlType::F32,
                offset: 0,
                source: sources.len() - 1,
            },
        );
    }
    Gguf::from_parts(sources, metadata, tensors).map_err(|e| weights(dir, e))
}

/// The hyper-parameters `config.json` gives.
struct Hyper {
    layers: u64,
    dim: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: Option<u64>,
    config: Json,
    vocab_size: Option<u64>,
}

impl Hyper {
    fn read(dir: &Path, config: &Json) -> Result<Self, CoreError> {
        let num = |key: &str| {
            config[key]
                .as_u64()
                .ok_or_else(|| weights(dir, format!("config.json has no `{key}`")))
        };
        let heads = num("num_attention_heads")?;
        Ok(Hyper {
            layers: num("num_hidden_layers")?,
            dim: num("hidden_size")?,
            heads,
            kv_heads: config["num_key_value_heads"].as_u64().unwrap_or(heads),
            head_dim: config["head_dim"].as_u64(),
            vocab_size: config["vocab_size"].as_u64(),
            config: config.clone(),
        })
    }

    fn head_dim(&self) -> u64 {
        self.head_dim
            .unwrap_or_else(|| self.dim.checked_div(self.heads).unwrap_or(0))
    }

    fn rope_scaling(&self) -> (&str, &Json) {
        let s = &self.config["rope_scaling"];
        let kind = s["rope_type"]
            .as_str()
            .or(s["type"].as_str())
            .unwrap_or("none");
        (kind, s)
    }

    /// The GGUF metadata of the hyper-parameters, under `arch`'s keys.
    fn metadata(&self, arch: &str, dir: &Path) -> HashMap<String, Value> {
        let c = &self.config;
        let mut m = HashMap::new();
        let key = |k: &str| format!("{arch}.{k}");
        m.insert("general.architecture".into(), Value::String(arch.into()));
        if let Some(name) = dir.file_name() {
            let name = name.to_string_lossy().into_owned();
            m.insert("general.name".into(), Value::String(name));
        }
        let mut int = |k: &str, v: Option<u64>| {
            if let Some(v) = v {
                m.insert(key(k), Value::U64(v));
            }
        };
        int("block_count", Some(self.layers));
        int("embedding_length", Some(self.dim));
        int("feed_forward_length", c["intermediate_size"].as_u64());
        int("context_length", c["max_position_embeddings"].as_u64());
        int("attention.head_count", Some(self.heads));
        int("attention.head_count_kv", Some(self.kv_heads));
        int("attention.key_length", self.head_dim);
        int("attention.value_length", self.head_dim);
        int("vocab_size", self.vocab_size);
        if arch == "gemma3" {
            int("attention.sliding_window", c["sliding_window"].as_u64());
        }
        let mut float = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(key(k), Value::F64(v));
            }
        };
        float(
            "attention.layer_norm_rms_epsilon",
            c["rms_norm_eps"].as_f64(),
        );
        let default_base = if arch == "gemma3" {
            1_000_000.0
        } else {
            10_000.0
        };
        float(
            "rope.freq_base",
            Some(c["rope_theta"].as_f64().unwrap_or(default_base)),
        );
        if arch == "gemma3" {
            float(
                "final_logit_softcapping",
                c["final_logit_softcapping"].as_f64(),
            );
            float("rope.freq_base_swa", c["rope_local_base_freq"].as_f64());
        }
        let (kind, scaling) = self.rope_scaling();
        match kind {
            "none" | "default" | "llama3" => {}
            other => {
                m.insert(key("rope.scaling.type"), Value::String(other.into()));
                if let Some(f) = scaling["factor"].as_f64() {
                    m.insert(key("rope.scaling.factor"), Value::F64(f));
                }
            }
        }
        if arch == "gemma3" {
            // Which layers are local: `layer_types` where given, else the period.
            if let Some(types) = c["layer_types"].as_array() {
                let local = types
                    .iter()
                    .map(|t| Value::Bool(t.as_str() == Some("sliding_attention")))
                    .collect();
                m.insert(key("attention.sliding_window_pattern"), Value::Array(local));
            } else if let Some(p) = c["sliding_window_pattern"].as_u64() {
                m.insert(key("attention.sliding_window_pattern"), Value::U64(p));
            }
        }
        m
    }

    /// Llama 3.1's long-context RoPE as its converter writes it (`rope_freqs.weight`): a
    /// divisor per pair of dimensions, from `rope_scaling`.
    fn llama3_rope_factors(&self) -> Option<Vec<f32>> {
        let (kind, s) = self.rope_scaling();
        if kind != "llama3" {
            return None;
        }
        let dim = self.head_dim();
        // A head wider than any model's is a damaged config (LlamaConfig refuses it).
        if dim > 1 << 16 {
            return None;
        }
        let num = |v: &Json, default: f64| v.as_f64().unwrap_or(default) as f32;
        let base = num(&self.config["rope_theta"], 10_000.0);
        let factor = num(&s["factor"], 8.0);
        let low = num(&s["low_freq_factor"], 1.0);
        let high = num(&s["high_freq_factor"], 4.0);
        // Inside `rope_scaling` in Llama 3.1's config; at the top level in some others.
        let old = s["original_max_position_embeddings"]
            .as_f64()
            .or(self.config["original_max_position_embeddings"].as_f64())
            .unwrap_or(8192.0) as f32;
        let (low_wavelen, high_wavelen) = (old / low, old / high);
        // In f32 throughout, as the converter computes it (torch float32).
        let factors = (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / base.powf((2 * i) as f32 / dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect();
        Some(factors)
    }
}

/// The GGUF name of the Hugging Face tensor `hf` of an `arch` model.
fn gguf_name(arch: &str, hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if !matches!(kind, "weight" | "bias") {
        return None;
    }
    let gemma = arch == "gemma3";
    let name = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if gemma => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" if gemma => "ffn_norm",
        "post_feedforward_layernorm" if gemma => "post_ffw_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.gate_up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}.{kind}"))
}

/// The tensor as the converter would write it, where it differs from the checkpoint: Llama's
/// q and k rows permuted from the halves layout of Hugging Face's RoPE to GGUF's pairs
/// (llama.cpp's `LlamaModel.permute`), Gemma's norm weights `w` stored as `1 + w`.
fn rewrite(
    arch: &str,
    h: &Hyper,
    t: &TensorInfo,
    sources: &[Source],
) -> Result<Option<(GgmlType, Vec<u8>)>, CoreError> {
    let source = &sources[t.source];
    let start = source.data_start + t.offset as usize;
    let bytes = source
        .bytes
        .get(start..start + t.n_bytes())
        .ok_or_else(|| CoreError::Weights(format!("tensor {} lies outside its file", t.name)))?;
    if arch == "gemma3" && t.name.ends_with("norm.weight") {
        let mut values = vec![0f32; t.n_elements()];
        super::ggml::dequantize_into(t.ty, bytes, &mut values);
        let out = values
            .iter()
            .flat_map(|v| (1.0 + v).to_le_bytes())
            .collect();
        return Ok(Some((GgmlType::F32, out)));
    }
    let heads = if t.name.contains(".attn_q.") {
        h.heads
    } else if t.name.contains(".attn_k.") {
        h.kv_heads
    } else {
        return Ok(None);
    };
    if arch != "llama" {
        return Ok(None);
    }
    // Rows are the outer dimension: a matrix's second, a bias's only one.
    let rows = t.dims.last().copied().unwrap_or(1) as usize;
    let heads = heads as usize;
    let whole = heads.checked_mul(2).is_some_and(|h| rows.is_multiple_of(h));
    if heads == 0 || rows == 0 || !whole {
        return Err(CoreError::Weights(format!(
            "tensor {} has {rows} rows, not a whole number of heads",
            t.name
        )));
    }
    let row_bytes = bytes.len() / rows;
    let (head_rows, half) = (rows / heads, rows / heads / 2);
    let mut out = vec![0u8; bytes.len()];
    // GGUF row h·d + 2i + j is Hugging Face row h·d + j·d/2 + i.
    for head in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let to = head * head_rows + 2 * i + j;
                let from = head * head_rows + j * half + i;
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&bytes[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    Ok(Some((t.ty, out)))
}

/// Tensors by their Hugging Face names.
type Named = Vec<(String, TensorInfo)>;

/// The safetensors shards of `dir`, memory-mapped, and every tensor in them by its Hugging
/// Face name (GGML dims: the checkpoint's shape reversed).
fn shards(dir: &Path) -> Result<(Vec<Source>, Named), CoreError> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let index = read_json(&index)?;
        let mut names: Vec<&str> = index["weight_map"]
            .as_object()
            .ok_or_else(|| weights(dir, "model.safetensors.index.json has no weight_map"))?
            .values()
            .filter_map(Json::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        // Shard names come from the file: nothing outside the folder is opened (a bare
        // file name, on any platform).
        let bare = |n: &str| {
            let mut parts = Path::new(n).components();
            matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            ) && !n.contains(['/', '\\'])
                && !n.starts_with('.')
        };
        if let Some(bad) = names.iter().find(|n| !bare(n)) {
            return Err(weights(dir, format!("the index names the shard `{bad}`")));
        }
        names.iter().map(|n| dir.join(n)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut sources = Vec::with_capacity(files.len());
    let mut tensors = Vec::new();
    for (n, path) in files.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(|e| weights(path, e))?;
        // SAFETY: read-only map of a model file that is not modified while served (as
        // for GGUF files).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| weights(path, e))?;
        let (header, meta) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| weights(path, e))?;
        for (name, info) in meta.tensors() {
            let ty = match info.dtype {
                safetensors::Dtype::F32 => GgmlType::F32,
                safetensors::Dtype::F16 => GgmlType::F16,
                safetensors::Dtype::BF16 => GgmlType::BF16,
                other => {
                    return Err(weights(
                        path,
                        format!("tensor `{name}` is {other:?}; Cinder reads f32, f16 and bf16"),
                    ));
                }
            };
            tensors.push((
                name.clone(),
                TensorInfo {
                    name,
                    dims: info.shape.iter().rev().map(|&d| d as u64).collect(),
                    ty,
                    offset: info.data_offsets.0 as u64,
                    source: n,
                },
            ));
        }
        sources.push(Source {
            bytes: Bytes::Map(map),
            data_start: 8 + header,
        });
    }
    Ok((sources, tensors))
}
