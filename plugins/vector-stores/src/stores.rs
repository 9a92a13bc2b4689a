//! Vector stores: objects in `vector_stores` whose body is what the client set (name,
//! description, metadata, expiry); their file counts, usage and status are read from their
//! files when shown, so they never drift from what the files say.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::metadata;
use cinder_sdk::store::{Change, NewObject, Object, Order, Query, Updated};
use cinder_sdk::{Error, Request};

use crate::{bad, files, now};

pub const COLLECTION: &str = "vector_stores";
/// The space (a collection name) of the stores' vector indexes, one index per store.
pub const SPACE: &str = "vector_chunks";
/// Files one store lists at once when counting (and holds at most).
pub const MAX_FILES: u32 = 10_000;

/// The store `id` of the caller's, or OpenAI's 404.
pub fn find(host: &dyn AgentHost, id: &str) -> Result<Object, Error> {
    let found = match cinder_sdk::well_formed_id(id, "vs_") {
        true => host.get_object(COLLECTION, id)?,
        false => None,
    };
    found.ok_or_else(|| cinder_sdk::no_such("vector store", id))
}

pub fn body_of(o: &Object) -> Result<Value, Error> {
    serde_json::from_str(&o.body).map_err(|e| {
        Error::Internal(format!(
            "the stored vector store {} is unreadable: {e}",
            o.id
        ))
    })
}

/// The embedding model of the store's chunks (the setting's, for a store made before stores
/// kept theirs).
pub fn model_of(host: &dyn AgentHost, o: &Object) -> Result<String, Error> {
    Ok(match body_of(o)?["embedding_model"].as_str() {
        Some(m) => m.to_owned(),
        None => files::model(host),
    })
}

/// When the store expires, if it does: `days` after it was last active.
fn expires_at(b: &Value) -> Option<i64> {
    let days = b["expires_after"]["days"].as_i64()?;
    Some(b["last_active_at"].as_i64().unwrap_or(0) + days * 86_400)
}

/// Whether the store has expired (it can no longer be searched or given files).
pub fn expired(o: &Object) -> Result<bool, Error> {
    Ok(expires_at(&body_of(o)?).is_some_and(|at| now() >= at))
}

/// The store as OpenAI shows it.
pub fn shown(host: &dyn AgentHost, o: &Object) -> Result<Value, Error> {
    let b = body_of(o)?;
    let c = files::counts(host, &[("vector_store".into(), o.id.clone())])?;
    let status = if expired(o)? {
        "expired"
    } else if c.in_progress > 0 {
        "in_progress"
    } else {
        "completed"
    };
    Ok(json!({
        "id": o.id,
        "object": "vector_store",
        "created_at": o.created_at,
        "name": b["name"],
        "description": b["description"],
        "usage_bytes": c.usage_bytes,
        "file_counts": c.shown(),
        "status": status,
        "expires_after": b["expires_after"],
        "expires_at": expires_at(&b),
        "last_active_at": b["last_active_at"],
        "metadata": b["metadata"],
    }))
}

fn expires_after(v: &Value) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(Value::Null),
        v if v["anchor"] == "last_active_at"
            && v["days"].as_i64().is_some_and(|d| (1..=365).contains(&d)) =>
        {
            Ok(json!({"anchor": "last_active_at", "days": v["days"]}))
        }
        _ => Err(bad(
            "expires_after is {\"anchor\": \"last_active_at\", \"days\": 1 to 365}",
            "expires_after",
        )),
    }
}

fn text(v: &Value, param: &str, max: usize) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::String(s) if s.chars().count() <= max => Ok(v.clone()),
        _ => Err(bad(
            format!("{param} is a string of at most {max} characters"),
            param,
        )),
    }
}

/// Applies the settings `given` names onto `body`.
fn apply(body: &mut Value, given: &Map<String, Value>) -> Result<(), Error> {
    if let Some(v) = given.get("name") {
        body["name"] = text(v, "name", 256)?;
    }
    if let Some(v) = given.get("description") {
        body["description"] = text(v, "description", 512)?;
    }
    if let Some(v) = given.get("expires_after") {
        body["expires_after"] = expires_after(v)?;
    }
    if let Some(v) = given.get("metadata") {
        body["metadata"] = metadata(Some(v.clone()))?.unwrap_or_else(|| json!({}));
    }
    Ok(())
}

