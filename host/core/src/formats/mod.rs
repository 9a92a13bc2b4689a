//! What models come in: GGUF files ([`gguf`]) and their tensor types ([`ggml`]), Hugging
//! Face folders read as GGUF ([`hf`]), tokenizers ([`tokenizer`]), chat templates
//! ([`template`]), and what `cinder models inspect` reads of a file without loading it
//! ([`summary`]).

pub mod ggml;
pub mod gguf;
pub(crate) mod hf;
mod hf_spm;
mod hf_vocab;
pub(crate) mod spm;
pub(crate) mod summary;
pub(crate) mod template;
pub(crate) mod tokenizer;
