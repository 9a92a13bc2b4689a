//! The core's one error type. `cinder-runtime` maps it onto the WIT error variant.

/// What can go wrong in the inference core.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// The weights file is unreadable, malformed or uses something not supported yet.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer could not be built or failed on input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to compile or to render these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The request is invalid for this model (the client's mistake).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<String>,
    },
    /// No loaded model answers to this id.
    #[error("The model `{0}` does not exist")]
    UnknownModel(String),
    /// The compute backend failed to start or to run.
    #[error("backend: {0}")]
    Backend(String),
    /// The engine thread has stopped (shutdown or a crash, which is logged).
    #[error("the inference engine for this model has stopped")]
    EngineStopped,
    /// The engine has as much work waiting as it may queue: try again shortly.
    #[error("{0}")]
    Busy(String),
}

impl CoreError {
    /// A client mistake naming the request parameter at fault.
    pub fn invalid(message: impl Into<String>, param: &str) -> Self {
        CoreError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
            code: None,
        }
    }
}

/// Runs a forward pass, turning a panic (a bug) into an error for the requests it served, so
/// the thread that owns the model keeps serving the others. The panic's message is logged.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> Result<T, CoreError>) -> Result<T, CoreError> {
    contain("the model's forward pass", f)
}

/// Runs `f`, turning a panic in it into an error that names `stage`: the work of one request
/// fails, the engine thread goes on.
pub(crate) fn contain<T>(
    stage: &str,
    f: impl FnOnce() -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic_message(&*panic);
        tracing::error!(panic = %what, stage, "panicked");
        Err(CoreError::Backend(format!("{stage} failed: {what}")))
    })
}

/// What a caught panic says.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
