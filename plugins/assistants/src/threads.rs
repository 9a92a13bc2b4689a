//! `/v1/threads` and their messages: a thread is an object in `threads` (its body the
//! metadata and tool resources), each message an object in `thread_messages` with its thread
//! in the store's metadata, so a thread's messages are a filtered, cursor-paged store query.
//! Runs, which answer in a thread, are not built yet.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::{Invalid, metadata};
use cinder_sdk::store::{Change, NewObject, Object, Order, Query, Updated};
use cinder_sdk::{Error, Request};

use crate::{attach, bad};

use crate::assistants::{list_query, tool_resources};

pub const THREADS: &str = "threads";
pub const MESSAGES: &str = "thread_messages";

/// Messages a thread may be created with at once.
pub const MAX_INITIAL_MESSAGES: usize = 32;
/// Characters of one message's text, all parts together.
pub const MAX_MESSAGE_CHARS: usize = 256_000;
/// Messages removed per store query when a thread is deleted.
const PAGE: u32 = 100;

fn thread_not_found(id: &str) -> Error {
    cinder_sdk::no_such("thread", id)
}

fn message_not_found(id: &str) -> Error {
    cinder_sdk::no_such("message", id)
}

fn stored(o: &Object) -> Result<Value, Error> {
    serde_json::from_str(&o.body)
        .map_err(|e| Error::Internal(format!("the stored object {} is unreadable: {e}", o.id)))
}

pub(crate) fn shown_thread(o: &Object) -> Result<Value, Error> {
    let body = stored(o)?;
    Ok(json!({
        "id": o.id,
        "object": "thread",
        "created_at": o.created_at,
        "metadata": body["metadata"],
        "tool_resources": body["tool_resources"],
    }))
}

pub(crate) fn shown_message(o: &Object) -> Result<Value, Error> {
    let mut v = stored(o)?;
    v["id"] = json!(o.id);
    v["object"] = json!("thread.message");
    v["created_at"] = json!(o.created_at);
    // A run's answer keeps its own (null while it is written); any other is whole at once.
    if v.get("completed_at").is_none() {
        v["completed_at"] = json!(o.created_at);
    }
    Ok(v)
}

/// The thread `id`, if the caller has one.
pub fn find_thread(host: &dyn AgentHost, id: &str) -> Result<Object, Error> {
    match cinder_sdk::well_formed_id(id, "thread_") {
        true => host
            .get_object(THREADS, id)?
            .ok_or_else(|| thread_not_found(id)),
        false => Err(thread_not_found(id)),
    }
}

/// The message `id` of the thread `thread`, if the caller has one.
fn find_message(host: &dyn AgentHost, thread: &str, id: &str) -> Result<Object, Error> {
    find_thread(host, thread)?;
    let o = match cinder_sdk::well_formed_id(id, "msg_") {
        true => host.get_object(MESSAGES, id)?,
        false => None,
    };
    o.filter(|o| o.metadata.iter().any(|(k, v)| k == "thread" && v == thread))
        .ok_or_else(|| message_not_found(id))
}

/// A message's `content` as OpenAI stores it: text parts (`{type: text, text: {value,
/// annotations}}`) from a string or from `text` parts; images refused by name.
fn content(v: &Value, at: &str) -> Result<Value, Error> {
    let part = |text: &str| json!({"type": "text", "text": {"value": text, "annotations": []}});
    let (parts, chars) = match v {
        Value::String(s) => (vec![part(s)], s.chars().count()),
        Value::Array(list) if !list.is_empty() => {
            let mut parts = Vec::with_capacity(list.len());
            let mut chars = 0;
            for (i, p) in list.iter().enumerate() {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => {
                        chars += t.chars().count();
                        parts.push(part(t));
                    }
                    (Some("image_file" | "image_url"), _) => {
                        return Err(bad(
                            "images are not supported: no served model reads them",
                            &format!("{at}[{i}].type"),
                        ));
                    }
                    _ => {
                        return Err(bad(
                            "a content part is {\"type\": \"text\", \"text\": ...}",
                            &format!("{at}[{i}]"),
                        ));
                    }
                }
            }
            (parts, chars)
        }
        _ => {
            return Err(bad(
                "content is a string or a non-empty array of text parts",
                at,
            ));
        }
    };
    if chars > MAX_MESSAGE_CHARS {
        return Err(bad(
            format!("a message holds at most {MAX_MESSAGE_CHARS} characters"),
            at,
        ));
    }
    Ok(Value::Array(parts))
}

