//! `cinder:plugin/store` (WIT 0.1.7): typed objects and blobs in the host's store, scoped to
//! the collections the plugin's manifest names and to the caller's owner. Blob contents move
//! in chunks; a download goes from the blob file to the client without passing through the
//! guest.

use std::collections::BTreeMap;

use cinder_store::{Change, Key, ListQuery, NewObject, Order, Pending, StoreError};
use wasmtime::component::Resource;

use crate::bindings::cinder::plugin::types;
use crate::bindings::store_world::cinder::plugin::store;
use crate::body::BodyFailure;
use crate::call::Output;
use crate::imports::invalid_argument;

/// A caller's mistake in argument `field` (WIT's name for it).
fn bad(message: impl Into<String>, field: &str) -> types::Error {
    invalid_argument(field, message, None)
}
use crate::state::{HostState, ResponseState, SinkHandle};

/// Largest chunk one `read-blob` returns (and one `write` should carry).
const MAX_CHUNK: u32 = 4 << 20;
/// Blob writers one call may hold open at once (each holds a file).
const MAX_OPEN_WRITERS: u32 = 16;
/// Largest page one `list` returns.
const MAX_PAGE: u32 = 10_000;
/// The longest a link to a blob may live: 7 days.
const MAX_LINK_SECS: i64 = 7 * 86_400;

/// A blob being written by the guest (`blob-writer`): dropped unfinished, it leaves nothing.
pub struct BlobWriterHandle(Option<cinder_store::BlobWriter>);

fn internal(e: StoreError) -> types::Error {
    types::Error::Internal(format!("store: {e}"))
}

/// The store's refusals in WIT terms; the plugin names the request parameter.
fn wit_error(e: StoreError) -> types::Error {
    match e {
        StoreError::NulCharacter(field) => bad(
            format!("`{field}` contains a NUL character, which cannot be stored"),
            field,
        ),
        StoreError::InvalidId(id) => bad(format!("`{id}` is not a store id"), "id"),
        StoreError::NotFound { collection, id } => types::Error::NotFound(types::ErrorDetail {
            message: format!("No object `{id}` in `{collection}`"),
            param: Some("id".into()),
            code: None,
        }),
        other => internal(other),
    }
}

fn pairs(m: Vec<(String, String)>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// A new object of `owner`'s in `collection`, created now by the request `keeps` (none in a
/// job step) whose pending blobs it keeps.
fn new_object(
    collection: String,
    owner: &str,
    new: store::NewObject,
    keeps: Option<String>,
) -> NewObject {
    NewObject {
        collection,
        owner: owner.to_owned(),
        id_prefix: new.id_prefix,
        created_at: cinder_store::now(),
        status: new.status,
        metadata: pairs(new.metadata),
        body: new.body,
        keeps,
    }
}

fn object(o: cinder_store::Object) -> store::Object {
    store::Object {
        id: o.id,
        created_at: o.created_at,
        version: o.version,
        status: o.status,
        metadata: o.metadata.into_iter().collect(),
        body: o.body,
    }
}

fn blob(b: cinder_store::Blob) -> store::Blob {
    store::Blob {
        id: b.id,
        bytes: b.bytes,
        md5: b.md5,
    }
}

/// What a blob this call writes is pending on, owned so a store closure can hold it.
enum BlobPending {
    /// A job step's (job, holder).
    Step(String, String),
    /// A request's id.
    Request(String),
}

impl BlobPending {
    fn on(&self) -> Pending<'_> {
        match self {
            BlobPending::Step(job, holder) => Pending::Step { job, holder },
            BlobPending::Request(id) => Pending::Request(id),
        }
    }
}

impl HostState {
    /// A job step's blobs wait for the step's progress to be saved; a request's, for the
    /// request to record an object (or [`Store::sweep_request_blobs`] removes them).
    fn blob_pending(&self) -> BlobPending {
        match self.jobs.pending() {
            Some((job, holder)) => BlobPending::Step(job.to_owned(), holder.to_owned()),
            None => BlobPending::Request(self.request_id.to_string()),
        }
    }

