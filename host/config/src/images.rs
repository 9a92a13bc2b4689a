//! `[models.image]`: what an image model (a diffusers folder) makes, checked by name.

use serde::Deserialize;

use crate::ConfigError;

/// `[models.image]`: an image model's sizes, steps and queue; each left out takes the
/// model's default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageModelConfig {
    /// Sizes served, `"WIDTHxHEIGHT"`, the default first (default: the native square, half
    /// of it, 3:2 and 2:3).
    pub sizes: Vec<String>,
    /// Steps of a default-quality image (default 20; 4 with LCM).
    pub steps: Option<u32>,
    /// Classifier-free guidance scale, 0 to 30 (default 7.5; 1 with LCM).
    pub guidance: Option<f32>,
    /// `euler`, `euler_a`, `ddim`, `dpmpp_2m` or `lcm` (default: the folder's own).
    pub scheduler: Option<String>,
    /// Generations that may wait while one runs; more get a 429 (default 4).
    pub max_waiting: Option<u32>,
}

/// The schedulers `[models.image] scheduler` may name.
pub const IMAGE_SCHEDULERS: [&str; 5] = ["euler", "euler_a", "ddim", "dpmpp_2m", "lcm"];
/// Most generations an image model may queue.
const MAX_IMAGE_WAITING: u32 = 1024;

impl ImageModelConfig {
    /// `sizes` as (width, height); each must be `WxH` with sides 1 to 4096.
    pub fn parsed_sizes(&self) -> Result<Vec<(usize, usize)>, String> {
        self.sizes
            .iter()
            .map(|s| {
                let (w, h) = s
                    .split_once('x')
                    .ok_or_else(|| format!("size `{s}` is not WIDTHxHEIGHT (e.g. \"512x512\")"))?;
                let side = |v: &str| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=4096).contains(n))
                        .ok_or_else(|| format!("size `{s}`: sides are 1 to 4096 pixels"))
                };
                Ok((side(w)?, side(h)?))
            })
            .collect()
    }

    pub(crate) fn validate(&self, id: &str) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("models `{id}`: image.{m}")));
        if let Err(e) = self.parsed_sizes() {
            return bad(format!("sizes: {e}"));
        }
        if let Some(s) = &self.scheduler
            && !IMAGE_SCHEDULERS.contains(&s.as_str())
        {
            return bad(format!(
                "scheduler `{s}` is not one of {}",
                IMAGE_SCHEDULERS.join(", ")
            ));
        }
        if let Some(g) = self.guidance
            && !(g.is_finite() && (0.0..=30.0).contains(&g))
        {
            return bad(format!("guidance {g} is not 0 to 30"));
        }
        if self.steps == Some(0) {
            return bad("steps is at least 1".into());
        }
        if self.max_waiting.is_some_and(|w| w > MAX_IMAGE_WAITING) {
            return bad(format!("max_waiting is at most {MAX_IMAGE_WAITING}"));
        }
        Ok(())
    }
}
