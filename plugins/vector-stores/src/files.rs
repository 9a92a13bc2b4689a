//! A vector store's files: objects in `vector_store_files` keyed `<store>-<file>` (the store
//! and the file in the store's metadata, the status in the object's), each ingested by a job
//! (`ingest.rs`) that writes its chunks into the store's vector index under the file's id.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, NewObject, Object, Updated};
use cinder_sdk::{Error, ErrorDetail, Request};

use crate::bad;
use crate::chunking::{self, Chunking};
use crate::stores::{self, SPACE, each};

pub const COLLECTION: &str = "vector_store_files";
/// The job kind (the manifest's `jobs`).
pub const KIND: &str = "ingest";
/// File ids one request adds at most.
const MAX_IDS: usize = 500;
/// The embedding model when the settings name none (an alias of the default embedder).
const DEFAULT_MODEL: &str = "text-embedding-3-small";

/// The embedding model the stores use (`[plugins.settings.vector-stores] embedding_model`).
pub fn model(host: &dyn AgentHost) -> String {
    host.setting("embedding_model")
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned())
}

fn key(store: &str, file: &str) -> String {
    format!("{store}-{file}")
}

pub fn body_of(o: &Object) -> Result<Value, Error> {
    serde_json::from_str(&o.body).map_err(|e| {
        Error::Internal(format!(
            "the stored vector store file {} is unreadable: {e}",
            o.id
        ))
    })
}

/// How many files are in each status, and the bytes their chunks take.
#[derive(Debug, Default)]
pub struct Counts {
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub usage_bytes: u64,
}

impl Counts {
    pub fn shown(&self) -> Value {
        json!({"in_progress": self.in_progress, "completed": self.completed, "failed": self.failed,
               "cancelled": self.cancelled,
               "total": self.in_progress + self.completed + self.failed + self.cancelled})
    }
}

/// The counts of the files with the metadata `filter` (a store's, or a batch's).
pub fn counts(host: &dyn AgentHost, filter: &[(String, String)]) -> Result<Counts, Error> {
    let mut c = Counts::default();
    each(host, COLLECTION, filter, None, |o| {
        match o.status.as_deref() {
            Some("completed") => c.completed += 1,
            Some("failed") => c.failed += 1,
            Some("cancelled") => c.cancelled += 1,
            _ => c.in_progress += 1,
        }
        c.usage_bytes += body_of(o)?["usage_bytes"].as_u64().unwrap_or(0);
        Ok(())
    })?;
    Ok(c)
}

/// A list of file ids (`file_ids`), at most [`MAX_IDS`].
pub fn id_list(v: Option<&Value>, param: &str) -> Result<Vec<String>, Error> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let ids: Option<Vec<String>> = v
        .as_array()
        .filter(|a| a.len() <= MAX_IDS)
        .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect());
    ids.ok_or_else(|| {
        bad(
            format!("{param} is an array of at most {MAX_IDS} file ids"),
            param,
        )
    })
}

/// OpenAI's attributes: up to 16 keys of at most 64 characters, each a string of at most 512
/// characters, a number or a boolean.
pub fn attributes(v: &Value, param: &str) -> Result<Value, Error> {
    let ok = |m: &Map<String, Value>| {
        m.len() <= 16
            && m.iter().all(|(k, x)| {
                k.chars().count() <= 64
                    && match x {
                        Value::String(s) => s.chars().count() <= 512,
                        Value::Number(_) | Value::Bool(_) => true,
                        _ => false,
                    }
            })
    };
    match v {
        Value::Null => Ok(json!({})),
        Value::Object(m) if ok(m) => Ok(v.clone()),
        _ => Err(bad(
            "attributes is an object of at most 16 keys (64 characters each) whose values are \
             strings of at most 512 characters, numbers or booleans",
            param,
        )),
    }
}

/// A file to add, checked: how it will be cut and what it carries.
pub struct Planned {
    pub file_id: String,
    pub attributes: Value,
    pub chunking: Chunking,
}

/// How files will be cut (`chunking_strategy`), checked against the embedding model: a chunk
/// longer than the model reads would lose its end.
fn chunking(host: &dyn AgentHost, model: &str, v: &Value) -> Result<Chunking, Error> {
    let info = host.describe_embedder(model).map_err(|e| {
        Error::Unavailable(format!(
            "vector stores embed with `{model}` ([plugins.settings.vector-stores] \
             embedding_model), which is not served: {e:?}"
        ))
    })?;
    let param = "chunking_strategy";
    match v["type"].as_str() {
        None if v.is_null() => Ok(chunking::auto(info.max_tokens)),
        Some("auto") => Ok(chunking::auto(info.max_tokens)),
        Some("static") => {
            let s = &v["static"];
            let size = s["max_chunk_size_tokens"]
                .as_u64()
                .filter(|n| (100..=4096).contains(n));
            let size = size.ok_or_else(|| {
                bad(
                    "max_chunk_size_tokens is 100 to 4096",
                    "chunking_strategy.static.max_chunk_size_tokens",
                )
            })?;
            let overlap = s["chunk_overlap_tokens"]
                .as_u64()
                .filter(|o| *o <= size / 2);
            let overlap = overlap.ok_or_else(|| {
                bad(
                    "chunk_overlap_tokens is at most half of max_chunk_size_tokens",
                    "chunking_strategy.static.chunk_overlap_tokens",
                )
            })?;
            let room = u64::from(info.max_tokens.saturating_sub(2));
            if size > room {
                return Err(bad(
                    format!(
                        "the embedding model `{model}` reads at most {room} tokens of a chunk; \
                         max_chunk_size_tokens {size} would lose the rest"
                    ),
                    "chunking_strategy.static.max_chunk_size_tokens",
                ));
            }
            Ok(Chunking {
                max_tokens: size as u32,
                overlap: overlap as u32,
            })
        }
        _ => Err(bad(
            "chunking_strategy is {\"type\": \"auto\"} or {\"type\": \"static\", \"static\": \
             {\"max_chunk_size_tokens\": ..., \"chunk_overlap_tokens\": ...}}",
            param,
        )),
    }
}