    /// The request whose pending blobs an object write keeps: none in a job step, whose
    /// blobs wait for its progress to be saved.
    fn keeps(&self) -> Option<String> {
        match self.jobs.pending() {
            Some(_) => None,
            None => Some(self.request_id.to_string()),
        }
    }

    /// The store, if `storage` was granted, the server keeps one, and the manifest names
    /// `collection` (`None`: blobs, which every storage plugin may keep).
    fn collection_store(
        &self,
        collection: Option<&str>,
    ) -> Result<cinder_store::Store, types::Error> {
        let store = self.granted_store()?;
        if let Some(c) = collection
            && !self.collections.iter().any(|granted| granted.as_str() == c)
        {
            return Err(types::Error::Internal(format!(
                "store: the plugin `{}` did not ask for the collection `{c}` (collections = [..., \"{c}\"] in its plugin.toml)",
                self.plugin_id
            )));
        }
        Ok(store)
    }

    /// Runs `work` on the store for the caller's owner, if this call may reach `collection`.
    /// The wait is not the guest's CPU time, and counts as progress.
    pub(crate) async fn with_store<T>(
        &mut self,
        collection: Option<&str>,
        work: impl AsyncFnOnce(&cinder_store::Store, &str) -> Result<T, types::Error>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        let store = match self.collection_store(collection) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let owner = self.owner.clone();
        let result = work(&store, &owner).await;
        self.touch();
        Ok(result)
    }
}

