//! The layers the UNet and the VAE share, as diffusers computes them: 2-D convolutions,
//! group norm, the residual block with its optional time embedding, multi-head attention
//! (self or cross), and nearest 2× upsampling.

use burn::tensor::activation::silu;
use burn::tensor::module::{attention, conv2d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::weights::{Linear, Norm, Weights};
use crate::error::CoreError;

/// A 2-D convolution: `[out, in, k, k]` weights, a bias, its stride and padding.
pub struct Conv {
    w: Tensor<4>,
    b: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// `prefix.weight` and `prefix.bias`; "same" padding for its kernel at `stride`.
    pub fn load(w: &Weights, prefix: &str, stride: usize) -> Result<Self, CoreError> {
        let weight: Tensor<4> = w.tensor(&format!("{prefix}.weight"))?;
        let k = weight.dims()[2];
        let b = match w.has(&format!("{prefix}.bias")) {
            true => Some(w.tensor(&format!("{prefix}.bias"))?),
            false => None,
        };
        Ok(Conv {
            w: weight,
            b,
            stride,
            padding: k / 2,
        })
    }

    /// The same conv with `padding` on every side (diffusers' VAE downsampler pads its
    /// input itself, on two sides only).
    pub fn with_padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.w.clone(), self.b.clone(), options)
    }
}

/// Group norm over `[b, c, h, w]`: `groups` groups of channels, each normalised over its
/// channels and positions, then scaled and shifted per channel.
pub struct GroupNorm {
    norm: Norm,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn load(w: &Weights, prefix: &str, groups: usize, eps: f64) -> Result<Self, CoreError> {
        Ok(GroupNorm {
            norm: w.norm(prefix)?,
            groups,
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, wd] = x.dims();
        let g = self.groups;
        let grouped = x.reshape([b, g, (c / g) * h * wd]);
        let mean = grouped.clone().mean_dim(2);
        let centered = grouped - mean;
        let var = centered.clone().powf_scalar(2.0).mean_dim(2);
        let normed = (centered * var.add_scalar(self.eps).sqrt().recip()).reshape([b, c, h, wd]);
        normed * self.norm.w.clone().reshape([1, c, 1, 1])
            + self.norm.b.clone().reshape([1, c, 1, 1])
    }
}

/// diffusers' `ResnetBlock2D` (the `default` time-embedding norm): two norm-SiLU-conv
/// steps, the time embedding added between them where the block takes one, and the input
/// (through a 1×1 conv when the width changes) added at the end.
pub struct Resnet {
    norm1: GroupNorm,
    conv1: Conv,
    time: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl Resnet {
    pub fn load(w: &Weights, prefix: &str, groups: usize, eps: f64) -> Result<Self, CoreError> {
        let p = |s: &str| format!("{prefix}.{s}");
        Ok(Resnet {
            norm1: GroupNorm::load(w, &p("norm1"), groups, eps)?,
            conv1: Conv::load(w, &p("conv1"), 1)?,
            time: match w.has(&p("time_emb_proj.weight")) {
                true => Some(w.linear(&p("time_emb_proj"))?),
                false => None,
            },
            norm2: GroupNorm::load(w, &p("norm2"), groups, eps)?,
            conv2: Conv::load(w, &p("conv2"), 1)?,
            shortcut: match w.has(&p("conv_shortcut.weight")) {
                true => Some(Conv::load(w, &p("conv_shortcut"), 1)?),
                false => None,
            },
        })
    }

    /// `temb` is the SiLU of the time embedding (`[b, t]`), for blocks that take one.
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        if let (Some(proj), Some(t)) = (&self.time, temb) {
            let [b, c, _, _] = h.dims();
            h = h + proj.forward(t.clone()).reshape([b, c, 1, 1]);
        }
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}

/// Multi-head attention of `[b, n, d]` queries over `[b, m, e]` keys and values (the same
/// tensor for self-attention), as diffusers' `Attention` with its default processor.
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    pub fn load(w: &Weights, prefix: &str, heads: usize) -> Result<Self, CoreError> {
        let p = |s: &str| format!("{prefix}.{s}");
        Ok(Attention {
            q: w.linear(&p("to_q"))?,
            k: w.linear(&p("to_k"))?,
            v: w.linear(&p("to_v"))?,
            out: w.linear(&p("to_out.0"))?,
            heads,
        })
    }

    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let ctx = context.cloned().unwrap_or_else(|| x.clone());
        let [_, m, e] = ctx.dims();
        let q = self.q.forward(x.reshape([b * n, d]));
        let inner = q.dims()[1];
        let k = self.k.forward(ctx.clone().reshape([b * m, e]));
        let v = self.v.forward(ctx.reshape([b * m, e]));
        let heads = self.heads;
        let hd = inner / heads;
        let split = |y: Tensor<2>, len: usize| y.reshape([b, len, heads, hd]).swap_dims(1, 2);
        // burn's fused attention: on the CPU backend a flash (tiled, online-softmax) kernel
        // once the score matrix is large, so 4 096 positions never materialise 4 096² scores.
        let ctx = attention(
            split(q, n),
            split(k, m),
            split(v, m),
            None,
            None,
            AttentionModuleOptions::default(),
        )
        .swap_dims(1, 2)
        .reshape([b * n, inner]);
        self.out.forward(ctx).reshape([b, n, d])
    }
}

/// A decoder run on plain values: `latents` of shape `[b, channels, h, w]` (row-major)
/// checked, made a tensor on `device`, given to `decode`, read back with its shape; `what`
/// names the decoder in errors.
pub fn decode_values(
    latents: &[f32],
    dims: [usize; 4],
    channels: usize,
    device: &Device,
    what: &str,
    decode: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Result<(Vec<f32>, [usize; 4]), CoreError> {
    if dims[1] != channels || dims[0] == 0 || latents.len() != dims.iter().product::<usize>() {
        return Err(CoreError::Backend(format!(
            "{what} latents are [batch, {channels}, h, w]; got {dims:?} with {} values",
            latents.len()
        )));
    }
    let x = Tensor::<4>::from_data(TensorData::new(latents.to_vec(), dims), device);
    let image = decode(x);
    let shape = image.dims();
    let values = image
        .try_into_vec_as::<f32>()
        .map_err(|e| CoreError::Backend(format!("reading the image: {e:?}")))?;
    Ok((values, shape))
}

/// Nearest-neighbour 2× upsampling of `[b, c, h, w]`.
pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

/// `[b, c, h, w]` as `[b, h·w, c]` (positions as a sequence).
pub fn to_sequence(x: Tensor<4>) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).swap_dims(1, 2)
}

/// `[b, h·w, c]` back to `[b, c, h, w]`.
pub fn to_image(x: Tensor<3>, h: usize, w: usize) -> Tensor<4> {
    let [b, _, c] = x.dims();
    x.swap_dims(1, 2).reshape([b, c, h, w])
}
