//! Training a LoRA adapter with burn's autodiff: the base model's weights as constants on an
//! autodiff device, the adapter's matrices as leaves, the loss the mean cross entropy of the
//! answer tokens only (each given the tokens before it), and AdamW on the adapter alone.
//! A batch is the sum of its sequences' losses over its answer tokens' count, each sequence
//! run and differentiated by itself and the gradients added up: gradient accumulation that
//! gives the gradient of the whole batch's loss, in the memory of one sequence.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::diffusion::train::TrainSettings;
use crate::error::CoreError;
use crate::formats::gguf::Gguf;
use crate::models::burn_llama::BurnLlama;
use crate::models::llama::LlamaConfig;
use crate::models::lora::{LoraConfig, LoraPair, LoraTarget, LoraTensors, LoraWeights};
use crate::models::lora_file::{Moments, state_from_bytes, state_to_bytes};

/// One training sequence: its tokens and, per token, whether it is an answer token (in the
/// loss, predicted from the tokens before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub answer: Vec<bool>,
}

impl Example {
    /// Answer tokens after the first: what the loss counts.
    pub fn counted(&self) -> usize {
        self.answer.iter().skip(1).filter(|&&a| a).count()
    }
}

/// A batch's loss and the gradient of it for each adapter matrix (`A` and `B` of each
/// (layer, target), row-major like [`LoraPair`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    pub loss: f32,
    /// Answer tokens the loss averaged over.
    pub tokens: usize,
    pub pairs: Vec<((usize, LoraTarget), LoraPair)>,
}

fn backend(e: impl std::fmt::Debug) -> CoreError {
    CoreError::Backend(format!("LoRA training: {e:?}"))
}

/// An adapter being trained on a model.
pub struct LoraTrainer {
    model: BurnLlama,
    weights: LoraWeights,
    /// AdamW's first and second moments, per pair: (A, B).
    moments: Moments,
    step: i32,
    settings: TrainSettings,
    device: Device,
}

impl LoraTrainer {
    /// `weights` to be trained on the model in `g` (loaded to f32 on burn's CPU backend).
    pub fn new(g: &Gguf, weights: LoraWeights, settings: TrainSettings) -> Result<Self, CoreError> {
        let device = Device::flex().autodiff();
        let model = BurnLlama::load(g, &device, |_, _| {})?;
        weights.check_shapes(model.config())?;
        let moments = weights
            .pairs
            .values()
            .map(|p| {
                [
                    (vec![0.0; p.a.len()], vec![0.0; p.a.len()]),
                    (vec![0.0; p.b.len()], vec![0.0; p.b.len()]),
                ]
            })
            .collect();
        Ok(LoraTrainer {
            model,
            weights,
            moments,
            step: 0,
            settings,
            device,
        })
    }

    /// A new adapter of `config` (PEFT's start, from `seed`) on the model in `g`.
    pub fn start(
        g: &Gguf,
        config: LoraConfig,
        settings: TrainSettings,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let c = LlamaConfig::from_gguf(g)?;
        Self::new(g, LoraWeights::new(config, &c, seed)?, settings)
    }

    /// A trainer that goes on from `state` ([`LoraTrainer::save_state`]'s bytes): the same
    /// adapter, moments and step count, so the next step is the one the saved trainer
    /// would have taken.
    pub fn resume(g: &Gguf, state: &[u8], settings: TrainSettings) -> Result<Self, CoreError> {
        let c = LlamaConfig::from_gguf(g)?;
        let (weights, moments, step) = state_from_bytes(state, c.n_layers)?;
        let mut t = Self::new(g, weights, settings)?;
        let fits = moments.len() == t.moments.len()
            && moments
                .iter()
                .zip(&t.moments)
                .all(|(a, b)| a[0].0.len() == b[0].0.len() && a[1].0.len() == b[1].0.len());
        if !fits {
            return Err(CoreError::Adapter(
                "a training state whose moments do not fit its adapter".into(),
            ));
        }
        t.moments = moments;
        t.step = step;
        Ok(t)
    }

    /// Everything [`LoraTrainer::resume`] needs, as bytes (a safetensors file).
    pub fn save_state(&self) -> Result<Vec<u8>, CoreError> {
        state_to_bytes(&self.weights, &self.moments, self.step)
    }

    /// AdamW steps taken.
    pub fn steps_taken(&self) -> u32 {
        self.step.max(0) as u32
    }

    pub fn config(&self) -> &LlamaConfig {
        self.model.config()
    }

    /// The adapter as trained so far.
    pub fn weights(&self) -> &LoraWeights {
        &self.weights
    }

    /// The last position's logits of `tokens` with the adapter as it is.
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>, CoreError> {
        let adapter = LoraTensors::new(&self.weights, self.model.config(), &self.device, false);
        let logits = self.model.logits_with(tokens, Some(&adapter))?;
        let [t, vocab] = logits.dims();
        logits
            .slice([t - 1..t, 0..vocab])
            .inner()
            .try_into_vec_as::<f32>()
            .map_err(backend)
    }

