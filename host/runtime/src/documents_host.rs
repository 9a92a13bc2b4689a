//! The host side of the `documents` import: each call goes to the document store under the
//! calling plugin's id and the caller's owner, if its manifest granted `storage`.

use crate::HostState;
use crate::bindings::cinder::plugin::{documents, types};

/// Storage failures are the host's or the plugin's fault, never the client's: a 500.
fn storage_error(e: String) -> types::Error {
    types::Error::Internal(format!("document storage: {e}"))
}

impl HostState {
    fn documents(&self) -> Result<&crate::documents::DocumentStore, types::Error> {
        self.documents.as_deref().ok_or_else(|| {
            storage_error(format!(
                "the plugin `{}` was not granted the `storage` capability",
                self.plugin_id
            ))
        })
    }
}

impl documents::Host for HostState {
    fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if let Err(e) = self.quota.store(key.len() + value.len()) {
            return Ok(Err(storage_error(e)));
        }
        Ok(self.documents().and_then(|d| {
            d.put(&self.plugin_id, &self.owner, &collection, key, value)
                .map_err(storage_error)
        }))
    }

    fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, types::Error>> {
        Ok(self.documents().and_then(|d| {
            d.get(&self.plugin_id, &self.owner, &collection, &key)
                .map_err(storage_error)
        }))
    }

    fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        Ok(self.documents().and_then(|d| {
            d.delete(&self.plugin_id, &self.owner, &collection, key)
                .map_err(storage_error)
        }))
    }

    fn page(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
        newest_first: bool,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, types::Error>> {
        Ok(self.documents().and_then(|d| {
            d.list(
                &self.plugin_id,
                &self.owner,
                &collection,
                after.as_deref(),
                limit,
                newest_first,
            )
            .map_err(storage_error)
        }))
    }
}
