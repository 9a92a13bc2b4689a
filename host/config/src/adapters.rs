//! `[[adapters]]`: LoRA adapters served as models of their own (checked against `[[models]]`
//! by `Config::validate`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[[adapters]]`: a LoRA adapter (a PEFT folder: `adapter_config.json` and
/// `adapter_model.safetensors`) served as the model `id` over the chat model `base`, whose
/// weights it shares (loaded once, and batched with it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// The id clients put in `model`.
    pub id: String,
    /// The `[[models]]` id it adapts.
    pub base: String,
    /// The adapter's folder; `~` and paths relative to the config file are resolved.
    pub path: PathBuf,
}
