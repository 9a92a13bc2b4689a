//! Stored chat completions: a completion made with `store: true` is kept (with its metadata
//! and input messages) in the host's durable documents, and served by
//! `GET /v1/chat/completions` (list, filter by model and metadata), `GET|POST|DELETE
//! /v1/chat/completions/{id}` and `GET /v1/chat/completions/{id}/messages`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use cinder_sdk::host::Host;
use cinder_sdk::openai::chat::ChatCompletion;
use cinder_sdk::openai::params::list::{ListParams, list_body};
use cinder_sdk::types::ErrorDetail;
use cinder_sdk::{Error, Request, Route, invalid_request};

const COLLECTION: &str = "chat_completions";
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// What is kept per completion.
#[derive(Serialize, Deserialize)]
struct Stored {
    completion: Value,
    metadata: Value,
    messages: Vec<StoredMessage>,
}

#[derive(Serialize, Deserialize)]
struct StoredMessage {
    role: String,
    content: String,
}

/// Keeps `completion` with the request's `metadata` and input `messages`.
pub(crate) fn save(
    host: &dyn Host,
    completion: &ChatCompletion,
    metadata: Option<&Value>,
    messages: &[cinder_sdk::tools::Message],
) -> Result<(), Error> {
    let stored = Stored {
        completion: serde_json::to_value(completion)
            .map_err(|e| Error::Internal(format!("storing the completion: {e}")))?,
        metadata: metadata.cloned().unwrap_or_else(|| json!({})),
        messages: messages
            .iter()
            .map(|m| StoredMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect(),
    };
    let text = serde_json::to_string(&stored)
        .map_err(|e| Error::Internal(format!("storing the completion: {e}")))?;
    host.put_document(COLLECTION, &completion.id, &text)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No stored chat completion with id `{id}`"),
        param: Some("completion_id".into()),
        code: None,
    })
}

/// `limit`, `after` and `order` of a list request (oldest first by default, as OpenAI's
/// stored completions list).
fn page(q: &[(String, String)]) -> Result<ListParams, Error> {
    Ok(ListParams::parse(q, DEFAULT_LIMIT, MAX_LIMIT, false)?)
}

fn load(host: &dyn Host, id: &str) -> Result<Stored, Error> {
    let text = host
        .get_document(COLLECTION, id)?
        .ok_or_else(|| not_found(id))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("a stored completion is unreadable: {e}")))
}

/// The completion as retrieved: OpenAI's object with its `metadata`.
fn shown(s: &Stored) -> Value {
    let mut c = s.completion.clone();
    c["metadata"] = s.metadata.clone();
    c
}

/// Serves one stored-completions request.
pub fn serve(route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
    let q = request.query();
    let id = || {
        route
            .param("id")
            .ok_or_else(|| Error::Internal(format!("route `{}` has no `{{id}}`", route.id)))
    };
    match route.id.as_str() {
        "chat.list" => list(host, &q),
        "chat.retrieve" => host.respond_json(200, &shown(&load(host, id()?)?)),
        "chat.update" => update(host, id()?, &request.body),
        "chat.delete" => {
            let id = id()?;
            if !host.delete_document(COLLECTION, id)? {
                return Err(not_found(id));
            }
            host.respond_json(
                200,
                &json!({"object": "chat.completion.deleted", "id": id, "deleted": true}),
            )
        }
        "chat.messages" => messages(host, id()?, &q),
        other => Err(Error::Internal(format!(
            "the stored completions serve no route `{other}`"
        ))),
    }
}

fn list(host: &dyn Host, q: &[(String, String)]) -> Result<(), Error> {
    let p = page(q)?;
    let model = q.iter().find(|(k, _)| k == "model").map(|(_, v)| v.clone());
    let wanted: Vec<(String, String)> = q
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let keep = |s: &Stored| {
        model
            .as_ref()
            .is_none_or(|m| s.completion["model"].as_str() == Some(m.as_str()))
            && wanted
                .iter()
                .all(|(k, v)| s.metadata[k.as_str()].as_str() == Some(v.as_str()))
    };
    // Filters apply while paging through the collection, so a page is always full.
    let mut data = Vec::new();
    let mut after = p.after.clone();
    let mut has_more = false;
    'scan: loop {
        let batch = host.page_documents(COLLECTION, after.as_deref(), 100, p.newest_first)?;
        if batch.is_empty() {
            break;
        }
        for (key, text) in &batch {
            after = Some(key.clone());
            let Ok(s) = serde_json::from_str::<Stored>(text) else {
                continue;
            };
            if keep(&s) {
                if data.len() == p.limit as usize {
                    has_more = true;
                    break 'scan;
                }
                data.push(shown(&s));
            }
        }
    }
    host.respond_json(200, &list_body(data, has_more))
}

fn update(host: &dyn Host, id: &str, body: &str) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Update {
        metadata: Option<Value>,
    }
    let u: Update = cinder_sdk::parse_body(body)?;
    let metadata = u
        .metadata
        .ok_or_else(|| invalid_request("`metadata` is required", Some("metadata")))?;
    cinder_sdk::openai::params::metadata(Some(metadata.clone()))?;
    let mut s = load(host, id)?;
    s.metadata = metadata;
    let text = serde_json::to_string(&s)
        .map_err(|e| Error::Internal(format!("storing the completion: {e}")))?;
    host.put_document(COLLECTION, id, &text)?;
    host.respond_json(200, &shown(&s))
}

fn messages(host: &dyn Host, id: &str, q: &[(String, String)]) -> Result<(), Error> {
    let p = page(q)?;
    let s = load(host, id)?;
    let mut all: Vec<Value> = s
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("{id}-{i}"), "role": m.role, "content": m.content}))
        .collect();
    if p.newest_first {
        all.reverse();
    }
    let start = p
        .after
        .as_deref()
        .and_then(|a| all.iter().position(|m| m["id"] == a).map(|i| i + 1))
        .unwrap_or(0);
    let rest: Vec<Value> = all.into_iter().skip(start).collect();
    let has_more = rest.len() > p.limit as usize;
    let data = rest.into_iter().take(p.limit as usize).collect();
    host.respond_json(200, &list_body(data, has_more))
}
