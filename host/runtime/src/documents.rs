//! Durable documents for plugins (WIT `documents`), kept in the store: a plugin's collection
//! `c` is the store collection `<plugin id>/c`, a key is an object id, a value its body. Every
//! document belongs to the owner whose call wrote it (a hash of the API key, or
//! [`LOCAL_OWNER`] when the server takes no keys), and a call sees only its owner's
//! documents: a plugin cannot hand one key's stored completions to another, whatever its
//! code does.
//!
//! Before the store, documents lived in append-only logs, `<dir>/<plugin id>/<collection>.jsonl`
//! (one JSON line per write or delete). [`migrate_logs`] moves them into the store once.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

use cinder_store::{Key, ListQuery, NewObject, Order, Store, StoreError};
use serde::Deserialize;

const MAX_VALUE: usize = 4 << 20;
const MAX_KEY: usize = 256;

/// The owner of documents written while the server takes no API keys (and of log lines
/// written before owners were recorded).
pub const LOCAL_OWNER: &str = "local";

/// What a call may reach: the store, unless its plugin was not granted `storage` or the server
/// has no store.
#[derive(Clone)]
pub(crate) enum Access {
    NotGranted,
    NoStore,
    Granted(Store),
}

/// Where one call's documents live.
pub(crate) struct Scope<'a> {
    pub store: &'a Store,
    pub plugin: &'a str,
    pub owner: &'a str,
}

fn check_name(collection: &str) -> Result<(), String> {
    let ok = !collection.is_empty()
        && collection.len() <= 64
        && collection
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "collection `{collection}`: names are 1 to 64 of [a-z0-9_-]"
        ))
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("keys are 1 to {MAX_KEY} characters"));
    }
    Ok(())
}

fn failed(e: StoreError) -> String {
    e.to_string()
}

impl Scope<'_> {
    fn collection(&self, collection: &str) -> Result<String, String> {
        check_name(collection)?;
        // `/` is in neither a plugin id nor a collection name: no two plugins share one.
        Ok(format!("{}/{collection}", self.plugin))
    }

    pub async fn put(&self, collection: &str, key: &str, value: String) -> Result<(), String> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("a value is at most {MAX_VALUE} bytes"));
        }
        let new = NewObject {
            collection: self.collection(collection)?,
            owner: self.owner.to_owned(),
            created_at: cinder_store::now(),
            body: value,
            ..NewObject::default()
        };
        self.store.put(new, key).await.map(drop).map_err(failed)
    }

    pub async fn get(&self, collection: &str, key: &str) -> Result<Option<String>, String> {
        let collection = self.collection(collection)?;
        let key = Key {
            collection: &collection,
            owner: self.owner,
            id: key,
        };
        Ok(self.store.get(key).await.map_err(failed)?.map(|o| o.body))
    }

    pub async fn delete(&self, collection: &str, key: &str) -> Result<bool, String> {
        let collection = self.collection(collection)?;
        let key = Key {
            collection: &collection,
            owner: self.owner,
            id: key,
        };
        self.store.delete(key).await.map_err(failed)
    }

    pub async fn page(
        &self,
        collection: &str,
        after: Option<String>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let q = ListQuery {
            collection: self.collection(collection)?,
            owner: self.owner.to_owned(),
            limit,
            order: if newest_first {
                Order::Desc
            } else {
                Order::Asc
            },
            after,
            ..ListQuery::default()
        };
        match self.store.list(&q).await {
            Ok(page) => Ok(page.objects.into_iter().map(|o| (o.id, o.body)).collect()),
            // An unknown key (or another owner's) has nothing after it.
            Err(StoreError::UnknownCursor(_)) => Ok(Vec::new()),
            Err(e) => Err(failed(e)),
        }
    }
}

/// One line of a pre-store document log.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Put {
        key: String,
        value: String,
        #[serde(default)]
        owner: Option<String>,
    },
    Del {
        key: String,
    },
}