/// Checks files to add (each must be the caller's) and how they will be cut.
pub fn plan(
    host: &dyn AgentHost,
    model: &str,
    ids: &[String],
    strategy: &Value,
    param: &str,
) -> Result<Vec<Planned>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let c = chunking(host, model, strategy)?;
    ids.iter()
        .map(|id| {
            cinder_sdk::files::load(host, id).map_err(|e| match e {
                Error::NotFound(mut d) => {
                    d.param = Some(param.into());
                    Error::NotFound(d)
                }
                other => other,
            })?;
            Ok(Planned {
                file_id: id.clone(),
                attributes: json!({}),
                chunking: c,
            })
        })
        .collect()
}

/// Adds (or adds again) a planned file to `store` and queues its ingestion.
pub fn add(
    host: &dyn AgentHost,
    store: &Object,
    p: Planned,
    batch: Option<&str>,
) -> Result<Object, Error> {
    let key = key(&store.id, &p.file_id);
    let job = format!("{key}-{}", now_nanos());
    let mut metadata = vec![
        ("vector_store".to_owned(), store.id.clone()),
        ("file".to_owned(), p.file_id.clone()),
    ];
    if let Some(b) = batch {
        metadata.push(("batch".into(), b.to_owned()));
    }
    let body = json!({
        "file_id": p.file_id,
        "vector_store_id": store.id,
        "attributes": p.attributes,
        "chunking_strategy": {"type": "static", "static": {
            "max_chunk_size_tokens": p.chunking.max_tokens, "chunk_overlap_tokens": p.chunking.overlap}},
        "usage_bytes": 0,
        "last_error": null,
        "job": job,
    });
    let o = host.put_object(
        COLLECTION,
        &key,
        &NewObject {
            id_prefix: "vsf_".into(),
            status: Some("in_progress".into()),
            metadata,
            body: body.to_string(),
        },
    )?;
    host.enqueue_job(KIND, &job, &json!({"key": key, "next": 0}).to_string())?;
    Ok(o)
}

/// A fresh job id suffix: adding a file again makes a new job, and the old one, seeing
/// another `job` in the body, stops.
fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The file as OpenAI shows it.
pub fn shown(o: &Object) -> Result<Value, Error> {
    let b = body_of(o)?;
    Ok(json!({
        "id": b["file_id"],
        "object": "vector_store.file",
        "usage_bytes": b["usage_bytes"],
        "created_at": o.created_at,
        "vector_store_id": b["vector_store_id"],
        "status": o.status.clone().unwrap_or_default(),
        "last_error": b["last_error"],
        "chunking_strategy": b["chunking_strategy"],
        "attributes": b["attributes"],
    }))
}

/// The file `file` of `store`, or OpenAI's 404.
pub fn find(host: &dyn AgentHost, store: &str, file: &str) -> Result<Object, Error> {
    stores::find(host, store)?;
    let o = match cinder_sdk::well_formed_id(file, "file-") {
        true => host.get_object(COLLECTION, &key(store, file))?,
        false => None,
    };
    o.ok_or_else(|| {
        Error::NotFound(ErrorDetail {
            message: format!("No file found with id '{file}' in vector store '{store}'."),
            param: None,
            code: None,
        })
    })
}

/// `POST /v1/vector_stores/{id}/files`.
pub fn create(store: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(
        &request.body,
        &["file_id", "attributes", "chunking_strategy"],
    )?;
    let s = stores::find(host, store)?;
    if stores::expired(&s)? {
        return Err(bad(
            format!("Vector store {store} has expired."),
            "vector_store_id",
        ));
    }
    let file = given
        .get("file_id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Missing required parameter: 'file_id'.", "file_id"))?;
    let attrs = attributes(
        given.get("attributes").unwrap_or(&Value::Null),
        "attributes",
    )?;
    let strategy = given
        .get("chunking_strategy")
        .cloned()
        .unwrap_or(Value::Null);
    let model = stores::model_of(host, &s)?;
    let mut plan = plan(host, &model, &[file.to_owned()], &strategy, "file_id")?;
    let mut p = plan.remove(0);
    p.attributes = attrs;
    let o = add(host, &s, p, None)?;
    host.respond_json(200, &shown(&o)?)
}

