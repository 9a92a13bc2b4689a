//! The models: Llama and its relatives (`arch`: Gemma 3 so far) on the CPU path (`cpu_llama`:
//! quantized weights, the KV blocks and prefix cache of `kv_blocks`) or on burn (`llama`),
//! BERT likewise (`cpu_bert`, `bert`), and where each runs (`backend`).
//!
//! A loaded model, whichever path runs it: [`CpuLlama`] (quantized weights, plain Rust: the
//! CPU's fast path) or [`BurnLlama`] (f32 weights on a burn device: GPUs through wgpu, or
//! burn's own CPU backend, `flex`). The engine and the tests see only this.

pub(crate) mod arch;
pub(crate) mod backend;
pub(crate) mod bert;
pub(crate) mod burn_llama;
pub(crate) mod cpu_bert;
pub(crate) mod cpu_llama;
pub(crate) mod kv_blocks;
pub(crate) mod llama;
pub(crate) mod llama_embed;
pub(crate) mod lora;
pub(crate) mod lora_data;
pub(crate) mod lora_file;
pub(crate) mod lora_peft;
pub(crate) mod lora_train;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::kernels::quant::Activations;
use crate::models::backend::{BackendKind, BackendPreference, Target, select};
use crate::models::burn_llama::{BurnCache, BurnLlama};
use crate::models::cpu_llama::CpuLlama;
use crate::models::kv_blocks::CpuCache;
use crate::models::llama::LlamaConfig;

pub(crate) use arch::architecture_refusal;

/// A loaded Llama model.
pub enum Llama {
    /// Boxed, like burn's: the two differ in size, and neither is moved once loaded.
    Cpu(Box<CpuLlama>),
    Burn(Box<BurnLlama>),
}

/// One sequence's KV cache, for the model that made it.
pub enum KvCache {
    Cpu(CpuCache),
    Burn(BurnCache),
}

impl KvCache {
    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        match self {
            KvCache::Cpu(c) => c.len(),
            KvCache::Burn(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The CPU caches of a batch's items (every one must be a CPU cache).
fn cpu_items<'a, 't>(
    items: &'a mut [(&'t [u32], &mut KvCache)],
) -> Result<Vec<(&'t [u32], &'a mut CpuCache)>, CoreError> {
    items
        .iter_mut()
        .map(|(tokens, cache)| match &mut **cache {
            KvCache::Cpu(c) => Ok((*tokens, c)),
            KvCache::Burn(_) => Err(mismatch()),
        })
        .collect()
}

fn mismatch() -> CoreError {
    CoreError::Backend("a KV cache was used with a model on another backend".into())
}

impl Llama {
    /// Decode steps with activations rounded to 8 bits (the CPU path's integer kernels:
    /// faster, less exact); burn computes in f32 whatever this says.
    pub fn set_q8_decode(&self, on: bool) {
        if let Llama::Cpu(m) = self {
            m.set_q8_decode(on);
        }
    }

    /// Loads onto the backend `pref` selects (`threads` bounds the CPU path's cores); returns
    /// which one that was.
    pub fn load(
        g: &Gguf,
        pref: BackendPreference,
        threads: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<(Self, BackendKind), CoreError> {
        Self::load_as(g, pref, threads, Activations::F32, progress)
    }

    /// As [`Llama::load`], the CPU path multiplying on `acts` (burn computes in f32 whatever
    /// this says).
    pub fn load_as(
        g: &Gguf,
        pref: BackendPreference,
        threads: usize,
        acts: Activations,
        progress: impl FnMut(usize, usize),
    ) -> Result<(Self, BackendKind), CoreError> {
        match select(pref)? {
            Target::Cpu => Ok((
                Llama::Cpu(Box::new(CpuLlama::load(g, threads, acts, progress)?)),
                BackendKind::Cpu,
            )),
            Target::Burn(device, kind) => Ok((
                Llama::Burn(Box::new(BurnLlama::load(g, &device, progress)?)),
                kind,
            )),
        }
    }

    pub fn config(&self) -> &LlamaConfig {
        match self {
            Llama::Cpu(m) => m.config(),
            Llama::Burn(m) => m.config(),
        }
    }

    /// The counter its engine keeps its live requests in (a fresh one off the CPU path,
    /// where no background kernel work waits on it).
    pub(crate) fn own_live(&self) -> Arc<AtomicUsize> {
        match self {
            Llama::Cpu(m) => m.own_live(),
            Llama::Burn(_) => Arc::default(),
        }
    }

    pub fn new_cache(&self) -> KvCache {
        match self {
            Llama::Cpu(m) => KvCache::Cpu(m.new_cache()),
            Llama::Burn(m) => KvCache::Burn(m.new_cache()),
        }
    }

    /// Runs `tokens` (the next positions of the sequence in `cache`) and returns the logits
    /// of the last position.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, CoreError> {
        match (self, cache) {
            (Llama::Cpu(m), KvCache::Cpu(c)) => m.forward(tokens, c),
            (Llama::Burn(m), KvCache::Burn(c)) => m.forward(tokens, c),
            _ => Err(mismatch()),
        }
    }

