//! What plugin logic needs from the host, as a trait: in a plugin it is the real host
//! ([`Wasm`]); with the `testing` feature, unit tests run the same logic natively against
//! [`crate::testing::FakeHost`].

use crate::embeddings::{EmbedInput, Embedded, EmbedderInfo, Overflow};
use crate::inference::{
    self, ChatMessage, Constraint, Event, GenerateRequest, ModelInfo, TokenLogprob,
};
use crate::sink::ResponseSink;
use crate::tools::{Call, Message, Prompt, ToolUse};
use crate::{Error, sink_error};

/// A running generation: yields deltas, then one `finished`, then `None`.
pub trait Generation {
    /// The next event; blocks (in a plugin: parks in the host) until there is one.
    fn next(&self) -> Result<Option<Event>, Error>;
    /// Prompt tokens served from the core's prefix cache; meaningful once `finished` has
    /// been returned (WIT 0.1.4).
    fn cached_tokens(&self) -> u32 {
        0
    }
    /// The WIT resource behind it, for [`Host::next_of`] (`None` for fakes).
    fn wit(&self) -> Option<&inference::Generation> {
        None
    }
}

/// The inference core and the response sink of one request.
pub trait Host {
    /// The next event of whichever of `generations` has one first, with its index (WIT
    /// 0.1.5). Read several generations with it, never one after another: a generation the
    /// engine has not admitted yet (it is busy) would hold up the others, which stay paused
    /// with their caches. Hosts that cannot wait on several (fakes) read the first; callers
    /// rotate the list so that every generation gets its turn.
    fn next_of(&self, generations: &[&dyn Generation]) -> (usize, Result<Option<Event>, Error>) {
        match generations.first() {
            Some(g) => (0, g.next()),
            None => (0, Err(Error::Internal("next_of needs a generation".into()))),
        }
    }
    /// What the host knows of `model` (an unknown id is a `not-found` error).
    fn describe_model(&self, model: &str) -> Result<ModelInfo, Error>;
    /// Renders `messages` with the model's own chat template.
    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, Error>;
    /// Token ids of `text`; `parse_special` makes control-token text special.
    fn tokenize(&self, model: &str, text: &str, parse_special: bool) -> Result<Vec<u32>, Error>;
    /// The text of token ids.
    fn detokenize(&self, model: &str, tokens: &[u32]) -> Result<String, Error>;
    /// For each token after the first, its logprob given the ones before it, with `top`
    /// alternatives (WIT 0.1.2).
    fn score(&self, model: &str, tokens: &[u32], top: u32) -> Result<Vec<TokenLogprob>, Error>;
    /// Starts a generation.
    fn generate(&self, request: &GenerateRequest) -> Result<Box<dyn Generation>, Error>;
    /// Starts a generation whose output must match `constraint` (WIT 0.1.2).
    fn generate_constrained(
        &self,
        request: &GenerateRequest,
        constraint: &Constraint,
    ) -> Result<Box<dyn Generation>, Error>;
    /// Renders `messages` with the model's template, given as OpenAI-shaped JSON, passing
    /// `tools` (JSON) to templates that read them (WIT 0.1.3).
    fn apply_chat_template_json(
        &self,
        model: &str,
        messages: &str,
        tools: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String, Error>;
    /// Whether the model's template renders `tools` itself (WIT 0.1.3).
    fn template_has_tools(&self, model: &str) -> Result<bool, Error>;
    /// Renders a conversation with tool calling, through the loaded tools plugin (WIT 0.1.3).
    fn render_tools(
        &self,
        model: &str,
        messages: &[Message],
        tools: Option<&ToolUse>,
    ) -> Result<Prompt, Error>;
    /// Reads the calls out of a finished answer, through the loaded tools plugin.
    fn parse_tool_calls(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
    ) -> Result<Option<Vec<Call>>, Error>;
    /// What the host knows of the embedding model `model` (WIT 0.1.4).
    fn describe_embedder(&self, model: &str) -> Result<EmbedderInfo, Error>;
    /// One vector per input, in order, with the tokens read (WIT 0.1.4).
    fn embed(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
    ) -> Result<Embedded, Error>;
    /// [`Host::embed`], refusing inputs that together have more than `max_tokens` tokens
    /// with a 400 naming `input` (WIT 0.1.5: the host counts before any embedding work; this
    /// default counts after, for hosts without it).
    fn embed_within(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
        max_tokens: u32,
    ) -> Result<Embedded, Error> {
        let out = self.embed(model, inputs, overflow)?;
        if out.prompt_tokens > max_tokens {
            return Err(Error::InvalidRequest(crate::types::ErrorDetail {
                message: format!(
                    "the inputs have {} tokens; at most {max_tokens} per request",
                    out.prompt_tokens
                ),
                param: Some("input".into()),
                code: Some("max_tokens_per_request".into()),
            }));
        }
        Ok(out)
    }
    /// Sends one SSE event's data (the host frames it and ends the stream with `[DONE]`).
    fn send_event(&self, data: &str) -> Result<(), Error>;
    /// Sends the whole response.
    fn respond(&self, status: u16, body: &str) -> Result<(), Error>;
    /// The plugin's setting `key` from the config file (`[plugins.settings.<id>]`).
    fn setting(&self, key: &str) -> Option<String>;
    /// Writes a durable document (WIT `documents.put`; needs the `storage` capability).
    fn put_document(&self, collection: &str, key: &str, value: &str) -> Result<(), Error>;
    /// Reads a durable document.
    fn get_document(&self, collection: &str, key: &str) -> Result<Option<String>, Error>;
    /// Deletes a durable document; false if it was not there.
    fn delete_document(&self, collection: &str, key: &str) -> Result<bool, Error>;
    /// Up to `limit` documents in first-write order (or newest first), after the key `after`.
    fn page_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, Error>;

    /// Serializes `value` and sends it as one SSE event.
    fn send_json(&self, value: &dyn erased::Serialize) -> Result<(), Error> {
        self.send_event(&erased::to_string(value)?)
    }
    /// Serializes `value` and sends it as the whole response.
    fn respond_json(&self, status: u16, value: &dyn erased::Serialize) -> Result<(), Error> {
        self.respond(status, &erased::to_string(value)?)
    }
}

/// The real host, as seen from inside a plugin.
pub struct Wasm<'a> {
    /// The request's response sink (none in a tools call, which answers with its result).
    sink: Option<&'a ResponseSink>,
}

