//! Cinder's embeddings plugin: owns `POST /v1/embeddings`. The pipeline (every `input` shape,
//! `encoding_format`, `dimensions`, usage) lives in the SDK's embeddings family as the
//! default methods of [`cinder_sdk::embeddings::Embeddings`], so third-party embeddings
//! plugins start from exactly this behaviour and override a hook.

#[derive(Default)]
struct FirstParty;

impl cinder_sdk::embeddings::Embeddings for FirstParty {}

cinder_sdk::export_embeddings!(FirstParty);
