//! A Stable Diffusion pipeline from a diffusers folder: the prompt (and negative prompt)
//! encoded, seeded Gaussian latents, the scheduler's steps with classifier-free guidance, the
//! latents decoded to RGB bytes. Deterministic for a seed on a backend; the caller sees each
//! step (progress) and may stop between steps.

use std::path::Path;

use serde::Deserialize;

use super::clip::ClipText;
use super::edit::SourceImage;
use super::scheduler::{Kind, Scheduler, SchedulerConfig};
use super::taesd::TinyDecoder;
use super::text::TextEncoder;
use super::tokenizer::ClipTokenizer;
use super::unet::UNet;
use super::vae::VaeDecoder;
use super::vae_encoder::VaeEncoder;
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
    /// The image an edit or a variation starts from; `None` starts from noise.
    pub source: Option<SourceImage>,
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
    /// The scheduler's step (an edit's first step is not the schedule's first).
    index: usize,
    /// An edit's clean latents and the mask's opening per value: what the estimate keeps.
    kept: Option<Kept<'a>>,
    scheduler: &'a Scheduler,
    eps: &'a [f32],
    sample: &'a [f32],
}

impl Step<'_> {
    /// The clean latents the step predicts (for a partial image: decode them).
    pub fn estimate(&self) -> Vec<f32> {
        let mut x0 = self
            .scheduler
            .predicted_original(self.eps, self.index, self.sample);
        // An edit's preview shows the kept region as it will end, not the model's guess.
        if let Some((clean, open)) = self.kept {
            for ((x, c), o) in x0.iter_mut().zip(clean).zip(open) {
                *x = o * *x + (1.0 - o) * c;
            }
        }
        x0
    }
}

/// What an edit does to the latents after each step (step, scheduler, latents).
pub(crate) type AfterStep<'a> = &'a mut dyn FnMut(usize, &Scheduler, &mut Vec<f32>);
/// An edit's clean latents and the mask's opening per value.
pub(crate) type Kept<'a> = (&'a [f32], &'a [f32]);

/// A loaded pipeline.
pub struct Pipeline {
    text: TextEncoder,
    unet: UNet,
    /// The latents' decoder; none for a model that denoises pixels themselves.
    vae: Option<VaeDecoder>,
    /// The VAE's encoder, where the folder has one (edits and variations need it).
    encoder: Option<VaeEncoder>,
    tiny: Option<TinyDecoder>,
    scheduler: SchedulerConfig,
    kind: Kind,
}

/// Where the folder of a pixel pipeline's sentence-transformers text encoder is
/// (`text_encoder/cinder.json`).
#[derive(Deserialize)]
struct SentenceEncoder {
    /// `~/` is the home folder; a relative path is from the pipeline's folder.
    path: String,
}

/// The largest factor a pixel model's images are enlarged by on output.
pub const MAX_PIXEL_UPSCALE: usize = 32;

