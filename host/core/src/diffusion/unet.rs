//! diffusers' `UNet2DConditionModel` in the Stable Diffusion 1.x/2.x layout (and the small
//! distilled ones that share it): a sinusoidal timestep embedding, down blocks of residual
//! blocks (with cross-attention transformers in `CrossAttn*` blocks) and strided-conv
//! downsamplers, a mid block, up blocks reading the down path's outputs as skips with nearest
//! upsampling, and a group-norm, SiLU, conv head. It predicts the noise in a latent given a
//! timestep and the text encoder's hidden states.

use std::path::Path;

use burn::tensor::activation::{gelu, silu};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::blocks::{
    Attention, Conv, GroupNorm, Resnet, to_image, to_sequence, upsample_nearest_2x,
};
use super::weights::{Linear, Norm, Weights, layer_norm, read_json};
use crate::error::CoreError;
use crate::kernels::pools::pause_for_live;
use crate::models::backend::{BackendKind, BackendPreference};

/// `unet/config.json`'s fields this model reads; others must keep their SD defaults, which
/// [`UNetConfig::check`] verifies where a different value would change the computation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub cross_attention_dim: usize,
    /// Heads per block (diffusers' legacy name: in SD configs it counts heads).
    pub attention_head_dim: OneOrMany,
    #[serde(default)]
    pub num_attention_heads: Option<OneOrMany>,
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "one_layer")]
    pub transformer_layers_per_block: OneOrMany,
    /// The latent side it was trained at.
    #[serde(default)]
    pub sample_size: Option<usize>,
}

/// A number for every block, or one for all.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(usize),
    Many(Vec<usize>),
}

impl OneOrMany {
    pub(crate) fn at(&self, i: usize) -> usize {
        match self {
            OneOrMany::One(n) => *n,
            OneOrMany::Many(v) => v.get(i).or(v.last()).copied().unwrap_or(1),
        }
    }
}

fn default_norm_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn default_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn default_shift() -> String {
    "default".into()
}
fn one_layer() -> OneOrMany {
    OneOrMany::One(1)
}

impl UNetConfig {
    fn check(&self) -> Result<(), CoreError> {
        let refuse =
            |what: String| Err(CoreError::Weights(format!("unet: {what} is not supported")));
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return refuse("a block count that differs between block lists".into());
        }
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if ![
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "UpBlock2D",
                "CrossAttnUpBlock2D",
            ]
            .contains(&t.as_str())
            {
                return refuse(format!("block type {t}"));
            }
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return refuse(format!("mid_block_type {:?}", self.mid_block_type));
        }
        if let Some(c) = &self.class_embed_type {
            return refuse(format!("class_embed_type {c}"));
        }
        if let Some(a) = &self.addition_embed_type {
            return refuse(format!("addition_embed_type {a} (SDXL)"));
        }
        if self.time_cond_proj_dim.is_some() {
            return refuse("time_cond_proj_dim (LCM-distilled UNets)".into());
        }
        // Group norms split each block's channels into groups and attention splits them
        // into heads: a config whose channels do not divide fails here, not in a reshape.
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if self.norm_num_groups == 0 || c % self.norm_num_groups != 0 {
                return refuse(format!(
                    "block_out_channels {c} with norm_num_groups {}",
                    self.norm_num_groups
                ));
            }
            let attends = self.down_block_types[i].starts_with("CrossAttn") || i + 1 == n;
            let heads = self.heads(i);
            if attends && (heads == 0 || c % heads != 0) {
                return refuse(format!("block_out_channels {c} with {heads} heads"));
            }
        }
        if self.resnet_time_scale_shift != "default" {
            return refuse(format!(
                "resnet_time_scale_shift {}",
                self.resnet_time_scale_shift
            ));
        }
        Ok(())
    }

    /// Heads of block `i` (diffusers: `num_attention_heads`, else `attention_head_dim`).
    fn heads(&self, i: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .at(i)
    }
}

/// One `BasicTransformerBlock`: self-attention, cross-attention to the text, a GEGLU
/// feed-forward, each after a layer norm and added back.
struct TransformerBlock {
    norm1: Norm,
    attn1: Attention,
    norm2: Norm,
    attn2: Attention,
    norm3: Norm,
    geglu: Linear,
    ff_out: Linear,
}

