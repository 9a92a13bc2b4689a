//! The Llama architecture (SmolLM2, Llama 2/3, Mistral-style GGUFs) on burn: RMSNorm, RoPE in
//! GGUF's interleaved-pair layout, grouped-query attention, SwiGLU, a tied or separate output
//! head, and a per-sequence KV cache kept apart from the weights.
//!
//! Weights are dequantized to f32 at load: this is the path for burn-wgpu (GPUs) and the
//! explicit `flex` backend; the CPU's fast path with quantized weights is `cpu_llama.rs`.
//! GGUF stores a `[in, out]` matrix with `in` innermost, i.e. row-major `[out, in]`; linear
//! layers compute `x · Wᵀ` on that layout directly.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

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
    /// `[context, head_dim / 2]` RoPE rotation tables (cos, sin), row-major; both model paths
    /// use these.
    pub(crate) fn rope_tables(&self) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(self.context_length * half);
        let mut sin = Vec::with_capacity(self.context_length * half);
        for pos in 0..self.context_length {
            for i in 0..half {
                let angle = self.rope_angle(self.rope_base, self.variant.rope_linear, i, pos);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }
}

struct Layer {
    attn_norm: Tensor<1>,
    wq: Tensor<2>,
    wk: Tensor<2>,
    wv: Tensor<2>,
    wo: Tensor<2>,
    ffn_norm: Tensor<1>,
    w_gate: Tensor<2>,
    w_up: Tensor<2>,
    w_down: Tensor<2>,
}

/// A loaded Llama model on a burn device: weights on it, no per-sequence state.
pub struct BurnLlama {
    config: LlamaConfig,
    device: Device,
    embed: Tensor<2>,
    layers: Vec<Layer>,
    out_norm: Tensor<1>,
    /// `[vocab, dim]`; the same tensor as `embed` when the head is tied.
    lm_head: Tensor<2>,
    /// `[context, head_dim / 2]` rotation tables.
    rope_cos: Tensor<2>,
    rope_sin: Tensor<2>,
}

/// The keys and values one sequence has seen, per layer: `[n_kv_heads, len, head_dim]`.
pub struct BurnCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    len: usize,
}