impl Pipeline {
    /// Loads a `StableDiffusionPipeline` folder (a TAESD folder beside the components,
    /// `taesd/`, is the fast decoder when present), or a `CinderPixelPipeline` (a UNet on
    /// pixels, conditioned on a sentence-transformers model's vector).
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        let pixels = match index.class.as_str() {
            "StableDiffusionPipeline" => false,
            "CinderPixelPipeline" => true,
            other => {
                return Err(CoreError::Weights(format!(
                    "pipeline class {other} is not supported (StableDiffusionPipeline, CinderPixelPipeline)"
                )));
            }
        };
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
        let (text, vae, encoder) = match pixels {
            false => {
                // One read of `vae/` for both halves.
                let (config, weights) = super::vae::open(&dir.join("vae"), &device)?;
                (
                    TextEncoder::Clip {
                        tokenizer: Box::new(ClipTokenizer::load(&dir.join("tokenizer"))?),
                        model: Box::new(ClipText::load_on(&dir.join("text_encoder"), &device)?),
                    },
                    Some(VaeDecoder::build(config.clone(), &weights, &device)?),
                    VaeEncoder::build(config, &weights, &device)?,
                )
            }
            true => {
                let at: SentenceEncoder = read_json(&dir.join("text_encoder/cinder.json"))?;
                let path = match at.path.strip_prefix("~/") {
                    Some(rest) => std::env::var_os("HOME")
                        .map(std::path::PathBuf::from)
                        .unwrap_or_default()
                        .join(rest),
                    None => dir.join(&at.path),
                };
                (TextEncoder::sentence(&path, pref)?, None, None)
            }
        };
        let pipeline = Pipeline {
            text,
            unet: UNet::load_on(&dir.join("unet"), &device)?,
            vae,
            encoder,
            tiny,
            scheduler,
            kind,
        };
        if pixels && pipeline.unet.config().sample_size.is_none() {
            return Err(CoreError::Weights(
                "a pixel pipeline's UNet must give its sample_size".into(),
            ));
        }
        if pipeline.text.width() != pipeline.unet.config().cross_attention_dim {
            return Err(CoreError::Weights(
                "the text encoder's width is not the UNet's cross-attention width".into(),
            ));
        }
        Ok((pipeline, backend))
    }

    /// Pixels per latent position (2 to the number of the VAE's levels less one; 1 for a
    /// pixel model).
    pub fn pixels_per_latent(&self) -> usize {
        self.vae
            .as_ref()
            .map_or(1, |v| 1 << (v.config().block_out_channels.len() - 1))
    }

    /// Whether the UNet denoises pixels (no VAE): images are made at its native size and
    /// enlarged to the size asked for.
    pub fn is_pixels(&self) -> bool {
        self.vae.is_none()
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
        self.text.count(prompt)
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
        let setting = |param, message: String| Err(CoreError::ImageSetting { param, message });
        if self.is_pixels() {
            let n = self.native_side().unwrap_or(1);
            let k = r.width / n;
            if r.width != r.height || !r.width.is_multiple_of(n) || k == 0 || k > MAX_PIXEL_UPSCALE
            {
                return setting(
                    "size",
                    format!(
                        "this model makes {n}x{n} images, enlarged by a whole factor up to {MAX_PIXEL_UPSCALE}: square sizes that are multiples of {n}; got {}x{}",
                        r.width, r.height
                    ),
                );
            }
        } else {
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
        }
        let most = self.max_steps(r.scheduler.unwrap_or(self.kind));
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
        if let Some(source) = &r.source {
            self.check_source(source)?;
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
        let dims = self.latent_dims(r);
        if let Some(source) = &r.source {
            return self.generate_from(r, source, dims, on_step);
        }
        let mut rng = Rng::new(r.seed);
        let count = dims.iter().product::<usize>();
        let initial = gaussian(&mut rng, count);
        let scheduler = self.scheduler(r.scheduler.unwrap_or(self.kind), r.steps)?;
        let mut noise = |n: usize| Some(gaussian(&mut rng, n));
        let latents = self.denoise(r, scheduler, dims, initial, &mut noise, on_step)?;
        self.finish(r, &latents, dims)
    }

    /// The latents' shape for `r`: its size over the VAE's factor, or a pixel model's native
    /// square.
    pub(crate) fn latent_dims(&self, r: &ImageRequest) -> [usize; 4] {
        let p = self.pixels_per_latent();
        let channels = self.unet.config().in_channels;
        let (h, w) = match (self.is_pixels(), self.native_side()) {
            (true, Some(n)) => (n, n),
            _ => (r.height / p, r.width / p),
        };
        [1, channels, h, w]
    }

    /// Final latents as the picture `r` asked for (a pixel model's enlarged to its size).
    pub(crate) fn finish(
        &self,
        r: &ImageRequest,
        latents: &[f32],
        dims: [usize; 4],
    ) -> Result<Picture, CoreError> {
        let picture = self.decode(latents, dims, r.fast_decode)?;
        match self.is_pixels() {
            true => Ok(enlarge(picture, r.width / dims[3].max(1))),
            false => Ok(picture),
        }
    }

    /// A step's partial image for `r`: its clean estimate decoded (by the fast decoder when
    /// `fast` and there is one), a pixel model's enlarged to `r`'s size.
    pub fn preview(&self, r: &ImageRequest, step: &Step, fast: bool) -> Result<Picture, CoreError> {
        let picture = self.decode(&step.estimate(), step.dims, fast && self.tiny.is_some())?;
        match self.is_pixels() {
            true => Ok(enlarge(picture, r.width / step.dims[3].max(1))),
            false => Ok(picture),
        }
    }

    /// The VAE's encoder, where the folder has one.
    pub(crate) fn encoder(&self) -> Option<&VaeEncoder> {
        self.encoder.as_ref()
    }

    /// The VAE's scaling factor (1 for a pixel model).
    pub(crate) fn latent_scale(&self) -> f32 {
        self.vae.as_ref().map_or(1.0, |v| v.config().scaling_factor)
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
        scheduler: Scheduler,
        dims: [usize; 4],
        initial: Vec<f32>,
        step_noise: &mut dyn FnMut(usize) -> Option<Vec<f32>>,
        on_step: &mut dyn FnMut(&Step) -> bool,
    ) -> Result<Vec<f32>, CoreError> {
        let sigma = scheduler.init_noise_sigma();
        let latents: Vec<f32> = initial.iter().map(|v| v * sigma).collect();
        let mut keep = |_: usize, _: &Scheduler, _: &mut Vec<f32>| {};
        self.denoise_from(
            r,
            scheduler,
            dims,
            (0, latents),
            step_noise,
            (&mut keep, None),
            on_step,
        )
    }

    /// The denoising loop from step `start.0` on the latents `start.1` (already at that
    /// step's noise level); `after_step.0(i, scheduler, latents)` may change the latents
    /// after step `i` (an edit puts back what its mask keeps), and `after_step.1` is the
    /// clean latents and opening the steps' estimates keep.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn denoise_from(
        &self,
        r: &ImageRequest,
        mut scheduler: Scheduler,
        dims: [usize; 4],
        start: (usize, Vec<f32>),
        step_noise: &mut dyn FnMut(usize) -> Option<Vec<f32>>,
        after_step: (AfterStep, Option<Kept>),
        on_step: &mut dyn FnMut(&Step) -> bool,
    ) -> Result<Vec<f32>, CoreError> {
        let (first, mut latents) = start;
        let (after_step, kept) = after_step;
        // Guidance between two identical prompts (a variation's empty one) changes nothing:
        // one UNet pass a step instead of two.
        let guided = r.guidance > 1.0 && r.prompt != r.negative_prompt;
        let prompts = match guided {
            true => vec![r.negative_prompt.as_str(), r.prompt.as_str()],
            false => vec![r.prompt.as_str()],
        };
        let rows = prompts.len();
        let (context, context_dims) = self.text.encode(&prompts)?;
        let kind = scheduler.kind();
        let per = latents.len();
        let steps = scheduler.timesteps();
        for (i, &t) in steps.iter().enumerate().skip(first) {
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
            let mut next = scheduler.step(&eps, i, &latents, noise.as_deref());
            after_step(i, &scheduler, &mut next);
            let step = Step {
                done: i + 1 - first,
                of: steps.len() - first,
                dims,
                index: i,
                kept,
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
        let (image, shape) = match (&self.tiny, &self.vae, fast) {
            (Some(tiny), _, true) => tiny.decode_values(latents, dims)?,
            (_, Some(vae), _) => {
                let scale = vae.config().scaling_factor;
                let scaled: Vec<f32> = latents.iter().map(|v| v / scale).collect();
                vae.decode_values(&scaled, dims)?
            }
            // A pixel model's latents are the image.
            (_, None, _) => (latents.to_vec(), dims),
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

/// `picture` enlarged `factor` times (each pixel a `factor`-wide square: a pixel model's
/// small images stay crisp).
fn enlarge(picture: Picture, factor: usize) -> Picture {
    if factor <= 1 {
        return picture;
    }
    let (w, h) = (picture.width * factor, picture.height * factor);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let row = (y / factor) * picture.width;
        for x in 0..w {
            let at = (row + x / factor) * 3;
            rgb.extend_from_slice(&picture.rgb[at..at + 3]);
        }
    }
    Picture {
        width: w,
        height: h,
        rgb,
    }
}