    /// The loss of `batch` and its gradients, the adapter unchanged.
    pub fn gradients(&self, batch: &[Example]) -> Result<Gradients, CoreError> {
        let tokens: usize = batch.iter().map(Example::counted).sum();
        if tokens == 0 {
            return Err(CoreError::Adapter(
                "a batch with no answer tokens teaches nothing".into(),
            ));
        }
        let keys: Vec<(usize, LoraTarget)> = self.weights.pairs.keys().copied().collect();
        let mut sums: Vec<LoraPair> = self
            .weights
            .pairs
            .values()
            .map(|p| LoraPair {
                a: vec![0.0; p.a.len()],
                b: vec![0.0; p.b.len()],
            })
            .collect();
        let mut total = 0.0f64;
        for example in batch {
            if example.counted() == 0 {
                continue;
            }
            let leaves = LoraTensors::new(&self.weights, self.model.config(), &self.device, true);
            let summed = self.summed_loss(example, &leaves)?;
            total += f64::from(scalar(&summed)?);
            let mut grads = summed.backward();
            for (key, sum) in keys.iter().zip(sums.iter_mut()) {
                let Some((a, b)) = leaves.pairs.get(key) else {
                    continue;
                };
                for (leaf, into) in [(a, &mut sum.a), (b, &mut sum.b)] {
                    if let Some(g) = leaf.grad_remove(&mut grads) {
                        let g = g.try_into_vec_as::<f32>().map_err(backend)?;
                        for (s, v) in into.iter_mut().zip(g) {
                            *s += v;
                        }
                    }
                }
            }
        }
        let scale = 1.0 / tokens as f32;
        let pairs = keys
            .into_iter()
            .zip(sums)
            .map(|(k, mut p)| {
                p.a.iter_mut()
                    .chain(p.b.iter_mut())
                    .for_each(|v| *v *= scale);
                (k, p)
            })
            .collect();
        Ok(Gradients {
            loss: (total / tokens as f64) as f32,
            tokens,
            pairs,
        })
    }

    /// The sum over `example`'s counted tokens of −log p(token | tokens before it).
    fn summed_loss(
        &self,
        example: &Example,
        adapter: &LoraTensors,
    ) -> Result<Tensor<1>, CoreError> {
        let t = example.tokens.len();
        if example.answer.len() != t || t < 2 {
            return Err(CoreError::Adapter(
                "an example needs two or more tokens and an answer flag for each".into(),
            ));
        }
        let logits = self.model.logits_with(&example.tokens, Some(adapter))?;
        let vocab = logits.dims()[1];
        let logp = log_softmax(logits.slice([0..t - 1, 0..vocab]), 1);
        let next: Vec<i64> = example.tokens[1..].iter().map(|&v| i64::from(v)).collect();
        let next = Tensor::<2, Int>::from_data(TensorData::new(next, [t - 1, 1]), &self.device);
        let mask: Vec<f32> = example.answer[1..]
            .iter()
            .map(|&a| if a { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [t - 1, 1]), &self.device);
        Ok((logp.gather(1, next) * mask).sum().neg())
    }

    /// One AdamW step on `batch` at `learning_rate`; the batch's loss before it.
    pub fn step(&mut self, batch: &[Example], learning_rate: f32) -> Result<f32, CoreError> {
        let g = self.gradients(batch)?;
        self.step += 1;
        let s = self.settings;
        let (c1, c2) = (1.0 - s.beta1.powi(self.step), 1.0 - s.beta2.powi(self.step));
        for ((pair, (_, grad)), moments) in self
            .weights
            .pairs
            .values_mut()
            .zip(&g.pairs)
            .zip(&mut self.moments)
        {
            let [(ma, va), (mb, vb)] = moments;
            adamw(&mut pair.a, &grad.a, ma, va, s, (c1, c2), learning_rate);
            adamw(&mut pair.b, &grad.b, mb, vb, s, (c1, c2), learning_rate);
        }
        Ok(g.loss)
    }
}

/// The first value of a one-value tensor.
fn scalar(t: &Tensor<1>) -> Result<f32, CoreError> {
    t.clone()
        .inner()
        .try_into_vec_as::<f32>()
        .map_err(backend)?
        .first()
        .copied()
        .ok_or_else(|| backend("an empty loss"))
}

/// AdamW (decoupled weight decay, bias-corrected moments) on plain values.
fn adamw(
    values: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: TrainSettings,
    (c1, c2): (f32, f32),
    lr: f32,
) {
    for i in 0..values.len() {
        m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * grad[i];
        v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * grad[i] * grad[i];
        let update = (m[i] / c1) / ((v[i] / c2).sqrt() + s.eps);
        values[i] = values[i] * (1.0 - lr * s.weight_decay) - lr * update;
    }
}
