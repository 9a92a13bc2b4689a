//! Every Llama-family decoder (Llama 2/3, Gemma 3, Qwen 2/3, Phi-3) on burn: RMSNorm, RoPE in
//! either layout, grouped-query attention with the variant's extras (q/k/v biases, per-head
//! q/k norms, sliding-window layers with their own RoPE base, norms after attention and the
//! feed-forward), SwiGLU or GeGLU, a tied or separate head with optional soft-capping, and a
//! per-sequence KV cache kept apart from the weights: the same forward as `cpu_llama.rs`, in
//! tensors.
//!
//! Weights are dequantized to f32 at load: this is the path for burn-wgpu (GPUs) and the
//! explicit `flex` backend; the CPU's fast path with quantized weights is `cpu_llama.rs`.
//! GGUF stores a `[in, out]` matrix with `in` innermost, i.e. row-major `[out, in]`; linear
//! layers compute `x · Wᵀ` on that layout directly.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::kernels::pools::pause_for_live;
use crate::models::arch::{Activation, RopeLayout};
use crate::models::llama::LlamaConfig;
use crate::models::lora::{LoraTarget, LoraTensors, LoraWeights};

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
    /// Biases of q, k, v and the attention output, where the file has them (Qwen 2).
    biases: [Option<Tensor<1>>; 4],
    /// Per-head RMSNorm weights of queries and keys (Gemma 3, Qwen 3).
    qk_norm: Option<(Tensor<1>, Tensor<1>)>,
    /// RMSNorm weights after attention and after the feed-forward (Gemma).
    post_norms: Option<(Tensor<1>, Tensor<1>)>,
}

/// RoPE's `[context, head_dim / 2]` cos and sin tables for one kind of layer.
struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// A loaded model on a burn device: weights on it, no per-sequence state.
pub struct BurnLlama {
    config: LlamaConfig,
    device: Device,
    embed: Tensor<2>,
    layers: Vec<Layer>,
    out_norm: Tensor<1>,
    /// `[vocab, dim]`; the same tensor as `embed` when the head is tied.
    lm_head: Tensor<2>,
    /// The global layers' rotation, and the windowed layers' where they have their own base.
    rope: Rope,
    local_rope: Option<Rope>,
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

/// Rows `from..from + n` of a matrix, or an error naming it when it has fewer.
fn rows_of(t: &Tensor<2>, name: &str, from: usize, n: usize) -> Result<Tensor<2>, CoreError> {
    let [rows, cols] = t.dims();
    if from + n > rows {
        return Err(CoreError::Weights(format!(
            "{name} has {rows} rows, not the {} its hyper-parameters need",
            from + n
        )));
    }
    Ok(t.clone().slice([from..from + n, 0..cols]))
}

impl Rope {
    fn new(config: &LlamaConfig, base: f32, linear: Option<f32>, device: &Device) -> Self {
        let (cos, sin) = config.rope_tables(base, linear);
        let shape = [config.context_length, config.head_dim / 2];
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}

impl BurnLlama {
    /// Loads every tensor from `g` onto `device`; `progress(done, total)` is called per layer.
    pub fn load(
        g: &Gguf,
        device: &Device,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self, CoreError> {
        let config = LlamaConfig::from_gguf(g)?;
        let total = config.n_layers + 2;
        let embed = load_matrix(g, "token_embd.weight", device)?;
        progress(1, total);
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            layers.push(Self::layer(g, &config, i, device)?);
            progress(i + 2, total);
        }
        let out_norm = load_vector(g, "output_norm.weight", device)?;
        let lm_head = match g.tensors.contains_key("output.weight") {
            true => load_matrix(g, "output.weight", device)?,
            false => embed.clone(),
        };
        progress(total, total);
        let rope = Rope::new(
            &config,
            config.rope_base,
            config.variant.rope_linear,
            device,
        );
        let local_rope = config
            .variant
            .sliding_window
            .as_ref()
            .map(|w| Rope::new(&config, w.local_rope_base, None, device));
        Ok(BurnLlama {
            config,
            device: device.clone(),
            embed,
            layers,
            out_norm,
            lm_head,
            rope,
            local_rope,
        })
    }

