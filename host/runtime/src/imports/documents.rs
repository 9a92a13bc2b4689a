//! The host side of the `documents` import: each call goes to the store under the calling
//! plugin's id and the caller's owner, if its manifest granted `storage`.

use crate::bindings::cinder::plugin::{documents, types};
use crate::documents::{Access, Scope};
use crate::state::HostState;

/// Storage failures are the host's or the plugin's fault, never the client's: a 500.
fn storage_error(e: String) -> types::Error {
    types::Error::Internal(format!("document storage: {e}"))
}

impl HostState {
    /// The store, if `storage` was granted and the server keeps one.
    pub(crate) fn granted_store(&self) -> Result<cinder_store::Store, types::Error> {
        match &self.documents {
            Access::Granted(store) => Ok(store.clone()),
            Access::NoStore => Err(storage_error("this server keeps no store".into())),
            Access::NotGranted => Err(storage_error(format!(
                "the plugin `{}` was not granted the `storage` capability",
                self.plugin_id
            ))),
        }
    }

    /// Runs `work` on this call's documents; the wait is not the guest's CPU time.
    async fn with_documents<T>(
        &mut self,
        work: impl AsyncFnOnce(Scope<'_>) -> Result<T, String>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        let plugin = self.plugin_id.clone();
        self.with_store(None, async |store, owner| {
            let scope = Scope {
                store,
                plugin: &plugin,
                owner,
            };
            work(scope).await.map_err(storage_error)
        })
        .await
    }
}

impl documents::Host for HostState {
    async fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if let Err(e) = self.quota.store(key.len() + value.len()) {
            return Ok(Err(storage_error(e)));
        }
        self.with_documents(async |d| d.put(&collection, &key, value).await)
            .await
    }

    async fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, types::Error>> {
        self.with_documents(async |d| d.get(&collection, &key).await)
            .await
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        self.with_documents(async |d| d.delete(&collection, &key).await)
            .await
    }

    async fn page(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
        newest_first: bool,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, types::Error>> {
        self.with_documents(async |d| d.page(&collection, after, limit, newest_first).await)
            .await
    }
}
