//! The host side of `inference`: generations forwarded to the core's engine (one at a time
//! with `generation.next`, or whichever of several has an event with `next-of`), scoring,
//! tokenizing and chat templates.

use std::sync::Arc;

use cinder_core::{FinishReason, GenEvent, LoadedModel, SamplingParams, TemplateMessage};
use tokio::sync::mpsc;
use wasmtime::component::Resource;

use crate::bindings::cinder::plugin::{inference, types};
use crate::imports::{invalid_argument, wit_error, wit_error_at};
use crate::state::HostState;

/// The host object behind a guest's `generation` handle.
pub struct GenerationHandle {
    events: mpsc::Receiver<GenEvent>,
    model: Arc<LoadedModel>,
    finished: bool,
    /// Prompt tokens served from the prefix cache, once finished.
    cached_tokens: u32,
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

/// What `next` returns for `event`, the generation's next event from the engine (`None`: the
/// engine dropped it).
fn event_of(
    g: &mut GenerationHandle,
    event: Option<GenEvent>,
) -> Result<Option<inference::Event>, types::Error> {
    match event {
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
        Ok(event_of(self.table.get_mut(&handle)?, event))
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
        if self.adapter(&model).is_some() {
            return Ok(Err(types::Error::Unavailable(format!(
                "scoring a prompt's tokens (echo, prompt logprobs) is not built for adapter models such as `{model}`"
            ))));
        }
        let model = match self.model(&model) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let reply = match model.engine.score(tokens, top_logprobs) {
            Ok(r) => r,
            Err(e) => return Ok(Err(wit_error_at(e, "tokens"))),
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
            Ok(Err(e)) => Err(wit_error_at(e, "tokens")),
            Err(_) => Err(wit_error(cinder_core::CoreError::EngineStopped)),
        })
    }

    async fn generate(
        &mut self,
        request: inference::GenerateRequest,
    ) -> wasmtime::Result<Result<Resource<GenerationHandle>, types::Error>> {
        self.start(request, None).await
    }

    async fn next_of(
        &mut self,
        generations: Vec<Resource<GenerationHandle>>,
    ) -> wasmtime::Result<(u32, Result<Option<inference::Event>, types::Error>)> {
        let mut seen = std::collections::HashSet::new();
        if generations.is_empty() || !generations.iter().all(|g| seen.insert(g.rep())) {
            return Ok((
                0,
                Err(types::Error::Internal(
                    "next-of takes one or more distinct generations".into(),
                )),
            ));
        }
        for (i, h) in generations.iter().enumerate() {
            if self.table.get(h)?.finished {
                return Ok((i as u32, Ok(None)));
            }
        }
        // The table lends one entry at a time: the receivers wait outside it and go back
        // before anything else happens. Receiving is cancel-safe, so the waits that lose the
        // race lose no event.
        let mut receivers = Vec::with_capacity(generations.len());
        for h in &generations {
            let g = self.table.get_mut(h)?;
            receivers.push(std::mem::replace(&mut g.events, mpsc::channel(1).1));
        }
        let (event, index) = {
            let waits = receivers.iter_mut().map(|rx| Box::pin(rx.recv()));
            let (event, index, _) = futures::future::select_all(waits).await;
            (event, index)
        };
        for (h, rx) in generations.iter().zip(receivers) {
            self.table.get_mut(h)?.events = rx;
        }
        self.touch();
        let g = self.table.get_mut(&generations[index])?;
        Ok((index as u32, event_of(g, event)))
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
                    return Ok(Err(invalid_argument(
                        "constraint",
                        format!("The JSON schema is not valid JSON: {e}"),
                        None,
                    )));
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
        self.blocking(move || {
            m.tokenizer
                .decode(&tokens)
                .map_err(|e| wit_error_at(e, "tokens"))
        })
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
            let parse = |text: &str, field: &str| {
                serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                    invalid_argument(field, format!("{field} is not valid JSON: {e}"), None)
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

    fn prompt_prefix(&mut self, model: String) -> wasmtime::Result<Result<Vec<u32>, types::Error>> {
        Ok(self.model(&model).map(|m| {
            let t = &m.tokenizer;
            t.bos_id.filter(|_| t.add_bos).into_iter().collect()
        }))
    }

    fn describe_model(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<inference::ModelInfo, types::Error>> {
        let adapter = self.adapter(&model);
        Ok(self.model(&model).map(|m| {
            let i = adapter.as_ref().map_or(&m.info, |a| &a.info);
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
        let adapter = self.adapter(&request.model).map(|a| a.weights.clone());
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
            group: self.group,
            label: self.request_id.clone(),
            background: self.jobs.background,
            adapter,
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