    /// Layer `i`'s weights: q, k, v separate or rows of one fused `attn_qkv`, gate and up
    /// separate or the two halves of `ffn_up` (Phi-3: the gate first), and the variant's
    /// extra vectors.
    fn layer(g: &Gguf, c: &LlamaConfig, i: usize, device: &Device) -> Result<Layer, CoreError> {
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        let m = |s: &str| load_matrix(g, &name(s), device);
        let v = |s: &str| load_vector(g, &name(s), device);
        let [wq, wk, wv] = match g.tensors.contains_key(&name("attn_qkv")) {
            false => [m("attn_q")?, m("attn_k")?, m("attn_v")?],
            true => {
                let (fused, n) = (m("attn_qkv")?, name("attn_qkv"));
                let kv = c.n_kv_heads * c.head_dim;
                [
                    rows_of(&fused, &n, 0, c.q_dim())?,
                    rows_of(&fused, &n, c.q_dim(), kv)?,
                    rows_of(&fused, &n, c.q_dim() + kv, kv)?,
                ]
            }
        };
        let [w_gate, w_up] = match g.tensors.contains_key(&name("ffn_gate")) {
            true => [m("ffn_gate")?, m("ffn_up")?],
            false => {
                let (fused, n) = (m("ffn_up")?, name("ffn_up"));
                [
                    rows_of(&fused, &n, 0, c.ffn_dim)?,
                    rows_of(&fused, &n, c.ffn_dim, c.ffn_dim)?,
                ]
            }
        };
        let bias = |s: &str| -> Result<Option<Tensor<1>>, CoreError> {
            Ok(g.dequantize_if_present(&format!("blk.{i}.{s}.bias"))?
                .map(|b| {
                    let n = b.len();
                    Tensor::from_data(TensorData::new(b, [n]), device)
                }))
        };
        Ok(Layer {
            attn_norm: v("attn_norm")?,
            wq,
            wk,
            wv,
            wo: m("attn_output")?,
            ffn_norm: v("ffn_norm")?,
            w_gate,
            w_up,
            w_down: m("ffn_down")?,
            biases: [
                bias("attn_q")?,
                bias("attn_k")?,
                bias("attn_v")?,
                bias("attn_output")?,
            ],
            qk_norm: match c.variant.qk_norm {
                true => Some((v("attn_q_norm")?, v("attn_k_norm")?)),
                false => None,
            },
            post_norms: match c.variant.post_norms {
                true => Some((v("post_attention_norm")?, v("post_ffw_norm")?)),
                false => None,
            },
        })
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

    /// [`BurnLlama::rms_norm`] over each head of `x: [heads, t, head_dim]`.
    fn head_norm(&self, x: Tensor<3>, weight: &Tensor<1>) -> Tensor<3> {
        let [heads, t, hd] = x.dims();
        self.rms_norm(x.reshape([heads * t, hd]), weight)
            .reshape([heads, t, hd])
    }

    /// Rotates the pairs of each head of `x: [heads, t, head_dim]` (`(2i, 2i+1)` or
    /// `(i, i + head_dim/2)` by the variant's layout) by the angles of positions
    /// `offset..offset + t`.
    fn rope(&self, x: Tensor<3>, offset: usize, rope: &Rope) -> Tensor<3> {
        let [heads, t, hd] = x.dims();
        let half = hd / 2;
        let table = |m: &Tensor<2>| {
            m.clone()
                .slice([offset..offset + t, 0..half])
                .unsqueeze::<3>()
        };
        let (cos, sin) = (table(&rope.cos), table(&rope.sin));
        match self.config.variant.rope {
            RopeLayout::Pairs => {
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
            RopeLayout::Halves => {
                let x0 = x.clone().slice([0..heads, 0..t, 0..half]);
                let x1 = x.slice([0..heads, 0..t, half..hd]);
                let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
                let r1 = x0 * sin + x1 * cos;
                Tensor::cat(vec![r0, r1], 2)
            }
        }
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

    /// [`BurnLlama::forward`] with a LoRA adapter on the projections it sits on.
    pub fn forward_adapted(
        &self,
        tokens: &[u32],
        cache: &mut BurnCache,
        adapter: Option<&LoraWeights>,
    ) -> Result<Vec<f32>, CoreError> {
        let tensors = adapter.map(|a| LoraTensors::new(a, &self.config, &self.device, false));
        let x = self.hidden_with(tokens, cache, tensors.as_ref())?;
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

    /// Final norm and output head over `[rows, dim]` hidden states, soft-capped where the
    /// variant says.
    fn head(&self, x: Tensor<2>) -> Result<Vec<f32>, CoreError> {
        self.head_tensor(x)
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading logits: {e:?}")))
    }

    fn head_tensor(&self, x: Tensor<2>) -> Tensor<2> {
        let mut logits = self
            .rms_norm(x, &self.out_norm)
            .matmul(self.lm_head.clone().transpose());
        if let Some(cap) = self.config.variant.final_softcap {
            logits = logits.div_scalar(cap).tanh().mul_scalar(cap);
        }
        logits
    }

    /// Every position's logits (`[tokens, vocab]`) of a whole sequence, `adapter` applied:
    /// a tensor, so that on an autodiff device the graph to the adapter's leaves is kept.
    pub(crate) fn logits_with(
        &self,
        tokens: &[u32],
        adapter: Option<&LoraTensors>,
    ) -> Result<Tensor<2>, CoreError> {
        let mut cache = self.new_cache();
        let x = self.hidden_with(tokens, &mut cache, adapter)?;
        Ok(self.head_tensor(x))
    }

    /// The hidden states after the last layer, one row per token.
    fn hidden(&self, tokens: &[u32], cache: &mut BurnCache) -> Result<Tensor<2>, CoreError> {
        self.hidden_with(tokens, cache, None)
    }

    /// [`BurnLlama::hidden`] with an adapter's deltas added to the projections it sits on.
    fn hidden_with(
        &self,
        tokens: &[u32],
        cache: &mut BurnCache,
        adapter: Option<&LoraTensors>,
    ) -> Result<Tensor<2>, CoreError> {
        let c = &self.config;
        let t = tokens.len();
        let offset = cache.len;
        if t == 0 || offset + t > c.context_length {
            return Err(CoreError::ContextOverflow {
                tokens: offset + t,
                limit: c.context_length,
            });
        }
        if let Some(&token) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(CoreError::OutOfVocabulary { token });
        }
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [t]), &self.device);
        let mut x = self.embed.clone().select(0, ids);
        if let Some(scale) = c.variant.embed_scale {
            x = x.mul_scalar(scale);
        }
        let scale = 1.0 / (c.variant.attention_width.unwrap_or(c.head_dim) as f64).sqrt();

        for (l, (layer, slot)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            // Background work (a fine-tuning step) gives way to live requests between layers.
            pause_for_live();
            let window = c.variant.window(l);
            let rope = match (window, &self.local_rope) {
                (Some(_), Some(local)) => local,
                _ => &self.rope,
            };
            // `input · Wᵀ`, plus the adapter's delta where it sits on this projection.
            let project = |input: &Tensor<2>, w: &Tensor<2>, target: LoraTarget| {
                let y = input.clone().matmul(w.clone().transpose());
                match adapter.and_then(|a| a.delta(l, target, input)) {
                    Some(d) => y + d,
                    None => y,
                }
            };
            let h = self.rms_norm(x.clone(), &layer.attn_norm);
            let heads = |w: &Tensor<2>, bias: &Option<Tensor<1>>, n: usize, target| {
                let mut y = project(&h, w, target);
                if let Some(b) = bias {
                    y = y + b.clone().unsqueeze::<2>();
                }
                y.reshape([t, n, c.head_dim]).swap_dims(0, 1)
            };
            let mut q = heads(&layer.wq, &layer.biases[0], c.n_heads, LoraTarget::Q);
            let mut k = heads(&layer.wk, &layer.biases[1], c.n_kv_heads, LoraTarget::K);
            let v = heads(&layer.wv, &layer.biases[2], c.n_kv_heads, LoraTarget::V);
            if let Some((q_norm, k_norm)) = &layer.qk_norm {
                q = self.head_norm(q, q_norm);
                k = self.head_norm(k, k_norm);
            }
            let q = self.rope(q, offset, rope);
            let k = self.rope(k, offset, rope);
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));

            let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
            if let Some(mask) = self.mask(t, offset, window) {
                scores = scores + mask;
            }
            let attn = softmax(scores, 2)
                .matmul(v)
                .swap_dims(0, 1)
                .reshape([t, c.q_dim()]);
            let mut o = project(&attn, &layer.wo, LoraTarget::O);
            if let Some(b) = &layer.biases[3] {
                o = o + b.clone().unsqueeze::<2>();
            }
            if let Some((after_attn, _)) = &layer.post_norms {
                o = self.rms_norm(o, after_attn);
            }
            x = x + o;

            let h = self.rms_norm(x.clone(), &layer.ffn_norm);
            let gate = project(&h, &layer.w_gate, LoraTarget::Gate);
            let gate = match c.variant.activation {
                Activation::Silu => silu(gate),
                Activation::GeluTanh => gelu_tanh(gate),
            };
            let up = project(&h, &layer.w_up, LoraTarget::Up);
            let mut down = project(&(gate * up), &layer.w_down, LoraTarget::Down);
            if let Some((_, after_ffn)) = &layer.post_norms {
                down = self.rms_norm(down, after_ffn);
            }
            x = x + down;
        }
        cache.len += t;
        Ok(x)
    }

