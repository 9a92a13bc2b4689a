//! The per-request host state and the host side of the WIT imports: `inference` (forwarded to
//! the core's engine), `sink` (forwarded to the HTTP edge), `log` (into `tracing`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cinder_core::{
    CoreError, FinishReason, GenEvent, LoadedModel, ModelRegistry, SamplingParams, TemplateMessage,
};
use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Output;
use crate::bindings::cinder::plugin::{config, inference, log, sink, types};

/// Everything one plugin call may touch. A fresh one per request.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) models: Arc<ModelRegistry>,
    pub(crate) plugin_id: Arc<str>,
    /// Whose request this is: the documents it may see (`documents::LOCAL_OWNER` without keys).
    pub(crate) owner: Arc<str>,
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

/// The host object behind a guest's `generation` handle.
pub struct GenerationHandle {
    events: mpsc::Receiver<GenEvent>,
    model: Arc<LoadedModel>,
    finished: bool,
    /// Prompt tokens served from the prefix cache, once finished.
    cached_tokens: u32,
}

pub(crate) fn wit_error(e: CoreError) -> types::Error {
    match e {
        CoreError::InvalidRequest {
            message,
            param,
            code,
        } => types::Error::InvalidRequest(types::ErrorDetail {
            message,
            param,
            code,
        }),
        CoreError::UnknownModel(id) => types::Error::NotFound(types::ErrorDetail {
            message: format!("The model `{id}` does not exist"),
            param: Some("model".into()),
            code: Some("model_not_found".into()),
        }),
        CoreError::EngineStopped => types::Error::Unavailable(e.to_string()),
        other => {
            tracing::error!(error = %other, "inference core error");
            types::Error::Internal(other.to_string())
        }
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

    fn model(&self, id: &str) -> Result<Arc<LoadedModel>, types::Error> {
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

fn token_logprob(model: &LoadedModel, token: u32, logprob: f32) -> inference::TopLogprob {
    let bytes = model.tokenizer.token_bytes(token).to_vec();
    inference::TopLogprob {
        token,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        logprob,
    }
}

impl inference::HostGeneration for HostState {
    async fn next(
        &mut self,
        handle: Resource<GenerationHandle>,
    ) -> wasmtime::Result<Result<Option<inference::Event>, types::Error>> {
        let g = self.table.get_mut(&handle)?;
        if g.finished {
            return Ok(Ok(None));
        }
        let event = g.events.recv().await;
        self.touch();
        let g = self.table.get_mut(&handle)?;
        Ok(match event {
            Some(GenEvent::Delta {
                text,
                tokens,
                logprobs,
            }) => {
                let logprobs = logprobs
                    .into_iter()
                    .map(|lp| inference::TokenLogprob {
                        sampled: token_logprob(&g.model, lp.token, lp.logprob),
                        top: lp
                            .top
                            .into_iter()
                            .map(|(t, l)| token_logprob(&g.model, t, l))
                            .collect(),
                    })
                    .collect();
                Ok(Some(inference::Event::Delta(inference::Delta {
                    text,
                    tokens,
                    logprobs,
                })))
            }
            Some(GenEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            }) => {
                g.finished = true;
                g.cached_tokens = cached_tokens;
                let reason = match reason {
                    FinishReason::Stop => types::FinishReason::Stop,
                    FinishReason::Length => types::FinishReason::Length,
                };
                Ok(Some(inference::Event::Finished(inference::Finished {
                    reason,
                    usage: types::Usage {
                        prompt_tokens,
                        completion_tokens,
                    },
                })))
            }
            Some(GenEvent::Failed(e)) => {
                g.finished = true;
                Err(wit_error(e))
            }
            None => {
                g.finished = true;
                Err(types::Error::Unavailable(
                    "the inference engine stopped".into(),
                ))
            }
        })
    }

    fn cached_tokens(&mut self, handle: Resource<GenerationHandle>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&handle)?.cached_tokens)
    }

    fn drop(&mut self, handle: Resource<GenerationHandle>) -> wasmtime::Result<()> {
        // Dropping the receiver is what tells the engine to cancel the sequence.
        self.table.delete(handle)?;
        self.quota.open_generations = self.quota.open_generations.saturating_sub(1);
        Ok(())
    }
}

impl inference::Host for HostState {
    async fn score(
        &mut self,
        model: String,
        tokens: Vec<u32>,
        top_logprobs: u32,
    ) -> wasmtime::Result<Result<Vec<inference::TokenLogprob>, types::Error>> {
        let model = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let reply = match model.engine.score(tokens, top_logprobs) {
            Ok(r) => r,
            Err(e) => return Ok(Err(wit_error(e))),
        };
        let scored = reply.await;
        self.touch();
        Ok(match scored {
            Ok(Ok(scored)) => Ok(scored
                .into_iter()
                .map(|lp| inference::TokenLogprob {
                    sampled: token_logprob(&model, lp.token, lp.logprob),
                    top: lp
                        .top
                        .into_iter()
                        .map(|(t, l)| token_logprob(&model, t, l))
                        .collect(),
                })
                .collect()),
            Ok(Err(e)) => Err(wit_error(e)),
            Err(_) => Err(wit_error(cinder_core::CoreError::EngineStopped)),
        })
    }

