//! An image model ready to serve: its pipeline on its own thread, with what requests may ask
//! of it (sizes, steps, guidance) settled at load from the folder and the config.

use std::path::Path;

use tokio::sync::mpsc;
use tracing::info;

use super::engine::{ImageEvent, ImageHandle, ImageJob};
use super::pipeline::Pipeline;
use super::scheduler::Kind;
use crate::error::CoreError;
use crate::models::backend::BackendPreference;

/// An image model's settings from the config; each `None` or empty takes the default.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSettings {
    /// The sizes served (width, height); empty: the native square, half of it, and the
    /// native 3:2 and 2:3 shapes.
    pub sizes: Vec<(usize, usize)>,
    /// Steps of a default-quality image (default: 20, or 4 for LCM).
    pub steps: Option<usize>,
    /// Classifier-free guidance (default 7.5, or 1 for LCM).
    pub guidance: Option<f32>,
    /// The scheduler (default: the folder's own).
    pub scheduler: Option<Kind>,
    /// Generations that may wait while one runs; more are refused as busy.
    pub max_waiting: usize,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            sizes: Vec::new(),
            steps: None,
            guidance: None,
            scheduler: None,
            max_waiting: 4,
        }
    }
}

/// What plugins may know about an image model.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageModelInfo {
    pub id: String,
    /// Sizes served, (width, height), the default first.
    pub sizes: Vec<(usize, usize)>,
    /// Steps of a default-quality image, and the most a request may take.
    pub default_steps: usize,
    pub max_steps: usize,
    pub guidance: f32,
    /// The scheduler's short name (`euler`, `lcm`, ...).
    pub scheduler: Kind,
    /// Whether the tiny autoencoder is there as a fast decoder.
    pub fast_decoder: bool,
    /// Unix seconds when it was loaded.
    pub created: u64,
    /// Backend plus a digest of the folder's configs.
    pub fingerprint: String,
}

/// One image model, ready to serve.
pub struct LoadedImageModel {
    pub info: ImageModelInfo,
    pub engine: ImageHandle,
}

impl LoadedImageModel {
    /// Loads a diffusers folder and starts its thread.
    pub fn load(
        id: &str,
        dir: &Path,
        backend: BackendPreference,
        settings: &ImageSettings,
        created: u64,
    ) -> Result<Self, CoreError> {
        info!(model = %id, path = %dir.display(), "loading image model");
        let (pipeline, backend) = Pipeline::load(dir, backend)?;
        let scheduler = settings.scheduler.unwrap_or(pipeline.scheduler_kind());
        let max_steps = pipeline.max_steps(scheduler);
        let (steps, guidance) = match scheduler {
            Kind::Lcm => (4, 1.0),
            _ => (20, 7.5),
        };
        let default_steps = settings.steps.unwrap_or(steps).min(max_steps);
        let guidance = settings.guidance.unwrap_or(guidance);
        let sizes = match settings.sizes.is_empty() {
            true => default_sizes(&pipeline),
            false => settings.sizes.clone(),
        };
        let info = ImageModelInfo {
            id: id.to_owned(),
            sizes,
            default_steps,
            max_steps,
            guidance,
            scheduler,
            fast_decoder: pipeline.has_fast_decoder(),
            created,
            fingerprint: format!("fp_{}_{:08x}", backend.name(), folder_digest(dir)),
        };
        // Every configured size, step count and guidance must be one the pipeline makes:
        // a config mistake fails the load, not each request.
        for &(width, height) in &info.sizes {
            pipeline.check(&super::pipeline::ImageRequest {
                prompt: String::new(),
                negative_prompt: String::new(),
                width,
                height,
                steps: info.default_steps,
                guidance: info.guidance,
                seed: 0,
                scheduler: Some(scheduler),
                fast_decode: false,
                source: None,
            })?;
        }
        let engine = ImageHandle::spawn(id, pipeline, settings.max_waiting)?;
        info!(model = %id, backend = backend.name(), sizes = ?info.sizes, "image model ready");
        Ok(LoadedImageModel { info, engine })
    }

    /// Queues `job` (its size must be one of the model's, its scheduler defaults to the
    /// model's); events arrive on the receiver, and dropping it cancels the job.
    pub fn submit(&self, mut job: ImageJob) -> Result<mpsc::Receiver<ImageEvent>, CoreError> {
        let r = &job.request;
        if !self.info.sizes.contains(&(r.width, r.height)) {
            return Err(CoreError::ImageSetting {
                param: "size",
                message: format!(
                    "{}x{} is not a size this model makes; it makes {}",
                    r.width,
                    r.height,
                    self.sizes_listed()
                ),
            });
        }
        job.request.scheduler.get_or_insert(self.info.scheduler);
        self.engine.submit(job)
    }

    /// The sizes as `WxH`, comma-separated.
    pub fn sizes_listed(&self) -> String {
        self.info
            .sizes
            .iter()
            .map(|(w, h)| format!("{w}x{h}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The native square first, then half of it, then 3:2 and 2:3 at the native height (or
/// width), each side rounded to what the pipeline needs; sizes it cannot make are left out.
/// A pixel model: its native square enlarged 8 times, then 1, 2, 4, 16 and 32 times (a
/// 32-pixel model's 1024x1024, the size OpenAI clients ask for most).
fn default_sizes(pipeline: &Pipeline) -> Vec<(usize, usize)> {
    if let (true, Some(n)) = (pipeline.is_pixels(), pipeline.native_side()) {
        // A pixel model makes its native size, enlarged 8 times by default.
        return [8, 1, 2, 4, 16, 32]
            .into_iter()
            .filter(|&k| k <= super::pipeline::MAX_PIXEL_UPSCALE)
            .map(|k| (n * k, n * k))
            .collect();
    }
    let m = pipeline.size_multiple();
    let n = pipeline.native_side().unwrap_or(512);
    let round = |s: usize| (s / m).max(1) * m;
    let long = round(n * 3 / 2);
    let mut sizes = vec![(round(n), round(n))];
    for size in [
        (round(n / 2), round(n / 2)),
        (long, round(n)),
        (round(n), long),
    ] {
        if !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    sizes.retain(|&(w, h)| w * h <= n * n * super::pipeline::MAX_AREA_FACTOR);
    sizes
}

/// A digest of the pipeline's JSON files and the sizes of its weights (hashing gigabytes on
/// every start is not worth it).
fn folder_digest(dir: &Path) -> u32 {
    let mut bytes = Vec::new();
    for part in ["", "text_encoder", "unet", "vae", "scheduler", "taesd"] {
        let Ok(entries) = std::fs::read_dir(dir.join(part)) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            if let Some(name) = path.file_name() {
                bytes.extend_from_slice(name.as_encoded_bytes());
            }
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => bytes.extend(std::fs::read(&path).unwrap_or_default()),
                _ => {
                    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                    bytes.extend_from_slice(&len.to_le_bytes());
                }
            }
        }
    }
    crate::registry::fnv(bytes.into_iter()) as u32
}
