//! LoRA adapters on a Llama-family model's projections (Hu et al., as PEFT builds them): for
//! a projection `y = x·Wᵀ`, an adapter adds `(alpha / rank) · (x·Aᵀ)·Bᵀ` with `A` of
//! `[rank, in]` and `B` of `[out, rank]`, the base weights untouched. A new adapter starts as
//! PEFT's: `A` Kaiming-uniform (bounds ±1/√in), `B` zero, so it changes nothing until trained.
//!
//! Adapters live in the model's own row order. For Llama-architecture files that is GGUF's,
//! whose q and k rows are permuted from Hugging Face's (llama.cpp's converter pairs RoPE's
//! halves): an adapter trained on a Hugging Face checkpoint (PEFT's) has its q and k `B` rows
//! in the other order, and [`hf_rows_to_gguf`] / [`gguf_rows_to_hf`] move between the two.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};

use crate::engine::sampler::Rng;
use crate::error::CoreError;
use crate::kernels::vecmath::dot;
use crate::models::llama::LlamaConfig;

/// A projection an adapter may sit on, by PEFT's module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// PEFT's (and Hugging Face's) module name: `q_proj`, ..., `down_proj`.
    pub fn module_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    pub fn from_module_name(name: &str) -> Option<LoraTarget> {
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.module_name() == name)
    }

    /// `(in, out)` of this projection in a model of `c`.
    pub fn shape(self, c: &LlamaConfig) -> (usize, usize) {
        let kv = c.n_kv_heads * c.head_dim;
        match self {
            LoraTarget::Q => (c.dim, c.q_dim()),
            LoraTarget::K | LoraTarget::V => (c.dim, kv),
            LoraTarget::O => (c.q_dim(), c.dim),
            LoraTarget::Gate | LoraTarget::Up => (c.dim, c.ffn_dim),
            LoraTarget::Down => (c.ffn_dim, c.dim),
        }
    }
}

/// An adapter's shape: its rank, its alpha and the projections it sits on.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<LoraTarget>,
}

impl LoraConfig {
    /// What the adapter's product is multiplied by: `alpha / rank`.
    pub fn scaling(&self) -> f32 {
        self.alpha / self.rank.max(1) as f32
    }

    pub fn check(&self) -> Result<(), CoreError> {
        if self.rank == 0 || self.rank > 256 {
            return Err(CoreError::Adapter(format!(
                "rank must be 1 to 256; got {}",
                self.rank
            )));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(CoreError::Adapter(format!(
                "alpha must be above 0; got {}",
                self.alpha
            )));
        }
        if self.targets.is_empty() {
            return Err(CoreError::Adapter(
                "an adapter needs at least one target module".into(),
            ));
        }
        Ok(())
    }
}

/// One adapted projection's matrices, row-major: `a` is `[rank, in]`, `b` is `[out, rank]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// An adapter's values for every (layer, target) it sits on.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWeights {
    pub config: LoraConfig,
    pub pairs: BTreeMap<(usize, LoraTarget), LoraPair>,
}

impl LoraWeights {
    /// A new adapter for a model of `c`, as PEFT starts one: `A` uniform in ±1/√in from
    /// `seed`, `B` zero.
    pub fn new(config: LoraConfig, c: &LlamaConfig, seed: u64) -> Result<Self, CoreError> {
        config.check()?;
        let mut rng = Rng::new(seed);
        let mut pairs = BTreeMap::new();
        for layer in 0..c.n_layers {
            for &target in &config.targets {
                let (inp, out) = target.shape(c);
                let bound = 1.0 / (inp as f64).sqrt();
                let a = (0..config.rank * inp)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let b = vec![0.0; out * config.rank];
                pairs.insert((layer, target), LoraPair { a, b });
            }
        }
        Ok(LoraWeights { config, pairs })
    }

    /// Checks every pair's size against a model of `c`.
    pub fn check_shapes(&self, c: &LlamaConfig) -> Result<(), CoreError> {
        self.config.check()?;
        let r = self.config.rank;
        for (&(layer, target), pair) in &self.pairs {
            let (inp, out) = target.shape(c);
            if layer >= c.n_layers || pair.a.len() != r * inp || pair.b.len() != out * r {
                return Err(CoreError::Adapter(format!(
                    "layer {layer} {}: A has {} values and B {}, the model needs {}x{} and {}x{}",
                    target.module_name(),
                    pair.a.len(),
                    pair.b.len(),
                    r,
                    inp,
                    out,
                    r
                )));
            }
        }
        Ok(())
    }

    /// Parameters the adapter trains.
    pub fn parameter_count(&self) -> usize {
        self.pairs.values().map(|p| p.a.len() + p.b.len()).sum()
    }