/// `GET /v1/vector_stores/{id}/files` (and a batch's files): `filter` by status, paged by
/// file id.
pub fn list(
    store: &str,
    batch: Option<&str>,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let pairs: Vec<(String, String)> = request
        .query()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            // Clients page by the file ids they see; the store's ids are per store.
            "after" | "before" if !v.is_empty() => (k, key(store, &v)),
            _ => (k, v),
        })
        .collect();
    let mut query = cinder_sdk::list_query(&pairs, &["filter"])?;
    stores::find(host, store)?;
    if let Some((_, f)) = pairs.iter().find(|(k, _)| k == "filter") {
        if !["in_progress", "completed", "failed", "cancelled"].contains(&f.as_str()) {
            return Err(bad(
                "filter is in_progress, completed, failed or cancelled",
                "filter",
            ));
        }
        query.status = Some(f.clone());
    }
    query.metadata = vec![("vector_store".into(), store.to_owned())];
    if let Some(b) = batch {
        query.metadata.push(("batch".into(), b.to_owned()));
    }
    let page = host.list_objects(COLLECTION, &query).map_err(|e| match e {
        // A cursor names a file id, not the store's key.
        Error::InvalidRequest(mut d) => {
            d.message = d.message.replace(&format!("{store}-"), "");
            Error::InvalidRequest(d)
        }
        other => other,
    })?;
    cinder_sdk::respond_page(host, &page, shown)
}

/// `GET /v1/vector_stores/{id}/files/{file_id}`.
pub fn retrieve(store: &str, file: &str, host: &dyn AgentHost) -> Result<(), Error> {
    host.respond_json(200, &shown(&find(host, store, file)?)?)
}

/// `POST /v1/vector_stores/{id}/files/{file_id}`: `attributes`.
pub fn update(
    store: &str,
    file: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &["attributes"])?;
    let attrs = attributes(
        given
            .get("attributes")
            .ok_or_else(|| bad("Missing required parameter: 'attributes'.", "attributes"))?,
        "attributes",
    )?;
    for _ in 0..8 {
        let o = find(host, store, file)?;
        let mut b = body_of(&o)?;
        b["attributes"] = attrs.clone();
        let change = Change {
            status: o.status.clone(),
            metadata: o.metadata.clone(),
            body: b.to_string(),
            expect_version: Some(o.version),
        };
        if let Updated::Done(o) = host.update_object(COLLECTION, &o.id, &change)? {
            return host.respond_json(200, &shown(&o)?);
        }
    }
    Err(Error::RateLimited(format!(
        "file {file} is changing; try again"
    )))
}

/// Removes one file from its store: its object, its job, its chunks.
fn remove(host: &dyn AgentHost, o: &Object) -> Result<(), Error> {
    let b = body_of(o)?;
    host.delete_object(COLLECTION, &o.id)?;
    if let Some(job) = b["job"].as_str() {
        host.cancel_job(job)?;
    }
    let store = b["vector_store_id"].as_str().unwrap_or_default();
    let file = b["file_id"].as_str().unwrap_or_default();
    host.remove_vector_group(SPACE, store, file)?;
    Ok(())
}

/// `DELETE /v1/vector_stores/{id}/files/{file_id}` (the file itself stays in /v1/files).
pub fn delete(store: &str, file: &str, host: &dyn AgentHost) -> Result<(), Error> {
    let o = find(host, store, file)?;
    remove(host, &o)?;
    host.respond_json(
        200,
        &json!({"id": file, "object": "vector_store.file.deleted", "deleted": true}),
    )
}

/// Every file and batch of a store being deleted.
pub fn remove_all(host: &dyn AgentHost, store: &str) -> Result<(), Error> {
    let by_store = [("vector_store".to_owned(), store.to_owned())];
    let mut found = Vec::new();
    each(host, COLLECTION, &by_store, None, |o| {
        found.push(o.clone());
        Ok(())
    })?;
    for o in &found {
        remove(host, o)?;
    }
    let mut batches = Vec::new();
    each(host, crate::batches::COLLECTION, &by_store, None, |o| {
        batches.push(o.id.clone());
        Ok(())
    })?;
    for b in batches {
        host.delete_object(crate::batches::COLLECTION, &b)?;
    }
    Ok(())
}

/// `GET /v1/vector_stores/{id}/files/{file_id}/content`: the text the file was read as.
pub fn content(store: &str, file: &str, host: &dyn AgentHost) -> Result<(), Error> {
    find(host, store, file)?;
    let text = crate::ingest::file_text(host, file).map_err(|e| match e {
        crate::ingest::Failure::Error(e) => e,
        crate::ingest::Failure::File(_, message) => bad(message, "file_id"),
    })?;
    host.respond_json(
        200,
        &json!({"object": "vector_store.file_content.page",
                "data": [{"type": "text", "text": text}], "has_more": false, "next_page": null}),
    )
}
