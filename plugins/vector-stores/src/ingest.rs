//! Ingestion, a job per added file (kind `ingest`): the file's text (`extract.rs`), cut by
//! the embedding model's tokens (`chunking.rs`), embedded by the core and kept in the
//! store's vector index under the file's id, [`PER_STEP`] chunks a step (so a restart
//! resumes where the last saved step ended). The file ends `completed` with its usage, or
//! `failed` with OpenAI's `last_error` codes (`unsupported_file`, `invalid_file`,
//! `server_error`).

use serde_json::{Value, json};

use cinder_sdk::embeddings::{EmbedInput, Overflow};
use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, Object, Updated};
use cinder_sdk::vectors::Entry;
use cinder_sdk::{Error, Job, Outcome};

use crate::chunking::{self, Chunking};
use crate::extract::{self, Unreadable};
use crate::files::{COLLECTION, body_of};
use crate::stores::SPACE;

/// Chunks one step embeds at most (a few seconds of the CPU for 250-token chunks).
pub const PER_STEP: usize = 256;
/// Chunks one embedding call carries.
const PER_CALL: usize = 32;
/// The largest file read for search, in bytes.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Bytes read from a blob per call.
const READ: u32 = 4 << 20;

/// Why a file could not be ingested.
pub enum Failure {
    /// The file's own fault: its `last_error` code and message.
    File(&'static str, String),
    /// The host's.
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

/// The text of the file `id`, as ingestion reads it.
pub fn file_text(host: &dyn AgentHost, id: &str) -> Result<String, Failure> {
    let (_, file) = cinder_sdk::files::load(host, id).map_err(|e| match e {
        Error::NotFound(_) => {
            Failure::File("invalid_file", format!("The file {id} no longer exists."))
        }
        other => Failure::Error(other),
    })?;
    if file.bytes > MAX_FILE_BYTES {
        return Err(Failure::File(
            "invalid_file",
            format!(
                "The file has {} bytes; file search reads files of at most {MAX_FILE_BYTES}.",
                file.bytes
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(file.bytes as usize);
    while (bytes.len() as u64) < file.bytes {
        let chunk = host.read_blob(&file.blob, bytes.len() as u64, READ)?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    extract::text(&file.filename, &bytes).map_err(|u| match u {
        Unreadable::Unsupported(m) => Failure::File("unsupported_file", m),
        Unreadable::Invalid(m) => Failure::File("invalid_file", m),
    })
}

/// Writes the file `o` with `status` and the fields of `set`, if it is still this job's and
/// in progress.
fn finish(
    host: &dyn AgentHost,
    key: &str,
    job: &str,
    status: &str,
    set: &[(&str, Value)],
) -> Result<bool, Error> {
    for _ in 0..8 {
        let Some(o) = host.get_object(COLLECTION, key)? else {
            return Ok(false);
        };
        let mut b = body_of(&o)?;
        if b["job"] != job || o.status.as_deref() != Some("in_progress") {
            return Ok(false);
        }
        for (k, v) in set {
            b[*k] = v.clone();
        }
        let change = Change {
            status: Some(status.into()),
            metadata: o.metadata.clone(),
            body: b.to_string(),
            expect_version: Some(o.version),
        };
        if let Updated::Done(_) = host.update_object(COLLECTION, key, &change)? {
            return Ok(true);
        }
    }
    Err(Error::Internal(format!(
        "the vector store file {key} kept changing"
    )))
}

fn fail(
    host: &dyn AgentHost,
    key: &str,
    job: &str,
    code: &str,
    message: &str,
) -> Result<Outcome, Error> {
    finish(
        host,
        key,
        job,
        "failed",
        &[("last_error", json!({"code": code, "message": message}))],
    )?;
    Ok(Outcome::Done)
}

/// Whether the file is still this job's to ingest.
fn current(o: &Object, job: &str) -> Result<bool, Error> {
    Ok(body_of(o)?["job"] == job && o.status.as_deref() == Some("in_progress"))
}

/// One step of a file's ingestion.
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
    let key = progress["key"].as_str().unwrap_or_default().to_owned();
    let next = progress["next"].as_u64().unwrap_or(0) as usize;
    let Some(o) = host.get_object(COLLECTION, &key)? else {
        return Ok(Outcome::Done); // removed meanwhile
    };
    if !current(&o, &job.id)? {
        return Ok(Outcome::Done); // added again (another job), or cancelled
    }
    if let Some(reason) = &job.ending {
        return fail(host, &key, &job.id, "server_error", reason);
    }
    let b = body_of(&o)?;
    let store = b["vector_store_id"].as_str().unwrap_or_default().to_owned();
    let file = b["file_id"].as_str().unwrap_or_default().to_owned();
    let s = &b["chunking_strategy"]["static"];
    let c = Chunking {
        max_tokens: s["max_chunk_size_tokens"].as_u64().unwrap_or(254) as u32,
        overlap: s["chunk_overlap_tokens"].as_u64().unwrap_or(0) as u32,
    };
    // Each step reads and cuts the file again: steps keep no state but their progress, and
    // a step's 256 embeddings take far longer than reading and tokenizing (most files are
    // one step).
    let text = match file_text(host, &file) {
        Ok(t) => t,
        Err(Failure::File(code, message)) => return fail(host, &key, &job.id, code, &message),
        Err(Failure::Error(e)) => return Err(e),
    };
    let Some(owner) = host.get_object(crate::stores::COLLECTION, &store)? else {
        return Ok(Outcome::Done); // the store was deleted, and its files with it
    };
    let model = crate::stores::model_of(host, &owner)?;
    let spans = host.token_spans(&model, &text)?;
    let chunks = chunking::cut(&spans, c);
    if chunks.is_empty() {
        return fail(
            host,
            &key,
            &job.id,
            "invalid_file",
            "The file has no text to search.",
        );
    }
    if next == 0 {
        // What an earlier attempt at this file left in the index goes first.
        host.remove_vector_group(SPACE, &store, &file)?;
    }
    let end = (next + PER_STEP).min(chunks.len());
    let mut dims = 0;
    for part in (next..end).collect::<Vec<_>>().chunks(PER_CALL) {
        let inputs: Vec<EmbedInput> = part
            .iter()
            .map(|&i| EmbedInput::Text(text[chunks[i].0..chunks[i].1].to_owned()))
            .collect();
        let embedded = host.embed(&model, &inputs, Overflow::Truncate)?;
        let entries: Vec<Entry> = part
            .iter()
            .zip(embedded.vectors)
            .map(|(&i, vector)| {
                dims = vector.len();
                Entry {
                    id: format!("{file}.{i}"),
                    group: file.clone(),
                    vector,
                    payload: json!({"text": &text[chunks[i].0..chunks[i].1]}).to_string(),
                }
            })
            .collect();
        host.upsert_vectors(SPACE, &store, &entries)?;
    }
    // Removed or cancelled while this step worked: what it wrote goes too.
    let still = host.get_object(COLLECTION, &key)?;
    if !still
        .as_ref()
        .map(|o| current(o, &job.id))
        .transpose()?
        .unwrap_or(false)
    {
        host.remove_vector_group(SPACE, &store, &file)?;
        return Ok(Outcome::Done);
    }
    if end < chunks.len() {
        return Ok(Outcome::More(json!({"key": key, "next": end}).to_string()));
    }
    let text_bytes: usize = chunks.iter().map(|(a, b)| b - a).sum();
    let usage = text_bytes + chunks.len() * dims.max(1) * 4;
    finish(
        host,
        &key,
        &job.id,
        "completed",
        &[("usage_bytes", json!(usage))],
    )?;
    Ok(Outcome::Done)
}