impl store::Host for HostState {
    async fn create(
        &mut self,
        collection: String,
        new: store::NewObject,
    ) -> wasmtime::Result<Result<store::Object, types::Error>> {
        let prefix_ok = (1..=16).contains(&new.id_prefix.len())
            && new
                .id_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            return Ok(Err(bad(
                "an id prefix is 1 to 16 of [A-Za-z0-9_-]",
                "id-prefix",
            )));
        }
        if let Err(e) = self.quota.store(new.body.len()) {
            return Ok(Err(types::Error::Internal(format!("store: {e}"))));
        }
        let c = collection.clone();
        let keeps = self.keeps();
        self.with_store(Some(&c), async |store, owner| {
            let new = new_object(collection, owner, new, keeps);
            store.create(new).await.map(object).map_err(wit_error)
        })
        .await
    }

    async fn put(
        &mut self,
        collection: String,
        id: String,
        new: store::NewObject,
    ) -> wasmtime::Result<Result<store::Object, types::Error>> {
        if !cinder_store::is_store_id(&id) {
            return Ok(Err(bad("an id is 1 to 128 of [A-Za-z0-9_-]", "id")));
        }
        if let Err(e) = self.quota.store(new.body.len()) {
            return Ok(Err(types::Error::Internal(format!("store: {e}"))));
        }
        let c = collection.clone();
        let keeps = self.keeps();
        self.with_store(Some(&c), async |store, owner| {
            let new = new_object(collection, owner, new, keeps);
            store.put(new, &id).await.map(object).map_err(wit_error)
        })
        .await
    }

    async fn get(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<Option<store::Object>, types::Error>> {
        self.with_store(Some(&collection), async |store, owner| {
            let key = Key {
                collection: &collection,
                owner,
                id: &id,
            };
            store
                .get(key)
                .await
                .map(|o| o.map(object))
                .map_err(wit_error)
        })
        .await
    }

    async fn update(
        &mut self,
        collection: String,
        id: String,
        change: store::Change,
    ) -> wasmtime::Result<Result<store::Updated, types::Error>> {
        if let Err(e) = self.quota.store(change.body.len()) {
            return Ok(Err(types::Error::Internal(format!("store: {e}"))));
        }
        let keeps = self.keeps();
        self.with_store(Some(&collection), async |store, owner| {
            let key = Key {
                collection: &collection,
                owner,
                id: &id,
            };
            let change = Change {
                status: change.status,
                metadata: pairs(change.metadata),
                body: change.body,
                expect_version: change.expect_version,
                keeps,
            };
            match store.update(key, change).await {
                Ok(o) => Ok(store::Updated::Done(object(o))),
                Err(StoreError::NotFound { .. }) => Ok(store::Updated::NotFound),
                Err(StoreError::Conflict { actual, .. }) => Ok(store::Updated::Conflict(actual)),
                Err(e) => Err(wit_error(e)),
            }
        })
        .await
    }

    async fn delete(
        &mut self,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        self.with_store(Some(&collection), async |store, owner| {
            let key = Key {
                collection: &collection,
                owner,
                id: &id,
            };
            store.delete(key).await.map_err(wit_error)
        })
        .await
    }

    async fn list(
        &mut self,
        collection: String,
        query: store::Query,
    ) -> wasmtime::Result<Result<store::Page, types::Error>> {
        if query.limit > MAX_PAGE {
            return Ok(Err(bad(
                format!("a page holds at most {MAX_PAGE} objects"),
                "limit",
            )));
        }
        let c = collection.clone();
        self.with_store(Some(&c), async |store, owner| {
            let q = ListQuery {
                collection,
                owner: owner.to_owned(),
                limit: query.limit,
                order: match query.order {
                    store::Order::Asc => Order::Asc,
                    store::Order::Desc => Order::Desc,
                },
                after: query.after.clone(),
                before: query.before,
                status: query.status,
                metadata: query.metadata,
            };
            match store.list(&q).await {
                Ok(p) => Ok(store::Page {
                    objects: p.objects.into_iter().map(object).collect(),
                    has_more: p.has_more,
                }),
                Err(StoreError::UnknownCursor(id)) => {
                    let which = if query.after.as_deref() == Some(id.as_str()) {
                        "after"
                    } else {
                        "before"
                    };
                    Err(bad(format!("no object `{id}` to list from"), which))
                }
                Err(e) => Err(wit_error(e)),
            }
        })
        .await
    }

    async fn blob_info(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<Option<store::Blob>, types::Error>> {
        self.with_store(None, async |store, owner| {
            let found = store.blob(owner, &id).await;
            found.map(|b| b.map(blob)).map_err(wit_error)
        })
        .await
    }

    async fn read_blob(
        &mut self,
        id: String,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        if len > MAX_CHUNK {
            return Ok(Err(bad(
                format!("a read returns at most {MAX_CHUNK} bytes"),
                "len",
            )));
        }
        self.with_store(None, async |store, owner| {
            let read = store.read_blob(owner, &id, offset, len as usize).await;
            read.map_err(wit_error)
        })
        .await
    }

    async fn concat_blobs(
        &mut self,
        parts: Vec<String>,
    ) -> wasmtime::Result<Result<store::Blob, types::Error>> {
        let max = self.max_file_bytes;
        let pending = self.blob_pending();
        let joined = self
            .with_store(None, async |store, owner| {
                Ok(store.concat_blobs(owner, &parts, max, pending.on()).await)
            })
            .await?;
        Ok(match joined {
            Err(e) => Err(e),
            // The parts are stored already: a 400 naming them, not the body's 413.
            Ok(Err(StoreError::TooLarge { limit })) => Err(bad(
                format!("the parts together are larger than the limit of {limit} bytes"),
                "parts",
            )),
            Ok(other) => other.map(blob).map_err(wit_error),
        })
    }

    async fn delete_blob(&mut self, id: String) -> wasmtime::Result<Result<bool, types::Error>> {
        self.with_store(None, async |store, owner| {
            store.delete_blob(owner, &id).await.map_err(wit_error)
        })
        .await
    }

    async fn send_blob(
        &mut self,
        _sink: Resource<SinkHandle>,
        id: String,
        content_type: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let safe_type = !content_type.is_empty()
            && content_type.len() <= 128
            && content_type
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ');
        if !safe_type {
            return Ok(Err(bad(
                "a content type is 1 to 128 printable ASCII characters",
                "content-type",
            )));
        }
        let opened = self
            .with_store(None, async |store, owner| {
                match store.open_blob(owner, &id).await {
                    Ok(Some(o)) => Ok(o),
                    Ok(None) => Err(wit_error(StoreError::NotFound {
                        collection: "blobs".into(),
                        id: id.clone(),
                    })),
                    Err(e) => Err(wit_error(e)),
                }
            })
            .await?;
        let (info, file) = match opened {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        let output = Output::File {
            status: 200,
            content_type,
            length: info.bytes,
            file,
        };
        Ok(self
            .send(output, ResponseState::Whole)
            .await
            // Already answered, or the client left: the guest's own sink calls say which.
            .map_err(|e| types::Error::Internal(format!("the response was not sent: {e:?}"))))
    }

    async fn share_blob(
        &mut self,
        id: String,
        content_type: String,
        expires_at: u64,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let Some(base) = self.public_url.clone() else {
            return Ok(Err(types::Error::Unavailable(
                "this call has no URL clients reach the server at (a job step): links are made in requests".into(),
            )));
        };
        let now = cinder_store::now();
        let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
        if expires <= now || expires - now > MAX_LINK_SECS {
            return Ok(Err(bad(
                format!("a link expires in 1 second to {MAX_LINK_SECS} seconds"),
                "expires-at",
            )));
        }
        self.with_store(None, async |store, owner| {
            match store.share_blob(owner, &id, &content_type, expires).await {
                Ok(token) => Ok(format!("{base}/links/{token}")),
                Err(StoreError::BadLink(m)) => Err(bad(m, "content-type")),
                Err(e) => Err(wit_error(e)),
            }
        })
        .await
    }
}

impl store::HostBlobWriter for HostState {
    async fn new(&mut self) -> wasmtime::Result<Resource<BlobWriterHandle>> {
        // A writer that cannot start (no store, too many open: each holds a file) fails at its
        // first write, where an error can be said.
        let max = self.max_file_bytes;
        // Pending until the request records an object, or a job step's progress is saved.
        let pending = self.blob_pending();
        let writer = if self.open_blob_writers >= MAX_OPEN_WRITERS {
            None
        } else {
            self.with_store(None, async |store, owner| {
                let writer = store.blob_writer(owner, max).await.ok();
                Ok(writer.map(|w| w.pending_on(pending.on())))
            })
            .await?
            .ok()
            .flatten()
        };
        if writer.is_some() {
            self.open_blob_writers += 1;
        }
        Ok(self.table.push(BlobWriterHandle(writer))?)
    }

    async fn write(
        &mut self,
        me: Resource<BlobWriterHandle>,
        chunk: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if let Err(e) = self.collection_store(None) {
            return Ok(Err(e));
        }
        let handle = self.table.get_mut(&me)?;
        let Some(writer) = handle.0.as_mut() else {
            return Ok(Err(types::Error::Internal(format!(
                "store: this blob could not be started (no store, or {MAX_OPEN_WRITERS} open at once), or was finished"
            ))));
        };
        let written = match writer.write(&chunk).await {
            Err(StoreError::TooLarge { limit }) => {
                handle.0 = None;
                self.open_blob_writers -= 1;
                self.body_failure = Some(BodyFailure::TooLarge { limit });
                Err(bad(format!("a blob is at most {limit} bytes"), "chunk"))
            }
            other => other.map_err(wit_error),
        };
        self.touch();
        Ok(written)
    }

    async fn finish(
        &mut self,
        me: Resource<BlobWriterHandle>,
    ) -> wasmtime::Result<Result<store::Blob, types::Error>> {
        let Some(writer) = self.table.get_mut(&me)?.0.take() else {
            return Ok(Err(types::Error::Internal(
                "store: this blob could not be started, or was finished".into(),
            )));
        };
        self.open_blob_writers -= 1;
        let finished = writer.finish().await.map(blob).map_err(wit_error);
        self.touch();
        Ok(finished)
    }

    async fn drop(&mut self, me: Resource<BlobWriterHandle>) -> wasmtime::Result<()> {
        // Dropping the writer removes an unfinished blob's temporary file.
        if self.table.delete(me)?.0.is_some() {
            self.open_blob_writers -= 1;
        }
        Ok(())
    }
}
