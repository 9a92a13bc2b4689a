#![doc = include_str!("../README.md")]
//! OpenAI wire types (serde) shared by the host and by plugins: requests, responses, stream
//! chunks and the error envelope, and OpenAI's request rules ([`params`]). No I/O, no heavy
//! dependencies, so it builds for `wasm32-wasip2` too.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod fine_tuning;
pub mod images;
pub mod models;
pub mod params;
pub mod responses;
pub mod videos;

pub use error::{ErrorBody, ErrorDetail};