    /// Adds the adapter's delta on projection `target` of `layer` to `out` (`[rows × out]`)
    /// for inputs `x` (`[rows × in]`): the CPU path's, in f32 beside quantized base weights.
    pub(crate) fn add_delta(&self, layer: usize, target: LoraTarget, x: &[f32], out: &mut [f32]) {
        let Some(p) = self.pairs.get(&(layer, target)) else {
            return;
        };
        let r = self.config.rank;
        let (inp, width) = (p.a.len() / r, p.b.len() / r);
        let s = self.config.scaling();
        let mut low = vec![0f32; r];
        for (xr, or) in x.chunks_exact(inp).zip(out.chunks_exact_mut(width)) {
            for (k, l) in low.iter_mut().enumerate() {
                *l = dot(xr, &p.a[k * inp..(k + 1) * inp]);
            }
            for (o, b_row) in or.iter_mut().zip(p.b.chunks_exact(r)) {
                *o += s * dot(&low, b_row);
            }
        }
    }
}

/// An adapter as tensors on a device, for a forward pass (each pair's `A` and `B` as
/// `[rank, in]` and `[out, rank]`).
pub(crate) struct LoraTensors {
    pub(crate) scaling: f32,
    pub(crate) pairs: BTreeMap<(usize, LoraTarget), (Tensor<2>, Tensor<2>)>,
}

impl LoraTensors {
    /// `weights` on `device`; as autodiff leaves when `grad` (the device must be an
    /// autodiff one).
    pub(crate) fn new(weights: &LoraWeights, c: &LlamaConfig, device: &Device, grad: bool) -> Self {
        let r = weights.config.rank;
        let leaf = |values: &[f32], shape: [usize; 2]| {
            let t = Tensor::<2>::from_data(TensorData::new(values.to_vec(), shape), device);
            if grad { t.require_grad() } else { t }
        };
        let pairs = weights
            .pairs
            .iter()
            .map(|(&(layer, target), p)| {
                let (inp, out) = target.shape(c);
                (
                    (layer, target),
                    (leaf(&p.a, [r, inp]), leaf(&p.b, [out, r])),
                )
            })
            .collect();
        LoraTensors {
            scaling: weights.config.scaling(),
            pairs,
        }
    }

    /// What the adapter adds to projection `target` of `layer` for inputs `x: [t, in]`.
    pub(crate) fn delta(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &Tensor<2>,
    ) -> Option<Tensor<2>> {
        self.pairs.get(&(layer, target)).map(|(a, b)| {
            x.clone()
                .matmul(a.clone().transpose())
                .matmul(b.clone().transpose())
                .mul_scalar(self.scaling)
        })
    }
}

/// Whether a model of architecture `arch` keeps q and k rows in GGUF's permuted order (an
/// adapter from a Hugging Face checkpoint then needs its q and k `B` rows moved).
pub fn permutes_qk(arch: &str) -> bool {
    arch == "llama"
}

/// The rows of `b` (`[out, rank]`, `out` = `heads` heads) from Hugging Face's RoPE order to
/// GGUF's: GGUF row `h·d + 2i + j` is Hugging Face row `h·d + j·d/2 + i`.
pub fn hf_rows_to_gguf(b: &[f32], heads: usize, rank: usize) -> Vec<f32> {
    move_rows(b, heads, rank, true)
}

/// The inverse of [`hf_rows_to_gguf`].
pub fn gguf_rows_to_hf(b: &[f32], heads: usize, rank: usize) -> Vec<f32> {
    move_rows(b, heads, rank, false)
}

fn move_rows(b: &[f32], heads: usize, rank: usize, to_gguf: bool) -> Vec<f32> {
    let rows = b.len() / rank.max(1);
    let d = rows / heads.max(1);
    let half = d / 2;
    let mut out = b.to_vec();
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * d + 2 * i + j;
                let hf = h * d + j * half + i;
                let (to, from) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[to * rank..(to + 1) * rank].copy_from_slice(&b[from * rank..(from + 1) * rank]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_move_between_the_two_rope_orders_and_back() {
        // Two heads of four rows, rank 1: Hugging Face's halves [0 1 | 2 3] become pairs
        // [0 2 1 3].
        let b: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let g = hf_rows_to_gguf(&b, 2, 1);
        assert_eq!(g, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(gguf_rows_to_hf(&g, 2, 1), b);
        let wide: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(gguf_rows_to_hf(&hf_rows_to_gguf(&wide, 2, 2), 2, 2), wide);
    }

    #[test]
    fn targets_round_trip_their_names_and_bad_configs_are_refused() {
        for t in LoraTarget::ALL {
            assert_eq!(LoraTarget::from_module_name(t.module_name()), Some(t));
        }
        assert_eq!(LoraTarget::from_module_name("lm_head"), None);
        let ok = LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: vec![LoraTarget::Q],
        };
        assert_eq!(ok.scaling(), 2.0);
        assert!(ok.check().is_ok());
        for bad in [
            LoraConfig {
                rank: 0,
                ..ok.clone()
            },
            LoraConfig {
                alpha: 0.0,
                ..ok.clone()
            },
            LoraConfig {
                targets: vec![],
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
