//! The host side of the `documents` import: each call goes to the document store under the
//! calling plugin's id and the caller's owner, if its manifest granted `storage`. Writes are
//! synced to disk, so every call runs on a blocking thread.

use std::sync::Arc;

use crate::bindings::cinder::plugin::{documents, types};
use crate::documents::DocumentStore;
use crate::state::HostState;

/// Storage failures are the host's or the plugin's fault, never the client's: a 500.
fn storage_error(e: String) -> types::Error {
    types::Error::Internal(format!("document storage: {e}"))
}

/// The store, the plugin's id and the caller's owner: what a blocking thread needs.
type Scope = (Arc<DocumentStore>, Arc<str>, Arc<str>);

impl HostState {
    /// The store with the plugin's id and the caller's owner, if `storage` was granted.
    fn documents(&self) -> Result<Scope, types::Error> {
        match &self.documents {
            Some(d) => Ok((d.clone(), self.plugin_id.clone(), self.owner.clone())),
            None => Err(storage_error(format!(
                "the plugin `{}` was not granted the `storage` capability",
                self.plugin_id
            ))),
        }
    }
}

impl documents::Host for HostState {
    async fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let (store, plugin, owner) = match self.documents() {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.quota.store(key.len() + value.len()) {
            return Ok(Err(storage_error(e)));
        }
        self.blocking(move || {
            store
                .put(&plugin, &owner, &collection, key, value)
                .map_err(storage_error)
        })
        .await
    }

    async fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, types::Error>> {
        let (store, plugin, owner) = match self.documents() {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || {
            store
                .get(&plugin, &owner, &collection, &key)
                .map_err(storage_error)
        })
        .await
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        let (store, plugin, owner) = match self.documents() {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || {
            store
                .delete(&plugin, &owner, &collection, key)
                .map_err(storage_error)
        })
        .await
    }

    async fn page(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
        newest_first: bool,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, types::Error>> {
        let (store, plugin, owner) = match self.documents() {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        self.blocking(move || {
            store
                .list(
                    &plugin,
                    &owner,
                    &collection,
                    after.as_deref(),
                    limit,
                    newest_first,
                )
                .map_err(storage_error)
        })
        .await
    }
}
