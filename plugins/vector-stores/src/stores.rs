//! Vector stores: objects in `vector_stores` whose body is what the client set (name,
//! description, metadata, expiry); their file counts, usage and status are read from their
//! files when shown, so they never drift from what the files say.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::metadata;
use cinder_sdk::store::{Change, NewObject, Object, Updated};
use cinder_sdk::{Error, Request};

use crate::{bad, files, now};

pub use cinder_file_search::{
    PAGE as MAX_FILES, SPACE, STORES as COLLECTION, each, expired, touch,
};

/// The store `id` of the caller's, or OpenAI's 404.
pub fn find(host: &dyn AgentHost, id: &str) -> Result<Object, Error> {
    cinder_file_search::find_store(host, id)
}

pub fn body_of(o: &Object) -> Result<Value, Error> {
    cinder_file_search::body_of(o, "vector store")
}

/// The embedding model of the store's chunks (the setting's, for a store made before stores
/// kept theirs).
pub fn model_of(host: &dyn AgentHost, o: &Object) -> Result<String, Error> {
    Ok(cinder_file_search::model_of(o)?.unwrap_or_else(|| files::model(host)))
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
        "expires_at": cinder_file_search::expires_at(&b),
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
