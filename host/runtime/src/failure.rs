//! How a plugin call fails, in the runtime's terms. The server's error mapping is the one
//! place that turns these into an HTTP status and OpenAI's envelope.

use std::time::Duration;

use crate::bindings::cinder::plugin::types;

/// What a plugin or the host says about a mistake: a message, the argument or request
/// parameter at fault, and a machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// An error a plugin returned through the WIT's error variant, case for case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The client's mistake.
    #[error("{}", .0.message)]
    InvalidRequest(Detail),
    /// What the request names does not exist.
    #[error("{}", .0.message)]
    NotFound(Detail),
    /// Saturated; the client may retry.
    #[error("{0}")]
    RateLimited(String),
    /// A part of the server is not ready or not built.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure.
    #[error("{0}")]
    Internal(String),
}

/// Why a call ended without its response (or, streaming, without its end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Every instance slot is busy and the queue of waiting calls is full.
    #[error("The server is busy with other requests; retry shortly")]
    QueueFull { retry_after: Duration },
    /// The call ran past its wall-clock limit.
    #[error("The request took longer than {} s", .0.as_secs())]
    Timeout(Duration),
    /// The plugin made no progress for this long.
    #[error("The plugin made no progress for {} s", .0.as_secs_f32())]
    Idle(Duration),
    /// The plugin returned success without writing a response.
    #[error("The plugin returned without writing a response")]
    NoResponse,
    /// The plugin used up its CPU budget.
    #[error("The plugin `{plugin}` failed: it used up its CPU budget")]
    OutOfFuel { plugin: String },
    /// The plugin trapped (a panic, an abort, out of memory) or broke a host rule.
    #[error("The plugin `{plugin}` failed: {reason}")]
    Trapped { plugin: String, reason: String },
    /// The request body could not be read (too large, too slow, malformed multipart).
    #[error(transparent)]
    Body(#[from] crate::body::BodyFailure),
}

impl From<types::Error> for PluginError {
    fn from(e: types::Error) -> Self {
        let detail = |d: types::ErrorDetail| Detail {
            message: d.message,
            param: d.param,
            code: d.code,
        };
        match e {
            types::Error::InvalidRequest(d) => PluginError::InvalidRequest(detail(d)),
            types::Error::NotFound(d) => PluginError::NotFound(detail(d)),
            types::Error::RateLimited(m) => PluginError::RateLimited(m),
            types::Error::Unavailable(m) => PluginError::Unavailable(m),
            types::Error::Internal(m) => PluginError::Internal(m),
        }
    }
}

impl From<PluginError> for types::Error {
    /// Back across the WIT, case for case (a job step's dispatched call failed this way).
    fn from(e: PluginError) -> Self {
        let detail = |d: Detail| types::ErrorDetail {
            message: d.message,
            param: d.param,
            code: d.code,
        };
        match e {
            PluginError::InvalidRequest(d) => types::Error::InvalidRequest(detail(d)),
            PluginError::NotFound(d) => types::Error::NotFound(detail(d)),
            PluginError::RateLimited(m) => types::Error::RateLimited(m),
            PluginError::Unavailable(m) => types::Error::Unavailable(m),
            PluginError::Internal(m) => types::Error::Internal(m),
        }
    }
}

impl CallError {
    /// What a call of `plugin` that ended in `trap` failed of.
    pub(crate) fn from_trap(plugin: String, trap: &wasmtime::Error, out_of_cpu: bool) -> Self {
        match trap_reason(trap, out_of_cpu) {
            None => CallError::OutOfFuel { plugin },
            Some(reason) => CallError::Trapped { plugin, reason },
        }
    }
}

/// What the runtime can fail at (loading; request failures become [`Output::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("plugin {path}: {reason}")]
    Plugin { path: String, reason: String },
}

/// What went wrong, in words for the client ([`CPU_BUDGET`] when it used up its CPU).
pub(crate) fn describe_trap(e: &wasmtime::Error, out_of_cpu: bool) -> String {
    trap_reason(e, out_of_cpu).unwrap_or_else(|| CPU_BUDGET.into())
}

/// How [`describe_trap`] says the plugin used up its CPU budget.
pub(crate) const CPU_BUDGET: &str = "it used up its CPU budget";

/// What went wrong, in words for the client; `None` when the plugin used up its CPU budget.
pub(crate) fn trap_reason(e: &wasmtime::Error, out_of_cpu: bool) -> Option<String> {
    if out_of_cpu {
        return None;
    }
    if let Some(fault) = e.downcast_ref::<crate::imports::sink::PluginFault>() {
        return Some(fault.0.clone());
    }
    Some(match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => "it panicked or aborted".into(),
        Some(wasmtime::Trap::Interrupt) => return None,
        Some(t) => format!("it trapped ({t})"),
        None if format!("{e:?}").contains("memory") => "it ran out of memory".into(),
        // Not a trap of the guest's own: a host-side refusal (e.g. its exports do not match
        // the world's types); the chain says which.
        None => format!("{e:#}"),
    })
}
