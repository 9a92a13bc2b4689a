//! The hyper-parameters of a Llama-family decoder (Llama 2/3, Gemma 3, Qwen 2/3, Phi-3) read
//! from GGUF metadata, and the RoPE angles both model paths (`cpu_llama.rs`, `burn_llama.rs`)
//! compute from them.

use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::models::arch::Variant;

/// Hyper-parameters read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub vocab_size: usize,
    pub context_length: usize,
    pub variant: Variant,
    /// Per-pair divisors of RoPE's frequencies (`rope_freqs.weight`: how GGUF carries Llama
    /// 3.1's long-context scaling).
    pub rope_freqs: Option<Vec<f32>>,
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self, CoreError> {
        let arch = g.get_str("general.architecture")?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_heads = g.get_u64(&key("attention.head_count"))? as usize;
        let dim = g.get_u64(&key("embedding_length"))? as usize;
        let vocab_size = g
            .tensor("token_embd.weight")?
            .dims
            .get(1)
            .copied()
            .unwrap_or(0) as usize;
        let n_layers = g.get_u64(&key("block_count"))? as usize;
        let variant = Variant::from_gguf(g, dim, n_heads, n_layers)?;
        // Gemma 3's heads are wider than `dim / heads`: GGUF says so in `key_length`.
        let head_dim = g
            .get_u64(&key("attention.key_length"))
            .map_or_else(|_| dim.checked_div(n_heads).unwrap_or(0), |v| v as usize);
        let config = LlamaConfig {
            n_layers,
            dim,
            ffn_dim: g.get_u64(&key("feed_forward_length"))? as usize,
            n_heads,
            n_kv_heads: g
                .get_u64(&key("attention.head_count_kv"))
                .unwrap_or(n_heads as u64) as usize,
            head_dim,
            rope_base: g.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rms_eps: g
                .get_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5) as f32,
            vocab_size,
            context_length: g.get_u64(&key("context_length"))? as usize,
            variant,
            rope_freqs: g.dequantize_if_present("rope_freqs.weight")?,
        };
        let value_length = g
            .get_u64(&key("attention.value_length"))
            .map_or(config.head_dim, |v| v as usize);
        // RoPE over part of each head (Phi-2, StableLM) is not built.
        let rotated = g
            .get_u64(&key("rope.dimension_count"))
            .map_or(config.head_dim, |v| v as usize);
        if rotated != config.head_dim {
            return Err(CoreError::Weights(format!(
                "RoPE over {rotated} of each head's {} dimensions is not supported yet",
                config.head_dim
            )));
        }
        if config.n_heads == 0
            || config.n_kv_heads == 0
            || !config.n_heads.is_multiple_of(config.n_kv_heads)
            || value_length != config.head_dim
            || (config.variant.architecture == "llama" && config.q_dim() != config.dim)
            || !config.head_dim.is_multiple_of(2)
            || config
                .rope_freqs
                .as_ref()
                .is_some_and(|f| f.len() != config.head_dim / 2)
            || config.vocab_size == 0
        {
            return Err(CoreError::Weights(format!(
                "inconsistent {arch} hyper-parameters: {config:?}"
            )));
        }
        Ok(config)
    }

    /// The width of all query heads together (`dim`, except where heads are wider).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// RoPE's angle for pair `i` at `pos` in a layer whose base is `base`; `linear` scales
    /// positions (global layers only). Computed in f64 so that both model paths and the
    /// reference implementations agree to the last bit f32 holds.
    pub(crate) fn rope_angle(&self, base: f32, linear: Option<f32>, i: usize, pos: usize) -> f64 {
        let mut freq = f64::from(base).powf(-2.0 * i as f64 / self.head_dim as f64);
        if let Some(f) = self.rope_freqs.as_ref().and_then(|f| f.get(i)) {
            freq /= f64::from(*f);
        }
        pos as f64 / f64::from(linear.unwrap_or(1.0)) * freq
    }
}

impl LlamaConfig {
    /// `[context, head_dim / 2]` RoPE rotation tables (cos, sin), row-major, for layers whose
    /// base is `base` and whose positions `linear` divides.
    pub(crate) fn rope_tables(&self, base: f32, linear: Option<f32>) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(self.context_length * half);
        let mut sin = Vec::with_capacity(self.context_length * half);
        for pos in 0..self.context_length {
            for i in 0..half {
                let angle = self.rope_angle(base, linear, i, pos);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }
}