impl BurnCache {
    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn load_matrix(g: &Gguf, name: &str, device: &Device) -> Result<Tensor<2>, CoreError> {
    let info = g.tensor(name)?;
    let [cols, rows] = match info.dims[..] {
        [c, r] => [c as usize, r as usize],
        _ => return Err(CoreError::Weights(format!("tensor {name} is not a matrix"))),
    };
    let data = g.dequantize(name)?;
    Ok(Tensor::from_data(
        TensorData::new(data, [rows, cols]),
        device,
    ))
}

fn load_vector(g: &Gguf, name: &str, device: &Device) -> Result<Tensor<1>, CoreError> {
    let data = g.dequantize(name)?;
    let n = data.len();
    Ok(Tensor::from_data(TensorData::new(data, [n]), device))
}

fn rope_tables(config: &LlamaConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let (cos, sin) = config.rope_tables();
    let shape = [config.context_length, config.head_dim / 2];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

impl BurnLlama {
    /// Loads every tensor from `g` onto `device`; `progress(done, total)` is called per tensor.
    fn from_gguf(
        g: &Gguf,
        device: &Device,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self, CoreError> {
        let config = LlamaConfig::from_gguf(g)?;
        let total = config.n_layers * 9 + 3;
        let mut done = 0;
        let mut step = |done: &mut usize| {
            *done += 1;
            progress(*done, total);
        };
        let embed = load_matrix(g, "token_embd.weight", device)?;
        step(&mut done);
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let mut m = |suffix: &str| {
                let t = load_matrix(g, &format!("blk.{i}.{suffix}.weight"), device);
                step(&mut done);
                t
            };
            let (wq, wk, wv, wo) = (m("attn_q")?, m("attn_k")?, m("attn_v")?, m("attn_output")?);
            let (w_gate, w_up, w_down) = (m("ffn_gate")?, m("ffn_up")?, m("ffn_down")?);
            let attn_norm = load_vector(g, &format!("blk.{i}.attn_norm.weight"), device)?;
            let ffn_norm = load_vector(g, &format!("blk.{i}.ffn_norm.weight"), device)?;
            step(&mut done);
            step(&mut done);
            layers.push(Layer {
                attn_norm,
                wq,
                wk,
                wv,
                wo,
                ffn_norm,
                w_gate,
                w_up,
                w_down,
            });
        }
        let out_norm = load_vector(g, "output_norm.weight", device)?;
        step(&mut done);
        let lm_head = if g.tensors.contains_key("output.weight") {
            load_matrix(g, "output.weight", device)?
        } else {
            embed.clone()
        };
        step(&mut done);
        let (rope_cos, rope_sin) = rope_tables(&config, device);
        Ok(BurnLlama {
            config,
            device: device.clone(),
            embed,
            layers,
            out_norm,
            lm_head,
            rope_cos,
            rope_sin,
        })
    }

    /// Loads onto `device`.
    pub fn load(
        g: &Gguf,
        device: &Device,
        progress: impl FnMut(usize, usize),
    ) -> Result<Self, CoreError> {
        Self::from_gguf(g, device, progress)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn new_cache(&self) -> BurnCache {
        BurnCache {
            layers: (0..self.config.n_layers).map(|_| None).collect(),
            len: 0,
        }
    }

    fn rms_norm(&self, x: Tensor<2>, weight: &Tensor<1>) -> Tensor<2> {
        let scale = x
            .clone()
            .powf_scalar(2.0)
            .mean_dim(1)
            .add_scalar(self.config.rms_eps)
            .sqrt()
            .recip();
        x * scale * weight.clone().unsqueeze::<2>()
    }

    /// Rotates pairs `(2i, 2i+1)` of `x: [heads, t, head_dim]` by position-dependent angles.
    fn rope(&self, x: Tensor<3>, offset: usize) -> Tensor<3> {
        let [heads, t, hd] = x.dims();
        let half = hd / 2;
        let cos = self
            .rope_cos
            .clone()
            .slice([offset..offset + t, 0..half])
            .unsqueeze::<3>();
        let sin = self
            .rope_sin
            .clone()
            .slice([offset..offset + t, 0..half])
            .unsqueeze::<3>();
        let pairs = x.reshape([heads, t, half, 2]);
        let x0 = pairs
            .clone()
            .slice([0..heads, 0..t, 0..half, 0..1])
            .reshape([heads, t, half]);
        let x1 = pairs
            .slice([0..heads, 0..t, 0..half, 1..2])
            .reshape([heads, t, half]);
        let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
        let r1 = x0 * sin + x1 * cos;
        Tensor::stack::<4>(vec![r0, r1], 3).reshape([heads, t, hd])
    }

    /// `[kv_heads, len, hd]` -> `[heads, len, hd]`: each group of query heads shares a KV head.
    fn repeat_kv(&self, x: Tensor<3>) -> Tensor<3> {
        let groups = self.config.n_heads / self.config.n_kv_heads;
        if groups == 1 {
            return x;
        }
        let [kv, len, hd] = x.dims();
        x.reshape([kv, 1, len, hd])
            .expand([kv, groups, len, hd])
            .reshape([kv * groups, len, hd])
    }

    /// Runs `tokens` (the next positions of the sequence in `cache`) through the model and
    /// returns the logits of the last position.
    pub fn forward(&self, tokens: &[u32], cache: &mut BurnCache) -> Result<Vec<f32>, CoreError> {
        let x = self.hidden(tokens, cache)?;
        let t = tokens.len();
        self.head(x.slice([t - 1..t, 0..self.config.dim]))
    }

    /// Like [`BurnLlama::forward`], but returns the logits of every position, row after row
    /// (`tokens.len() × vocab`): what scoring a prompt needs.
    pub fn forward_all(
        &self,
        tokens: &[u32],
        cache: &mut BurnCache,
    ) -> Result<Vec<f32>, CoreError> {
        let x = self.hidden(tokens, cache)?;
        self.head(x)
    }

    /// Every token's hidden state after the final norm, row after row
    /// (`tokens.len() × dim`).
    pub fn forward_normed(
        &self,
        tokens: &[u32],
        cache: &mut BurnCache,
    ) -> Result<Vec<f32>, CoreError> {
        let x = self.hidden(tokens, cache)?;
        self.rms_norm(x, &self.out_norm)
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading hidden states: {e:?}")))
    }

    /// Final norm and output head over `[rows, dim]` hidden states.
    fn head(&self, x: Tensor<2>) -> Result<Vec<f32>, CoreError> {
        self.rms_norm(x, &self.out_norm)
            .matmul(self.lm_head.clone().transpose())
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading logits: {e:?}")))
    }

    /// The hidden states after the last layer, one row per token.
    fn hidden(&self, tokens: &[u32], cache: &mut BurnCache) -> Result<Tensor<2>, CoreError> {
        let c = &self.config;
        let t = tokens.len();
        let offset = cache.len;
        if t == 0 || offset + t > c.context_length {
            return Err(CoreError::ContextOverflow {
                tokens: offset + t,
                limit: c.context_length,
            });
        }
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [t]), &self.device);
        let mut x = self.embed.clone().select(0, ids);
        let mask = (t > 1).then(|| self.causal_mask(t, offset));
        let scale = 1.0 / (c.head_dim as f64).sqrt();

        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = self.rms_norm(x.clone(), &layer.attn_norm);
            let heads = |w: &Tensor<2>, n: usize| {
                h.clone()
                    .matmul(w.clone().transpose())
                    .reshape([t, n, c.head_dim])
                    .swap_dims(0, 1)
            };
            let q = self.rope(heads(&layer.wq, c.n_heads), offset);
            let k = self.rope(heads(&layer.wk, c.n_kv_heads), offset);
            let v = heads(&layer.wv, c.n_kv_heads);
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));

            let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
            if let Some(mask) = &mask {
                scores = scores + mask.clone();
            }
            let attn = softmax(scores, 2)
                .matmul(v)
                .swap_dims(0, 1)
                .reshape([t, c.dim]);
            x = x + attn.matmul(layer.wo.clone().transpose());

            let h = self.rms_norm(x.clone(), &layer.ffn_norm);
            let gate = silu(h.clone().matmul(layer.w_gate.clone().transpose()));
            let up = h.matmul(layer.w_up.clone().transpose());
            x = x + (gate * up).matmul(layer.w_down.clone().transpose());
        }
        cache.len += t;
        Ok(x)
    }

    /// `[1, t, offset + t]`: 0 where query `i` may see key `j`, a large negative number where not.
    fn causal_mask(&self, t: usize, offset: usize) -> Tensor<3> {
        let total = offset + t;
        let mut m = vec![0f32; t * total];
        for i in 0..t {
            for j in (offset + i + 1)..total {
                m[i * total + j] = -1e9;
            }
        }
        Tensor::from_data(TensorData::new(m, [1, t, total]), &self.device)
    }
}
