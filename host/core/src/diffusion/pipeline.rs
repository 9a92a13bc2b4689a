//! A Stable Diffusion pipeline from a diffusers folder: the prompt (and negative prompt)
//! encoded, seeded Gaussian latents, the scheduler's steps with classifier-free guidance, the
//! latents decoded to RGB bytes. Deterministic for a seed on a backend; the caller sees each
//! step (progress) and may stop between steps.

use std::path::Path;

use serde::Deserialize;

use super::clip::ClipText;
use super::scheduler::{Kind, Scheduler, SchedulerConfig};
use super::taesd::TinyDecoder;
use super::tokenizer::ClipTokenizer;
use super::unet::UNet;
use super::vae::VaeDecoder;
use super::weights::read_json;
use crate::engine::sampler::Rng;
use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference};

/// The largest side an image may have, in pixels.
pub const MAX_SIDE: usize = 2048;
/// The most steps one image takes.
pub const MAX_STEPS: usize = 200;
/// The largest image, as a multiple of the model's native area (a request's cost grows with
/// the area, and its self-attention with its square).
pub const MAX_AREA_FACTOR: usize = 4;
/// LCM's original schedule, which its steps are taken from.
const LCM_MAX_STEPS: usize = 50;

/// One image to make.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub prompt: String,
    /// What the image should not be (the unconditional prompt; empty is diffusers' default).
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance; at most 1 turns it off (one UNet pass a step instead of two).
    pub guidance: f32,
    pub seed: u64,
    /// The pipeline's own scheduler when `None`.
    pub scheduler: Option<Kind>,
    /// Decode with the tiny autoencoder, when the pipeline has one.
    pub fast_decode: bool,
}

/// An image: `width × height` RGB bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class: String,
    scheduler: (Option<String>, Option<String>),
}

/// One finished step of a generation, as the caller's progress callback sees it.
pub struct Step<'a> {
    /// Steps done (1 after the first) and in all.
    pub done: usize,
    pub of: usize,
    /// The latents' shape.
    pub dims: [usize; 4],
    scheduler: &'a Scheduler,
    eps: &'a [f32],
    sample: &'a [f32],
}

impl Step<'_> {
    /// The clean latents the step predicts (for a partial image: decode them).
    pub fn estimate(&self) -> Vec<f32> {
        self.scheduler
            .predicted_original(self.eps, self.done - 1, self.sample)
    }
}

/// A loaded pipeline.
pub struct Pipeline {
    tokenizer: ClipTokenizer,
    text: ClipText,
    unet: UNet,
    vae: VaeDecoder,
    tiny: Option<TinyDecoder>,
    scheduler: SchedulerConfig,
    kind: Kind,
}

