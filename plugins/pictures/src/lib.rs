#![doc = include_str!("../README.md")]

mod decode;
mod encode;

pub use decode::{Decoded, MAX_PIXELS, MAX_SIDE, decode};
pub use encode::encode;

/// A 400 naming `param`.
fn bad(message: impl Into<String>, param: &str) -> cinder_sdk::Error {
    cinder_sdk::openai::params::Invalid::new(message, param).into()
}
