//! The decoder of diffusers' `AutoencoderKL` (what turns the final latents into pixels):
//! `post_quant_conv`, a conv in, a mid block (residual block, single-head attention over the
//! positions, residual block), up blocks of residual blocks with nearest upsampling, and a
//! group-norm, SiLU, conv head.

use std::path::Path;

use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::blocks::{
    self, Attention, Conv, GroupNorm, Resnet, to_image, to_sequence, upsample_nearest_2x,
};
use super::weights::{Weights, read_json};
use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference};

/// `vae/config.json`'s fields the decoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f32,
    #[serde(default)]
    pub shift_factor: Option<f32>,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn yes() -> bool {
    true
}

/// A pipeline's `vae/`: its config (checked) and its weights, opened once for the decoder
/// and the encoder.
pub(crate) fn open(dir: &Path, device: &Device) -> Result<(VaeConfig, Weights), CoreError> {
    let c: VaeConfig = read_json(&dir.join("config.json"))?;
    if c.block_out_channels.is_empty() {
        return Err(CoreError::Weights("vae: no blocks".into()));
    }
    let w = Weights::open(dir, "diffusion_pytorch_model.safetensors", device)?;
    Ok((c, w))
}

/// diffusers' VAE norms.
const EPS: f64 = 1e-6;

struct MidAttention {
    norm: GroupNorm,
    attention: Attention,
}

/// A loaded VAE decoder.
pub struct VaeDecoder {
    config: VaeConfig,
    device: Device,
    post_quant: Option<Conv>,
    conv_in: Conv,
    mid: [Resnet; 2],
    mid_attention: Option<MidAttention>,
    /// Each up block's residual blocks and its upsampler, if it has one.
    up: Vec<(Vec<Resnet>, Option<Conv>)>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl VaeDecoder {
    /// Loads the decoder half of a pipeline's `vae/`.
    pub(crate) fn load_on(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let (c, w) = open(dir, device)?;
        Self::build(c, &w, device)
    }

    /// The decoder from an open `vae/` (the pipeline opens it once for both halves).
    pub(crate) fn build(c: VaeConfig, w: &Weights, device: &Device) -> Result<Self, CoreError> {
        let g = c.norm_num_groups;
        let d = |s: &str| format!("decoder.{s}");
        let levels = c.block_out_channels.len();
        let up = (0..levels)
            .map(|i| {
                let resnets = (0..=c.layers_per_block)
                    .map(|j| Resnet::load(w, &d(&format!("up_blocks.{i}.resnets.{j}")), g, EPS))
                    .collect::<Result<Vec<_>, _>>()?;
                let upsample = match i + 1 < levels {
                    true => Some(Conv::load(
                        w,
                        &d(&format!("up_blocks.{i}.upsamplers.0.conv")),
                        1,
                    )?),
                    false => None,
                };
                Ok((resnets, upsample))
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let mid_attention = match c.mid_block_add_attention {
            true => Some(MidAttention {
                norm: GroupNorm::load(w, &d("mid_block.attentions.0.group_norm"), g, EPS)?,
                // One head as wide as the block (diffusers' `attention_head_dim` for the
                // VAE's mid block is its last width).
                attention: Attention::load(w, &d("mid_block.attentions.0"), 1)?,
            }),
            false => None,
        };
        Ok(VaeDecoder {
            post_quant: match c.use_post_quant_conv {
                true => Some(Conv::load(w, "post_quant_conv", 1)?),
                false => None,
            },
            conv_in: Conv::load(w, &d("conv_in"), 1)?,
            mid: [
                Resnet::load(w, &d("mid_block.resnets.0"), g, EPS)?,
                Resnet::load(w, &d("mid_block.resnets.1"), g, EPS)?,
            ],
            mid_attention,
            up,
            norm_out: GroupNorm::load(w, &d("conv_norm_out"), g, EPS)?,
            conv_out: Conv::load(w, &d("conv_out"), 1)?,
            config: c,
            device: device.clone(),
        })
    }

    /// [`Self::load_on`] on the backend `pref` picks.
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let (device, kind) = super::device(pref)?;
        Ok((Self::load_on(dir, &device)?, kind))
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// [`Self::decode`] on plain values: `latents` (already divided by the scaling factor)
    /// of shape `[b, latent_channels, h, w]`, row-major; the image `[b, 3, H, W]` and its
    /// shape.
    pub fn decode_values(
        &self,
        latents: &[f32],
        dims: [usize; 4],
    ) -> Result<(Vec<f32>, [usize; 4]), CoreError> {
        let channels = self.config.latent_channels;
        blocks::decode_values(latents, dims, channels, &self.device, "VAE", |x| {
            self.decode(x)
        })
    }

    /// The image (`[b, 3, 8h, 8w]` for SD, values about -1 to 1) of `latents` already
    /// divided by the scaling factor (as the pipeline does before decoding).
    pub(crate) fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let mut x = match &self.post_quant {
            Some(conv) => conv.forward(latents),
            None => latents,
        };
        x = self.conv_in.forward(x);
        x = self.mid[0].forward(x, None);
        if let Some(a) = &self.mid_attention {
            let [_, _, h, w] = x.dims();
            let seq = to_sequence(a.norm.forward(x.clone()));
            x = to_image(a.attention.forward(seq, None), h, w) + x;
        }
        x = self.mid[1].forward(x, None);
        for (resnets, upsample) in &self.up {
            for r in resnets {
                x = r.forward(x, None);
            }
            if let Some(conv) = upsample {
                x = conv.forward(upsample_nearest_2x(x));
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}