/// Moves every pre-store document log under `dir` into the store, keeping each collection's
/// order, so it is moved once: a log is first claimed by renaming it
/// `<collection>.jsonl.migrating` (replicas sharing the folder race for the rename and one
/// wins), then moved, then renamed `.migrated`. A claimed log left by a crash is moved by a
/// later start once it has sat for [`ABANDONED`]; moving again replaces each document in place.
/// Returns how many documents it moved.
pub async fn migrate_logs(dir: &Path, store: &Store) -> Result<usize, String> {
    let mut moved = 0;
    let Ok(plugins) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for plugin in plugins.flatten() {
        let Ok(logs) = std::fs::read_dir(plugin.path()) else {
            continue;
        };
        let plugin_id = plugin.file_name().to_string_lossy().into_owned();
        for log in logs.flatten() {
            let name = log.file_name().to_string_lossy().into_owned();
            let Some(claimed) = claim(&log.path(), &name)? else {
                continue;
            };
            let collection = name
                .trim_end_matches(".migrating")
                .trim_end_matches(".jsonl");
            let docs = replay(&claimed)?;
            for doc in &docs {
                let scope = Scope {
                    store,
                    plugin: &plugin_id,
                    owner: &doc.owner,
                };
                scope
                    .put(collection, &doc.key, doc.value.clone())
                    .await
                    .map_err(|e| format!("{}: moving `{}`: {e}", claimed.display(), doc.key))?;
            }
            moved += docs.len();
            let done = claimed.with_file_name(format!("{collection}.jsonl.migrated"));
            std::fs::rename(&claimed, &done).map_err(|e| format!("{}: {e}", claimed.display()))?;
            tracing::info!(log = %done.display(), documents = docs.len(), "document log moved into the store");
        }
    }
    Ok(moved)
}

/// How long a claimed log must sit untouched before a start takes it as abandoned.
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(600);

/// The log `path` (named `name`) claimed for moving, if it is one to move now.
fn claim(path: &Path, name: &str) -> Result<Option<std::path::PathBuf>, String> {
    if let Some(collection) = name.strip_suffix(".jsonl") {
        if check_name(collection).is_err() {
            return Ok(None);
        }
        let claimed = path.with_file_name(format!("{name}.migrating"));
        return match std::fs::rename(path, &claimed) {
            Ok(()) => Ok(Some(claimed)),
            // Another replica claimed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
    }
    let abandoned = name
        .strip_suffix(".jsonl.migrating")
        .is_some_and(|c| check_name(c).is_ok())
        && std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ABANDONED);
    Ok(abandoned.then(|| path.to_path_buf()))
}

/// A document as a log last wrote it.
struct Logged {
    key: String,
    value: String,
    owner: String,
}

/// A log's documents in the order of their first write.
fn replay(path: &Path) -> Result<Vec<Logged>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut order: BTreeMap<u64, String> = BTreeMap::new();
    let mut docs: HashMap<String, (u64, String, String)> = HashMap::new();
    let mut next = 0;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Put { key, value, owner }) => {
                let owner = owner.unwrap_or_else(|| LOCAL_OWNER.to_owned());
                let seq = match docs.get(&key) {
                    Some((seq, ..)) => *seq,
                    None => {
                        next += 1;
                        order.insert(next, key.clone());
                        next
                    }
                };
                docs.insert(key, (seq, value, owner));
            }
            Ok(Line::Del { key }) => {
                if let Some((seq, ..)) = docs.remove(&key) {
                    order.remove(&seq);
                }
            }
            // A line cut short by a crash mid-write: that write never returned.
            Err(e) => {
                tracing::warn!(path = %path.display(), line = n + 1, error = %e, "skipping an unreadable document log line")
            }
        }
    }
    Ok(order
        .into_values()
        .filter_map(|key| {
            let (_, value, owner) = docs.remove(&key)?;
            Some(Logged { key, value, owner })
        })
        .collect())
}

#[cfg(test)]
mod tests;