impl<'a> Wasm<'a> {
    /// The host of an HTTP request, answering into `sink`.
    pub fn new(sink: &'a ResponseSink) -> Self {
        Wasm { sink: Some(sink) }
    }

    /// The host of a call that has no response to write (a tools call).
    pub fn without_sink() -> Wasm<'static> {
        Wasm { sink: None }
    }

    fn sink(&self) -> Result<&ResponseSink, Error> {
        self.sink
            .ok_or_else(|| Error::Internal("this call has no HTTP response to write".into()))
    }
}

impl Generation for inference::Generation {
    fn next(&self) -> Result<Option<Event>, Error> {
        inference::Generation::next(self)
    }

    fn cached_tokens(&self) -> u32 {
        inference::Generation::cached_tokens(self)
    }

    fn wit(&self) -> Option<&inference::Generation> {
        Some(self)
    }
}

impl Host for Wasm<'_> {
    fn next_of(&self, generations: &[&dyn Generation]) -> (usize, Result<Option<Event>, Error>) {
        let wit: Option<Vec<&inference::Generation>> =
            generations.iter().map(|g| g.wit()).collect();
        match wit {
            Some(handles) if !handles.is_empty() => {
                let (index, event) = inference::next_of(&handles);
                (index as usize, event)
            }
            _ => match generations.first() {
                Some(g) => (0, g.next()),
                None => (0, Err(Error::Internal("next_of needs a generation".into()))),
            },
        }
    }

    fn describe_model(&self, model: &str) -> Result<ModelInfo, Error> {
        inference::describe_model(model)
    }

    fn apply_chat_template(
        &self,
        model: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        inference::apply_chat_template(model, messages, add_generation_prompt)
    }

    fn tokenize(&self, model: &str, text: &str, parse_special: bool) -> Result<Vec<u32>, Error> {
        inference::tokenize(model, text, parse_special)
    }

    fn detokenize(&self, model: &str, tokens: &[u32]) -> Result<String, Error> {
        inference::detokenize(model, tokens)
    }

    fn score(&self, model: &str, tokens: &[u32], top: u32) -> Result<Vec<TokenLogprob>, Error> {
        inference::score(model, tokens, top)
    }

    fn generate(&self, request: &GenerateRequest) -> Result<Box<dyn Generation>, Error> {
        Ok(Box::new(inference::generate(request)?))
    }

    fn generate_constrained(
        &self,
        request: &GenerateRequest,
        constraint: &Constraint,
    ) -> Result<Box<dyn Generation>, Error> {
        Ok(Box::new(inference::generate_constrained(
            request, constraint,
        )?))
    }

    fn apply_chat_template_json(
        &self,
        model: &str,
        messages: &str,
        tools: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        inference::apply_chat_template_json(model, messages, tools, add_generation_prompt)
    }

    fn template_has_tools(&self, model: &str) -> Result<bool, Error> {
        inference::template_has_tools(model)
    }

    fn render_tools(
        &self,
        model: &str,
        messages: &[Message],
        tools: Option<&ToolUse>,
    ) -> Result<Prompt, Error> {
        crate::bindings::cinder::plugin::tools::render(model, messages, tools)
    }

    fn parse_tool_calls(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
    ) -> Result<Option<Vec<Call>>, Error> {
        crate::bindings::cinder::plugin::tools::parse(model, text, tools)
    }

    fn describe_embedder(&self, model: &str) -> Result<EmbedderInfo, Error> {
        crate::bindings::cinder::plugin::embeddings::describe_embedder(model)
    }

    fn embed(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
    ) -> Result<Embedded, Error> {
        crate::bindings::cinder::plugin::embeddings::embed(model, inputs, overflow)
    }

    fn embed_within(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
        max_tokens: u32,
    ) -> Result<Embedded, Error> {
        crate::bindings::cinder::plugin::embeddings::embed_within(
            model, inputs, overflow, max_tokens,
        )
    }

    fn send_event(&self, data: &str) -> Result<(), Error> {
        self.sink()?.send_event(data).map_err(sink_error)
    }

    fn respond(&self, status: u16, body: &str) -> Result<(), Error> {
        self.sink()?.respond(status, body).map_err(sink_error)
    }

    fn setting(&self, key: &str) -> Option<String> {
        crate::config::get(key)
    }

    fn put_document(&self, collection: &str, key: &str, value: &str) -> Result<(), Error> {
        crate::documents::put(collection, key, value)
    }

    fn get_document(&self, collection: &str, key: &str) -> Result<Option<String>, Error> {
        crate::documents::get(collection, key)
    }

    fn delete_document(&self, collection: &str, key: &str) -> Result<bool, Error> {
        crate::documents::delete(collection, key)
    }

    fn page_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, Error> {
        crate::documents::page(collection, after, limit, newest_first)
    }
}

/// `dyn`-compatible serialization for [`Host::send_json`]: the response types are all
/// `serde::Serialize`, which is not object safe, so they cross as this.
pub mod erased {
    use crate::Error;

    /// A value that can render itself as JSON.
    pub trait Serialize {
        /// The value as a JSON string.
        fn to_json(&self) -> Result<String, serde_json::Error>;
    }

    impl<T: serde::Serialize> Serialize for T {
        fn to_json(&self) -> Result<String, serde_json::Error> {
            serde_json::to_string(self)
        }
    }

    pub(crate) fn to_string(value: &dyn Serialize) -> Result<String, Error> {
        value
            .to_json()
            .map_err(|e| Error::Internal(format!("serializing the response: {e}")))
    }
}