/// A new message's stored body from a request's message (`param` prefixes error names),
/// and the files its attachments give file_search.
pub fn new_message(
    v: &Value,
    thread: &str,
    param: &str,
    host: &dyn AgentHost,
) -> Result<(NewObject, Vec<String>), Error> {
    let at = |k: &str| match param {
        "" => k.to_owned(),
        p => format!("{p}.{k}"),
    };
    let Value::Object(m) = v else {
        return Err(bad("a message is an object", param));
    };
    const KNOWN: [&str; 4] = ["role", "content", "attachments", "metadata"];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let mut e = Invalid::new(format!("Unknown parameter: '{k}'."), at(k));
        e.code = Some("unknown_parameter".into());
        return Err(e.into());
    }
    let role = match m.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant")) => r,
        _ => return Err(bad("role is user or assistant", &at("role"))),
    };
    let content = content(m.get("content").unwrap_or(&Value::Null), &at("content"))?;
    let (attachments, files) = attach::attachments(host, m.get("attachments"), &at("attachments"))?;
    let meta = metadata(m.get("metadata").cloned())
        .map_err(|mut e| {
            e.param = Some(at("metadata"));
            e
        })?
        .unwrap_or_else(|| json!({}));
    let body = json!({
        "thread_id": thread,
        "status": "completed",
        "incomplete_details": null,
        "incomplete_at": null,
        "role": role,
        "content": content,
        "assistant_id": null,
        "run_id": null,
        "attachments": attachments,
        "metadata": meta,
    });
    let new = NewObject {
        id_prefix: "msg_".into(),
        status: None,
        metadata: vec![("thread".into(), thread.to_owned())],
        body: body.to_string(),
    };
    Ok((new, files))
}

/// `POST /v1/threads`: with up to [`MAX_INITIAL_MESSAGES`] messages, all checked before
/// anything is stored.
pub fn create(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given =
        cinder_sdk::object_body(&request.body, &["messages", "metadata", "tool_resources"])?;
    let thread = make(given, "", host)?;
    host.respond_json(200, &shown_thread(&thread)?)
}

/// A new thread from a request's thread object (`param` prefixes the names in errors: the
/// `thread` of create-thread-and-run).
pub fn make(
    mut given: Map<String, Value>,
    param: &str,
    host: &dyn AgentHost,
) -> Result<Object, Error> {
    let at = |k: &str| match param {
        "" => k.to_owned(),
        p => format!("{p}.{k}"),
    };
    const KNOWN: [&str; 3] = ["messages", "metadata", "tool_resources"];
    if let Some(k) = given.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let mut e = Invalid::new(format!("Unknown parameter: '{k}'."), at(k));
        e.code = Some("unknown_parameter".into());
        return Err(e.into());
    }
    let messages = match given.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) if m.len() <= MAX_INITIAL_MESSAGES => m.clone(),
        Some(Value::Array(_)) => {
            return Err(bad(
                format!("a thread is created with at most {MAX_INITIAL_MESSAGES} messages"),
                &at("messages"),
            ));
        }
        Some(_) => return Err(bad("messages must be an array", &at("messages"))),
    };
    let inline = match given.get_mut("tool_resources") {
        Some(r) => attach::inline_store(host, r, &at("tool_resources"))?,
        None => None,
    };
    let body = thread_body(&given, json!({}), json!({})).map_err(|e| match e {
        Error::InvalidRequest(mut d) => {
            d.param = d.param.map(|p| at(&p));
            Error::InvalidRequest(d)
        }
        other => other,
    })?;
    // Every message is checked before the thread exists (against a prefix for its id).
    for (i, m) in messages.iter().enumerate() {
        new_message(m, "thread_", &at(&format!("messages[{i}]")), host)?;
    }
    let thread = host.create_object(
        THREADS,
        &NewObject {
            id_prefix: "thread_".into(),
            status: None,
            metadata: Vec::new(),
            body: body.to_string(),
        },
    )?;
    let mut files = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (new, attached) = new_message(m, &thread.id, &at(&format!("messages[{i}]")), host)?;
        host.create_object(MESSAGES, &new)?;
        files.extend(attached);
    }
    attach::add(host, THREADS, &thread.id, &files, inline)?;
    Ok(thread)
}

/// A thread's stored body: `metadata` and `tool_resources` from `given`, else as they were.
fn thread_body(
    given: &Map<String, Value>,
    metadata_was: Value,
    resources_was: Value,
) -> Result<Value, Error> {
    let meta = match given.get("metadata") {
        Some(m) => metadata(Some(m.clone()))?.unwrap_or_else(|| json!({})),
        None => metadata_was,
    };
    let resources = match given.get("tool_resources") {
        Some(Value::Null) => json!({}),
        Some(r) => tool_resources(r.clone())?,
        None => resources_was,
    };
    Ok(json!({"metadata": meta, "tool_resources": resources}))
}

/// `GET /v1/threads/{id}`.
pub fn retrieve(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    host.respond_json(200, &shown_thread(&find_thread(host, id)?)?)
}