    /// `[1, t, offset + t]`: 0 where query `i` (position `offset + i`) may see key `j`, a
    /// large negative number where it may not: later positions, and in a windowed layer those
    /// `window` or more before it. `None` when every key is visible.
    fn mask(&self, t: usize, offset: usize, window: Option<usize>) -> Option<Tensor<3>> {
        let total = offset + t;
        if t == 1 && window.is_none_or(|w| total <= w) {
            return None;
        }
        let mut m = vec![0f32; t * total];
        for i in 0..t {
            let pos = offset + i;
            let from = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for (j, v) in m[i * total..(i + 1) * total].iter_mut().enumerate() {
                if j < from || j > pos {
                    *v = -1e9;
                }
            }
        }
        Some(Tensor::from_data(
            TensorData::new(m, [1, t, total]),
            &self.device,
        ))
    }
}

/// GELU in its tanh form (`gelu_pytorch_tanh`, Gemma's) as ggml computes it, like the CPU
/// path (`vecmath::gelu_tanh_mul`): on the input rounded to f16, the result rounded to f16,
/// `0` at or below −10 and `x` at or above 10. Computed as written instead, a tiny Gemma 3's
/// logits were up to 3.3e-3 from llama.cpp's; this way, as close as the CPU path's.
fn gelu_tanh(x: Tensor<2>) -> Tensor<2> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let low = x.clone().lower_equal_elem(-10.0);
    let high = x.clone().greater_equal_elem(10.0);
    let h = round_to_f16(x.clone());
    let cube = h.clone() * h.clone() * h.clone();
    let inner = (h.clone() + cube.mul_scalar(0.044_715)).mul_scalar(SQRT_2_OVER_PI);
    let y = round_to_f16(h.mul_scalar(0.5) * inner.tanh().add_scalar(1.0));
    y.mask_where(high, x.clone())
        .mask_where(low, x.zeros_like())
}

/// Each value rounded to the nearest f16 (ties to even), kept in f32: the grid of a value's
/// binade, `2^(e − 10)`, or f16's subnormal step below its smallest normal. In arithmetic, so
/// that devices without f16 run it too; for the range GELU's table covers (|x| < 10, no
/// overflow).
fn round_to_f16(x: Tensor<2>) -> Tensor<2> {
    let ln2 = std::f64::consts::LN_2;
    let exponent = x
        .clone()
        .abs()
        .clamp_min(2f64.powi(-14))
        .log()
        .div_scalar(ln2)
        .floor();
    let step = exponent.sub_scalar(10.0).mul_scalar(ln2).exp();
    (x / step.clone()).round() * step
}
