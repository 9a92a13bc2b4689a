//! The per-request host state and the host side of the WIT imports: `inference` (forwarded to
//! the core's engine), `sink` (forwarded to the HTTP edge), `log` (into `tracing`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cinder_core::{CoreError, LoadedModel, ModelRegistry, SamplingField};
use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Output;
use crate::bindings::cinder::plugin::{config, log, route, sink, types};

/// Everything one plugin call may touch. A fresh one per request.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) models: Arc<ModelRegistry>,
    pub(crate) plugin_id: Arc<str>,
    /// Whose request this is: the documents it may see (`documents::LOCAL_OWNER` without keys).
    pub(crate) owner: Arc<str>,
    /// This call's generations share it: the engine admits fairly between calls.
    pub(crate) group: u64,
    /// The server's id for the request this call serves; the engine's log lines carry it.
    pub(crate) request_id: Arc<str>,
    /// The route the request matched, for `cinder:plugin/route` (none in a tools call).
    pub(crate) route: Option<crate::MatchedRoute>,
    pub(crate) out: mpsc::Sender<Output>,
    pub(crate) response: ResponseState,
    /// CPU budget left, in epoch ticks.
    pub(crate) cpu_ticks_left: u64,
    /// When the guest last got control back from an async host call: an epoch tick that
    /// arrives right after is time spent parked, not running, and is not charged.
    pub(crate) resumed_at: Instant,
    /// Milliseconds from `started` to the last host call that returned (a token, a write the
    /// client took): the idle timeout counts from there.
    pub(crate) progress: Arc<AtomicU64>,
    pub(crate) started: Instant,
    /// This plugin's `[plugins.settings.<id>]`, sorted by key, as of the call's start.
    pub(crate) settings: Arc<Settings>,
    /// `None` unless the manifest grants `storage`.
    pub(crate) documents: Option<Arc<crate::documents::DocumentStore>>,
    /// Host resources the call holds (open generations, log volume, stored bytes).
    pub(crate) quota: crate::quota::Quota,
    /// The tools plugin this call may reach through the `tools` import.
    pub(crate) tools: crate::tools_link::ToolsLink,
}

/// One plugin's settings, sorted by key.
pub type Settings = Vec<(String, String)>;

/// Which shape the response has taken so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseState {
    Nothing,
    Streaming,
    Whole,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host object behind a guest's `response-sink` handle. The state lives in [`HostState`]:
/// a request has exactly one sink.
pub struct SinkHandle;

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
        CoreError::UnknownModel(_) => types::Error::NotFound(argument_detail(
            "model",
            e.to_string(),
            Some("model_not_found"),
        )),
        CoreError::EngineStopped => types::Error::Unavailable(e.to_string()),
        CoreError::Busy(message) => types::Error::RateLimited(message.clone()),
        CoreError::Weights(_)
        | CoreError::Tokenizer(_)
        | CoreError::Template { .. }
        | CoreError::Backend(_)
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

fn argument_detail(
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

impl HostState {
    /// Called whenever an async host call returns: the guest runs again (not charged for the
    /// wait) and the call made progress (the idle clock restarts).
    pub(crate) fn touch(&mut self) {
        self.resumed_at = Instant::now();
        let ms = self.started.elapsed().as_millis() as u64;
        self.progress.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn model(&self, id: &str) -> Result<Arc<LoadedModel>, types::Error> {
        self.models.get(id).map_err(wit_error)
    }

    async fn send(&mut self, output: Output, shape: ResponseState) -> Result<(), sink::SinkError> {
        match (self.response, shape) {
            (ResponseState::Whole, _) | (ResponseState::Streaming, ResponseState::Whole) => {
                return Err(sink::SinkError::AlreadyResponded);
            }
            _ => {}
        }
        self.response = shape;
        let sent = self.out.send(output).await;
        self.touch();
        sent.map_err(|_| sink::SinkError::Closed)
    }
}

impl types::Host for HostState {}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .settings
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| self.settings[i].1.clone()))
    }

    fn entries(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok((*self.settings).clone())
    }
}

impl route::Host for HostState {
    fn current(&mut self) -> wasmtime::Result<Option<route::MatchedRoute>> {
        Ok(self.route.as_ref().map(|r| route::MatchedRoute {
            id: r.id.clone(),
            params: r.params.clone(),
        }))
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin_id;
        let Some(message) = self.quota.log(&message) else {
            return Ok(());
        };
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl sink::HostResponseSink for HostState {
    async fn send_event(
        &mut self,
        _sink: Resource<SinkHandle>,
        data: String,
    ) -> wasmtime::Result<Result<(), sink::SinkError>> {
        ensure_json(&data, "an event")?;
        Ok(self
            .send(Output::Event(data), ResponseState::Streaming)
            .await)
    }

    async fn respond(
        &mut self,
        _sink: Resource<SinkHandle>,
        status: u16,
        body: String,
    ) -> wasmtime::Result<Result<(), sink::SinkError>> {
        if !(200..=599).contains(&status) {
            // A malformed response is a plugin bug: trap it, the request gets a 500.
            return Err(PluginFault(format!("it answered with HTTP status {status}")).into());
        }
        ensure_json(&body, "a response body")?;
        Ok(self
            .send(Output::Respond { status, body }, ResponseState::Whole)
            .await)
    }

    fn drop(&mut self, rep: Resource<SinkHandle>) -> wasmtime::Result<()> {
        // The host owns the sink and deletes it after the call; a guest drop of its borrow
        // never reaches here, but an owned handle would.
        self.table.delete(rep)?;
        Ok(())
    }
}

impl sink::Host for HostState {}

/// A plugin bug the host caught (malformed output): it ends the call like a trap, and its
/// message is what the client's 500 says.
#[derive(Debug)]
pub(crate) struct PluginFault(pub(crate) String);

impl std::fmt::Display for PluginFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginFault {}

/// Every body and event on OpenAI routes is JSON; anything else would reach clients as a
/// parse error in their SDK, so it is refused here, where the plugin can be named.
fn ensure_json(text: &str, what: &str) -> wasmtime::Result<()> {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(PluginFault(format!("it wrote {what} that is not JSON ({e})")).into()),
    }
}

/// The epoch callback's verdict: charge a tick if the guest has really been running.
pub(crate) fn charge_tick(
    state: &mut HostState,
    tick: std::time::Duration,
) -> Result<(), wasmtime::Error> {
    if state.resumed_at.elapsed() < tick {
        return Ok(());
    }
    if state.cpu_ticks_left == 0 {
        return Err(wasmtime::Error::from(Trap::Interrupt));
    }
    state.cpu_ticks_left -= 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_json_passes() {
        assert!(super::ensure_json("{\"a\": [1, 2]}", "x").is_ok());
        assert!(super::ensure_json("{not json", "x").is_err());
        assert!(super::ensure_json("", "x").is_err());
        assert!(super::ensure_json("1 2", "x").is_err());
    }
}