    /// One step for several sequences: each item's tokens are the next positions of its
    /// cache's sequence; returns each item's last-position logits. On the CPU path this is
    /// one forward (weights read once); on burn, one forward per item.
    pub fn forward_batch(
        &self,
        items: &mut [(&[u32], &mut KvCache)],
    ) -> Result<Vec<Vec<f32>>, CoreError> {
        match self {
            Llama::Cpu(m) => m.forward_batch(&mut cpu_items(items)?),
            Llama::Burn(_) => items
                .iter_mut()
                .map(|(tokens, cache)| self.forward(tokens, cache))
                .collect(),
        }
    }

    /// [`Llama::forward_batch`] into a buffer kept between steps: `logits` becomes the
    /// items' rows one after another (`items × vocab`).
    pub fn forward_batch_into(
        &self,
        items: &mut [(&[u32], &mut KvCache)],
        logits: &mut Vec<f32>,
    ) -> Result<(), CoreError> {
        match self {
            Llama::Cpu(m) => m.forward_batch_into(&mut cpu_items(items)?, logits),
            Llama::Burn(_) => {
                logits.clear();
                for (tokens, cache) in items.iter_mut() {
                    logits.extend(self.forward(tokens, cache)?);
                }
                Ok(())
            }
        }
    }

    /// [`Llama::forward_batch_into`] with a LoRA adapter per item (`adapters[i]` for item
    /// `i`, `None` or missing for the base model): on the CPU path one forward for all items,
    /// the base weights shared and each adapter's f32 delta on its own item's rows.
    pub fn forward_adapted_into(
        &self,
        items: &mut [(&[u32], &mut KvCache)],
        adapters: &[Option<&lora::LoraWeights>],
        logits: &mut Vec<f32>,
    ) -> Result<(), CoreError> {
        match self {
            Llama::Cpu(m) => m.forward_adapted_into(&mut cpu_items(items)?, adapters, logits),
            Llama::Burn(m) => {
                logits.clear();
                for (i, (tokens, cache)) in items.iter_mut().enumerate() {
                    let KvCache::Burn(c) = cache else {
                        return Err(mismatch());
                    };
                    let adapter = adapters.get(i).copied().flatten();
                    logits.extend(m.forward_adapted(tokens, c, adapter)?);
                }
                Ok(())
            }
        }
    }

    /// Every new token's hidden state after the final norm, the items' rows one after
    /// another (`[Σ t × dim]`). On the CPU path one forward for all items.
    pub fn forward_normed(
        &self,
        items: &mut [(&[u32], &mut KvCache)],
    ) -> Result<Vec<f32>, CoreError> {
        match self {
            Llama::Cpu(m) => m.forward_normed(&mut cpu_items(items)?),
            Llama::Burn(m) => {
                let mut rows = Vec::new();
                for (tokens, cache) in items.iter_mut() {
                    match cache {
                        KvCache::Burn(c) => rows.extend(m.forward_normed(tokens, c)?),
                        KvCache::Cpu(_) => return Err(mismatch()),
                    }
                }
                Ok(rows)
            }
        }
    }

    /// Like [`Llama::forward`], with the logits of every position, row after row.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, CoreError> {
        match (self, cache) {
            (Llama::Cpu(m), KvCache::Cpu(c)) => m.forward_all(tokens, c),
            (Llama::Burn(m), KvCache::Burn(c)) => m.forward_all(tokens, c),
            _ => Err(mismatch()),
        }
    }
}
