//! The core's one error type, in the core's own terms: tokens, sequences, models. It never
//! names a request parameter or an HTTP status: the caller knows where a prompt or a sampling
//! setting came from, and names it (`cinder-runtime` maps these onto the WIT error variant).

use std::fmt;
use std::sync::Arc;

/// A sampling setting, as [`crate::SamplingParams`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingField {
    Temperature,
    TopP,
    PresencePenalty,
    FrequencyPenalty,
    LogitBias,
}

impl fmt::Display for SamplingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SamplingField::Temperature => "temperature",
            SamplingField::TopP => "top_p",
            SamplingField::PresencePenalty => "presence_penalty",
            SamplingField::FrequencyPenalty => "frequency_penalty",
            SamplingField::LogitBias => "logit_bias",
        })
    }
}

/// What kind of model a request needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Generates text.
    Generator,
    /// Embeds text.
    Embedder,
    /// Makes images from text.
    Image,
}

impl ModelKind {
    fn what(self) -> &'static str {
        match self {
            ModelKind::Generator => "a text generation model",
            ModelKind::Embedder => "an embedding model",
            ModelKind::Image => "an image model",
        }
    }

    fn serves(self) -> &'static str {
        match self {
            ModelKind::Generator => "generate text",
            ModelKind::Embedder => "serve embeddings",
            ModelKind::Image => "generate images",
        }
    }
}

/// What can go wrong in the inference core.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// The weights file is unreadable, malformed or uses something not supported yet.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer could not be built or failed on input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to compile or to render (the model's fault, not the caller's).
    #[error("chat template: {message}")]
    Template {
        message: String,
        #[source]
        source: Option<Arc<minijinja::Error>>,
    },
    /// No loaded model answers to this id.
    #[error("The model `{0}` does not exist")]
    UnknownModel(String),
    /// The model is configured but did not load (the server serves the others).
    #[error("The model `{model}` is configured but did not load: {reason}")]
    ModelNotLoaded { model: String, reason: String },
    /// The model exists but is of another kind.
    #[error("The model `{model}` is {}: it does not {}", .is.what(), .wanted.serves())]
    WrongKind {
        model: String,
        wanted: ModelKind,
        is: ModelKind,
    },
    /// The compute backend failed to start or to run.
    #[error("backend: {0}")]
    Backend(String),
    /// A LoRA adapter that does not fit its model, or settings it cannot have.
    #[error("adapter: {0}")]
    Adapter(String),
    /// A background step stopped between two layers for a live request that arrived; the
    /// engine runs the step again later, so this never reaches a request.
    #[error("a background step gave way to a live request")]
    Preempted,
    /// The engine thread has stopped (shutdown or a crash, which is logged).
    #[error("the inference engine for this model has stopped")]
    EngineStopped,
    /// The engine has as much work waiting as it may queue: try again shortly.
    #[error("{0}")]
    Busy(String),

    // The caller's mistakes ([`CoreError::is_callers`]).
    /// The prompt does not leave room for one generated token in the model's context.
    #[error(
        "This model's maximum context length is {limit} tokens, but the prompt has {tokens} tokens."
    )]
    ContextOverflow { tokens: usize, limit: usize },
    /// A generation or a scoring needs at least one prompt token.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A token id the model's vocabulary does not have.
    #[error("token id {token} is outside the vocabulary")]
    OutOfVocabulary { token: u32 },
    /// A sampling setting outside what the sampler takes.
    #[error("{field} {rule}")]
    InvalidSampling {
        field: SamplingField,
        rule: &'static str,
    },
    /// A generation allowed no tokens at all.
    #[error("a generation must allow at least 1 token")]
    NoTokensAllowed,
    /// More alternatives per token than the engine reports.
    #[error("at most {max} alternatives per token, asked for {asked}")]
    TooManyAlternatives { asked: u32, max: u32 },
    /// More stop strings than the engine matches.
    #[error("at most {max} stop strings, got {count}")]
    TooManyStops { count: usize, max: usize },
    /// A grammar or schema the constraint engine cannot run.
    #[error("This grammar or schema is not supported: {0}")]
    GrammarRejected(String),
    /// The messages are not ones the model's chat template renders (e.g. roles out of order).
    #[error("the model's chat template rejected the messages: {0}")]
    MessagesRejected(String),
    /// One input of an embedding batch cannot be embedded.
    #[error("input {index} {problem}")]
    InputRejected {
        index: usize,
        problem: String,
        /// The input is longer than the model reads (not, say, empty).
        too_long: bool,
    },
    /// A model alias that names nothing loaded or shadows a model id.
    #[error("{0}")]
    InvalidAlias(String),
    /// An image size the diffusion model cannot make.
    #[error(
        "{width}x{height} is not a size this model makes: each side is a multiple of {multiple} from {multiple} to {max_side}, and the image at most {max_pixels} pixels"
    )]
    ImageSize {
        width: usize,
        height: usize,
        multiple: usize,
        max_side: usize,
        max_pixels: usize,
    },
    /// An image generation's setting (`param`: steps, guidance, decoder) is out of range.
    #[error("{message}")]
    ImageSetting {
        param: &'static str,
        message: String,
    },
    /// The caller stopped an image generation between two steps.
    #[error("the generation was cancelled")]
    Cancelled,
}

impl CoreError {
    /// Whether the caller asked for something the core does not do (vs. the core failing).
    pub fn is_callers(&self) -> bool {
        matches!(
            self,
            CoreError::ContextOverflow { .. }
                | CoreError::EmptyPrompt
                | CoreError::OutOfVocabulary { .. }
                | CoreError::InvalidSampling { .. }
                | CoreError::NoTokensAllowed
                | CoreError::TooManyAlternatives { .. }
                | CoreError::TooManyStops { .. }
                | CoreError::GrammarRejected(_)
                | CoreError::MessagesRejected(_)
                | CoreError::InputRejected { .. }
                | CoreError::InvalidAlias(_)
                | CoreError::WrongKind { .. }
                | CoreError::ImageSize { .. }
                | CoreError::ImageSetting { .. }
        )
    }

    /// A template failure with no underlying error to point at.
    pub(crate) fn template(message: impl Into<String>) -> Self {
        CoreError::Template {
            message: message.into(),
            source: None,
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
