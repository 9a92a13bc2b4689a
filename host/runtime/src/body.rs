//! A request body the host parses as `multipart/form-data` for routes that take one
//! (`body = "multipart"`), handed to the plugin a part at a time and each part in chunks
//! (WIT `multipart`). The runtime knows no HTTP: the server implements [`MultipartBody`] over
//! its body stream, and reports why the body failed as a [`BodyFailure`], which decides the
//! answer whatever the plugin does next.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A part's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

/// Why a body could not be read: the host answers for it (413, 408, 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFailure {
    #[error("The request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("The request body did not arrive within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("The multipart body is malformed: {0}")]
    Malformed(String),
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BodyFailure>> + Send + 'a>>;

/// A multipart body, read in order.
pub trait MultipartBody: Send {
    /// The next part's headers; `None` after the last. Skips the rest of the current part.
    fn next_part(&mut self) -> Fut<'_, Option<PartHead>>;
    /// Up to `max` bytes of the current part; empty at its end.
    fn read(&mut self, max: usize) -> Fut<'_, Vec<u8>>;
}

/// A request's multipart body, shared with the call that reads it.
#[derive(Clone)]
pub struct Multipart(pub(crate) Arc<tokio::sync::Mutex<Box<dyn MultipartBody>>>);

impl Multipart {
    pub fn new(body: Box<dyn MultipartBody>) -> Multipart {
        Multipart(Arc::new(tokio::sync::Mutex::new(body)))
    }
}

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Multipart")
    }
}
