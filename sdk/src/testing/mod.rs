//! Native unit tests for plugin logic (feature `testing`): [`FakeHost`] stands in for the
//! inference core and the response sink, so `cargo test` runs a plugin's code on the build
//! machine, without wasm or a model. What it generates is scripted by the test; it applies
//! `max_tokens` but not stop strings (the real core does).
//!
//! ```
//! use cinder_sdk::host::{Inference, Sink};
//! use cinder_sdk::testing::FakeHost;
//!
//! let host = FakeHost::new("m").generating(&["call ", "555"]);
//! assert_eq!(host.tokenize("m", "hi", true).unwrap(), [104, 105]);
//! host.respond(200, r#"{"ok": true}"#).unwrap();
//! assert_eq!(host.response().unwrap().1["ok"], true);
//! ```

mod embeddings;
mod images;
mod jobs;
mod store;
mod vectors;

use std::cell::RefCell;
use std::collections::VecDeque;

pub use images::{fake_picture, image_model};
pub use jobs::{FakeJob, FakeJobs};
pub use store::{FakeForm, FakeStore};

use crate::embeddings::{EmbedInput, EmbedderInfo};
use crate::export::ToolsPlugin;
use crate::host::{Config, Documents, Generation, Inference, Sink, Tools};
use crate::inference::{
    ChatMessage, Constraint, Delta, Event, Finished, GenerateRequest, ModelInfo,
};
use crate::inference::{TokenLogprob, TopLogprob};
use crate::tools::{Call, Message, Prompt, ToolUse};
use crate::types::{ErrorDetail, FinishReason, Usage};
use crate::{Error, Request};

/// A scripted host for one request.
pub struct FakeHost {
    model: ModelInfo,
    scripts: Vec<Vec<String>>,
    generated: RefCell<Vec<GenerateRequest>>,
    /// Each SSE event's name (`None`: unnamed) and data.
    events: RefCell<Vec<(Option<String>, String)>>,
    response: RefCell<Option<(u16, String)>>,
    settings: Vec<(String, String)>,
    /// (collection, key, value) in first-write order.
    documents: RefCell<Vec<(String, String, String)>>,
    constraints: RefCell<Vec<Constraint>>,
    /// Whether the fake model's template renders `tools` itself.
    template_tools: bool,
    /// What a raw prompt starts with (see [`FakeHost::with_prompt_prefix`]).
    prompt_prefix: Vec<u32>,
    /// The loaded tools plugin (`None`: none is loaded).
    tools_plugin: Option<Box<dyn ToolsPlugin>>,
    /// The embedding model, if any (see [`FakeHost::with_embedder`]).
    embedder: Option<EmbedderInfo>,
    /// Every `embed` call's inputs, in order.
    embedded: RefCell<Vec<Vec<EmbedInput>>>,
    /// Objects and blobs (WIT `store`).
    store: FakeStore,
    /// The request's multipart form (WIT `multipart`).
    form: FakeForm,
    /// Queued jobs and dispatched requests (WIT `jobs`, `dispatch`).
    jobs: FakeJobs,
    /// The image model, if any (see [`FakeHost::with_image_model`]).
    image_model: Option<crate::images::ImageModelInfo>,
    /// Every `generate-images` request, in order.
    image_requests: RefCell<Vec<crate::images::ImageRequest>>,
    /// Every `edit-images` source, beside its request in `image_requests`.
    image_sources: RefCell<Vec<crate::images::ImageSource>>,
}

/// A `POST /v1/chat/completions` request with `body`.
pub fn post(body: &serde_json::Value) -> Request {
    request("POST", "/v1/chat/completions", body)
}

/// A request to `path` with `body`.
pub fn request(method: &str, path: &str, body: &serde_json::Value) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        body: body.to_string(),
        request_id: "test".into(),
    }
}

impl FakeHost {
    /// A host serving one model, `model`, with a 2048-token context.
    pub fn new(model: &str) -> Self {
        FakeHost {
            model: ModelInfo {
                id: model.into(),
                architecture: "fake".into(),
                context_length: 2048,
                vocab_size: 256,
                created: 0,
                fingerprint: "fp_fake".into(),
            },
            scripts: Vec::new(),
            generated: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            response: RefCell::new(None),
            settings: Vec::new(),
            documents: RefCell::new(Vec::new()),
            constraints: RefCell::new(Vec::new()),
            template_tools: false,
            prompt_prefix: Vec::new(),
            tools_plugin: None,
            embedder: None,
            embedded: RefCell::new(Vec::new()),
            store: FakeStore::default(),
            form: FakeForm::default(),
            jobs: FakeJobs::default(),
            image_model: None,
            image_requests: RefCell::new(Vec::new()),
            image_sources: RefCell::new(Vec::new()),
        }
    }

