//! The host side of the WIT imports, one module per interface. Each turns the guest's call
//! into work for the core or the host and answers in WIT's terms: a caller's mistake names
//! the argument of the call at fault ([`wit_error`]), never an OpenAI parameter.

pub(crate) mod config;
pub(crate) mod documents;
pub(crate) mod embeddings;
pub(crate) mod images;
pub(crate) mod inference;
pub(crate) mod jobs;
pub(crate) mod log;
pub(crate) mod multipart;
pub(crate) mod route;
pub(crate) mod sink;
pub(crate) mod store;
pub(crate) mod tools;
pub(crate) mod vectors;

use cinder_core::{CoreError, SamplingField};

use crate::bindings::cinder::plugin::types;

/// The core's error as the WIT's error variant. A caller's mistake names the argument of the
/// call at fault in WIT's own terms (`prompt`, `sampling.top-p`, `max-tokens`, `constraint`,
/// `messages`, `inputs`), never a request parameter: the plugin knows which parameter that
/// argument came from (a chat prompt is `messages`, a legacy one `prompt`) and renames it.
pub(crate) fn wit_error(e: CoreError) -> types::Error {
    wit_error_at(e, "prompt")
}

/// [`wit_error`] for a call whose token list is the argument `tokens` (`prompt` in a
/// `generate-request`, `tokens` in `score` and `detokenize`).
pub(crate) fn wit_error_at(e: CoreError, tokens: &str) -> types::Error {
    let invalid = |field: &str, code| invalid_argument(field, e.to_string(), code);
    match &e {
        CoreError::ContextOverflow { .. } => invalid(tokens, Some("context_length_exceeded")),
        CoreError::EmptyPrompt | CoreError::OutOfVocabulary { .. } => invalid(tokens, None),
        CoreError::InvalidSampling { field, .. } => {
            let name = match field {
                SamplingField::Temperature => "temperature",
                SamplingField::TopP => "top-p",
                SamplingField::PresencePenalty => "presence-penalty",
                SamplingField::FrequencyPenalty => "frequency-penalty",
                SamplingField::LogitBias => "logit-bias",
            };
            invalid(&format!("sampling.{name}"), None)
        }
        CoreError::NoTokensAllowed => invalid("max-tokens", None),
        CoreError::TooManyAlternatives { .. } => invalid("top-logprobs", None),
        CoreError::TooManyStops { .. } => invalid("stop", None),
        CoreError::GrammarRejected(_) => invalid("constraint", None),
        CoreError::MessagesRejected(_) => invalid("messages", None),
        CoreError::InputRejected { too_long, .. } => {
            invalid("inputs", too_long.then_some("context_length_exceeded"))
        }
        CoreError::WrongKind { .. } => invalid("model", Some("model_not_supported")),
        CoreError::ImageSize { .. } => invalid("size", None),
        CoreError::ImageSetting { param, .. } => invalid(param, None),
        CoreError::Adapter(_) => invalid("adapter", None),
        CoreError::Cancelled => types::Error::Unavailable(e.to_string()),
        CoreError::UnknownModel(_) | CoreError::ModelNotLoaded { .. } => types::Error::NotFound(
            argument_detail("model", e.to_string(), Some("model_not_found")),
        ),
        CoreError::EngineStopped => types::Error::Unavailable(e.to_string()),
        CoreError::Busy(message) => types::Error::RateLimited(message.clone()),
        CoreError::Weights(_)
        | CoreError::Tokenizer(_)
        | CoreError::Template { .. }
        | CoreError::Backend(_)
        | CoreError::Preempted
        | CoreError::InvalidAlias(_) => {
            tracing::error!(error = %e, "inference core error");
            types::Error::Internal(e.to_string())
        }
    }
}

/// A client mistake the host finds in a call's argument `field` (WIT's name for it).
pub(crate) fn invalid_argument(
    field: &str,
    message: impl Into<String>,
    code: Option<&str>,
) -> types::Error {
    types::Error::InvalidRequest(argument_detail(field, message, code))
}

pub(crate) fn argument_detail(
    field: &str,
    message: impl Into<String>,
    code: Option<&str>,
) -> types::ErrorDetail {
    types::ErrorDetail {
        message: message.into(),
        param: Some(field.to_owned()),
        code: code.map(str::to_owned),
    }
}
