//! What plugin code needs from the host: one small trait per WIT import ([`Inference`],
//! [`Embeddings`], [`Tools`], [`Sink`], [`Config`], [`Documents`], [`Store`], [`Multipart`],
//! [`Jobs`], [`Dispatch`], [`Vectors`], [`Images`]),
//! and [`Host`], which is all of them. In a plugin the host is [`Wasm`]; with the `testing` feature, unit tests run
//! the same code natively against [`crate::testing::FakeHost`].

mod wasm;

pub use wasm::Wasm;

use crate::Error;
use crate::embeddings::{EmbedInput, Embedded, EmbedderInfo, Overflow};
use crate::inference::{
    self, ChatMessage, Constraint, Event, GenerateRequest, ModelInfo, TokenLogprob,
};
use crate::tools::{Call, Message, Prompt, ToolUse};
use crate::{dispatch, multipart, store};

/// A running generation: yields deltas, then one `finished`, then `None`.
pub trait Generation {
    /// The next event; blocks (in a plugin: parks in the host) until there is one.
    fn next(&self) -> Result<Option<Event>, Error>;
    /// Prompt tokens served from the core's prefix cache; meaningful once `finished` has
    /// been returned (WIT 0.1.4).
    fn cached_tokens(&self) -> u32 {
        0
    }
    /// The WIT resource behind it, for [`Inference::next_of`] (`None` for fakes).
    fn wit(&self) -> Option<&inference::Generation> {
        None
    }
}

/// `cinder:plugin/inference`: models, templates, tokenizers and generation.
pub trait Inference {
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
    /// The tokens a raw prompt starts with: BOS for models whose tokenizer adds one (WIT
    /// 0.1.10). Defaults to none, for hosts written before it.
    fn prompt_prefix(&self, model: &str) -> Result<Vec<u32>, Error> {
        let _ = model;
        Ok(Vec::new())
    }
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
}

/// `cinder:plugin/embeddings` (WIT 0.1.4): embedding models.
pub trait Embeddings {
    /// What the host knows of the embedding model `model`.
    fn describe_embedder(&self, model: &str) -> Result<EmbedderInfo, Error>;
    /// One vector per input, in order, with the tokens read.
    fn embed(
        &self,
        model: &str,
        inputs: &[EmbedInput],
        overflow: Overflow,
    ) -> Result<Embedded, Error>;
    /// [`Embeddings::embed`], refusing inputs that together have more than `max_tokens`
    /// tokens with a 400 naming `input` (WIT 0.1.5: the host counts before any embedding
    /// work; this default counts after, for hosts without it).
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
    /// Where each token of `text` lies in it (byte ranges, in order, special tokens left
    /// out), as `model` tokenizes it (WIT 0.1.12): a text cut into chunks of so many tokens,
    /// each a slice of the original. Defaults to an error, for hosts written before it.
    fn token_spans(&self, model: &str, text: &str) -> Result<Vec<(u32, u32)>, Error> {
        let _ = (model, text);
        Err(Error::Internal(
            "this host cannot tell where tokens lie (WIT 0.1.12)".into(),
        ))
    }
}

/// `cinder:plugin/vectors` (WIT 0.1.12): vector indexes kept by the host and searched exactly
/// (cosine similarity), in a `space` the manifest names as a collection. Needs `storage`.
pub trait Vectors {
    /// Adds or replaces entries (at most 1024) of the index `index`, creating it.
    fn upsert_vectors(
        &self,
        space: &str,
        index: &str,
        entries: &[crate::vectors::Entry],
    ) -> Result<(), Error>;
    /// Removes the entries of `group`; how many there were.
    fn remove_vector_group(&self, space: &str, index: &str, group: &str) -> Result<u64, Error>;
    /// Removes the index; how many entries it had.
    fn drop_vector_index(&self, space: &str, index: &str) -> Result<u64, Error>;
    /// How many entries the index holds.
    fn count_vectors(&self, space: &str, index: &str) -> Result<u64, Error>;
    /// The `k` (at most 100) entries most similar to `query`, best first, among `groups`
    /// (none: all).
    fn search_vectors(
        &self,
        space: &str,
        index: &str,
        query: &[f32],
        k: u32,
        groups: Option<&[String]>,
    ) -> Result<Vec<crate::vectors::Hit>, Error>;
}

