//! BERT on the CPU without burn: f32 weights, `gemm` for the dense layers, vector GELU and
//! attention from `vecmath`, on a rayon pool of the configured size.
//!
//! A batch is not padded: the dense layers run over every input's tokens one after another
//! (`[Σ tᵢ × hidden]`), and only attention (and pooling) goes input by input. Burn's CPU
//! backend spent most of a batch on padding, scalar `erf` and element-wise passes; this path
//! is the same math with those gone (the golden tests hold both to sentence-transformers).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use rayon::prelude::*;

use crate::kernels::pools::{Pools, between_layers, in_background_pool, yield_to_live};

use crate::error::CoreError;
use crate::kernels::vecmath::{attend, dot, gelu};
use crate::models::bert::{BertConfig, f32_values, read_checkpoint, tensor_prefix};

/// Activation rows per `gemm` call in a batch's pass: about a millisecond of a dense layer.
const ROWS_PER_CALL: usize = 128;

/// `y = x·Wᵀ + b` with `W` as PyTorch stores it, `[out × in]`.
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Dense {
    fn outputs(&self) -> usize {
        self.b.len()
    }

    /// `[m × in]` → `[m × out]`.
    fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.outputs(), self.w.len() / self.outputs());
        // The shapes were checked at load; a mismatch here would be a bug in this file.
        assert_eq!(x.len(), m * k, "dense layer input");
        let mut y: Vec<f32> = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(&self.b);
        }
        // A batch's pass goes a block of rows at a time and sleeps between two blocks while
        // another model serves a live request (a whole layer of it takes milliseconds); a
        // live pass goes in one call (each call packs the weights again).
        let block = if in_background_pool() {
            ROWS_PER_CALL
        } else {
            m.max(1)
        };
        for first in (0..m).step_by(block) {
            yield_to_live();
            let rows = block.min(m - first);
            let (x, y) = (&x[first * k..], &mut y[first * n..]);
            // SAFETY: `y` is [rows × n] row-major, `x` [rows × k] row-major and `w` [n × k]
            // row-major, read as its transpose ([k × n]: element (i, j) at j·k + i); all
            // alive and at least that long.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    y.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    k as isize,
                    self.w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            }
        }
        y
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    /// Each row centred, scaled to unit variance, then by `w`, plus `b`.
    fn apply(&self, x: &mut [f32], eps: f32) {
        let h = self.w.len();
        x.par_chunks_mut(h).with_min_len(16).for_each(|row| {
            let mean = row.iter().sum::<f32>() / h as f32;
            for v in row.iter_mut() {
                *v -= mean;
            }
            let scale = 1.0 / (dot(row, row) / h as f32 + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *v = *v * scale * w + b;
            }
        });
    }
}

struct Layer {
    /// Query, key and value in one matrix: `[3·hidden × hidden]`.
    qkv: Dense,
    o: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

/// A BERT encoder on the CPU.
pub(crate) struct CpuBert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's embedding (sentence embedders feed one segment).
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    pools: Pools,
}

