#![doc = include_str!("../README.md")]

mod search;

pub use search::{Ask, Excerpts, Found, search, search_stores};

use serde_json::{Value, json};

use cinder_sdk::host::Host;
use cinder_sdk::store::{Change, Object, Order, Query};
use cinder_sdk::{Error, unix_time};

/// The collection of vector stores; a body holds what the client set (name, expiry) and the
/// embedding model the store's chunks were made with.
pub const STORES: &str = "vector_stores";
/// The collection of a store's files: one object per store and file, listable by the
/// metadata pair `vector_store`, status `completed` once its chunks are in the index.
pub const FILES: &str = "vector_store_files";
/// The space (a collection name) of the stores' vector indexes, one index per store named by
/// the store's id; an entry's group is its file's id.
pub const SPACE: &str = "vector_chunks";
/// Objects one listing reads at once (and files a store holds at most).
pub const PAGE: u32 = 10_000;
/// How stale `last_active_at` may be before a use writes it again: a search is a read, and
/// expiry counts in days.
const TOUCH_EVERY: i64 = 60;

fn now() -> i64 {
    i64::try_from(unix_time()).unwrap_or(0)
}

/// The store `id` of the caller's, or OpenAI's 404.
pub fn find_store(host: &dyn Host, id: &str) -> Result<Object, Error> {
    let found = match cinder_sdk::well_formed_id(id, "vs_") {
        true => host.get_object(STORES, id)?,
        false => None,
    };
    found.ok_or_else(|| cinder_sdk::no_such("vector store", id))
}

/// A stored object's body (`what` names its kind when it is unreadable).
pub fn body_of(o: &Object, what: &str) -> Result<Value, Error> {
    serde_json::from_str(&o.body)
        .map_err(|e| Error::Internal(format!("the stored {what} {} is unreadable: {e}", o.id)))
}

/// The embedding model of the store's chunks, if the store names it (every store made since
/// stores kept theirs does).
pub fn model_of(store: &Object) -> Result<Option<String>, Error> {
    Ok(body_of(store, "vector store")?["embedding_model"]
        .as_str()
        .map(str::to_owned))
}

/// When a store with body `b` expires, if it does: `days` after it was last active.
pub fn expires_at(b: &Value) -> Option<i64> {
    let days = b["expires_after"]["days"].as_i64()?;
    Some(b["last_active_at"].as_i64().unwrap_or(0) + days * 86_400)
}

/// Whether the store has expired (it can no longer be searched or given files).
pub fn expired(store: &Object) -> Result<bool, Error> {
    Ok(expires_at(&body_of(store, "vector store")?).is_some_and(|at| now() >= at))
}

/// Marks the store active now (its expiry counts from here); at most once a
/// [`TOUCH_EVERY`], and a store that changed meanwhile keeps its change (the touch is lost,
/// which costs at most one interval of expiry).
pub fn touch(host: &dyn Host, store: &Object) -> Result<(), Error> {
    let mut body = body_of(store, "vector store")?;
    if body["last_active_at"]
        .as_i64()
        .is_some_and(|at| now() - at < TOUCH_EVERY)
    {
        return Ok(());
    }
    body["last_active_at"] = json!(now());
    let change = Change {
        status: None,
        metadata: store.metadata.clone(),
        body: body.to_string(),
        expect_version: Some(store.version),
    };
    host.update_object(STORES, &store.id, &change)?;
    Ok(())
}

/// Every object of `collection` with the metadata pairs `filter` (and `status`), a page at a
/// time, oldest first.
pub fn each(
    host: &dyn Host,
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
                limit: PAGE,
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