/// Images being made: yields `started`, steps, partial images and each image, then `None`.
pub trait ImageGeneration {
    /// The next event; blocks (in a plugin: parks in the host) until there is one.
    fn next(&self) -> Result<Option<crate::images::ImageEvent>, Error>;
}

/// `cinder:plugin/images` (WIT 0.1.13; `edit_images` 0.1.14): image models. Each defaults to
/// an error, for hosts written before it.
pub trait Images {
    /// What the host knows of the image model `model`.
    fn describe_image_model(&self, model: &str) -> Result<crate::images::ImageModelInfo, Error> {
        let _ = model;
        Err(no_images())
    }
    /// Starts making `request`'s images; dropping the result stops the work.
    fn generate_images(
        &self,
        request: &crate::images::ImageRequest,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        let _ = request;
        Err(no_images())
    }
    /// Starts making `request`'s images from `source` (an edit with a mask, a variation
    /// without); dropping the result stops the work.
    fn edit_images(
        &self,
        request: &crate::images::ImageRequest,
        source: &crate::images::ImageSource,
    ) -> Result<Box<dyn ImageGeneration>, Error> {
        let _ = (request, source);
        Err(Error::Unavailable(
            "this host makes no images from images (WIT 0.1.14)".into(),
        ))
    }
}

fn no_images() -> Error {
    Error::Unavailable("this host makes no images (WIT 0.1.13)".into())
}

/// `cinder:plugin/tools` (WIT 0.1.3): the loaded tools plugin, reached from a chat plugin.
pub trait Tools {
    /// Renders a conversation with tool calling.
    fn render_tools(
        &self,
        model: &str,
        messages: &[Message],
        tools: Option<&ToolUse>,
    ) -> Result<Prompt, Error>;
    /// Reads the calls out of an answer.
    fn parse_tool_calls(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
    ) -> Result<Option<Vec<Call>>, Error>;
}

/// `cinder:plugin/sink`: the response of the request being served.
pub trait Sink {
    /// Sends one SSE event's data (the host frames it and ends the stream with `[DONE]`).
    fn send_event(&self, data: &str) -> Result<(), Error>;
    /// Sends one SSE event named `event` (WIT 0.1.12): the Assistants API's clients dispatch
    /// on the name. The stream then ends with `event: done`. Defaults to an error, for hosts
    /// written before it.
    fn send_named_event(&self, event: &str, data: &str) -> Result<(), Error> {
        let _ = (event, data);
        Err(Error::Internal(
            "this host cannot name events (WIT 0.1.12)".into(),
        ))
    }
    /// Sends the whole response.
    fn respond(&self, status: u16, body: &str) -> Result<(), Error>;

    /// Serializes `value` and sends it as one SSE event.
    fn send_json(&self, value: &dyn erased::Serialize) -> Result<(), Error> {
        self.send_event(&erased::to_string(value)?)
    }
    /// Serializes `value` and sends it as one SSE event named `event`.
    fn send_named_json(&self, event: &str, value: &dyn erased::Serialize) -> Result<(), Error> {
        self.send_named_event(event, &erased::to_string(value)?)
    }
    /// Serializes `value` and sends it as the whole response.
    fn respond_json(&self, status: u16, value: &dyn erased::Serialize) -> Result<(), Error> {
        self.respond(status, &erased::to_string(value)?)
    }
}

/// `cinder:plugin/config` (WIT 0.1.1): the plugin's own settings.
pub trait Config {
    /// The plugin's setting `key` from the config file (`[plugins.settings.<id>]`), as it
    /// stands for this request.
    fn setting(&self, key: &str) -> Option<String>;
}

