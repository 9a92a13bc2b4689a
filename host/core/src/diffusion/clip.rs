//! The CLIP text encoder of a Stable Diffusion pipeline (`text_encoder/`, transformers'
//! `CLIPTextModel`): token and position embeddings, pre-norm layers of causal multi-head
//! self-attention and a quick-GELU (or GELU) feed-forward, a final layer norm. Its last hidden
//! state is what the UNet's cross-attention reads.

use std::path::Path;

use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::weights::{Linear, Norm, Weights, layer_norm, read_json};
use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference};

/// `text_encoder/config.json`'s fields this encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_act() -> String {
    "quick_gelu".into()
}

struct Layer {
    norm1: Norm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded CLIP text encoder.
pub struct ClipText {
    config: ClipTextConfig,
    device: Device,
    token: Tensor<2>,
    position: Tensor<2>,
    layers: Vec<Layer>,
    final_norm: Norm,
}

impl ClipText {
    /// Loads `config.json` and `model.safetensors` from a pipeline's `text_encoder/`, on the
    /// backend `pref` picks (burn's CPU backend where the preference is the CPU).
    pub fn load(dir: &Path, pref: BackendPreference) -> Result<(Self, BackendKind), CoreError> {
        let (device, kind) = super::device(pref)?;
        Ok((Self::load_on(dir, &device)?, kind))
    }

    pub(crate) fn load_on(dir: &Path, device: &Device) -> Result<Self, CoreError> {
        let config: ClipTextConfig = read_json(&dir.join("config.json"))?;
        if !["quick_gelu", "gelu"].contains(&config.hidden_act.as_str()) {
            return Err(CoreError::Weights(format!(
                "text encoder hidden_act `{}` is not supported (quick_gelu, gelu)",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(CoreError::Weights(
                "text encoder hidden_size is not a multiple of num_attention_heads".into(),
            ));
        }
        let w = Weights::open(dir, "model.safetensors", device)?;
        // transformers up to 4.x saves `CLIPTextModel` with `text_model.` before every name.
        let w = match w.has("text_model.embeddings.token_embedding.weight") {
            true => w.prefixed("text_model."),
            false => w,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = |s: &str| format!("encoder.layers.{i}.{s}");
                Ok(Layer {
                    norm1: w.norm(&l("layer_norm1"))?,
                    q: w.linear(&l("self_attn.q_proj"))?,
                    k: w.linear(&l("self_attn.k_proj"))?,
                    v: w.linear(&l("self_attn.v_proj"))?,
                    o: w.linear(&l("self_attn.out_proj"))?,
                    norm2: w.norm(&l("layer_norm2"))?,
                    fc1: w.linear(&l("mlp.fc1"))?,
                    fc2: w.linear(&l("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        Ok(ClipText {
            token: w.tensor("embeddings.token_embedding.weight")?,
            position: w.tensor("embeddings.position_embedding.weight")?,
            final_norm: w.norm("final_layer_norm")?,
            layers,
            config,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The width of a hidden state.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// [`Self::last_hidden_state`] read back: `batch × tokens × hidden` values, row-major.
    pub fn hidden_states(&self, batch: &[Vec<u32>]) -> Result<Vec<f32>, CoreError> {
        self.last_hidden_state(batch)?
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::Backend(format!("reading hidden states: {e:?}")))
    }

    /// The last hidden state of each sequence (all of the same length, at most
    /// `max_position_embeddings`): `[batch, tokens, hidden]`, flattened row-major.
    pub(crate) fn last_hidden_state(&self, batch: &[Vec<u32>]) -> Result<Tensor<3>, CoreError> {
        let c = &self.config;
        let (b, h) = (batch.len(), c.hidden_size);
        let t = batch.first().map_or(0, Vec::len);
        if b == 0 || t == 0 || batch.iter().any(|s| s.len() != t) {
            return Err(CoreError::Backend(
                "a text encoder batch holds sequences of one non-zero length".into(),
            ));
        }
        if t > c.max_position_embeddings {
            return Err(CoreError::Backend(format!(
                "{t} tokens; the text encoder reads at most {}",
                c.max_position_embeddings
            )));
        }
        if let Some(&id) = batch
            .iter()
            .flatten()
            .find(|&&id| id as usize >= c.vocab_size)
        {
            return Err(CoreError::Backend(format!(
                "token id {id} is outside the text encoder's vocabulary"
            )));
        }
        let dev = &self.device;
        let ids: Vec<i64> = batch.iter().flatten().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), dev);
        let positions = self.position.clone().slice([0..t, 0..h]);
        let x = self.token.clone().select(0, ids).reshape([b, t, h]) + positions.unsqueeze::<3>();
        let mut x = x.reshape([b * t, h]);

        let heads = c.num_attention_heads;
        let hd = h / heads;
        // Causal: position i attends to positions up to i.
        let causal: Vec<f32> = (0..t * t)
            .map(|k| {
                if k % t > k / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let causal =
            Tensor::<2>::from_data(TensorData::new(causal, [t, t]), dev).reshape([1, 1, t, t]);
        let split = |y: Tensor<2>| y.reshape([b, t, heads, hd]).swap_dims(1, 2);
        let eps = c.layer_norm_eps;
        for layer in &self.layers {
            let n = layer_norm(x.clone(), &layer.norm1, eps);
            let q = split(layer.q.forward(n.clone()));
            let k = split(layer.k.forward(n.clone()));
            let v = split(layer.v.forward(n));
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .mul_scalar(1.0 / (hd as f64).sqrt())
                + causal.clone();
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b * t, h]);
            x = x + layer.o.forward(ctx);
            let n = layer_norm(x.clone(), &layer.norm2, eps);
            let up = layer.fc1.forward(n);
            let act = match c.hidden_act.as_str() {
                "gelu" => gelu(up),
                // quick_gelu: x · σ(1.702 x), CLIP's own approximation.
                _ => up.clone() * sigmoid(up.mul_scalar(1.702)),
            };
            x = x + layer.fc2.forward(act);
        }
        Ok(layer_norm(x, &self.final_norm, eps).reshape([b, t, h]))
    }
}