impl CpuBert {
    /// Loads `config.json` and `model.safetensors`; `threads` sizes its pool.
    pub(crate) fn load(dir: &Path, threads: usize) -> Result<Self, CoreError> {
        let (config, bytes) = read_checkpoint(dir)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| CoreError::Weights(format!("model.safetensors: {e}")))?;
        let prefix = tensor_prefix(&st);
        let get = |name: String| f32_values(&st, &name).map(|(v, _)| v);
        let dense = |p: String| -> Result<Dense, CoreError> {
            Ok(Dense {
                w: get(format!("{p}.weight"))?,
                b: get(format!("{p}.bias"))?,
            })
        };
        let norm = |p: String| -> Result<Norm, CoreError> {
            Ok(Norm {
                w: get(format!("{p}.weight"))?,
                b: get(format!("{p}.bias"))?,
            })
        };
        let h = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = |s: &str| format!("{prefix}encoder.layer.{i}.{s}");
                let (q, k, v) = (
                    dense(l("attention.self.query"))?,
                    dense(l("attention.self.key"))?,
                    dense(l("attention.self.value"))?,
                );
                Ok(Layer {
                    qkv: Dense {
                        w: [q.w, k.w, v.w].concat(),
                        b: [q.b, k.b, v.b].concat(),
                    },
                    o: dense(l("attention.output.dense"))?,
                    attn_norm: norm(l("attention.output.LayerNorm"))?,
                    up: dense(l("intermediate.dense"))?,
                    down: dense(l("output.dense"))?,
                    out_norm: norm(l("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let e = |s: &str| format!("{prefix}embeddings.{s}");
        let mut token_type = get(e("token_type_embeddings.weight"))?;
        token_type.truncate(h);
        let model = CpuBert {
            word: get(e("word_embeddings.weight"))?,
            position: get(e("position_embeddings.weight"))?,
            token_type,
            embed_norm: norm(e("LayerNorm"))?,
            layers,
            pools: Pools::new("cpu-bert", threads)?,
            config,
        };
        let bad = |what: &str| CoreError::Weights(format!("{what} does not match config.json"));
        if model.word.len() != model.config.vocab_size * h {
            return Err(bad("word_embeddings"));
        }
        if model.position.len() != model.config.max_position_embeddings * h {
            return Err(bad("position_embeddings"));
        }
        if model.token_type.len() != h {
            return Err(bad("token_type_embeddings"));
        }
        let norms = std::iter::once(&model.embed_norm).chain(
            model
                .layers
                .iter()
                .flat_map(|l| [&l.attn_norm, &l.out_norm]),
        );
        if norms.into_iter().any(|n| n.w.len() != h || n.b.len() != h) {
            return Err(bad("a LayerNorm"));
        }
        for l in &model.layers {
            let i = model.config.intermediate_size;
            let shapes = [
                (l.qkv.w.len(), 3 * h * h, l.qkv.outputs(), 3 * h),
                (l.o.w.len(), h * h, l.o.outputs(), h),
                (l.up.w.len(), i * h, l.up.outputs(), i),
                (l.down.w.len(), h * i, l.down.outputs(), h),
            ];
            if shapes
                .iter()
                .any(|(got, want, b, bw)| got != want || b != bw)
            {
                return Err(bad("a layer's weights"));
            }
        }
        Ok(model)
    }

    pub(crate) fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The counter its engine keeps its live requests in.
    pub(crate) fn own_live(&self) -> Arc<AtomicUsize> {
        self.pools.own_live()
    }

    /// Each input's last hidden states averaged over its tokens. The inputs are checked by
    /// the caller ([`crate::embed::embedder::check_inputs`]).
    pub(crate) fn mean_pooled(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let between = between_layers();
        self.pools.install(|| self.encode(batch, &between))
    }

    /// `between` runs between two layers (a batch's pass waits there for live work).
    fn encode(&self, batch: &[Vec<u32>], between: &(impl Fn() + Sync)) -> Vec<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden_size;
        let eps = c.layer_norm_eps as f32;
        let total: usize = batch.iter().map(Vec::len).sum();
        let mut x = Vec::with_capacity(total * h);
        for input in batch {
            for (pos, &id) in input.iter().enumerate() {
                let word = &self.word[id as usize * h..(id as usize + 1) * h];
                let position = &self.position[pos * h..(pos + 1) * h];
                x.extend(
                    word.iter()
                        .zip(position)
                        .zip(&self.token_type)
                        .map(|((w, p), t)| w + p + t),
                );
            }
        }
        self.embed_norm.apply(&mut x, eps);
        for layer in &self.layers {
            between();
            let qkv = layer.qkv.forward(&x, total);
            let ctx = self.attention(&qkv, batch);
            let mut y = layer.o.forward(&ctx, total);
            add(&mut y, &x);
            layer.attn_norm.apply(&mut y, eps);
            x = y;
            let mut inner = layer.up.forward(&x, total);
            inner
                .par_chunks_mut(c.intermediate_size)
                .with_min_len(8)
                .for_each(gelu);
            let mut y = layer.down.forward(&inner, total);
            add(&mut y, &x);
            layer.out_norm.apply(&mut y, eps);
            x = y;
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        for input in batch {
            let rows = &x[start * h..(start + input.len()) * h];
            let mut mean = vec![0f32; h];
            for row in rows.chunks_exact(h) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let n = input.len() as f32;
            mean.iter_mut().for_each(|m| *m /= n);
            out.push(mean);
            start += input.len();
        }
        out
    }

    /// Full (bidirectional) attention within each input, every head: `[Σ t × hidden]`.
    fn attention(&self, qkv: &[f32], batch: &[Vec<u32>]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let hd = h / heads;
        let total = qkv.len() / (3 * h);
        let scale = 1.0 / (hd as f32).sqrt();
        // Each head's keys and values of every token, contiguous (`[heads × Σ t × hd]`), so
        // an input's positions are one segment for `vecmath::attend`.
        let (mut keys, mut values) = (vec![0f32; total * h], vec![0f32; total * h]);
        for (t, row) in qkv.chunks_exact(3 * h).enumerate() {
            for head in 0..heads {
                let at = (head * total + t) * hd;
                keys[at..at + hd].copy_from_slice(&row[h + head * hd..][..hd]);
                values[at..at + hd].copy_from_slice(&row[2 * h + head * hd..][..hd]);
            }
        }
        // One work item per token: its output row, all heads, over its own input's tokens.
        let mut spans = Vec::with_capacity(total);
        let mut first = 0;
        for input in batch {
            spans.extend(std::iter::repeat_n((first, input.len()), input.len()));
            first += input.len();
        }
        let mut ctx = vec![0f32; total * h];
        ctx.par_chunks_mut(h)
            .zip(qkv.par_chunks(3 * h))
            .zip(spans.par_iter())
            .with_min_len(4)
            .for_each_init(Vec::new, |scores, ((out, row), &(first, n))| {
                for (head, out) in out.chunks_exact_mut(hd).enumerate() {
                    let span = (head * total + first) * hd..(head * total + first + n) * hd;
                    let seg = [(&keys[span.clone()], &values[span])];
                    attend(&row[head * hd..][..hd], &seg, scale, scores, out);
                }
            });
        ctx
    }
}

fn add(y: &mut [f32], x: &[f32]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += b;
    }
}