    /// This host with `jobs` (shared between requests and steps, like the store).
    pub fn with_jobs(mut self, jobs: FakeJobs) -> Self {
        self.jobs = jobs;
        self
    }

    /// The jobs behind this host.
    pub fn jobs(&self) -> &FakeJobs {
        &self.jobs
    }

    /// This host with `store` (shared between requests: build each request's host with
    /// [`FakeHost::with_store`] of one store, as the real host shares its database).
    pub fn with_store(mut self, store: FakeStore) -> Self {
        self.store = store;
        self
    }

    /// The request's multipart form: `(name, filename, content)` parts in order.
    pub fn with_form(mut self, parts: &[(&str, Option<&str>, &[u8])]) -> Self {
        self.form = FakeForm::new(parts);
        self
    }

    /// The store behind this host.
    pub fn store(&self) -> &FakeStore {
        &self.store
    }

    /// Adds an embedding model `id` with unit vectors of `dimensions` that reads up to
    /// `max_tokens` tokens: text becomes one token per character (its code point), and a
    /// vector depends only on the input's tokens.
    pub fn with_embedder(mut self, id: &str, dimensions: u32, max_tokens: u32) -> Self {
        self.embedder = Some(EmbedderInfo {
            id: id.into(),
            architecture: "fake".into(),
            dimensions,
            max_tokens,
            normalized: true,
            created: 0,
            fingerprint: "fp_fake".into(),
        });
        self
    }

    /// The inputs of every `embed` call, in order.
    pub fn embed_calls(&self) -> Vec<Vec<EmbedInput>> {
        self.embedded.borrow().clone()
    }

    fn embedder(&self, model: &str) -> Result<&EmbedderInfo, Error> {
        match &self.embedder {
            Some(e) if e.id == model => Ok(e),
            _ if model == self.model.id => Err(Error::InvalidRequest(ErrorDetail {
                message: format!("The model `{model}` does not serve embeddings"),
                param: Some("model".into()),
                code: Some("model_not_supported".into()),
            })),
            _ => Err(self.unknown(model)),
        }
    }

    /// Makes the fake model's template one with `tools` support: it renders OpenAI-shaped
    /// messages as `<|role|>{json}` lines and the tools as a `<|tools|>` line.
    pub fn with_template_tools(mut self) -> Self {
        self.template_tools = true;
        self
    }

    /// Makes the fake model's tokenizer start raw prompts with `ids` (a BOS, as Gemma's).
    pub fn with_prompt_prefix(mut self, ids: &[u32]) -> Self {
        self.prompt_prefix = ids.to_vec();
        self
    }

    /// As if no tools plugin were loaded (the default): tool calls are unavailable.
    pub fn without_tools_plugin(mut self) -> Self {
        self.tools_plugin = None;
        self
    }

    /// Serves the `tools` import with `tools`, as if it were the loaded tools plugin.
    pub fn with_tools(mut self, tools: impl ToolsPlugin + 'static) -> Self {
        self.tools_plugin = Some(Box::new(tools));
        self
    }