/// `POST /v1/threads/{id}`: `metadata` and `tool_resources`.
pub fn modify(id: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &["metadata", "tool_resources"])?;
    for _ in 0..8 {
        let o = find_thread(host, id)?;
        let was = stored(&o)?;
        let mut body = thread_body(
            &given,
            was["metadata"].clone(),
            was["tool_resources"].clone(),
        )?;
        // The claim of its active run stays (`runs::claim`), and its files being stored.
        body["active_run"] = was["active_run"].clone();
        body["attach"] = was["attach"].clone();
        let change = Change {
            status: None,
            metadata: Vec::new(),
            body: body.to_string(),
            expect_version: Some(o.version),
        };
        match host.update_object(THREADS, id, &change)? {
            Updated::Done(o) => return host.respond_json(200, &shown_thread(&o)?),
            Updated::Conflict(_) => continue,
            Updated::NotFound => return Err(thread_not_found(id)),
        }
    }
    Err(Error::RateLimited(format!(
        "thread {id} is changing; try again"
    )))
}

/// `DELETE /v1/threads/{id}`: the thread, then its messages and runs (their jobs stopped,
/// their steps removed) a page at a time.
pub fn delete(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    find_thread(host, id)?;
    host.delete_object(THREADS, id)?;
    let by = |key: &str, value: &str| Query {
        limit: PAGE,
        order: Order::Asc,
        after: None,
        before: None,
        status: None,
        metadata: vec![(key.into(), value.to_owned())],
    };
    let drain = |collection: &str, query: &Query, each: &dyn Fn(&str) -> Result<(), Error>| {
        loop {
            let page = host.list_objects(collection, query)?;
            for o in &page.objects {
                each(&o.id)?;
                host.delete_object(collection, &o.id)?;
            }
            if !page.has_more {
                return Ok::<(), Error>(());
            }
        }
    };
    drain(MESSAGES, &by("thread", id), &|_| Ok(()))?;
    drain(crate::runs::RUNS, &by("thread", id), &|run| {
        host.cancel_job(run)?;
        drain(crate::stream::EVENTS, &by("run", run), &|_| Ok(()))?;
        drain(crate::runs::STEPS, &by("run", run), &|_| Ok(()))
    })?;
    host.respond_json(
        200,
        &json!({"id": id, "object": "thread.deleted", "deleted": true}),
    )
}

/// `POST /v1/threads/{id}/messages`.
pub fn create_message(thread: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    find_thread(host, thread)?;
    if let Some(run) = crate::runs::active_run(host, thread)? {
        return Err(bad(
            format!(
                "Can't add messages to {thread} while a run {} is active.",
                run.id
            ),
            "thread_id",
        ));
    }
    let given = cinder_sdk::object_body(
        &request.body,
        &["role", "content", "attachments", "metadata"],
    )?;
    let (new, files) = new_message(&Value::Object(given), thread, "", host)?;
    let o = host.create_object(MESSAGES, &new)?;
    attach::add(host, THREADS, thread, &files, None)?;
    host.respond_json(200, &shown_message(&o)?)
}

/// `GET /v1/threads/{id}/messages`: `limit`, `order` (`desc` by default), `after`, `before`;
/// `run_id` filters by the run that wrote them (none yet: runs are not built).
pub fn list_messages(thread: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut pairs = request.query();
    let run = pairs
        .iter()
        .position(|(k, _)| k == "run_id")
        .map(|i| pairs.remove(i).1);
    let mut query = list_query(&pairs)?;
    find_thread(host, thread)?;
    query.metadata = vec![("thread".into(), thread.to_owned())];
    if let Some(run) = run {
        query.metadata.push(("run".into(), run));
    }
    let page = host.list_objects(MESSAGES, &query)?;
    cinder_sdk::respond_page(host, &page, shown_message)
}

/// `GET /v1/threads/{id}/messages/{message_id}`.
pub fn retrieve_message(thread: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    host.respond_json(200, &shown_message(&find_message(host, thread, id)?)?)
}

/// `POST /v1/threads/{id}/messages/{message_id}`: `metadata` only, as OpenAI allows.
pub fn modify_message(
    thread: &str,
    id: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &["metadata"])?;
    let o = find_message(host, thread, id)?;
    let mut body = stored(&o)?;
    if let Some(m) = given.get("metadata") {
        body["metadata"] = metadata(Some(m.clone()))?.unwrap_or_else(|| json!({}));
    }
    let change = Change {
        status: o.status.clone(),
        metadata: o.metadata.clone(),
        body: body.to_string(),
        expect_version: None,
    };
    match host.update_object(MESSAGES, id, &change)? {
        Updated::Done(o) => host.respond_json(200, &shown_message(&o)?),
        Updated::NotFound | Updated::Conflict(_) => Err(message_not_found(id)),
    }
}

/// `DELETE /v1/threads/{id}/messages/{message_id}`.
pub fn delete_message(thread: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    find_message(host, thread, id)?;
    if !host.delete_object(MESSAGES, id)? {
        return Err(message_not_found(id));
    }
    host.respond_json(
        200,
        &json!({"id": id, "object": "thread.message.deleted", "deleted": true}),
    )
}
