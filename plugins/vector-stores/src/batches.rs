//! File batches: several files added to a store at once (`vector_store_file_batches`), each
//! file carrying its batch in the store's metadata; a batch's counts and status are read from
//! its files, and cancelling it cancels those still in progress.

use serde_json::{Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, NewObject, Object};
use cinder_sdk::{Error, Request};

use crate::bad;
use crate::files::{self, Planned};
use crate::stores::{self, each};

pub const COLLECTION: &str = "vector_store_file_batches";

fn find(host: &dyn AgentHost, store: &str, id: &str) -> Result<Object, Error> {
    stores::find(host, store)?;
    let o = match cinder_sdk::well_formed_id(id, "vsfb_") {
        true => host.get_object(COLLECTION, id)?,
        false => None,
    };
    o.filter(|o| {
        o.metadata
            .iter()
            .any(|(k, v)| k == "vector_store" && v == store)
    })
    .ok_or_else(|| cinder_sdk::no_such("file batch", id))
}

fn shown(host: &dyn AgentHost, o: &Object) -> Result<Value, Error> {
    let store = o
        .metadata
        .iter()
        .find(|(k, _)| k == "vector_store")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let c = files::counts(
        host,
        &[
            ("vector_store".into(), store.clone()),
            ("batch".into(), o.id.clone()),
        ],
    )?;
    let status = match o.status.as_deref() {
        Some("cancelled") => "cancelled",
        _ if c.in_progress > 0 => "in_progress",
        _ if c.failed > 0 && c.completed == 0 => "failed",
        _ => "completed",
    };
    Ok(json!({
        "id": o.id,
        "object": "vector_store.files_batch",
        "created_at": o.created_at,
        "vector_store_id": store,
        "status": status,
        "file_counts": c.shown(),
    }))
}

/// `POST /v1/vector_stores/{id}/file_batches`: `file_ids` (all with the request's
/// `attributes` and `chunking_strategy`) or `files` (each with its own).
pub fn create(store: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(
        &request.body,
        &["file_ids", "files", "attributes", "chunking_strategy"],
    )?;
    let s = stores::find(host, store)?;
    if stores::expired(&s)? {
        return Err(bad(
            format!("Vector store {store} has expired."),
            "vector_store_id",
        ));
    }
    let strategy = given
        .get("chunking_strategy")
        .cloned()
        .unwrap_or(Value::Null);
    let model = stores::model_of(host, &s)?;
    let attrs = files::attributes(
        given.get("attributes").unwrap_or(&Value::Null),
        "attributes",
    )?;
    let mut planned: Vec<Planned> = Vec::new();
    match (given.get("file_ids"), given.get("files")) {
        (Some(ids), None) => {
            let ids = files::id_list(Some(ids), "file_ids")?;
            for mut p in files::plan(host, &model, &ids, &strategy, "file_ids")? {
                p.attributes = attrs.clone();
                planned.push(p);
            }
        }
        (None, Some(Value::Array(list))) if list.len() <= 500 => {
            for (i, f) in list.iter().enumerate() {
                let id = f["file_id"].as_str().ok_or_else(|| {
                    bad(
                        "each of files has a file_id",
                        &format!("files[{i}].file_id"),
                    )
                })?;
                let own = f
                    .get("chunking_strategy")
                    .cloned()
                    .unwrap_or(strategy.clone());
                let mut p = files::plan(
                    host,
                    &model,
                    &[id.to_owned()],
                    &own,
                    &format!("files[{i}].file_id"),
                )?;
                let mut p = p.remove(0);
                p.attributes = match f.get("attributes") {
                    Some(a) => files::attributes(a, &format!("files[{i}].attributes"))?,
                    None => attrs.clone(),
                };
                planned.push(p);
            }
        }
        _ => {
            return Err(bad(
                "a file batch has file_ids (an array of file ids) or files (an array of at most \
                 500 {file_id, attributes, chunking_strategy}), not both",
                "file_ids",
            ));
        }
    }
    if planned.is_empty() {
        return Err(bad("a file batch has at least one file", "file_ids"));
    }
    let batch = host.create_object(
        COLLECTION,
        &NewObject {
            id_prefix: "vsfb_".into(),
            status: Some("in_progress".into()),
            metadata: vec![("vector_store".into(), store.to_owned())],
            body: "{}".into(),
        },
    )?;
    for p in planned {
        files::add(host, &s, p, Some(&batch.id))?;
    }
    host.respond_json(200, &shown(host, &batch)?)
}

/// `GET /v1/vector_stores/{id}/file_batches/{batch_id}`.
pub fn retrieve(store: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    let o = find(host, store, id)?;
    host.respond_json(200, &shown(host, &o)?)
}

/// `POST .../file_batches/{batch_id}/cancel`: the batch's files still in progress end
/// `cancelled` (their jobs stop at their next step, and what they wrote is removed).
pub fn cancel(store: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    let o = find(host, store, id)?;
    host.update_object(
        COLLECTION,
        id,
        &Change {
            status: Some("cancelled".into()),
            metadata: o.metadata.clone(),
            body: o.body.clone(),
            expect_version: None,
        },
    )?;
    let filter = [
        ("vector_store".to_owned(), store.to_owned()),
        ("batch".to_owned(), id.to_owned()),
    ];
    let mut pending = Vec::new();
    each(host, files::COLLECTION, &filter, Some("in_progress"), |f| {
        pending.push(f.clone());
        Ok(())
    })?;
    for f in pending {
        let b = files::body_of(&f)?;
        let change = Change {
            status: Some("cancelled".into()),
            metadata: f.metadata.clone(),
            body: f.body.clone(),
            expect_version: Some(f.version),
        };
        // A file that finished meanwhile stays finished.
        host.update_object(files::COLLECTION, &f.id, &change)?;
        if let Some(job) = b["job"].as_str() {
            host.cancel_job(job)?;
        }
        // What its earlier steps wrote is not searched.
        let file = b["file_id"].as_str().unwrap_or_default();
        host.remove_vector_group(stores::SPACE, store, file)?;
    }
    let o = find(host, store, id)?;
    host.respond_json(200, &shown(host, &o)?)
}

/// `GET .../file_batches/{batch_id}/files`.
pub fn list_files(
    store: &str,
    id: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    find(host, store, id)?;
    files::list(store, Some(id), request, host)
}