    /// Sets one of the plugin's settings, as `[plugins.settings.<id>]` would.
    pub fn with_setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds what one generation yields, one token per piece. The k-th `generate` call plays
    /// the k-th script (the last one again when there are fewer).
    pub fn generating(mut self, pieces: &[&str]) -> Self {
        self.scripts
            .push(pieces.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// The constraints of constrained generations, in order.
    pub fn constraints(&self) -> Vec<Constraint> {
        self.constraints.borrow().clone()
    }

    /// The generate requests the plugin made, in order.
    pub fn generate_requests(&self) -> Vec<GenerateRequest> {
        self.generated.borrow().clone()
    }

    /// The SSE events sent, parsed as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events
            .borrow()
            .iter()
            .map(|(_, e)| serde_json::from_str(e).unwrap_or(serde_json::Value::String(e.clone())))
            .collect()
    }

    /// The SSE events sent with their names (WIT 0.1.12 `send-named-event`; an unnamed
    /// event's name is empty), data parsed as JSON.
    pub fn named_events(&self) -> Vec<(String, serde_json::Value)> {
        self.events
            .borrow()
            .iter()
            .map(|(n, e)| {
                let data = serde_json::from_str(e).unwrap_or(serde_json::Value::String(e.clone()));
                (n.clone().unwrap_or_default(), data)
            })
            .collect()
    }

    /// The whole response, if one was sent: status and body parsed as JSON.
    pub fn response(&self) -> Option<(u16, serde_json::Value)> {
        self.response.borrow().as_ref().map(|(status, body)| {
            let body = serde_json::from_str(body)
                .unwrap_or_else(|_| serde_json::Value::String(body.clone()));
            (*status, body)
        })
    }

    /// Takes the response (and forgets the events), so the same host, with its documents,
    /// can serve the next request.
    pub fn take_response(&self) -> Option<(u16, serde_json::Value)> {
        let r = self.response();
        *self.response.borrow_mut() = None;
        self.events.borrow_mut().clear();
        r
    }

    fn tools_plugin(&self) -> Result<&dyn ToolsPlugin, Error> {
        self.tools_plugin
            .as_deref()
            .ok_or_else(|| Error::Unavailable("no tools plugin is loaded".into()))
    }

    fn unknown(&self, model: &str) -> Error {
        Error::NotFound(ErrorDetail {
            message: format!("The model `{model}` does not exist"),
            param: Some("model".into()),
            code: Some("model_not_found".into()),
        })
    }
}

/// A script piece (see [`FakeHost::generating`]) at which the generation fails, as an engine
/// fault would, instead of yielding text.
pub const FAILING: &str = "\u{0}fail";

struct FakeGeneration {
    pieces: RefCell<VecDeque<String>>,
    prompt_tokens: u32,
    max_tokens: u32,
    top_logprobs: Option<u32>,
    produced: RefCell<u32>,
    done: RefCell<bool>,
}

impl Generation for FakeGeneration {
    fn next(&self) -> Result<Option<Event>, Error> {
        if *self.done.borrow() {
            return Ok(None);
        }
        let produced = *self.produced.borrow();
        let finish = |reason| {
            *self.done.borrow_mut() = true;
            Ok(Some(Event::Finished(Finished {
                reason,
                usage: Usage {
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: produced,
                },
            })))
        };
        if produced >= self.max_tokens {
            return finish(FinishReason::Length);
        }
        let Some(text) = self.pieces.borrow_mut().pop_front() else {
            return finish(FinishReason::Stop);
        };
        if text == FAILING {
            *self.done.borrow_mut() = true;
            return Err(Error::Internal("the generation failed (scripted)".into()));
        }
        *self.produced.borrow_mut() += 1;
        let sampled = TopLogprob {
            token: produced,
            text: text.clone(),
            bytes: text.clone().into_bytes(),
            logprob: -0.5,
        };
        let logprobs = match self.top_logprobs {
            Some(k) => vec![TokenLogprob {
                top: vec![sampled.clone(); k as usize],
                sampled,
            }],
            None => Vec::new(),
        };
        Ok(Some(Event::Delta(Delta {
            tokens: vec![produced],
            text,
            logprobs,
        })))
    }
}

impl Inference for FakeHost {
    fn describe_model(&self, model: &str) -> Result<ModelInfo, Error> {
        if model == self.model.id {
            Ok(self.model.clone())
        } else {
            Err(self.unknown(model))
        }
    }

    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        self.describe_model(model)?;
        let mut prompt: String = messages
            .iter()
            .map(|m| format!("<|{}|>{}\n", m.role, m.content))
            .collect();
        if add_generation_prompt {
            prompt.push_str("<|assistant|>");
        }
        Ok(prompt)
    }

    fn apply_chat_template_json(
        &self,
        model: &str,
        messages: &str,
        tools: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        self.describe_model(model)?;
        let parsed: Vec<serde_json::Value> = serde_json::from_str(messages)
            .map_err(|e| Error::Internal(format!("messages are not a JSON array: {e}")))?;
        let mut prompt = tools.map(|t| format!("<|tools|>{t}\n")).unwrap_or_default();
        for m in parsed {
            prompt.push_str(&format!("<|{}|>{m}\n", m["role"].as_str().unwrap_or("")));
        }
        if add_generation_prompt {
            prompt.push_str("<|assistant|>");
        }
        Ok(prompt)
    }

    fn template_has_tools(&self, model: &str) -> Result<bool, Error> {
        self.describe_model(model)?;
        Ok(self.template_tools)
    }

    fn prompt_prefix(&self, model: &str) -> Result<Vec<u32>, Error> {
        self.describe_model(model)?;
        Ok(self.prompt_prefix.clone())
    }

    fn tokenize(&self, model: &str, text: &str, _parse_special: bool) -> Result<Vec<u32>, Error> {
        self.describe_model(model)?;
        Ok(text.bytes().map(u32::from).collect())
    }

