//! Sentence embeddings: sentence-transformers folders ([`embedder`]: tokenizer, BERT encoder,
//! pooling, normalisation) and the thread that batches every waiting request's inputs
//! ([`engine`]). Chat models that also embed run on their generation engine instead
//! (`models::llama_embed`).

pub(crate) mod embedder;
pub(crate) mod engine;