/// `cinder:plugin/documents` (WIT 0.1.2): durable documents, per API key (needs the
/// `storage` capability).
pub trait Documents {
    /// Writes a document.
    fn put_document(&self, collection: &str, key: &str, value: &str) -> Result<(), Error>;
    /// Reads a document.
    fn get_document(&self, collection: &str, key: &str) -> Result<Option<String>, Error>;
    /// Deletes a document; false if it was not there.
    fn delete_document(&self, collection: &str, key: &str) -> Result<bool, Error>;
    /// Up to `limit` documents in first-write order (or newest first), after the key `after`.
    fn page_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, Error>;
}

/// A blob being written (`store.blob-writer`): nothing is visible until [`BlobWriter::finish`],
/// and a writer dropped before that leaves nothing behind.
pub trait BlobWriter {
    /// Appends a chunk (keep chunks to a few MiB).
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error>;
    /// Makes the blob durable and visible.
    fn finish(self: Box<Self>) -> Result<store::Blob, Error>;
}

/// `cinder:plugin/store` (WIT 0.1.7): typed objects in the collections the manifest names, and
/// blobs, all of the caller's owner (needs the `storage` capability).
pub trait Store {
    /// Creates an object with a fresh id (`new.id_prefix` and random characters).
    fn create_object(
        &self,
        collection: &str,
        new: &store::NewObject,
    ) -> Result<store::Object, Error>;
    /// Creates the object `id` (the plugin's own id) or replaces its status, metadata and
    /// body in place: doing the same work twice makes one object.
    fn put_object(
        &self,
        collection: &str,
        id: &str,
        new: &store::NewObject,
    ) -> Result<store::Object, Error>;
    /// The object `id`, if it exists.
    fn get_object(&self, collection: &str, id: &str) -> Result<Option<store::Object>, Error>;
    /// Replaces an object's status, metadata and body (compare-and-set with
    /// `change.expect_version`).
    fn update_object(
        &self,
        collection: &str,
        id: &str,
        change: &store::Change,
    ) -> Result<store::Updated, Error>;
    /// Deletes an object; false if there was none.
    fn delete_object(&self, collection: &str, id: &str) -> Result<bool, Error>;
    /// One page of a listing (an unknown cursor is a 400 naming `after` or `before`).
    fn list_objects(&self, collection: &str, query: &store::Query) -> Result<store::Page, Error>;
    /// Starts a blob.
    fn blob_writer(&self) -> Result<Box<dyn BlobWriter>, Error>;
    /// The blob `id`, if it exists.
    fn blob_info(&self, id: &str) -> Result<Option<store::Blob>, Error>;
    /// Up to `len` bytes (at most 4 MiB) of a blob from `offset`.
    fn read_blob(&self, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, Error>;
    /// A new blob with the contents of `parts`, in order.
    fn concat_blobs(&self, parts: &[String]) -> Result<store::Blob, Error>;
    /// Deletes a blob; false if there was none.
    fn delete_blob(&self, id: &str) -> Result<bool, Error>;
    /// Answers the request with the blob as its body, streamed by the host.
    fn send_blob(&self, id: &str, content_type: &str) -> Result<(), Error>;
    /// A URL anyone may fetch the blob at, with no API key, until `expires_at` (Unix
    /// seconds, at most 7 days ahead), served as `content_type`; the link owns the blob from
    /// then on (WIT 0.1.13). Defaults to an error, for hosts written before it.
    fn share_blob(&self, id: &str, content_type: &str, expires_at: u64) -> Result<String, Error> {
        let _ = (id, content_type, expires_at);
        Err(Error::Unavailable(
            "this host cannot link to blobs (WIT 0.1.13)".into(),
        ))
    }
}

/// `cinder:plugin/multipart` (WIT 0.1.7): the request's `multipart/form-data` body, a part
/// at a time, for routes whose manifest entry says `body = "multipart"`.
pub trait Multipart {
    /// The next part's headers, or `None` after the last (the rest of the current part is
    /// skipped).
    fn next_part(&self) -> Result<Option<multipart::Part>, Error>;
    /// Up to `max` bytes (at most 4 MiB) of the current part; empty at its end.
    fn read_part(&self, max: u32) -> Result<Vec<u8>, Error>;