/// A `Transformer2DModel` over a feature map.
struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

/// `proj_in`/`proj_out`: a 1×1 conv (SD 1.x) or a linear layer (`use_linear_projection`).
enum Projection {
    Conv(Conv),
    Linear(Linear),
}

/// A level of the down or up path.
struct Level {
    resnets: Vec<Resnet>,
    attentions: Vec<SpatialTransformer>,
    /// A strided conv (down path) or nearest 2× then conv (up path).
    resample: Option<Conv>,
}

/// A loaded UNet.
pub struct UNet {
    config: UNetConfig,
    device: Device,
    time1: Linear,
    time2: Linear,
    conv_in: Conv,
    down: Vec<Level>,
    mid_resnets: [Resnet; 2],
    mid_attention: SpatialTransformer,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

const LAYER_NORM_EPS: f64 = 1e-5;
/// The transformer's group norm (diffusers' fixed value).
const TRANSFORMER_GROUP_NORM_EPS: f64 = 1e-6;

fn transformer(
    w: &Weights,
    prefix: &str,
    c: &UNetConfig,
    heads: usize,
    layers: usize,
) -> Result<SpatialTransformer, CoreError> {
    let p = |s: &str| format!("{prefix}.{s}");
    let projection = |name: &str| -> Result<Projection, CoreError> {
        Ok(match c.use_linear_projection {
            true => Projection::Linear(w.linear(&p(name))?),
            false => Projection::Conv(Conv::load(w, &p(name), 1)?),
        })
    };
    let blocks = (0..layers)
        .map(|i| {
            let b = |s: &str| p(&format!("transformer_blocks.{i}.{s}"));
            Ok(TransformerBlock {
                norm1: w.norm(&b("norm1"))?,
                attn1: Attention::load(w, &b("attn1"), heads)?,
                norm2: w.norm(&b("norm2"))?,
                attn2: Attention::load(w, &b("attn2"), heads)?,
                norm3: w.norm(&b("norm3"))?,
                geglu: w.linear(&b("ff.net.0.proj"))?,
                ff_out: w.linear(&b("ff.net.2"))?,
            })
        })
        .collect::<Result<Vec<_>, CoreError>>()?;
    Ok(SpatialTransformer {
        norm: GroupNorm::load(w, &p("norm"), c.norm_num_groups, TRANSFORMER_GROUP_NORM_EPS)?,
        proj_in: projection("proj_in")?,
        blocks,
        proj_out: projection("proj_out")?,
    })
}

impl SpatialTransformer {
    fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, _, h, wd] = x.dims();
        let normed = self.norm.forward(x.clone());
        let mut s = match &self.proj_in {
            Projection::Conv(conv) => to_sequence(conv.forward(normed)),
            Projection::Linear(l) => {
                let seq = to_sequence(normed);
                let [_, n, c] = seq.dims();
                let y = l.forward(seq.reshape([b * n, c]));
                let inner = y.dims()[1];
                y.reshape([b, n, inner])
            }
        };
        let [_, n, inner] = s.dims();
        let ln = |y: Tensor<3>, norm: &Norm| {
            layer_norm(y.reshape([b * n, inner]), norm, LAYER_NORM_EPS).reshape([b, n, inner])
        };
        for block in &self.blocks {
            s = block.attn1.forward(ln(s.clone(), &block.norm1), None) + s;
            s = block
                .attn2
                .forward(ln(s.clone(), &block.norm2), Some(context))
                + s;
            let proj = block
                .geglu
                .forward(ln(s.clone(), &block.norm3).reshape([b * n, inner]));
            let half = proj.dims()[1] / 2;
            let (value, gate) = (proj.clone().narrow(1, 0, half), proj.narrow(1, half, half));
            let ff = block.ff_out.forward(value * gelu(gate));
            s = ff.reshape([b, n, inner]) + s;
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(to_image(s, h, wd)),
            Projection::Linear(l) => {
                let y = l.forward(s.reshape([b * n, inner]));
                let c = y.dims()[1];
                to_image(y.reshape([b, n, c]), h, wd)
            }
        };
        out + x
    }
}

