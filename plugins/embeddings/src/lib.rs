#![doc = include_str!("../README.md")]

mod openai_ids;
mod pipeline;
mod plan;

pub use cinder_sdk::embeddings::{EmbedInput, Overflow};
pub use openai_ids::{TokenIds, decode_cl100k, token_ids_of};
pub use pipeline::{Embeddings, base64_f32, embed, shorten};
pub use plan::{Encoding, MAX_TOKENS_PER_REQUEST, Plan, plan};

use cinder_sdk::{Error, ErrorDetail, Host, Request, Route, Serve};

/// The first-party embeddings plugin: every [`Embeddings`] default.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl Embeddings for FirstParty {}

impl Serve for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        match route.id.as_str() {
            "embeddings.create" => self.embed(request, host),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the embeddings plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }
}

cinder_sdk::export_embeddings_plugin!(FirstParty);
