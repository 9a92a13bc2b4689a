//! Images made from an image (edits and variations), as diffusers' img2img and inpainting
//! pipelines make them with an ordinary UNet: the source resized to the model's input,
//! encoded (the VAE's mean, scaled; a pixel model's pixels as they are), noised to the step
//! that `strength` starts from, and denoised from there. With a mask, after every step the
//! region the mask keeps is put back as the source noised to the next step's level, and the
//! final picture takes the source's own pixels there: an edit changes only what its mask
//! opens, to the pixel.

use super::pipeline::{ImageRequest, Picture, Pipeline, Step, gaussian};
use crate::engine::sampler::Rng;
use crate::error::CoreError;

/// The largest side a source image may have, in pixels (larger ones are refused, not
/// resized: the decoded bytes are the caller's to bound).
pub const MAX_SOURCE_SIDE: usize = 4096;

/// The image an edit or a variation starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    pub width: usize,
    pub height: usize,
    /// `width × height` RGB bytes, row-major.
    pub rgb: Vec<u8>,
    /// Per pixel (`width × height`), how much may change: 255 where the image is repainted,
    /// 0 where it must stay as it is. `None`: all of it.
    pub mask: Option<Vec<u8>>,
    /// How far from the source, in (0, 1]: the share of the schedule run, from the source
    /// noised to that step's level (1: from noise, where the mask opens).
    pub strength: f32,
}

/// The first step an edit runs of `steps` at `strength`: at least one step runs (diffusers'
/// `get_timesteps`, in f64 as its Python floats are).
pub fn first_step(steps: usize, strength: f32) -> usize {
    let run = ((steps as f64 * f64::from(strength)) as usize).clamp(1, steps.max(1));
    steps.saturating_sub(run)
}

impl Pipeline {
    /// Checks a source image against what this pipeline can start from.
    pub(crate) fn check_source(&self, s: &SourceImage) -> Result<(), CoreError> {
        let setting = |param, message: String| Err(CoreError::ImageSetting { param, message });
        if !self.is_pixels() && self.encoder().is_none() {
            return setting(
                "image",
                "this model's VAE has no encoder, so it cannot start from an image".into(),
            );
        }
        if s.width == 0 || s.height == 0 || s.width > MAX_SOURCE_SIDE || s.height > MAX_SOURCE_SIDE
        {
            return setting(
                "image",
                format!(
                    "an image is 1 to {MAX_SOURCE_SIDE} pixels a side; got {}x{}",
                    s.width, s.height
                ),
            );
        }
        if s.rgb.len() != s.width * s.height * 3 {
            return setting(
                "image",
                format!(
                    "a {}x{} image is {} RGB bytes; got {}",
                    s.width,
                    s.height,
                    s.width * s.height * 3,
                    s.rgb.len()
                ),
            );
        }
        if s.mask
            .as_ref()
            .is_some_and(|m| m.len() != s.width * s.height)
        {
            return setting("mask", "the mask must be the image's size".into());
        }
        if !s.strength.is_finite() || s.strength <= 0.0 || s.strength > 1.0 {
            return setting(
                "strength",
                format!("strength is above 0 and at most 1; got {}", s.strength),
            );
        }
        Ok(())
    }

    /// Steps `r` runs: all of them, or from its source's first step on.
    pub fn steps_run(&self, r: &ImageRequest) -> usize {
        match &r.source {
            Some(s) => r.steps - first_step(r.steps, s.strength),
            None => r.steps,
        }
    }

