//! What models come in: GGUF files ([`gguf`]), tokenizers ([`tokenizer`]), chat templates
//! ([`template`]), and what `cinder models inspect` reads of a file without loading it
//! ([`summary`]).

pub mod gguf;
pub(crate) mod summary;
pub(crate) mod template;
pub(crate) mod tokenizer;