    async fn generate(
        &mut self,
        request: inference::GenerateRequest,
    ) -> wasmtime::Result<Result<Resource<GenerationHandle>, types::Error>> {
        self.start(request, None).await
    }

    async fn generate_constrained(
        &mut self,
        request: inference::GenerateRequest,
        constraint: inference::Constraint,
    ) -> wasmtime::Result<Result<Resource<GenerationHandle>, types::Error>> {
        use inference::Constraint as C;
        let constraint = match constraint {
            C::JsonObject => cinder_core::Constraint::JsonObject,
            C::JsonSchema(text) => match serde_json::from_str(&text) {
                Ok(schema) => cinder_core::Constraint::JsonSchema(schema),
                Err(e) => {
                    return Ok(Err(types::Error::InvalidRequest(types::ErrorDetail {
                        message: format!("The JSON schema is not valid JSON: {e}"),
                        param: Some("response_format".into()),
                        code: None,
                    })));
                }
            },
            C::Regex(rx) => cinder_core::Constraint::Regex(rx),
            C::Lark(lark) => cinder_core::Constraint::Lark(lark),
        };
        self.start(request, Some(constraint)).await
    }

    async fn tokenize(
        &mut self,
        model: String,
        text: String,
        parse_special: bool,
    ) -> wasmtime::Result<Result<Vec<u32>, types::Error>> {
        let m = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || m.tokenizer.encode(&text, parse_special).map_err(wit_error))
            .await
    }

    async fn detokenize(
        &mut self,
        model: String,
        tokens: Vec<u32>,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let m = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || m.tokenizer.decode(&tokens).map_err(wit_error))
            .await
    }

    async fn apply_chat_template(
        &mut self,
        model: String,
        messages: Vec<inference::ChatMessage>,
        add_generation_prompt: bool,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let m = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || {
            let messages: Vec<TemplateMessage> = messages
                .into_iter()
                .map(|m| TemplateMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect();
            m.template
                .render(&messages, add_generation_prompt)
                .map_err(wit_error)
        })
        .await
    }

    async fn apply_chat_template_json(
        &mut self,
        model: String,
        messages: String,
        tools: Option<String>,
        add_generation_prompt: bool,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let m = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || {
            let parse = |text: &str, param: &str| {
                serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                    wit_error(CoreError::invalid(
                        format!("{param} is not valid JSON: {e}"),
                        param,
                    ))
                })
            };
            let messages = parse(&messages, "messages")?;
            let tools = tools.as_deref().map(|t| parse(t, "tools")).transpose()?;
            m.template
                .render_json(&messages, tools.as_ref(), add_generation_prompt)
                .map_err(wit_error)
        })
        .await
    }

    fn template_has_tools(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        Ok(self.model(&model).map(|m| m.template.has_tools()))
    }

    fn describe_model(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<inference::ModelInfo, types::Error>> {
        Ok(self.model(&model).map(|m| {
            let i = &m.info;
            inference::ModelInfo {
                id: i.id.clone(),
                architecture: i.architecture.clone(),
                context_length: i.context_length,
                vocab_size: i.vocab_size,
                created: i.created,
                fingerprint: i.fingerprint.clone(),
            }
        }))
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

impl HostState {
    /// Starts a generation, constrained or not (a grammar compiles on a blocking thread).
    async fn start(
        &mut self,
        request: inference::GenerateRequest,
        constraint: Option<cinder_core::Constraint>,
    ) -> wasmtime::Result<Result<Resource<GenerationHandle>, types::Error>> {
        if self.quota.open_generations >= crate::quota::MAX_OPEN_GENERATIONS {
            return Ok(Err(types::Error::Internal(format!(
                "the plugin has {} generations open; a request may hold at most that many",
                crate::quota::MAX_OPEN_GENERATIONS
            ))));
        }
        let model = match self.model(&request.model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let s = request.sampling;
        let core_request = cinder_core::GenerateRequest {
            prompt: request.prompt,
            max_tokens: request.max_tokens,
            sampling: SamplingParams {
                temperature: s.temperature,
                top_p: s.top_p,
                seed: s.seed,
                presence_penalty: s.presence_penalty,
                frequency_penalty: s.frequency_penalty,
                logit_bias: s
                    .logit_bias
                    .into_iter()
                    .map(|b| (b.token, b.bias))
                    .collect(),
            },
            stop: request.stop,
            top_logprobs: request.top_logprobs,
            constraint,
        };
        let engine = model.engine.clone();
        let submitted = self
            .blocking(move || engine.submit(core_request).map_err(wit_error))
            .await?;
        match submitted {
            Ok(events) => {
                self.quota.open_generations += 1;
                Ok(Ok(self.table.push(GenerationHandle {
                    events,
                    model,
                    finished: false,
                    cached_tokens: 0,
                })?))
            }
            Err(e) => Ok(Err(e)),
        }
    }
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
