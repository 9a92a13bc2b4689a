//! Training a UNet from scratch with burn's autodiff (DDPM's noise-prediction objective):
//! each step draws a timestep and Gaussian noise per sample, noises the clean samples by the
//! schedule, predicts the noise with the UNet built on the parameters as autodiff leaves, and
//! takes an AdamW step on the mean squared error. Seeded: the same data, settings and seed
//! give the same weights on the same backend.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::pipeline::gaussian;
use super::scheduler::SchedulerConfig;
use super::unet::{UNet, UNetConfig};
use super::unet_params::{Param, initial_values, parameters};
use super::weights::Weights;
use crate::engine::sampler::Rng;
use crate::error::CoreError;

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Keep an exponential moving average of the weights with this decay (diffusers'
    /// `EMAModel`, warmed up as `(1 + step) / (10 + step)`): what is sampled and saved. A
    /// diffusion model's averaged weights sample far better than its last step's.
    pub ema_decay: Option<f32>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            ema_decay: None,
        }
    }
}

/// A UNet being trained: its parameters and AdamW's moments, on burn's CPU backend.
pub struct Trainer {
    config: UNetConfig,
    params: Vec<Param>,
    values: Vec<Tensor<1>>,
    m: Vec<Tensor<1>>,
    v: Vec<Tensor<1>>,
    /// The weights' moving average, when the settings keep one.
    ema: Option<Vec<Tensor<1>>>,
    step: i32,
    alphas_cumprod: Vec<f64>,
    rng: Rng,
    settings: TrainSettings,
    plain: Device,
    autodiff: Device,
}

fn backend(e: impl std::fmt::Debug) -> CoreError {
    CoreError::Backend(format!("training: {e:?}"))
}

impl Trainer {
    /// A UNet of `config` with PyTorch's initial values drawn from `seed`, to be trained on
    /// the noise schedule of `schedule`.
    pub fn new(
        config: UNetConfig,
        schedule: &SchedulerConfig,
        settings: TrainSettings,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let plain = Device::flex();
        let autodiff = plain.clone().autodiff();
        let params = parameters(&config);
        let mut rng = Rng::new(seed);
        let values: Vec<Tensor<1>> = params
            .iter()
            .map(|p| {
                let v = initial_values(p, &params, &mut rng);
                let n = v.len();
                Tensor::from_data(TensorData::new(v, [n]), &plain)
            })
            .collect();
        let zeros = |t: &Tensor<1>| Tensor::zeros(t.dims(), &plain);
        let m = values.iter().map(zeros).collect();
        let v = values.iter().map(zeros).collect();
        let alphas_cumprod = schedule.alphas_cumprod()?;
        // Build once now: a config the UNet code cannot run fails here, not at step one.
        UNet::build(config.clone(), &weights(&params, &values, &plain), &plain)?;
        let ema = settings.ema_decay.map(|_| values.clone());
        Ok(Trainer {
            config,
            params,
            values,
            m,
            v,
            ema,
            step: 0,
            alphas_cumprod,
            rng,
            settings,
            plain,
            autodiff,
        })
    }

    /// A trainer that goes on from the UNet saved in `dir` (the `unet/` folder
    /// [`Trainer::save`] wrote, f32 or f16): the weights carry over, AdamW's moments and the
    /// data order start again from `seed`.
    pub fn resume(
        config: UNetConfig,
        dir: &Path,
        schedule: &SchedulerConfig,
        settings: TrainSettings,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let mut t = Self::new(config, schedule, settings, seed)?;
        let w = Weights::open(dir, "diffusion_pytorch_model.safetensors", &t.plain)?;
        for (p, v) in t.params.iter().zip(t.values.iter_mut()) {
            let n: usize = p.shape.iter().product();
            let mismatch = |dims: &[usize]| {
                CoreError::Weights(format!(
                    "{}: {dims:?} in {}, {:?} in the config",
                    p.name,
                    dir.display(),
                    p.shape
                ))
            };
            let flat: Tensor<1> = match p.shape.len() {
                1 => {
                    let x = w.tensor::<1>(&p.name)?;
                    if x.dims()[..] != p.shape[..] {
                        return Err(mismatch(&x.dims()));
                    }
                    x
                }
                2 => {
                    let x = w.tensor::<2>(&p.name)?;
                    if x.dims()[..] != p.shape[..] {
                        return Err(mismatch(&x.dims()));
                    }
                    x.reshape([n])
                }
                4 => {
                    let x = w.tensor::<4>(&p.name)?;
                    if x.dims()[..] != p.shape[..] {
                        return Err(mismatch(&x.dims()));
                    }
                    x.reshape([n])
                }
                r => {
                    return Err(CoreError::Weights(format!(
                        "{}: a parameter of {r} dimensions",
                        p.name
                    )));
                }
            };
            *v = flat;
        }
        if t.ema.is_some() {
            t.ema = Some(t.values.clone());
        }
        Ok(t)
    }

