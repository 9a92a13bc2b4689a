//! The Llama architecture and its relatives ([`Variant`](crate::models::arch::Variant): Gemma 3's sliding windows, q/k
//! norms, extra norms and GeGLU) on the CPU without burn: the fast path for machines without
//! a GPU. Weights stay in their GGUF encoding ([`QMatrix`]); activations, norms, RoPE,
//! attention and the KV cache are f32 in plain Rust over slices, on a thread pool of the
//! configured size. The math is the burn path's (same RoPE angles, same order of operations
//! within a row), so the golden tolerances against the f32 reference hold for both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::kernels::pools::{Pools, between_layers, preempt_flag};

use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::kernels::quant::{Activations, QMatrix};
use crate::kernels::vecmath::{self, dot};
use crate::models::arch::{Activation, RopeLayout};
use crate::models::kv_blocks::{CpuCache, Shape};
use crate::models::llama::LlamaConfig;
use crate::models::lora::{LoraTarget, LoraWeights};

/// Positions (summed over a run of heads) worth one hand-off to another thread.
const ATTENTION_GRAIN: usize = 2048;

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    w_gate: QMatrix,
    w_up: QMatrix,
    w_down: QMatrix,
    /// Per-head norms of queries and keys (`[head_dim]`), where the variant has them.
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Norms of the attention and feed-forward outputs, where the variant has them.
    post_norms: Option<(Vec<f32>, Vec<f32>)>,
    /// Biases added to q, k, v and the attention output, where the file has them (Qwen 2).
    biases: [Option<Vec<f32>>; 4],
}

/// A loaded model on the CPU path.
pub struct CpuLlama {
    config: LlamaConfig,
    embed: Arc<QMatrix>,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    /// The same matrix as `embed` when the head is tied.
    head: Arc<QMatrix>,
    pools: Pools,
}

/// RoPE's cos and sin of each row's position, `[rows × head_dim / 2]` each.
struct Rotation {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl CpuLlama {
    /// Whether one-row products (decode steps) round activations to 8 bits and multiply
    /// in integers, for the matrices whose form has that kernel (`QMatrix::set_q8_decode`).
    pub fn set_q8_decode(&self, on: bool) {
        for l in &self.layers {
            for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                w.set_q8_decode(on);
            }
        }
        // The embedding matrix only gives rows; the head is the one it multiplies by.
        self.head.set_q8_decode(on);
    }
}

impl Rotation {
    fn new(c: &LlamaConfig, base: f32, linear: Option<f32>, rows: &[(usize, usize)]) -> Self {
        let half = c.head_dim / 2;
        let mut r = Rotation {
            cos: Vec::with_capacity(rows.len() * half),
            sin: Vec::with_capacity(rows.len() * half),
        };
        for &(_, pos) in rows {
            for i in 0..half {
                let angle = c.rope_angle(base, linear, i, pos);
                r.cos.push(angle.cos() as f32);
                r.sin.push(angle.sin() as f32);
            }
        }
        r
    }
}

