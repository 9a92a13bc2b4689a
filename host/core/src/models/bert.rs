//! The BERT encoder (all-MiniLM-L6-v2 and other BERT-family sentence embedders) on burn:
//! word, position and token-type embeddings, post-norm layers of multi-head self-attention and
//! an exact-erf GELU feed-forward, over a batch of sequences padded to the longest with an
//! attention mask. Weights come from a Hugging Face `model.safetensors` in f32.
//!
//! Linear weights are stored `[out, in]` (PyTorch's layout) and transposed once at load, so
//! every forward multiplies `x · W` without a transpose.

use std::path::Path;

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::CoreError;

/// `config.json`'s fields this encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// `bert`, `roberta`, ...: what clients are told the architecture is.
    #[serde(default = "default_model_type")]
    pub model_type: String,
}

fn default_model_type() -> String {
    "bert".into()
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

struct Linear {
    /// `[in, out]`.
    w: Tensor<2>,
    b: Tensor<1>,
}

impl Linear {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.w.clone()) + self.b.clone().unsqueeze::<2>()
    }
}

struct Norm {
    w: Tensor<1>,
    b: Tensor<1>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Bert {
    config: BertConfig,
    device: Device,
    word: Tensor<2>,
    position: Tensor<2>,
    /// Token type 0's embedding (sentence embedders feed one segment).
    token_type: Tensor<1>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// An f32 tensor of a safetensors file: its values and shape.
pub(crate) fn f32_values(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
) -> Result<(Vec<f32>, Vec<usize>), CoreError> {
    let t = st
        .tensor(name)
        .map_err(|e| CoreError::Weights(format!("tensor {name}: {e}")))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(CoreError::Weights(format!(
            "tensor {name} is {:?}; f32 is supported",
            t.dtype()
        )));
    }
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((values, t.shape().to_vec()))
}

/// A checkpoint folder's `config.json` (checked: GELU, heads dividing the width) and the
/// bytes of its `model.safetensors`.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<(BertConfig, Vec<u8>), CoreError> {
    Ok((read_config(dir)?, read(dir, "model.safetensors")?))
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, CoreError> {
    std::fs::read(dir.join(name))
        .map_err(|e| CoreError::Weights(format!("{}: {e}", dir.join(name).display())))
}

/// A checkpoint folder's `config.json`, checked: GELU, heads dividing the width.
pub(crate) fn read_config(dir: &Path) -> Result<BertConfig, CoreError> {
    let config: BertConfig = serde_json::from_slice(&read(dir, "config.json")?)
        .map_err(|e| CoreError::Weights(format!("config.json: {e}")))?;
    // RoBERTa-family checkpoints load with the same tensor names but count positions from
    // `padding_idx + 1`: embedding them as BERT would be silently wrong.
    if config.model_type != "bert" {
        return Err(CoreError::Weights(format!(
            "model_type `{}` is not supported (bert only)",
            config.model_type
        )));
    }
    if config.hidden_act != "gelu" {
        return Err(CoreError::Weights(format!(
            "hidden_act `{}` is not supported (gelu only)",
            config.hidden_act
        )));
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(CoreError::Weights(
            "hidden_size is not a multiple of num_attention_heads".into(),
        ));
    }
    Ok(config)
}

/// Where the encoder's tensors start: checkpoints saved from `BertForX` heads prefix them
/// with `bert.`.
pub(crate) fn tensor_prefix(st: &safetensors::SafeTensors<'_>) -> &'static str {
    if st.tensor("bert.embeddings.word_embeddings.weight").is_ok() {
        "bert."
    } else {
        ""
    }
}

/// Reads f32 tensors out of a safetensors file.
struct Weights<'a> {
    st: safetensors::SafeTensors<'a>,
    device: &'a Device,
}

impl Weights<'_> {
    fn values(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), CoreError> {
        f32_values(&self.st, name)
    }

    fn vector(&self, name: &str) -> Result<Tensor<1>, CoreError> {
        let (v, _) = self.values(name)?;
        let n = v.len();
        Ok(Tensor::from_data(TensorData::new(v, [n]), self.device))
    }

    fn matrix(&self, name: &str) -> Result<Tensor<2>, CoreError> {
        match self.values(name)? {
            (v, shape) if shape.len() == 2 => Ok(Tensor::from_data(
                TensorData::new(v, [shape[0], shape[1]]),
                self.device,
            )),
            (_, shape) => Err(CoreError::Weights(format!(
                "tensor {name} has shape {shape:?}; a matrix was expected"
            ))),
        }
    }

