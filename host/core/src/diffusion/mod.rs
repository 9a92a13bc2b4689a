//! The Stable Diffusion family from a diffusers folder (`model_index.json`, one folder per
//! component, safetensors in f32, f16 or bf16), each part exact against diffusers on the tiny
//! fixture in `tests/fixtures/sd-tiny` (`tests/all/diffusion`); edits and variations start
//! from an image (`edit.rs`); Cinder's own pixel models are trained here (`train.rs`).

pub mod blocks;
pub mod clip;
pub mod edit;
pub mod engine;
pub mod model;
pub mod pipeline;
pub mod scheduler;
pub mod taesd;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod unet;
pub mod unet_params;
pub mod vae;
pub mod vae_encoder;
pub mod weights;

use burn::tensor::Device;

use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference, Target, select};

/// The device for a preference: burn's CPU backend where the preference is the CPU (the
/// CPU fast path is the language models'; diffusion runs on burn).
pub(crate) fn device(pref: BackendPreference) -> Result<(Device, BackendKind), CoreError> {
    Ok(match select(pref)? {
        Target::Cpu => (Device::flex(), BackendKind::Flex),
        Target::Burn(device, kind) => (device, kind),
    })
}