impl CpuLlama {
    /// Loads every tensor from `g`; `threads` bounds the cores its kernels use, `acts` says
    /// what the matrices are multiplied with.
    pub fn load(
        g: &Gguf,
        threads: usize,
        acts: Activations,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self, CoreError> {
        let config = LlamaConfig::from_gguf(g)?;
        let total = config.n_layers + 2;
        let embed = Arc::new(QMatrix::from_gguf_as(g, "token_embd.weight", acts)?);
        progress(1, total);
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let m = |s: &str| QMatrix::from_gguf_as(g, &format!("blk.{i}.{s}.weight"), acts);
            let v = |s: &str| g.dequantize(&format!("blk.{i}.{s}.weight"));
            let qk_norm = match config.variant.qk_norm {
                true => Some((v("attn_q_norm")?, v("attn_k_norm")?)),
                false => None,
            };
            let post_norms = match config.variant.post_norms {
                true => Some((v("post_attention_norm")?, v("post_ffw_norm")?)),
                false => None,
            };
            let bias = |s: &str| g.dequantize_if_present(&format!("blk.{i}.{s}.bias"));
            let biases = [
                bias("attn_q")?,
                bias("attn_k")?,
                bias("attn_v")?,
                bias("attn_output")?,
            ];
            let [wq, wk, wv] = attention_weights(g, &config, i, acts)?;
            let [w_gate, w_up] = gate_and_up(g, &config, i, acts)?;
            layers.push(Layer {
                attn_norm: g.dequantize(&format!("blk.{i}.attn_norm.weight"))?,
                wq,
                wk,
                wv,
                wo: m("attn_output")?,
                ffn_norm: g.dequantize(&format!("blk.{i}.ffn_norm.weight"))?,
                w_gate,
                w_up,
                w_down: m("ffn_down")?,
                qk_norm,
                post_norms,
                biases,
            });
            progress(i + 2, total);
        }
        let head = if g.tensors.contains_key("output.weight") {
            Arc::new(QMatrix::from_gguf_as(g, "output.weight", acts)?)
        } else {
            embed.clone()
        };
        let pools = Pools::new("cpu-kernel", threads)?;
        progress(total, total);
        Ok(CpuLlama {
            out_norm: g.dequantize("output_norm.weight")?,
            config,
            embed,
            layers,
            head,
            pools,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The shape of this model's KV cache blocks.
    pub fn cache_shape(&self) -> Shape {
        Shape {
            layers: self.config.n_layers,
            kv_heads: self.config.n_kv_heads,
            head_dim: self.config.head_dim,
        }
    }

    pub fn new_cache(&self) -> CpuCache {
        CpuCache::new(self.cache_shape())
    }

    /// The logits of the last of `tokens` (the next positions of `cache`'s sequence).
    pub fn forward(&self, tokens: &[u32], cache: &mut CpuCache) -> Result<Vec<f32>, CoreError> {
        let mut logits = Vec::new();
        self.forward_batch_into(&mut [(tokens, cache)], &mut logits)?;
        Ok(logits)
    }

    /// One forward over several sequences at once (continuous batching): every sequence's
    /// new tokens go through each weight matrix together, so the weights are read once per
    /// step however many sequences run; attention stays per sequence. Returns the logits of
    /// each sequence's last new token, in order.
    pub fn forward_batch(
        &self,
        items: &mut [(&[u32], &mut CpuCache)],
    ) -> Result<Vec<Vec<f32>>, CoreError> {
        let mut logits = Vec::new();
        self.forward_batch_into(items, &mut logits)?;
        Ok(logits
            .chunks_exact(self.head.rows())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// [`CpuLlama::forward_batch`] into `logits`, each item's row after row (`items ×
    /// vocab`): an engine keeps the buffer from step to step, so a large vocabulary's rows
    /// (16 MB for 16 sequences of Gemma's 262k) are neither faulted in nor copied each step.
    pub fn forward_batch_into(
        &self,
        items: &mut [(&[u32], &mut CpuCache)],
        logits: &mut Vec<f32>,
    ) -> Result<(), CoreError> {
        self.forward_adapted_into(items, &[], logits)
    }

    /// [`CpuLlama::forward_batch_into`] with a LoRA adapter per item (`adapters[i]` for item
    /// `i`; missing or `None`: the base model): the base weights are read once for every
    /// item, and each adapter's f32 delta is added to its own item's rows. The adapters must
    /// fit the model ([`LoraWeights::check_shapes`]: the engine checks a request's once, when
    /// it is submitted, not at every step).
    pub fn forward_adapted_into(
        &self,
        items: &mut [(&[u32], &mut CpuCache)],
        adapters: &[Option<&LoraWeights>],
        logits: &mut Vec<f32>,
    ) -> Result<(), CoreError> {
        let x = self.hidden_with(items, adapters)?;
        let dim = self.config.dim;
        let mut last = Vec::with_capacity(items.len() * dim);
        let mut end = 0;
        for (tokens, _) in items.iter() {
            end += tokens.len();
            last.extend_from_slice(&x[(end - 1) * dim..end * dim]);
        }
        self.logits_into(&last, items.len(), logits);
        Ok(())
    }

    /// The logits of every position, row after row (`tokens.len() × vocab`).
    pub fn forward_all(&self, tokens: &[u32], cache: &mut CpuCache) -> Result<Vec<f32>, CoreError> {
        let x = self.hidden(&mut [(tokens, cache)])?;
        Ok(self.logits(&x, tokens.len()))
    }

    /// Every new token's hidden state after the final norm, all items concatenated
    /// (`[Σ t × dim]`): what a chat model's mean-pooled embeddings average.
    pub fn forward_normed(
        &self,
        items: &mut [(&[u32], &mut CpuCache)],
    ) -> Result<Vec<f32>, CoreError> {
        let x = self.hidden(items)?;
        Ok(rms_norm(&x, &self.out_norm, self.config.rms_eps))
    }

    /// The counter its engine keeps its live requests in.
    pub(crate) fn own_live(&self) -> Arc<AtomicUsize> {
        self.pools.own_live()
    }

    fn logits(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.logits_into(x, rows, &mut out);
        out
    }

    /// The head's rows for `x` into `out`, resized to `rows × vocab` (the matmul writes
    /// every value, so what the buffer held before does not matter).
    fn logits_into(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) {
        let normed = rms_norm(x, &self.out_norm, self.config.rms_eps);
        out.resize(rows * self.head.rows(), 0.0);
        self.pools.install(|| self.head.matmul(&normed, rows, out));
        if let Some(cap) = self.config.variant.final_softcap {
            out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
    }

    /// The hidden states after the last layer of every sequence's new tokens, concatenated:
    /// `[Σ t × dim]`.
    fn hidden(&self, items: &mut [(&[u32], &mut CpuCache)]) -> Result<Vec<f32>, CoreError> {
        self.hidden_with(items, &[])
    }

    /// [`CpuLlama::hidden`] with each item's adapter (if any) on its rows.
    fn hidden_with(
        &self,
        items: &mut [(&[u32], &mut CpuCache)],
        adapters: &[Option<&LoraWeights>],
    ) -> Result<Vec<f32>, CoreError> {
        let c = &self.config;
        // Each adapted item's rows, and its adapter.
        let mut adapted = Vec::new();
        let mut start = 0;
        for (i, (tokens, _)) in items.iter().enumerate() {
            if let Some(Some(a)) = adapters.get(i) {
                adapted.push((start..start + tokens.len(), *a));
            }
            start += tokens.len();
        }
        // Adds every adapted item's delta on `target` of layer `l` (`x` of `inp` wide in,
        // `out` of `width` wide).
        let lora =
            |l: usize, target: LoraTarget, x: &[f32], inp: usize, out: &mut [f32], width: usize| {
                for (rows, a) in &adapted {
                    a.add_delta(
                        l,
                        target,
                        &x[rows.start * inp..rows.end * inp],
                        &mut out[rows.start * width..rows.end * width],
                    );
                }
            };
        for (tokens, cache) in items.iter() {
            if tokens.is_empty() || cache.len() + tokens.len() > c.context_length {
                return Err(CoreError::ContextOverflow {
                    tokens: cache.len() + tokens.len(),
                    limit: c.context_length,
                });
            }
            if let Some(&token) = tokens.iter().find(|&&id| id as usize >= self.embed.rows()) {
                return Err(CoreError::OutOfVocabulary { token });
            }
        }
        // Each row's sequence and position.
        let rows: Vec<(usize, usize)> = items
            .iter()
            .enumerate()
            .flat_map(|(s, (tokens, cache))| {
                (cache.len()..cache.len() + tokens.len()).map(move |p| (s, p))
            })
            .collect();
        let t = rows.len();
        let mut x = vec![0f32; t * c.dim];
        for (row, &id) in x
            .chunks_exact_mut(c.dim)
            .zip(items.iter().flat_map(|(tokens, _)| tokens.iter()))
        {
            self.embed.dequantize_row(id as usize, row);
            if let Some(scale) = c.variant.embed_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        for (tokens, cache) in items.iter_mut() {
            cache.extend(tokens);
        }
        let kv_dim = c.n_kv_heads * c.head_dim;
        let global = Rotation::new(c, c.rope_base, c.variant.rope_linear, &rows);
        let local = c
            .variant
            .sliding_window
            .as_ref()
            .map(|w| Rotation::new(c, w.local_rope_base, None, &rows));
        // Every matmul writes all of its output: the buffers serve every layer.
        let mut q = vec![0f32; t * c.q_dim()];
        let mut k = vec![0f32; t * kv_dim];
        let mut v = vec![0f32; t * kv_dim];
        let mut o = vec![0f32; t * c.dim];
        let mut gate = vec![0f32; t * c.ffn_dim];
        let mut up = vec![0f32; t * c.ffn_dim];
        let mut down = vec![0f32; t * c.dim];
        // A background step stops between layers once a live request is waiting for this
        // model, and waits there while another model runs a live pass.
        let preempt = preempt_flag();
        let between = between_layers();
        let stopped = self.pools.install(|| {
            for (l, layer) in self.layers.iter().enumerate() {
                if preempt.as_ref().is_some_and(|p| p.load(Ordering::Relaxed)) {
                    return true;
                }
                between();
                let h = rms_norm(&x, &layer.attn_norm, c.rms_eps);
                QMatrix::matmul_each(
                    &h,
                    t,
                    &mut [
                        (&layer.wq, &mut q),
                        (&layer.wk, &mut k),
                        (&layer.wv, &mut v),
                    ],
                );
                lora(l, LoraTarget::Q, &h, c.dim, &mut q, c.q_dim());
                lora(l, LoraTarget::K, &h, c.dim, &mut k, kv_dim);
                lora(l, LoraTarget::V, &h, c.dim, &mut v, kv_dim);
                for (out, bias) in [&mut q, &mut k, &mut v].into_iter().zip(&layer.biases) {
                    add_bias(out, bias.as_deref());
                }
                if let Some((q_norm, k_norm)) = &layer.qk_norm {
                    rms_norm_in_place(&mut q, q_norm, c.rms_eps);
                    rms_norm_in_place(&mut k, k_norm, c.rms_eps);
                }
                let window = c.variant.window(l);
                let rotation = match (window, &local) {
                    (Some(_), Some(local)) => local,
                    _ => &global,
                };
                self.rope(&mut q, c.n_heads, rotation);
                self.rope(&mut k, c.n_kv_heads, rotation);
                for (i, &(s, pos)) in rows.iter().enumerate() {
                    let at = i * kv_dim..(i + 1) * kv_dim;
                    items[s].1.write(l, pos, &k[at.clone()], &v[at]);
                }
                let attn = self.attention(&q, items, l, window, &rows);
                layer.wo.matmul(&attn, t, &mut o);
                lora(l, LoraTarget::O, &attn, c.q_dim(), &mut o, c.dim);
                add_bias(&mut o, layer.biases[3].as_deref());
                if let Some((after_attn, _)) = &layer.post_norms {
                    rms_norm_in_place(&mut o, after_attn, c.rms_eps);
                }
                add(&mut x, &o);

                let h = rms_norm(&x, &layer.ffn_norm, c.rms_eps);
                QMatrix::matmul_each(
                    &h,
                    t,
                    &mut [(&layer.w_gate, &mut gate), (&layer.w_up, &mut up)],
                );
                lora(l, LoraTarget::Gate, &h, c.dim, &mut gate, c.ffn_dim);
                lora(l, LoraTarget::Up, &h, c.dim, &mut up, c.ffn_dim);
                match c.variant.activation {
                    Activation::Silu => vecmath::silu_mul(&mut gate, &up),
                    Activation::GeluTanh => vecmath::gelu_tanh_mul(&mut gate, &up),
                }
                layer.w_down.matmul(&gate, t, &mut down);
                lora(l, LoraTarget::Down, &gate, c.ffn_dim, &mut down, c.dim);
                if let Some((_, after_ffn)) = &layer.post_norms {
                    rms_norm_in_place(&mut down, after_ffn, c.rms_eps);
                }
                add(&mut x, &down);
            }
            false
        });
        if stopped {
            for (tokens, cache) in items.iter_mut() {
                cache.abandon(tokens.len());
            }
            return Err(CoreError::Preempted);
        }
        for (tokens, cache) in items.iter_mut() {
            cache.commit(tokens.len());
        }
        Ok(x)
    }

    /// Rotates the pairs of each head of `x: [rows × heads × head_dim]` (`(2i, 2i+1)` or
    /// `(i, i + head_dim/2)` by the variant's layout), each row by its own angles.
    fn rope(&self, x: &mut [f32], heads: usize, r: &Rotation) {
        let hd = self.config.head_dim;
        let half = hd / 2;
        let layout = self.config.variant.rope;
        let angles = r.cos.chunks_exact(half).zip(r.sin.chunks_exact(half));
        for (row, (cos, sin)) in x.chunks_exact_mut(heads * hd).zip(angles) {
            for head in row.chunks_exact_mut(hd) {
                for p in 0..half {
                    let (a, b) = match layout {
                        RopeLayout::Pairs => (2 * p, 2 * p + 1),
                        RopeLayout::Halves => (p, p + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos[p] - x1 * sin[p];
                    head[b] = x0 * sin[p] + x1 * cos[p];
                }
            }
        }
    }

    /// Causal grouped-query attention of each row's query over its own sequence's cache in
    /// layer `l` (up to and including the row's position, and no further back than `window`
    /// positions when the layer has one); returns `[rows × q_dim]`.
    fn attention(
        &self,
        q: &[f32],
        items: &[(&[u32], &mut CpuCache)],
        l: usize,
        window: Option<usize>,
        rows: &[(usize, usize)],
    ) -> Vec<f32> {
        let c = &self.config;
        let hd = c.head_dim;
        let q_dim = c.q_dim();
        let groups = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (c.variant.attention_width.unwrap_or(hd) as f32).sqrt();
        let mut out = vec![0f32; rows.len() * q_dim];
        // Scratch reused across a thread's work items: the scores, and the cache's segments.
        let work = |(scores, segs): &mut (Vec<f32>, Vec<_>), (idx, dst): (usize, &mut [f32])| {
            let (i, h) = (idx / c.n_heads, idx % c.n_heads);
            let (s, pos) = rows[i];
            let from = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            items[s].1.segments_into(l, h / groups, from, pos + 1, segs);
            let qh = &q[i * q_dim + h * hd..i * q_dim + (h + 1) * hd];
            vecmath::attend(qh, segs, scale, scores, dst);
        };
        // One work item per row and head, handed out in runs of about ATTENTION_GRAIN
        // positions: a hand-off costs about as much as attending over a few hundred.
        let positions: usize = rows
            .iter()
            .map(|&(_, pos)| window.map_or(pos + 1, |w| (pos + 1).min(w)))
            .sum();
        let heads = rows.len() * c.n_heads;
        if positions * c.n_heads <= ATTENTION_GRAIN {
            let mut scratch = (Vec::new(), Vec::new());
            out.chunks_mut(hd)
                .enumerate()
                .for_each(|item| work(&mut scratch, item));
        } else {
            let per_item = (positions / rows.len()).max(1);
            let run = (ATTENTION_GRAIN / per_item).clamp(1, heads);
            out.par_chunks_mut(hd)
                .enumerate()
                .with_min_len(run)
                .for_each_init(|| (Vec::new(), Vec::new()), work);
        }
        out
    }
}

/// Layer `l`'s query, key and value matrices: separate, or rows of one fused `attn_qkv`
/// (Phi-3: queries, then keys, then values).
fn attention_weights(
    g: &Gguf,
    c: &LlamaConfig,
    l: usize,
    acts: Activations,
) -> Result<[QMatrix; 3], CoreError> {
    let name = |s: &str| format!("blk.{l}.{s}.weight");
    let fused = name("attn_qkv");
    if !g.tensors.contains_key(&fused) {
        return Ok([
            QMatrix::from_gguf_as(g, &name("attn_q"), acts)?,
            QMatrix::from_gguf_as(g, &name("attn_k"), acts)?,
            QMatrix::from_gguf_as(g, &name("attn_v"), acts)?,
        ]);
    }
    let kv = c.n_kv_heads * c.head_dim;
    Ok([
        QMatrix::from_gguf_rows_as(g, &fused, 0, c.q_dim(), acts)?,
        QMatrix::from_gguf_rows_as(g, &fused, c.q_dim(), kv, acts)?,
        QMatrix::from_gguf_rows_as(g, &fused, c.q_dim() + kv, kv, acts)?,
    ])
}

/// Layer `l`'s gate and up matrices: separate, or the two halves of an `ffn_up` with no
/// `ffn_gate` beside it (Phi-3: the gate first).
fn gate_and_up(
    g: &Gguf,
    c: &LlamaConfig,
    l: usize,
    acts: Activations,
) -> Result<[QMatrix; 2], CoreError> {
    let name = |s: &str| format!("blk.{l}.{s}.weight");
    let up = name("ffn_up");
    if g.tensors.contains_key(&name("ffn_gate")) {
        return Ok([
            QMatrix::from_gguf_as(g, &name("ffn_gate"), acts)?,
            QMatrix::from_gguf_as(g, &up, acts)?,
        ]);
    }
    Ok([
        QMatrix::from_gguf_rows_as(g, &up, 0, c.ffn_dim, acts)?,
        QMatrix::from_gguf_rows_as(g, &up, c.ffn_dim, c.ffn_dim, acts)?,
    ])
}

/// Each row scaled by the reciprocal of its root mean square, then by `weight`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = x.to_vec();
    rms_norm_in_place(&mut out, weight, eps);
    out
}

/// [`rms_norm`] over `x` itself (rows of `weight`'s length: a head's, or the model's width).
fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    for row in x.chunks_exact_mut(dim) {
        let mean = dot(row, row) / dim as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// Adds `bias` to every row of `x` (rows of the bias's length); nothing without one.
fn add_bias(x: &mut [f32], bias: Option<&[f32]>) {
    let Some(bias) = bias else { return };
    for row in x.chunks_exact_mut(bias.len()) {
        add(row, bias);
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