    fn linear(&self, prefix: &str) -> Result<Linear, CoreError> {
        Ok(Linear {
            w: self.matrix(&format!("{prefix}.weight"))?.transpose(),
            b: self.vector(&format!("{prefix}.bias"))?,
        })
    }

    fn norm(&self, prefix: &str) -> Result<Norm, CoreError> {
        Ok(Norm {
            w: self.vector(&format!("{prefix}.weight"))?,
            b: self.vector(&format!("{prefix}.bias"))?,
        })
    }
}

impl Bert {
    /// Loads `config.json` and `model.safetensors` from a Hugging Face model folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let (config, bytes) = read_checkpoint(dir)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| CoreError::Weights(format!("model.safetensors: {e}")))?;
        let prefix = tensor_prefix(&st);
        let w = Weights { st, device };
        let e = |s: &str| format!("{prefix}embeddings.{s}");
        let token_types = w.matrix(&e("token_type_embeddings.weight"))?;
        let hidden = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = |s: &str| format!("{prefix}encoder.layer.{i}.{s}");
                Ok(Layer {
                    q: w.linear(&l("attention.self.query"))?,
                    k: w.linear(&l("attention.self.key"))?,
                    v: w.linear(&l("attention.self.value"))?,
                    o: w.linear(&l("attention.output.dense"))?,
                    attn_norm: w.norm(&l("attention.output.LayerNorm"))?,
                    up: w.linear(&l("intermediate.dense"))?,
                    down: w.linear(&l("output.dense"))?,
                    out_norm: w.norm(&l("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        Ok(Bert {
            word: w.matrix(&e("word_embeddings.weight"))?,
            position: w.matrix(&e("position_embeddings.weight"))?,
            token_type: token_types.slice([0..1, 0..hidden]).reshape([hidden]),
            embed_norm: w.norm(&e("LayerNorm"))?,
            layers,
            config,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    fn layer_norm(&self, x: Tensor<2>, n: &Norm) -> Tensor<2> {
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().powf_scalar(2.0).mean_dim(1);
        let scale = var.add_scalar(self.config.layer_norm_eps).sqrt().recip();
        centered * scale * n.w.clone().unsqueeze::<2>() + n.b.clone().unsqueeze::<2>()
    }

    /// The last hidden states of each sequence, mean-pooled over its own tokens: one
    /// `hidden_size` vector per sequence. The inputs are checked by the caller
    /// ([`crate::embed::embedder::check_inputs`]). Sequences are padded to the longest and masked, so
    /// a batch gives what each sequence gives alone (up to summation order).
    pub fn mean_pooled(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, CoreError> {
        let c = &self.config;
        let (b, h) = (batch.len(), c.hidden_size);
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 {
            return Ok(Vec::new());
        }
        let mut ids = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        for (i, seq) in batch.iter().enumerate() {
            for (j, &id) in seq.iter().enumerate() {
                ids[i * t + j] = i64::from(id);
                mask[i * t + j] = 1.0;
            }
        }
        let dev = &self.device;
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), dev);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), dev);

        let positions = self.position.clone().slice([0..t, 0..h]);
        let x = self.word.clone().select(0, ids).reshape([b, t, h])
            + positions.unsqueeze::<3>()
            + self.token_type.clone().unsqueeze::<3>();
        let mut x = self.layer_norm(x.reshape([b * t, h]), &self.embed_norm);

        let heads = c.num_attention_heads;
        let hd = h / heads;
        // Padding positions get a large negative score: they take no attention.
        let bias = (mask.clone().neg().add_scalar(1.0) * -1e30).reshape([b, 1, 1, t]);
        let split = |y: Tensor<2>| y.reshape([b, t, heads, hd]).swap_dims(1, 2);
        for layer in &self.layers {
            let q = split(layer.q.forward(x.clone()));
            let k = split(layer.k.forward(x.clone()));
            let v = split(layer.v.forward(x.clone()));
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .mul_scalar(1.0 / (hd as f64).sqrt())
                + bias.clone();
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b * t, h]);
            x = self.layer_norm(layer.o.forward(ctx) + x, &layer.attn_norm);
            let inner = gelu(layer.up.forward(x.clone()));
            x = self.layer_norm(layer.down.forward(inner) + x, &layer.out_norm);
        }

        let counts = mask.clone().sum_dim(1); // [b, 1]
        let summed = (x.reshape([b, t, h]) * mask.unsqueeze_dim::<3>(2)).sum_dim(1); // [b, 1, h]
        let pooled = summed.reshape([b, h]) / counts;
        let values = pooled
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading embeddings: {e:?}")))?;
        Ok(values.chunks_exact(h).map(<[f32]>::to_vec).collect())
    }
}