    /// The rest of the current part, at most `max` bytes: past it, a 400 naming `param`
    /// (the form field the part is), before more than `max` is held.
    fn read_part_within(&self, max: u64, param: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read_part(1 << 20)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            if (out.len() + chunk.len()) as u64 > max {
                return Err(crate::invalid_request(
                    &format!("`{param}` is larger than {max} bytes"),
                    Some(param),
                ));
            }
            // Grown a chunk at a time, not doubled: a file near the limit takes its own size.
            out.reserve_exact(chunk.len());
            out.extend_from_slice(&chunk);
        }
    }
}

/// `cinder:plugin/jobs` (WIT 0.1.8): background work of the kinds the manifest declares
/// (`jobs = ["batch"]`), handed back to the plugin's [`crate::ServeJobs::step`] by the host.
pub trait Jobs {
    /// Queues a job of `kind` for the caller's owner; `id` (usually the family object's id)
    /// must be unique among jobs; `progress` is the first step's record.
    fn enqueue_job(&self, kind: &str, id: &str, progress: &str) -> Result<(), Error>;
    /// Queues a job like [`Jobs::enqueue_job`] that the host hands back no earlier than
    /// `not_before` (seconds since the Unix epoch): work that falls due later (WIT 0.1.11).
    fn enqueue_job_at(
        &self,
        kind: &str,
        id: &str,
        progress: &str,
        not_before: i64,
    ) -> Result<(), Error>;
    /// Asks the job `id` to stop (its next step sees `cancel_requested`); false if it is
    /// over or not the caller's.
    fn cancel_job(&self, id: &str) -> Result<bool, Error>;
}

/// `cinder:plugin/dispatch` (WIT 0.1.8): requests to other plugins' routes, from a job step.
pub trait Dispatch {
    /// Runs `calls` (at background priority, a few at a time), answering each in order.
    fn dispatch(&self, calls: &[dispatch::Call]) -> Vec<Result<dispatch::Answer, Error>>;
}

/// What a family that runs background jobs (`job-plugin`: batches) may reach: a store
/// family's imports, its jobs, and (in a step) other plugins' routes.
pub trait JobHost: StoreHost + Jobs + Dispatch {}

impl<T: StoreHost + Jobs + Dispatch> JobHost for T {}

/// What a family that generates and works in the background (`agent-plugin`: responses with
/// `background: true`) may reach: every import of a [`Host`], its jobs, and (in a step)
/// other plugins' routes.
pub trait AgentHost: Host + Jobs + Dispatch {}

impl<T: Host + Jobs + Dispatch> AgentHost for T {}

/// What a family on the store (`store-plugin`: files, uploads, batches) may reach: its
/// response, its settings, the store and the multipart body. A plugin served through it links
/// no inference import, so its manifest need not ask for `inference`.
pub trait StoreHost: Sink + Config + Store + Multipart {}

impl<T: Sink + Config + Store + Multipart> StoreHost for T {}

/// Every import at once: what a family's pipeline takes, so one `&dyn Host` reaches all.
/// Implemented for anything that implements each trait.
pub trait Host:
    Inference + Embeddings + Tools + Sink + Config + Documents + Store + Multipart + Vectors + Images
{
}

impl<
    T: Inference
        + Embeddings
        + Tools
        + Sink
        + Config
        + Documents
        + Store
        + Multipart
        + Vectors
        + Images,
> Host for T
{
}

/// `dyn`-compatible serialization for [`Sink::send_json`]: the response types are all
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
