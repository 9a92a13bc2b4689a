//! `cinder:plugin/vectors` (WIT 0.1.12): vector indexes in the host's store, in the spaces
//! (collections) the plugin's manifest names and for the caller's owner, searched exactly.

use cinder_store::{IndexKey, StoreError, VectorEntry};

use crate::bindings::agent_world::cinder::plugin::vectors;
use crate::bindings::cinder::plugin::types;
use crate::imports::invalid_argument;
use crate::state::HostState;

/// Letters, digits, `-`, `_` and `.`, 1 to 128: an index, entry or group name.
fn valid_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn check_names<'a>(
    names: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), types::Error> {
    for (field, name) in names {
        if !valid_name(name) {
            return Err(invalid_argument(
                field,
                format!("`{name}` is not a name here: 1 to 128 of [A-Za-z0-9._-]"),
                None,
            ));
        }
    }
    Ok(())
}

/// The store's refusals, naming the argument at fault.
fn wit_error(e: StoreError, field: &str) -> types::Error {
    match e {
        StoreError::BadVector(m) => invalid_argument(field, m, None),
        StoreError::NulCharacter(_) => {
            invalid_argument(field, "a NUL character cannot be stored", None)
        }
        other => types::Error::Internal(format!("store: {other}")),
    }
}

impl HostState {
    /// Runs `work` on the index `index` of `space` for the caller's owner, if this call may
    /// reach `space` and `index` is a name.
    async fn with_index<T>(
        &mut self,
        space: String,
        index: String,
        work: impl AsyncFnOnce(&cinder_store::Store, IndexKey<'_>) -> Result<T, types::Error>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        if let Err(e) = check_names([("index", index.as_str())]) {
            return Ok(Err(e));
        }
        let s = space.clone();
        self.with_store(Some(&s), async |store, owner| {
            let key = IndexKey {
                space: &space,
                owner,
                index: &index,
            };
            work(store, key).await
        })
        .await
    }
}

impl vectors::Host for HostState {
    async fn upsert(
        &mut self,
        space: String,
        index: String,
        entries: Vec<vectors::Entry>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let names = entries
            .iter()
            .flat_map(|e| [("id", e.id.as_str()), ("group", e.group.as_str())]);
        if let Err(e) = check_names(names) {
            return Ok(Err(e));
        }
        let bytes: usize = entries
            .iter()
            .map(|e| e.payload.len() + 4 * e.vector.len() + e.id.len() + e.group.len())
            .sum();
        if let Err(e) = self.quota.store(bytes) {
            return Ok(Err(types::Error::Internal(format!("store: {e}"))));
        }
        let entries = entries
            .into_iter()
            .map(|e| VectorEntry {
                id: e.id,
                group: e.group,
                vector: e.vector,
                payload: e.payload,
            })
            .collect();
        self.with_index(space, index, async |store, key| {
            store
                .upsert_vectors(key, entries)
                .await
                .map_err(|e| wit_error(e, "entries"))
        })
        .await
    }

    async fn remove_group(
        &mut self,
        space: String,
        index: String,
        group: String,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        if let Err(e) = check_names([("group", group.as_str())]) {
            return Ok(Err(e));
        }
        self.with_index(space, index, async |store, key| {
            store
                .remove_vector_group(key, &group)
                .await
                .map_err(|e| wit_error(e, "group"))
        })
        .await
    }

    async fn drop_index(
        &mut self,
        space: String,
        index: String,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        self.with_index(space, index, async |store, key| {
            store
                .drop_vector_index(key)
                .await
                .map_err(|e| wit_error(e, "index"))
        })
        .await
    }

    async fn count(
        &mut self,
        space: String,
        index: String,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        self.with_index(space, index, async |store, key| {
            store
                .count_vectors(key)
                .await
                .map_err(|e| wit_error(e, "index"))
        })
        .await
    }

    async fn search(
        &mut self,
        space: String,
        index: String,
        query: Vec<f32>,
        k: u32,
        groups: Option<Vec<String>>,
    ) -> wasmtime::Result<Result<Vec<vectors::Hit>, types::Error>> {
        if !(1..=cinder_store::MAX_K as u32).contains(&k) {
            return Ok(Err(invalid_argument(
                "k",
                format!("k is 1 to {}", cinder_store::MAX_K),
                None,
            )));
        }
        self.with_index(space, index, async |store, key| {
            let hits = store
                .search_vectors(key, &query, k as usize, groups.as_deref())
                .await
                .map_err(|e| wit_error(e, "query"))?;
            Ok(hits
                .into_iter()
                .map(|h| vectors::Hit {
                    id: h.id,
                    group: h.group,
                    score: h.score,
                    payload: h.payload,
                })
                .collect())
        })
        .await
    }
}
