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
