//! The real host, seen from inside a plugin: each trait forwards to its WIT import.

use super::{
    BlobWriter, Config, Dispatch, Documents, Embeddings, Generation, ImageGeneration, Images,
    Inference, Jobs, Multipart, Sink, Store, Tools, Vectors,
};
use crate::embeddings::{EmbedInput, Embedded, EmbedderInfo, Overflow};
use crate::inference::{
    self, ChatMessage, Constraint, Event, GenerateRequest, ModelInfo, TokenLogprob,
};
use crate::sink::ResponseSink;
use crate::tools::{Call, Message, Prompt, ToolUse};
use crate::{Error, sink_error};
use crate::{dispatch, jobs, multipart, store};

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

impl Inference for Wasm<'_> {
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

    fn prompt_prefix(&self, model: &str) -> Result<Vec<u32>, Error> {
        inference::prompt_prefix(model)
    }
}

impl Tools for Wasm<'_> {
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
}

impl Embeddings for Wasm<'_> {
    fn describe_embedder(&self, model: &str) -> Result<EmbedderInfo, Error> {
        crate::bindings::cinder::plugin::embeddings::describe_embedder(model)
    }

    fn token_spans(&self, model: &str, text: &str) -> Result<Vec<(u32, u32)>, Error> {
        let spans = crate::bindings::cinder::plugin::embeddings::token_spans(model, text)?;
        Ok(spans.into_iter().map(|s| (s.start, s.end)).collect())
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
}

impl Sink for Wasm<'_> {
    fn send_event(&self, data: &str) -> Result<(), Error> {
        self.sink()?.send_event(data).map_err(sink_error)
    }

    fn send_named_event(&self, event: &str, data: &str) -> Result<(), Error> {
        self.sink()?
            .send_named_event(event, data)
            .map_err(sink_error)
    }

    fn respond(&self, status: u16, body: &str) -> Result<(), Error> {
        self.sink()?.respond(status, body).map_err(sink_error)
    }
}

impl Config for Wasm<'_> {
    fn setting(&self, key: &str) -> Option<String> {
        crate::config::get(key)
    }
}

impl Documents for Wasm<'_> {
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

impl BlobWriter for store::BlobWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        store::BlobWriter::write(self, chunk)
    }

    fn finish(self: Box<Self>) -> Result<store::Blob, Error> {
        store::BlobWriter::finish(&self)
    }
}

impl Store for Wasm<'_> {
    fn create_object(
        &self,
        collection: &str,
        new: &store::NewObject,
    ) -> Result<store::Object, Error> {
        store::create(collection, new)
    }

    fn put_object(
        &self,
        collection: &str,
        id: &str,
        new: &store::NewObject,
    ) -> Result<store::Object, Error> {
        store::put(collection, id, new)
    }

    fn get_object(&self, collection: &str, id: &str) -> Result<Option<store::Object>, Error> {
        store::get(collection, id)
    }

    fn update_object(
        &self,
        collection: &str,
        id: &str,
        change: &store::Change,
    ) -> Result<store::Updated, Error> {
        store::update(collection, id, change)
    }

    fn delete_object(&self, collection: &str, id: &str) -> Result<bool, Error> {
        store::delete(collection, id)
    }

    fn list_objects(&self, collection: &str, query: &store::Query) -> Result<store::Page, Error> {
        store::list(collection, query)
    }

    fn blob_writer(&self) -> Result<Box<dyn BlobWriter>, Error> {
        Ok(Box::new(store::BlobWriter::new()))
    }

    fn blob_info(&self, id: &str) -> Result<Option<store::Blob>, Error> {
        store::blob_info(id)
    }

    fn read_blob(&self, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        store::read_blob(id, offset, len)
    }

    fn concat_blobs(&self, parts: &[String]) -> Result<store::Blob, Error> {
        store::concat_blobs(parts)
    }

    fn delete_blob(&self, id: &str) -> Result<bool, Error> {
        store::delete_blob(id)
    }

    fn send_blob(&self, id: &str, content_type: &str) -> Result<(), Error> {
        store::send_blob(self.sink()?, id, content_type)
    }

    fn share_blob(&self, id: &str, content_type: &str, expires_at: u64) -> Result<String, Error> {
        store::share_blob(id, content_type, expires_at)
    }
}

impl Multipart for Wasm<'_> {
    fn next_part(&self) -> Result<Option<multipart::Part>, Error> {
        multipart::next_part()
    }

    fn read_part(&self, max: u32) -> Result<Vec<u8>, Error> {
        multipart::read(max)
    }
}

impl Jobs for Wasm<'_> {
    fn enqueue_job(&self, kind: &str, id: &str, progress: &str) -> Result<(), Error> {
        jobs::enqueue(kind, id, progress)
    }

    fn enqueue_job_at(
        &self,
        kind: &str,
        id: &str,
        progress: &str,
        not_before: i64,
    ) -> Result<(), Error> {
        jobs::enqueue_at(kind, id, progress, not_before)
    }

    fn cancel_job(&self, id: &str) -> Result<bool, Error> {
        jobs::cancel(id)
    }
}

impl Dispatch for Wasm<'_> {
    fn dispatch(&self, calls: &[dispatch::Call]) -> Vec<Result<dispatch::Answer, Error>> {
        dispatch::run(calls)
    }
}

impl Vectors for Wasm<'_> {
    fn upsert_vectors(
        &self,
        space: &str,
        index: &str,
        entries: &[crate::vectors::Entry],
    ) -> Result<(), Error> {
        crate::vectors::upsert(space, index, entries)
    }

    fn remove_vector_group(&self, space: &str, index: &str, group: &str) -> Result<u64, Error> {
        crate::vectors::remove_group(space, index, group)
    }

    fn drop_vector_index(&self, space: &str, index: &str) -> Result<u64, Error> {
        crate::vectors::drop_index(space, index)
    }

    fn count_vectors(&self, space: &str, index: &str) -> Result<u64, Error> {
        crate::vectors::count(space, index)
    }

    fn search_vectors(
        &self,
        space: &str,
        index: &str,
        query: &[f32],
        k: u32,
        groups: Option<&[String]>,
    ) -> Result<Vec<crate::vectors::Hit>, Error> {
        crate::vectors::search(space, index, query, k, groups)
    }
}

impl ImageGeneration for crate::images::ImageGeneration {
    fn next(&self) -> Result<Option<crate::images::ImageEvent>, Error> {
        crate::images::ImageGeneration::next(self)
    }
}

impl Images for Wasm<'_> {
    fn describe_image_model(&self, model: &str) -> Result<crate::images::ImageModelInfo, Error> {
        crate::images::describe_image_model(model)
    }

    fn generate_images(
        &self,
        request: &crate::images::ImageRequest,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        Ok(Box::new(crate::images::generate_images(request)?))
    }

    fn edit_images(
        &self,
        request: &crate::images::ImageRequest,
        source: &crate::images::ImageSource,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        Ok(Box::new(crate::images::edit_images(request, source)?))
    }
}