/// `POST /v1/vector_stores`: with `file_ids`, each file is added (and ingested) at once.
pub fn create(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(
        &request.body,
        &[
            "name",
            "description",
            "file_ids",
            "expires_after",
            "chunking_strategy",
            "metadata",
        ],
    )?;
    // The store keeps the model its chunks are embedded with: a later change of the setting
    // must not search its vectors with another model's queries.
    let model = files::model(host);
    let mut body = json!({"name": null, "description": null, "expires_after": null,
                          "metadata": {}, "last_active_at": now(), "embedding_model": model});
    apply(&mut body, &given)?;
    let file_ids = files::id_list(given.get("file_ids"), "file_ids")?;
    let chunking = given
        .get("chunking_strategy")
        .cloned()
        .unwrap_or(Value::Null);
    if chunking.is_object() && file_ids.is_empty() {
        return Err(bad(
            "chunking_strategy applies to file_ids; none were given",
            "chunking_strategy",
        ));
    }
    // Every file is checked before the store exists: a bad id leaves nothing behind.
    let plan = files::plan(host, &model, &file_ids, &chunking, "file_ids")?;
    let store = host.create_object(
        COLLECTION,
        &NewObject {
            id_prefix: "vs_".into(),
            status: None,
            metadata: Vec::new(),
            body: body.to_string(),
        },
    )?;
    for p in plan {
        files::add(host, &store, p, None)?;
    }
    host.respond_json(200, &shown(host, &store)?)
}

/// `GET /v1/vector_stores/{id}`.
pub fn retrieve(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    let o = find(host, id)?;
    host.respond_json(200, &shown(host, &o)?)
}

/// `POST /v1/vector_stores/{id}`: name, expires_after, metadata (compare-and-set).
pub fn modify(id: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(
        &request.body,
        &["name", "description", "expires_after", "metadata"],
    )?;
    for _ in 0..8 {
        let o = find(host, id)?;
        let mut body = body_of(&o)?;
        apply(&mut body, &given)?;
        let change = Change {
            status: None,
            metadata: o.metadata.clone(),
            body: body.to_string(),
            expect_version: Some(o.version),
        };
        if let Updated::Done(o) = host.update_object(COLLECTION, id, &change)? {
            return host.respond_json(200, &shown(host, &o)?);
        }
    }
    Err(Error::RateLimited(format!(
        "vector store {id} is changing; try again"
    )))
}

/// How stale `last_active_at` may be before a search writes it again: a search is a read, and
/// expiry counts in days.
const TOUCH_EVERY: i64 = 60;

/// Marks the store active now (its expiry counts from here); best effort, and at most once a
/// [`TOUCH_EVERY`].
pub fn touch(host: &dyn AgentHost, o: &Object) -> Result<(), Error> {
    let mut body = body_of(o)?;
    if body["last_active_at"]
        .as_i64()
        .is_some_and(|at| now() - at < TOUCH_EVERY)
    {
        return Ok(());
    }
    body["last_active_at"] = json!(now());
    let change = Change {
        status: None,
        metadata: o.metadata.clone(),
        body: body.to_string(),
        expect_version: Some(o.version),
    };
    host.update_object(COLLECTION, &o.id, &change)?;
    Ok(())
}

/// `DELETE /v1/vector_stores/{id}`: its index, files and batches go with it.
pub fn delete(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    find(host, id)?;
    host.delete_object(COLLECTION, id)?;
    files::remove_all(host, id)?;
    host.drop_vector_index(SPACE, id)?;
    host.respond_json(
        200,
        &json!({"id": id, "object": "vector_store.deleted", "deleted": true}),
    )
}

/// `GET /v1/vector_stores`.
pub fn list(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let query = cinder_sdk::list_query(&request.query(), &[])?;
    let page = host.list_objects(COLLECTION, &query)?;
    cinder_sdk::respond_page(host, &page, |o| shown(host, o))
}

/// Every object of `collection` with the metadata pair `filter`, a page at a time.
pub fn each(
    host: &dyn AgentHost,
    collection: &str,
    filter: &[(String, String)],
    status: Option<&str>,
    mut f: impl FnMut(&Object) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut after = None;
    loop {
        let page = host.list_objects(
            collection,
            &Query {
                limit: MAX_FILES,
                order: Order::Asc,
                after: after.take(),
                before: None,
                status: status.map(str::to_owned),
                metadata: filter.to_vec(),
            },
        )?;
        for o in &page.objects {
            f(o)?;
        }
        match page.objects.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => return Ok(()),
        }
    }
}