impl UNet {
    /// Loads `config.json` and `diffusion_pytorch_model.safetensors` from a pipeline's
    /// `unet/`.
    pub(crate) fn load_on(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let c: UNetConfig = read_json(&dir.join("config.json"))?;
        let w = Weights::open(dir, "diffusion_pytorch_model.safetensors", device)?;
        Self::build(c, &w, device)
    }

    /// The UNet `c` describes, on the tensors of `w` (a checkpoint, or parameters being
    /// trained).
    pub(crate) fn build(c: UNetConfig, w: &Weights, device: &Device) -> Result<Self, CoreError> {
        c.check()?;
        let (groups, eps) = (c.norm_num_groups, c.norm_eps);
        let levels = c.block_out_channels.len();
        let down = (0..levels)
            .map(|i| {
                let p = |s: String| format!("down_blocks.{i}.{s}");
                let cross = c.down_block_types[i].starts_with("CrossAttn");
                Ok(Level {
                    resnets: (0..c.layers_per_block)
                        .map(|j| Resnet::load(w, &p(format!("resnets.{j}")), groups, eps))
                        .collect::<Result<_, _>>()?,
                    attentions: match cross {
                        true => (0..c.layers_per_block)
                            .map(|j| {
                                let layers = c.transformer_layers_per_block.at(i);
                                transformer(
                                    w,
                                    &p(format!("attentions.{j}")),
                                    &c,
                                    c.heads(i),
                                    layers,
                                )
                            })
                            .collect::<Result<_, _>>()?,
                        false => Vec::new(),
                    },
                    resample: match i + 1 < levels {
                        true => Some(Conv::load(w, &p("downsamplers.0.conv".into()), 2)?),
                        false => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let up = (0..levels)
            .map(|i| {
                let p = |s: String| format!("up_blocks.{i}.{s}");
                let cross = c.up_block_types[i].starts_with("CrossAttn");
                let block = levels - 1 - i;
                Ok(Level {
                    resnets: (0..=c.layers_per_block)
                        .map(|j| Resnet::load(w, &p(format!("resnets.{j}")), groups, eps))
                        .collect::<Result<_, _>>()?,
                    attentions: match cross {
                        true => (0..=c.layers_per_block)
                            .map(|j| {
                                let layers = c.transformer_layers_per_block.at(block);
                                transformer(
                                    w,
                                    &p(format!("attentions.{j}")),
                                    &c,
                                    c.heads(block),
                                    layers,
                                )
                            })
                            .collect::<Result<_, _>>()?,
                        false => Vec::new(),
                    },
                    resample: match i + 1 < levels {
                        true => Some(Conv::load(w, &p("upsamplers.0.conv".into()), 1)?),
                        false => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let last = levels - 1;
        Ok(UNet {
            time1: w.linear("time_embedding.linear_1")?,
            time2: w.linear("time_embedding.linear_2")?,
            conv_in: Conv::load(w, "conv_in", 1)?,
            down,
            mid_resnets: [
                Resnet::load(w, "mid_block.resnets.0", groups, eps)?,
                Resnet::load(w, "mid_block.resnets.1", groups, eps)?,
            ],
            mid_attention: transformer(
                w,
                "mid_block.attentions.0",
                &c,
                c.heads(last),
                c.transformer_layers_per_block.at(last),
            )?,
            up,
            norm_out: GroupNorm::load(w, "conv_norm_out", groups, eps)?,
            conv_out: Conv::load(w, "conv_out", 1)?,
            config: c,
            device: device.clone(),
        })
    }

    /// [`Self::load_on`] on the backend `pref` picks.
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let (device, kind) = super::device(pref)?;
        Ok((Self::load_on(dir, &device)?, kind))
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// [`Self::forward`] on plain values: `sample` of shape `[b, c, h, w]`, `context` of
    /// `[b, tokens, width]`, both row-major; the noise prediction, shaped like `sample`.
    pub fn predict(
        &self,
        sample: &[f32],
        dims: [usize; 4],
        timestep: f32,
        context: &[f32],
        context_dims: [usize; 3],
    ) -> Result<Vec<f32>, CoreError> {
        let c = &self.config;
        let [b, ch, h, w] = dims;
        let levels = c.block_out_channels.len() as u32;
        let multiple = 1usize << (levels - 1);
        if ch != c.in_channels || b == 0 || h % multiple != 0 || w % multiple != 0 {
            return Err(CoreError::Backend(format!(
                "a UNet sample is [batch, {}, h, w] with h and w multiples of {multiple}; got {dims:?}",
                c.in_channels
            )));
        }
        if context_dims[0] != b || context_dims[2] != c.cross_attention_dim {
            return Err(CoreError::Backend(format!(
                "the UNet's context is [{b}, tokens, {}]; got {context_dims:?}",
                c.cross_attention_dim
            )));
        }
        if sample.len() != dims.iter().product::<usize>()
            || context.len() != context_dims.iter().product::<usize>()
        {
            return Err(CoreError::Backend(
                "values do not match their shapes".into(),
            ));
        }
        let x = Tensor::<4>::from_data(TensorData::new(sample.to_vec(), dims), &self.device);
        let ctx = Tensor::<3>::from_data(
            TensorData::new(context.to_vec(), context_dims),
            &self.device,
        );
        self.forward(x, timestep, &ctx)
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading the noise prediction: {e:?}")))
    }

    /// The sinusoidal embedding of `timesteps` (one for the whole batch of `b`, or one per
    /// row) as diffusers' `get_timestep_embedding`, through the time MLP, then SiLU as every
    /// resnet takes it.
    fn time_embedding(&self, timesteps: &[f32], b: usize) -> Tensor<2> {
        let dim = self.time1.w.dims()[0];
        let half = dim / 2;
        let shift = self.config.freq_shift;
        let mut values = vec![0f32; dim * timesteps.len()];
        for (row, &timestep) in timesteps.iter().enumerate() {
            let out = &mut values[row * dim..(row + 1) * dim];
            for i in 0..half {
                let exponent = -(10_000f64.ln()) * i as f64 / (half as f64 - shift);
                let arg = f64::from(timestep) * exponent.exp();
                let (sin, cos) = (arg.sin() as f32, arg.cos() as f32);
                let (first, second) = match self.config.flip_sin_to_cos {
                    true => (cos, sin),
                    false => (sin, cos),
                };
                out[i] = first;
                out[half + i] = second;
            }
        }
        let rows = timesteps.len();
        let t = Tensor::<2>::from_data(TensorData::new(values, [rows, dim]), &self.device);
        let emb = silu(self.time2.forward(silu(self.time1.forward(t))));
        let width = emb.dims()[1];
        match rows {
            1 => emb.expand([b, width]),
            _ => emb,
        }
    }

    /// The predicted noise for `sample` (`[b, c, h, w]`) at `timestep`, given `context`
    /// (`[b, tokens, cross_attention_dim]`).
    pub(crate) fn forward(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        context: &Tensor<3>,
    ) -> Tensor<4> {
        self.forward_at(sample, &[timestep], context)
    }

    /// [`Self::forward`] with a timestep per row (training draws one per sample), or one for
    /// all.
    pub(crate) fn forward_at(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
    ) -> Tensor<4> {
        let b = sample.dims()[0];
        let temb = self.time_embedding(timesteps, b);
        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for level in &self.down {
            for (j, resnet) in level.resnets.iter().enumerate() {
                x = resnet.forward(x, Some(&temb));
                pause_for_live();
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(x, context);
                    pause_for_live();
                }
                skips.push(x.clone());
            }
            if let Some(down) = &level.resample {
                x = down.forward(x);
                skips.push(x.clone());
            }
        }
        x = self.mid_resnets[0].forward(x, Some(&temb));
        x = self.mid_attention.forward(x, context);
        pause_for_live();
        x = self.mid_resnets[1].forward(x, Some(&temb));
        for level in &self.up {
            for (j, resnet) in level.resnets.iter().enumerate() {
                // The down path's outputs come back in reverse order; the shapes are the
                // checkpoint's, which loading found consistent.
                if let Some(skip) = skips.pop() {
                    x = Tensor::cat(vec![x, skip], 1);
                }
                x = resnet.forward(x, Some(&temb));
                pause_for_live();
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(x, context);
                    pause_for_live();
                }
            }
            if let Some(conv) = &level.resample {
                x = conv.forward(upsample_nearest_2x(x));
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}