    /// The parameters' count.
    pub fn parameter_count(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    /// One AdamW step on a batch: `clean` samples `[b, c, h, w]` (row-major) and their
    /// `context` `[b, tokens, width]`; the batch's loss before the step.
    pub fn step(
        &mut self,
        clean: &[f32],
        dims: [usize; 4],
        context: &[f32],
        context_dims: [usize; 3],
        learning_rate: f32,
    ) -> Result<f32, CoreError> {
        let b = dims[0];
        let per = clean.len() / b.max(1);
        if clean.len() != dims.iter().product::<usize>()
            || context.len() != context_dims.iter().product::<usize>()
            || context_dims[0] != b
        {
            return Err(CoreError::Backend(
                "training: values do not match their shapes".into(),
            ));
        }
        let train_steps = self.alphas_cumprod.len();
        let mut noisy = Vec::with_capacity(clean.len());
        let mut noise = Vec::with_capacity(clean.len());
        let mut timesteps = Vec::with_capacity(b);
        for row in 0..b {
            let t = ((self.rng.next_f64() * train_steps as f64) as usize).min(train_steps - 1);
            timesteps.push(t as f32);
            let a = self.alphas_cumprod[t];
            let (sa, sb) = (a.sqrt() as f32, (1.0 - a).sqrt() as f32);
            let eps = gaussian(&mut self.rng, per);
            for (x, e) in clean[row * per..(row + 1) * per].iter().zip(&eps) {
                noisy.push(sa * x + sb * e);
            }
            noise.extend(eps);
        }
        let leaves: Vec<Tensor<1>> = self
            .values
            .iter()
            .map(|t| t.clone().autodiff().require_grad())
            .collect();
        let unet = UNet::build(
            self.config.clone(),
            &weights(&self.params, &leaves, &self.autodiff),
            &self.autodiff,
        )?;
        let x = Tensor::<4>::from_data(TensorData::new(noisy, dims), &self.autodiff);
        let ctx = Tensor::<3>::from_data(
            TensorData::new(context.to_vec(), context_dims),
            &self.autodiff,
        );
        let target = Tensor::<4>::from_data(TensorData::new(noise, dims), &self.autodiff);
        let loss = (unet.forward_at(x, &timesteps, &ctx) - target)
            .powf_scalar(2.0)
            .mean();
        let value: f32 = loss
            .clone()
            .inner()
            .try_into_vec_as::<f32>()
            .map_err(backend)?
            .first()
            .copied()
            .unwrap_or(f32::NAN);
        let mut grads = loss.backward();
        self.step += 1;
        let s = self.settings;
        let (c1, c2) = (1.0 - s.beta1.powi(self.step), 1.0 - s.beta2.powi(self.step));
        for (i, leaf) in leaves.iter().enumerate() {
            let Some(g) = leaf.grad_remove(&mut grads) else {
                // A parameter the loss does not reach (none in this UNet) keeps its value.
                continue;
            };
            let m = self.m[i].clone().mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1);
            let v = self.v[i].clone().mul_scalar(s.beta2)
                + g.powf_scalar(2.0).mul_scalar(1.0 - s.beta2);
            let update =
                m.clone().div_scalar(c1) / v.clone().div_scalar(c2).sqrt().add_scalar(s.eps);
            let decayed = self.values[i]
                .clone()
                .mul_scalar(1.0 - learning_rate * s.weight_decay);
            self.values[i] = decayed - update.mul_scalar(learning_rate);
            self.m[i] = m;
            self.v[i] = v;
        }
        if let (Some(decay), Some(ema)) = (s.ema_decay, self.ema.as_mut()) {
            let d = decay.min((1 + self.step) as f32 / (10 + self.step) as f32);
            for (e, v) in ema.iter_mut().zip(&self.values) {
                *e = e.clone().mul_scalar(d) + v.clone().mul_scalar(1.0 - d);
            }
        }
        Ok(value)
    }

    /// The weights sampled and saved: the moving average when one is kept.
    fn kept(&self) -> &[Tensor<1>] {
        self.ema.as_deref().unwrap_or(&self.values)
    }

    /// The UNet as trained so far (its moving average when one is kept), for sampling
    /// (plain tensors: no graph is kept).
    pub fn unet(&self) -> Result<UNet, CoreError> {
        UNet::build(
            self.config.clone(),
            &weights(&self.params, self.kept(), &self.plain),
            &self.plain,
        )
    }

    /// Writes `config.json` and `diffusion_pytorch_model.safetensors` (the moving average
    /// when one is kept) into `dir` (a pipeline's `unet/`), as diffusers saves them: f32, or f16 when `half` (half the bytes,
    /// as diffusers' fp16 variant).
    pub fn save(
        &self,
        dir: &Path,
        config_json: &serde_json::Value,
        half: bool,
    ) -> Result<(), CoreError> {
        let io = |e: std::io::Error| CoreError::Weights(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut bytes = Vec::with_capacity(self.params.len());
        for t in self.kept() {
            let v = t.clone().try_into_vec_as::<f32>().map_err(backend)?;
            bytes.push(match half {
                true => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect::<Vec<u8>>(),
                false => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            });
        }
        let dtype = match half {
            true => safetensors::Dtype::F16,
            false => safetensors::Dtype::F32,
        };
        let views: Vec<(String, safetensors::tensor::TensorView)> = self
            .params
            .iter()
            .zip(&bytes)
            .map(|(p, b)| {
                safetensors::tensor::TensorView::new(dtype, p.shape.clone(), b)
                    .map(|view| (p.name.clone(), view))
                    .map_err(backend)
            })
            .collect::<Result<_, _>>()?;
        safetensors::serialize_to_file(
            views,
            None,
            &dir.join("diffusion_pytorch_model.safetensors"),
        )
        .map_err(backend)?;
        let text = serde_json::to_vec_pretty(config_json).map_err(backend)?;
        std::fs::write(dir.join("config.json"), text).map_err(io)
    }
}

/// The parameters as weights a UNet is built from.
fn weights(params: &[Param], values: &[Tensor<1>], device: &Device) -> Weights {
    let map: HashMap<String, (Tensor<1>, Vec<usize>)> = params
        .iter()
        .zip(values)
        .map(|(p, t)| (p.name.clone(), (t.clone(), p.shape.clone())))
        .collect();
    Weights::from_tensors(map, device)
}