    fn detokenize(&self, model: &str, tokens: &[u32]) -> Result<String, Error> {
        self.describe_model(model)?;
        let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Every token scores -1.0, with `top` copies of itself as the alternatives.
    fn score(&self, model: &str, tokens: &[u32], top: u32) -> Result<Vec<TokenLogprob>, Error> {
        self.describe_model(model)?;
        Ok(tokens
            .iter()
            .skip(1)
            .map(|&t| {
                let sampled = TopLogprob {
                    token: t,
                    text: char::from(t as u8).to_string(),
                    bytes: vec![t as u8],
                    logprob: -1.0,
                };
                TokenLogprob {
                    top: vec![sampled.clone(); top as usize],
                    sampled,
                }
            })
            .collect())
    }

    /// Records the constraint and plays the script: the fake does not enforce grammars.
    fn generate_constrained(
        &self,
        request: &GenerateRequest,
        constraint: &Constraint,
    ) -> Result<Box<dyn Generation>, Error> {
        self.constraints.borrow_mut().push(constraint.clone());
        self.generate(request)
    }

    fn generate(&self, request: &GenerateRequest) -> Result<Box<dyn Generation>, Error> {
        self.describe_model(&request.model)?;
        let k = self.generated.borrow().len();
        self.generated.borrow_mut().push(request.clone());
        let script = self
            .scripts
            .get(k)
            .or(self.scripts.last())
            .cloned()
            .unwrap_or_default();
        Ok(Box::new(FakeGeneration {
            pieces: RefCell::new(script.into()),
            prompt_tokens: request.prompt.len() as u32,
            max_tokens: request.max_tokens.unwrap_or(u32::MAX),
            top_logprobs: request.top_logprobs,
            produced: RefCell::new(0),
            done: RefCell::new(false),
        }))
    }
}

impl Tools for FakeHost {
    fn render_tools(
        &self,
        model: &str,
        messages: &[Message],
        tools: Option<&ToolUse>,
    ) -> Result<Prompt, Error> {
        self.tools_plugin()?
            .render(model, messages.to_vec(), tools.cloned(), self)
    }

    fn parse_tool_calls(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
    ) -> Result<Option<Vec<Call>>, Error> {
        self.tools_plugin()?.parse(model, text, tools, self)
    }
}

impl Sink for FakeHost {
    fn send_event(&self, data: &str) -> Result<(), Error> {
        if self.response.borrow().is_some() {
            return Err(Error::Internal("the plugin wrote two responses".into()));
        }
        self.events.borrow_mut().push((None, data.to_owned()));
        Ok(())
    }

    fn send_named_event(&self, event: &str, data: &str) -> Result<(), Error> {
        if self.response.borrow().is_some() {
            return Err(Error::Internal("the plugin wrote two responses".into()));
        }
        if event.is_empty() || event.len() > 64 || !event.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Internal(format!(
                "the plugin named an event {event:?}"
            )));
        }
        serde_json::from_str::<serde_json::Value>(data)
            .map_err(|e| Error::Internal(format!("an event's data is not JSON: {e}")))?;
        self.events
            .borrow_mut()
            .push((Some(event.to_owned()), data.to_owned()));
        Ok(())
    }

    fn respond(&self, status: u16, body: &str) -> Result<(), Error> {
        if self.response.borrow().is_some() || !self.events.borrow().is_empty() {
            return Err(Error::Internal("the plugin wrote two responses".into()));
        }
        *self.response.borrow_mut() = Some((status, body.to_owned()));
        Ok(())
    }
}

impl Documents for FakeHost {
    fn put_document(&self, collection: &str, key: &str, value: &str) -> Result<(), Error> {
        let mut docs = self.documents.borrow_mut();
        match docs
            .iter_mut()
            .find(|(c, k, _)| c == collection && k == key)
        {
            Some(doc) => doc.2 = value.to_owned(),
            None => docs.push((collection.to_owned(), key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    fn get_document(&self, collection: &str, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .documents
            .borrow()
            .iter()
            .find(|(c, k, _)| c == collection && k == key)
            .map(|(_, _, v)| v.clone()))
    }

    fn delete_document(&self, collection: &str, key: &str) -> Result<bool, Error> {
        let mut docs = self.documents.borrow_mut();
        let before = docs.len();
        docs.retain(|(c, k, _)| !(c == collection && k == key));
        Ok(docs.len() < before)
    }

    fn page_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, Error> {
        let docs = self.documents.borrow();
        let mut all: Vec<(String, String)> = docs
            .iter()
            .filter(|(c, _, _)| c == collection)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        if newest_first {
            all.reverse();
        }
        let start = after
            .and_then(|a| all.iter().position(|(k, _)| k == a).map(|i| i + 1))
            .unwrap_or(0);
        Ok(all.into_iter().skip(start).take(limit as usize).collect())
    }
}

impl Config for FakeHost {
    fn setting(&self, key: &str) -> Option<String> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}
