//! Every parameter of a `UNet2DConditionModel` with its shape, from the config alone, in
//! diffusers' names: what a UNet trained from scratch starts from (and what its checkpoint
//! must hold), with PyTorch's default initialisation.

use super::unet::UNetConfig;
use crate::engine::sampler::Rng;

/// One parameter: its checkpoint name and PyTorch shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
}

struct List(Vec<Param>);

impl List {
    fn add(&mut self, name: String, shape: &[usize]) {
        self.0.push(Param {
            name,
            shape: shape.to_vec(),
        });
    }

    fn linear(&mut self, p: &str, out: usize, inp: usize, bias: bool) {
        self.add(format!("{p}.weight"), &[out, inp]);
        if bias {
            self.add(format!("{p}.bias"), &[out]);
        }
    }

    fn conv(&mut self, p: &str, out: usize, inp: usize, k: usize) {
        self.add(format!("{p}.weight"), &[out, inp, k, k]);
        self.add(format!("{p}.bias"), &[out]);
    }

    fn norm(&mut self, p: &str, c: usize) {
        self.add(format!("{p}.weight"), &[c]);
        self.add(format!("{p}.bias"), &[c]);
    }

    fn resnet(&mut self, p: &str, inp: usize, out: usize, temb: usize) {
        self.norm(&format!("{p}.norm1"), inp);
        self.conv(&format!("{p}.conv1"), out, inp, 3);
        self.linear(&format!("{p}.time_emb_proj"), out, temb, true);
        self.norm(&format!("{p}.norm2"), out);
        self.conv(&format!("{p}.conv2"), out, out, 3);
        if inp != out {
            self.conv(&format!("{p}.conv_shortcut"), out, inp, 1);
        }
    }

    fn transformer(&mut self, p: &str, c: usize, cross: usize, layers: usize, linear: bool) {
        self.norm(&format!("{p}.norm"), c);
        let proj = |list: &mut List, name: &str| match linear {
            true => list.linear(&format!("{p}.{name}"), c, c, true),
            false => list.conv(&format!("{p}.{name}"), c, c, 1),
        };
        proj(self, "proj_in");
        for k in 0..layers {
            let b = format!("{p}.transformer_blocks.{k}");
            for (attn, kv) in [("attn1", c), ("attn2", cross)] {
                self.linear(&format!("{b}.{attn}.to_q"), c, c, false);
                self.linear(&format!("{b}.{attn}.to_k"), c, kv, false);
                self.linear(&format!("{b}.{attn}.to_v"), c, kv, false);
                self.linear(&format!("{b}.{attn}.to_out.0"), c, c, true);
            }
            for n in ["norm1", "norm2", "norm3"] {
                self.norm(&format!("{b}.{n}"), c);
            }
            self.linear(&format!("{b}.ff.net.0.proj"), c * 8, c, true);
            self.linear(&format!("{b}.ff.net.2"), c, c * 4, true);
        }
        proj(self, "proj_out");
    }
}

/// Every parameter `c` describes, in diffusers' order of construction.
pub fn parameters(c: &UNetConfig) -> Vec<Param> {
    let mut l = List(Vec::new());
    let boc = &c.block_out_channels;
    let levels = boc.len();
    let c0 = boc[0];
    let temb = 4 * c0;
    let cross = c.cross_attention_dim;
    let linear = c.use_linear_projection;
    l.conv("conv_in", c0, c.in_channels, 3);
    l.linear("time_embedding.linear_1", temb, c0, true);
    l.linear("time_embedding.linear_2", temb, temb, true);
    let mut output = c0;
    for (i, &channels) in boc.iter().enumerate() {
        let input = output;
        output = channels;
        let attn = c.down_block_types[i].starts_with("CrossAttn");
        for j in 0..c.layers_per_block {
            let p = format!("down_blocks.{i}");
            l.resnet(
                &format!("{p}.resnets.{j}"),
                if j == 0 { input } else { output },
                output,
                temb,
            );
            if attn {
                let layers = c.transformer_layers_per_block.at(i);
                l.transformer(
                    &format!("{p}.attentions.{j}"),
                    output,
                    cross,
                    layers,
                    linear,
                );
            }
        }
        if i + 1 < levels {
            l.conv(
                &format!("down_blocks.{i}.downsamplers.0.conv"),
                output,
                output,
                3,
            );
        }
    }
    let last = boc[levels - 1];
    let mid_layers = c.transformer_layers_per_block.at(levels - 1);
    l.resnet("mid_block.resnets.0", last, last, temb);
    l.transformer("mid_block.attentions.0", last, cross, mid_layers, linear);
    l.resnet("mid_block.resnets.1", last, last, temb);
    let reversed: Vec<usize> = boc.iter().rev().copied().collect();
    let mut output = reversed[0];
    for (i, &channels) in reversed.iter().enumerate() {
        let prev = output;
        output = channels;
        let input = reversed[(i + 1).min(levels - 1)];
        let attn = c.up_block_types[i].starts_with("CrossAttn");
        for j in 0..=c.layers_per_block {
            let skip = if j == c.layers_per_block {
                input
            } else {
                output
            };
            let inp = if j == 0 { prev } else { output } + skip;
            let p = format!("up_blocks.{i}");
            l.resnet(&format!("{p}.resnets.{j}"), inp, output, temb);
            if attn {
                let layers = c.transformer_layers_per_block.at(levels - 1 - i);
                l.transformer(
                    &format!("{p}.attentions.{j}"),
                    output,
                    cross,
                    layers,
                    linear,
                );
            }
        }
        if i + 1 < levels {
            l.conv(
                &format!("up_blocks.{i}.upsamplers.0.conv"),
                output,
                output,
                3,
            );
        }
    }
    l.norm("conv_norm_out", c0);
    l.conv("conv_out", c.out_channels, c0, 3);
    l.0
}

/// PyTorch's default initial values for `p`: norms' scales 1 and shifts 0; a linear or
/// convolution's weights and biases uniform in ±1/√fan_in (kaiming_uniform with a = √5).
pub fn initial_values(p: &Param, all: &[Param], rng: &mut Rng) -> Vec<f32> {
    let count: usize = p.shape.iter().product();
    // A bias goes with its weight: a norm's (1-D) or a layer's.
    let weight_name = p.name.replace(".bias", ".weight");
    let weight = all.iter().find(|w| w.name == weight_name);
    let norm = weight.is_none_or(|w| w.shape.len() == 1);
    if norm {
        let one = p.name.ends_with(".weight");
        return vec![if one { 1.0 } else { 0.0 }; count];
    }
    let fan_in = weight.map_or(1, |w| w.shape[1..].iter().product::<usize>().max(1));
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..count)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
        .collect()
}
