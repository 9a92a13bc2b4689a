//! The tiny autoencoder's decoder (diffusers' `AutoencoderTiny`, TAESD): a fast stand-in for
//! the KL decoder, for previews and quick images. Convs with ReLU, residual blocks of three
//! convs, nearest upsampling between widths; latents are soft-clamped (`tanh(x/3)·3`) first
//! and the output mapped from [0, 1] to diffusers' [-1, 1].

use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::blocks::{self, Conv, upsample_nearest_2x};
use super::weights::{Weights, read_json};
use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference};

/// `config.json`'s fields the decoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TinyConfig {
    pub decoder_block_out_channels: Vec<usize>,
    pub num_decoder_blocks: Vec<usize>,
    pub latent_channels: usize,
    #[serde(default = "relu_name")]
    pub act_fn: String,
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
    #[serde(default = "nearest")]
    pub upsample_fn: String,
}

fn relu_name() -> String {
    "relu".into()
}
fn two() -> usize {
    2
}
fn nearest() -> String {
    "nearest".into()
}

/// One `AutoencoderTinyBlock`: three convs (ReLU between), a skip, ReLU of the sum.
struct Block {
    convs: [Conv; 3],
    skip: Option<Conv>,
}

/// A layer (burn tensors are large values: the blocks are boxed).
enum Layer {
    Conv(Box<Conv>),
    Relu,
    Block(Box<Block>),
    Upsample,
}

/// A loaded tiny decoder.
pub struct TinyDecoder {
    config: TinyConfig,
    device: Device,
    layers: Vec<Layer>,
}

impl TinyDecoder {
    /// Loads the decoder of a `taesd/` folder (or a pipeline's `vae/` holding one).
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let (device, kind) = super::device(pref)?;
        Ok((Self::load_on(dir, &device)?, kind))
    }

    pub(crate) fn load_on(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let c: TinyConfig = read_json(&dir.join("config.json"))?;
        if c.act_fn != "relu" || c.upsample_fn != "nearest" || c.upsampling_scaling_factor != 2 {
            return Err(CoreError::Weights(format!(
                "tiny autoencoder: act_fn {}, upsample_fn {} x{} are not supported (relu, nearest x2)",
                c.act_fn, c.upsample_fn, c.upsampling_scaling_factor
            )));
        }
        if c.num_decoder_blocks.len() != c.decoder_block_out_channels.len()
            || c.num_decoder_blocks.is_empty()
        {
            return Err(CoreError::Weights(
                "tiny autoencoder: num_decoder_blocks and decoder_block_out_channels differ".into(),
            ));
        }
        let w = Weights::open(dir, "diffusion_pytorch_model.safetensors", device)?;
        let at = |n: usize, s: &str| format!("decoder.layers.{n}{s}");
        // The layer numbering of diffusers' `nn.Sequential`, rebuilt from the config.
        let mut layers = vec![
            Layer::Conv(Box::new(Conv::load(&w, &at(0, ""), 1)?)),
            Layer::Relu,
        ];
        let levels = c.num_decoder_blocks.len();
        for (i, &blocks) in c.num_decoder_blocks.iter().enumerate() {
            for _ in 0..blocks {
                let n = layers.len();
                let conv = |k: usize| Conv::load(&w, &at(n, &format!(".conv.{k}")), 1);
                let skip = match w.has(&at(n, ".skip.weight")) {
                    true => Some(Conv::load(&w, &at(n, ".skip"), 1)?),
                    false => None,
                };
                layers.push(Layer::Block(Box::new(Block {
                    convs: [conv(0)?, conv(2)?, conv(4)?],
                    skip,
                })));
            }
            if i + 1 < levels {
                layers.push(Layer::Upsample);
            }
            let n = layers.len();
            layers.push(Layer::Conv(Box::new(Conv::load(&w, &at(n, ""), 1)?)));
        }
        Ok(TinyDecoder {
            config: c,
            device: device.clone(),
            layers,
        })
    }

    pub(crate) fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let mut x = latents.div_scalar(3.0).tanh().mul_scalar(3.0);
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(conv) => conv.forward(x),
                Layer::Relu => relu(x),
                Layer::Upsample => upsample_nearest_2x(x),
                Layer::Block(b) => {
                    let h = b.convs[0].forward(x.clone());
                    let h = b.convs[1].forward(relu(h));
                    let h = b.convs[2].forward(relu(h));
                    let skip = match &b.skip {
                        Some(s) => s.forward(x),
                        None => x,
                    };
                    relu(h + skip)
                }
            };
        }
        x.mul_scalar(2.0).sub_scalar(1.0)
    }

    /// [`Self::decode`] on plain values: `latents` `[b, latent_channels, h, w]` (TAESD takes
    /// them unscaled); the image `[b, 3, H, W]` (about -1 to 1) and its shape.
    pub fn decode_values(
        &self,
        latents: &[f32],
        dims: [usize; 4],
    ) -> Result<(Vec<f32>, [usize; 4]), CoreError> {
        let channels = self.config.latent_channels;
        let what = "tiny autoencoder";
        blocks::decode_values(latents, dims, channels, &self.device, what, |x| {
            self.decode(x)
        })
    }
}