    /// [`Pipeline::generate`] from `source` (already checked), on latents of `dims`.
    pub(crate) fn generate_from(
        &self,
        r: &ImageRequest,
        source: &SourceImage,
        dims: [usize; 4],
        on_step: &mut dyn FnMut(&Step) -> bool,
    ) -> Result<Picture, CoreError> {
        let [_, _, lh, lw] = dims;
        let p = self.pixels_per_latent();
        let (ih, iw) = (lh * p, lw * p);
        let rgb = resize_rgb(&source.rgb, source.width, source.height, iw, ih);
        let clean = self.encode_image(&rgb, iw, ih)?;
        let mut rng = Rng::new(r.seed);
        let noise = gaussian(&mut rng, clean.len());
        let scheduler = self.scheduler(r.scheduler.unwrap_or(self.scheduler_kind()), r.steps)?;
        let first = first_step(r.steps, source.strength);
        // A masked edit at full strength starts from pure noise, as diffusers' inpainting
        // does (the opened region keeps nothing of what was under it; the rest is put back
        // after each step); otherwise from the source noised to the first step's level.
        let start = match (&source.mask, first) {
            (Some(_), 0) => {
                let sigma = scheduler.init_noise_sigma();
                noise.iter().map(|v| v * sigma).collect()
            }
            _ => scheduler.add_noise(&clean, &noise, first),
        };
        // The mask at the latents' size, as a weight per position and channel.
        let keep: Option<Vec<f32>> = source.mask.as_ref().map(|m| {
            let small = resize_mask(m, source.width, source.height, lw, lh);
            small.repeat(dims[1])
        });
        let mut put_back = |i: usize, s: &super::scheduler::Scheduler, latents: &mut Vec<f32>| {
            if let Some(open) = &keep {
                let kept = s.add_noise(&clean, &noise, i + 1);
                for ((l, k), o) in latents.iter_mut().zip(&kept).zip(open) {
                    *l = o * *l + (1.0 - o) * k;
                }
            }
        };
        let mut step_noise = |n: usize| Some(gaussian(&mut rng, n));
        let kept = keep.as_deref().map(|open| (clean.as_slice(), open));
        let latents = self.denoise_from(
            r,
            scheduler,
            dims,
            (first, start),
            &mut step_noise,
            (&mut put_back, kept),
            on_step,
        )?;
        let mut picture = self.finish(r, &latents, dims)?;
        if let Some(mask) = &source.mask {
            let (w, h) = (picture.width, picture.height);
            let src = resize_rgb(&source.rgb, source.width, source.height, w, h);
            let open = resize_mask(mask, source.width, source.height, w, h);
            for (i, o) in open.iter().enumerate() {
                for c in 0..3 {
                    let k = i * 3 + c;
                    let v = o * f32::from(picture.rgb[k]) + (1.0 - o) * f32::from(src[k]);
                    picture.rgb[k] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        Ok(picture)
    }

    /// `rgb` (`w × h`, the model's input size) as the clean latents the UNet works on.
    fn encode_image(&self, rgb: &[u8], w: usize, h: usize) -> Result<Vec<f32>, CoreError> {
        let mut values = vec![0f32; 3 * w * h];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                values[c * w * h + i] = f32::from(px[c]) / 127.5 - 1.0;
            }
        }
        match self.encoder() {
            // The distribution's mean (diffusers' `sample_mode="argmax"`): the same source
            // and seed give the same image, and the seed's noise goes to the schedule.
            Some(encoder) => {
                let (mean, _, _) = encoder.encode_values(&values, [1, 3, h, w])?;
                let scale = self.latent_scale();
                Ok(mean.iter().map(|v| v * scale).collect())
            }
            None => Ok(values),
        }
    }
}

/// The source rectangle `[from, to)` of destination index `i` of `dst` over `src`: at least
/// one source pixel, so enlarging repeats pixels and shrinking averages them.
fn span(i: usize, src: usize, dst: usize) -> (usize, usize) {
    let from = i * src / dst;
    let to = ((i + 1) * src).div_ceil(dst).clamp(from + 1, src);
    (from, to)
}

/// `rgb` (`sw × sh`) resampled to `dw × dh` by area averaging.
pub fn resize_rgb(rgb: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    if (sw, sh) == (dw, dh) {
        return rgb.to_vec();
    }
    let mut out = Vec::with_capacity(dw * dh * 3);
    for y in 0..dh {
        let (y0, y1) = span(y, sh, dh);
        for x in 0..dw {
            let (x0, x1) = span(x, sw, dw);
            let mut sum = [0u64; 3];
            for sy in y0..y1 {
                for sx in x0..x1 {
                    let at = (sy * sw + sx) * 3;
                    for c in 0..3 {
                        sum[c] += u64::from(rgb[at + c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            out.extend(sum.iter().map(|s| ((s + n / 2) / n) as u8));
        }
    }
    out
}

/// A mask (`sw × sh` bytes, 255 open) resampled to `dw × dh` as weights in [0, 1], by area
/// averaging: a latent position half covered by the opening is half repainted.
pub fn resize_mask(mask: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let (y0, y1) = span(y, sh, dh);
        for x in 0..dw {
            let (x0, x1) = span(x, sw, dw);
            let mut sum = 0u64;
            for sy in y0..y1 {
                for sx in x0..x1 {
                    sum += u64::from(mask[sy * sw + sx]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            out.push(sum as f32 / n / 255.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{first_step, resize_mask, resize_rgb};

    #[test]
    fn strength_picks_the_first_step_and_at_least_one_runs() {
        assert_eq!(first_step(20, 1.0), 0);
        assert_eq!(first_step(20, 0.75), 5);
        assert_eq!(first_step(20, 0.01), 19);
        assert_eq!(first_step(3, 0.5), 2);
        // diffusers computes in f64: 100 x 0.29 is 28 steps there, not f32's 29.
        assert_eq!(first_step(100, 0.29), 72);
        assert_eq!(first_step(0, 1.0), 0);
    }

    #[test]
    fn resizing_averages_down_and_repeats_up() {
        // 2x2 -> 1x1: the mean; 1x1 -> 2x2: four copies; odd sizes cover every pixel.
        let rgb = [0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255];
        assert_eq!(resize_rgb(&rgb, 2, 2, 1, 1), [128, 128, 128]);
        assert_eq!(resize_rgb(&[9, 8, 7], 1, 1, 2, 2), [9, 8, 7].repeat(4));
        let odd: Vec<u8> = (0..5 * 3 * 3).map(|i| i as u8).collect();
        assert_eq!(resize_rgb(&odd, 5, 3, 2, 2).len(), 12);
        assert_eq!(resize_rgb(&odd, 5, 3, 5, 3), odd);
        let mask = [255, 0, 255, 0];
        assert_eq!(resize_mask(&mask, 2, 2, 1, 1), [0.5]);
        assert_eq!(resize_mask(&mask, 2, 2, 2, 2), [1.0, 0.0, 1.0, 0.0]);
    }
}