impl Pipeline {
    /// Loads a `StableDiffusionPipeline` folder; a TAESD folder beside the components
    /// (`taesd/`) is the fast decoder when present.
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        if index.class != "StableDiffusionPipeline" {
            return Err(CoreError::Weights(format!(
                "pipeline class {} is not supported (StableDiffusionPipeline)",
                index.class
            )));
        }
        let class = index.scheduler.1.unwrap_or_default();
        // SD 1.x folders name PNDM, which is not built: such a pipeline runs Euler on the same
        // schedule config (diffusers users swap the scheduler the same way), and says so.
        let kind = Kind::from_class(&class).unwrap_or_else(|| {
            tracing::warn!(
                scheduler = %class,
                "the pipeline's scheduler is not built; it runs Euler with the same config"
            );
            Kind::Euler
        });
        let scheduler: SchedulerConfig = read_json(&dir.join("scheduler/scheduler_config.json"))?;
        // A schedule this core cannot run fails the load, not each request.
        Scheduler::new(kind, &scheduler, 1)?;
        let (device, backend) = super::device(pref)?;
        let tiny_dir = dir.join("taesd");
        let tiny = match tiny_dir.join("config.json").exists() {
            true => Some(TinyDecoder::load_on(&tiny_dir, &device)?),
            false => None,
        };
        let pipeline = Pipeline {
            tokenizer: ClipTokenizer::load(&dir.join("tokenizer"))?,
            text: ClipText::load_on(&dir.join("text_encoder"), &device)?,
            unet: UNet::load_on(&dir.join("unet"), &device)?,
            vae: VaeDecoder::load_on(&dir.join("vae"), &device)?,
            tiny,
            scheduler,
            kind,
        };
        if pipeline.text.hidden_size() != pipeline.unet.config().cross_attention_dim {
            return Err(CoreError::Weights(
                "the text encoder's width is not the UNet's cross-attention width".into(),
            ));
        }
        Ok((pipeline, backend))
    }

    /// Pixels per latent position (2 to the number of the VAE's levels less one).
    pub fn pixels_per_latent(&self) -> usize {
        1 << (self.vae.config().block_out_channels.len() - 1)
    }

    /// What every side must be a multiple of.
    pub fn size_multiple(&self) -> usize {
        self.pixels_per_latent() << (self.unet.config().block_out_channels.len() - 1)
    }

    /// The size the model was trained at (its UNet's `sample_size` in pixels).
    pub fn native_side(&self) -> Option<usize> {
        self.unet
            .config()
            .sample_size
            .map(|s| s * self.pixels_per_latent())
    }

    /// How many tokens of `prompt` the text encoder reads.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<usize, CoreError> {
        self.tokenizer.count(prompt)
    }

    pub fn has_fast_decoder(&self) -> bool {
        self.tiny.is_some()
    }

    /// The pipeline's own scheduler.
    pub fn scheduler_kind(&self) -> Kind {
        self.kind
    }

    /// The most steps `kind` takes on this pipeline.
    pub fn max_steps(&self, kind: Kind) -> usize {
        match kind {
            Kind::Lcm => LCM_MAX_STEPS,
            _ => MAX_STEPS.min(self.scheduler.num_train_timesteps),
        }
    }

    /// Checks `r` against what this pipeline makes.
    pub fn check(&self, r: &ImageRequest) -> Result<(), CoreError> {
        let m = self.size_multiple();
        let fits = |s: usize| s >= m && s <= MAX_SIDE && s.is_multiple_of(m);
        let area = self
            .native_side()
            .map_or(MAX_SIDE * MAX_SIDE, |n| n * n * MAX_AREA_FACTOR);
        if !fits(r.width) || !fits(r.height) || r.width * r.height > area {
            return Err(CoreError::ImageSize {
                width: r.width,
                height: r.height,
                multiple: m,
                max_side: MAX_SIDE,
                max_pixels: area,
            });
        }
        let most = self.max_steps(r.scheduler.unwrap_or(self.kind));
        let setting = |param, message: String| Err(CoreError::ImageSetting { param, message });
        if r.steps == 0 || r.steps > most {
            return setting("steps", format!("steps is 1 to {most}; got {}", r.steps));
        }
        if !r.guidance.is_finite() || !(0.0..=30.0).contains(&r.guidance) {
            return setting(
                "guidance",
                format!("guidance is 0 to 30; got {}", r.guidance),
            );
        }
        if r.fast_decode && self.tiny.is_none() {
            return setting("decoder", "this model has no fast decoder".into());
        }
        Ok(())
    }

    /// Makes the image `r` asks for. `on_step` is called after each step; it returns
    /// `false` to stop (the generation then ends [`CoreError::Cancelled`]).
    pub fn generate(
        &self,
        r: &ImageRequest,
        on_step: &mut dyn FnMut(&Step) -> bool,
    ) -> Result<Picture, CoreError> {
        self.check(r)?;
        let p = self.pixels_per_latent();
        let channels = self.unet.config().in_channels;
        let dims = [1, channels, r.height / p, r.width / p];
        let mut rng = Rng::new(r.seed);
        let count = dims.iter().product::<usize>();
        let initial = gaussian(&mut rng, count);
        let scheduler = self.scheduler(r.scheduler.unwrap_or(self.kind), r.steps)?;
        let mut noise = |n: usize| Some(gaussian(&mut rng, n));
        let latents = self.denoise(r, scheduler, dims, initial, &mut noise, on_step)?;
        self.decode(&latents, dims, r.fast_decode)
    }

    /// `kind` set up for `steps` steps with the pipeline's scheduler config.
    pub fn scheduler(&self, kind: Kind, steps: usize) -> Result<Scheduler, CoreError> {
        Scheduler::new(kind, &self.scheduler, steps)
    }

    /// The denoising loop of `scheduler` from `initial` noise (`dims`), `step_noise` giving
    /// the fresh noise ancestral schedulers add; the final latents.
    pub fn denoise(
        &self,
        r: &ImageRequest,
        mut scheduler: Scheduler,
        dims: [usize; 4],
        initial: Vec<f32>,
        step_noise: &mut dyn FnMut(usize) -> Option<Vec<f32>>,
        on_step: &mut dyn FnMut(&Step) -> bool,
    ) -> Result<Vec<f32>, CoreError> {
        let guided = r.guidance > 1.0;
        let (cond, _) = self.tokenizer.encode(&r.prompt)?;
        let batch = match guided {
            true => vec![self.tokenizer.encode(&r.negative_prompt)?.0, cond],
            false => vec![cond],
        };
        let rows = batch.len();
        let context = self.text.hidden_states(&batch)?;
        let context_dims = [rows, self.tokenizer.length(), self.text.hidden_size()];
        let kind = scheduler.kind();
        let per = initial.len();
        let sigma = scheduler.init_noise_sigma();
        let mut latents: Vec<f32> = initial.iter().map(|v| v * sigma).collect();
        let steps = scheduler.timesteps();
        for (i, &t) in steps.iter().enumerate() {
            let mut input = latents.repeat(rows);
            scheduler.scale_model_input(&mut input, i);
            let out = self.unet.predict(
                &input,
                [rows, dims[1], dims[2], dims[3]],
                t,
                &context,
                context_dims,
            )?;
            let eps: Vec<f32> = match guided {
                true => (0..per)
                    .map(|k| out[k] + r.guidance * (out[per + k] - out[k]))
                    .collect(),
                false => out,
            };
            let noise = match kind {
                Kind::EulerAncestral | Kind::Lcm => step_noise(per),
                _ => None,
            };
            let next = scheduler.step(&eps, i, &latents, noise.as_deref());
            let step = Step {
                done: i + 1,
                of: steps.len(),
                dims,
                scheduler: &scheduler,
                eps: &eps,
                sample: &latents,
            };
            if !on_step(&step) {
                return Err(CoreError::Cancelled);
            }
            latents = next;
        }
        Ok(latents)
    }

    /// Final latents as RGB bytes (the KL decoder, or the tiny one when `fast`).
    pub fn decode(
        &self,
        latents: &[f32],
        dims: [usize; 4],
        fast: bool,
    ) -> Result<Picture, CoreError> {
        let (image, shape) = match (&self.tiny, fast) {
            (Some(tiny), true) => tiny.decode_values(latents, dims)?,
            _ => {
                let scale = self.vae.config().scaling_factor;
                let scaled: Vec<f32> = latents.iter().map(|v| v / scale).collect();
                self.vae.decode_values(&scaled, dims)?
            }
        };
        let [_, c, h, w] = shape;
        let mut rgb = Vec::with_capacity(h * w * 3);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3.min(c) {
                    let v = image[ch * h * w + y * w + x];
                    rgb.push(((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        Ok(Picture {
            width: w,
            height: h,
            rgb,
        })
    }
}

/// `n` standard normal values (Box–Muller on the seeded generator).
pub(crate) fn gaussian(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u = 1.0 - rng.next_f64();
        let v = rng.next_f64();
        let r = (-2.0 * u.ln()).sqrt();
        let a = std::f64::consts::TAU * v;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}
