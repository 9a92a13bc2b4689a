//! The encoder of diffusers' `AutoencoderKL` (what turns an image into latents, for edits
//! and variations): a conv in, down blocks of residual blocks each ending in a stride-2
//! conv (padded on the right and bottom only, as diffusers pads it), the decoder's mid block,
//! a group-norm, SiLU, conv head giving the latent distribution's mean and log-variance, and
//! `quant_conv`.

use std::path::Path;

use burn::tensor::activation::silu;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, TensorData};

use super::blocks::{Attention, Conv, GroupNorm, Resnet, to_image, to_sequence};
use super::vae::VaeConfig;
use super::weights::Weights;
use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference};

/// The latent distribution's mean and log-variance as values, and their shape.
pub type Encoded = (Vec<f32>, Vec<f32>, [usize; 4]);

/// diffusers' VAE norms.
const EPS: f64 = 1e-6;

/// A loaded VAE encoder.
pub struct VaeEncoder {
    config: VaeConfig,
    device: Device,
    conv_in: Conv,
    /// Each down block's residual blocks and its downsampler, if it has one.
    down: Vec<(Vec<Resnet>, Option<Conv>)>,
    mid: [Resnet; 2],
    mid_attention: Option<(GroupNorm, Attention)>,
    norm_out: GroupNorm,
    conv_out: Conv,
    quant: Option<Conv>,
}

impl VaeEncoder {
    /// Loads the encoder half of a pipeline's `vae/`.
    pub(crate) fn load_on(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let (c, w) = super::vae::open(dir, device)?;
        Self::build(c, &w, device)?
            .ok_or_else(|| CoreError::Weights(format!("{}: no VAE encoder", dir.display())))
    }

    /// The encoder from an open `vae/`, or `None` where it has none (a decoder-only export).
    pub(crate) fn build(
        c: VaeConfig,
        w: &Weights,
        device: &Device,
    ) -> Result<Option<Self>, CoreError> {
        if !w.has("encoder.conv_in.weight") {
            return Ok(None);
        }
        let g = c.norm_num_groups;
        let e = |s: &str| format!("encoder.{s}");
        let levels = c.block_out_channels.len();
        let down = (0..levels)
            .map(|i| {
                let resnets = (0..c.layers_per_block)
                    .map(|j| Resnet::load(w, &e(&format!("down_blocks.{i}.resnets.{j}")), g, EPS))
                    .collect::<Result<Vec<_>, _>>()?;
                let downsample = match i + 1 < levels {
                    true => Some(
                        Conv::load(w, &e(&format!("down_blocks.{i}.downsamplers.0.conv")), 2)?
                            .with_padding(0),
                    ),
                    false => None,
                };
                Ok((resnets, downsample))
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let mid_attention = match c.mid_block_add_attention {
            true => Some((
                GroupNorm::load(w, &e("mid_block.attentions.0.group_norm"), g, EPS)?,
                Attention::load(w, &e("mid_block.attentions.0"), 1)?,
            )),
            false => None,
        };
        Ok(Some(VaeEncoder {
            conv_in: Conv::load(w, &e("conv_in"), 1)?,
            down,
            mid: [
                Resnet::load(w, &e("mid_block.resnets.0"), g, EPS)?,
                Resnet::load(w, &e("mid_block.resnets.1"), g, EPS)?,
            ],
            mid_attention,
            norm_out: GroupNorm::load(w, &e("conv_norm_out"), g, EPS)?,
            conv_out: Conv::load(w, &e("conv_out"), 1)?,
            quant: match c.use_quant_conv {
                true => Some(Conv::load(w, "quant_conv", 1)?),
                false => None,
            },
            config: c,
            device: device.clone(),
        }))
    }

    /// [`Self::load_on`] on the backend `pref` picks.
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let (device, kind) = super::device(pref)?;
        Ok((Self::load_on(dir, &device)?, kind))
    }

    /// The latent distribution's mean and log-variance (each `[b, latent_channels, h/f,
    /// w/f]`, unscaled) of `image` (`[b, 3, h, w]`, values -1 to 1).
    pub(crate) fn encode(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mut x = self.conv_in.forward(image);
        for (resnets, downsample) in &self.down {
            for r in resnets {
                x = r.forward(x, None);
            }
            if let Some(conv) = downsample {
                x = conv.forward(x.pad((0, 1, 0, 1), PadMode::Constant(0.0)));
            }
        }
        x = self.mid[0].forward(x, None);
        if let Some((norm, attention)) = &self.mid_attention {
            let [_, _, h, w] = x.dims();
            let seq = to_sequence(norm.forward(x.clone()));
            x = to_image(attention.forward(seq, None), h, w) + x;
        }
        x = self.mid[1].forward(x, None);
        x = self.conv_out.forward(silu(self.norm_out.forward(x)));
        if let Some(q) = &self.quant {
            x = q.forward(x);
        }
        let l = self.config.latent_channels;
        let [b, _, h, w] = x.dims();
        let mean = x.clone().slice([0..b, 0..l, 0..h, 0..w]);
        let logvar = x.slice([0..b, l..2 * l, 0..h, 0..w]).clamp(-30.0, 20.0);
        (mean, logvar)
    }

    /// [`Self::encode`] on plain values: `image` `[b, 3, h, w]` row-major (sides multiples
    /// of the VAE's factor); the mean and log-variance as values, and their shape.
    pub fn encode_values(&self, image: &[f32], dims: [usize; 4]) -> Result<Encoded, CoreError> {
        let factor = 1 << (self.config.block_out_channels.len() - 1);
        if dims[1] != 3
            || dims[0] == 0
            || !dims[2].is_multiple_of(factor)
            || !dims[3].is_multiple_of(factor)
            || image.len() != dims.iter().product::<usize>()
        {
            return Err(CoreError::Backend(format!(
                "VAE images are [batch, 3, h, w] with sides multiples of {factor}; got {dims:?} with {} values",
                image.len()
            )));
        }
        let x = Tensor::<4>::from_data(TensorData::new(image.to_vec(), dims), &self.device);
        let (mean, logvar) = self.encode(x);
        let shape = mean.dims();
        let read = |t: Tensor<4>| {
            t.try_into_vec_as::<f32>()
                .map_err(|e| CoreError::Backend(format!("reading the latents: {e:?}")))
        };
        Ok((read(mean)?, read(logvar)?, shape))
    }
}
