//! Durable documents for plugins (WIT `documents`): one append-only log per plugin and
//! collection, `<dir>/<plugin id>/<collection>.jsonl`, one JSON line per write or delete,
//! synced before the call returns. A collection is replayed into memory the first time it is
//! used; after that reads come from memory. Without a folder (tests), documents live in
//! memory only.
//!
//! Every document belongs to the owner whose call wrote it (a hash of the API key, or
//! [`LOCAL_OWNER`] when the server takes no keys). A call sees only its owner's documents: a
//! plugin cannot hand one key's stored completions (or files, threads) to another, whatever
//! its code does.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const MAX_VALUE: usize = 4 << 20;
const MAX_KEY: usize = 256;

/// The owner of documents written while the server takes no API keys (and of lines written
/// before owners were recorded).
pub const LOCAL_OWNER: &str = "local";

fn local_owner() -> String {
    LOCAL_OWNER.to_owned()
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Put {
        key: String,
        value: String,
        #[serde(default = "local_owner")]
        owner: String,
    },
    Del {
        key: String,
    },
}

/// A stored document.
struct Entry {
    key: String,
    value: String,
    owner: String,
}

#[derive(Default)]
struct Collection {
    /// Listing order: the sequence number of each key's first write.
    by_seq: BTreeMap<u64, Entry>,
    seq_of: HashMap<String, u64>,
    next: u64,
    log: Option<File>,
}

impl Collection {
    /// The document under `key` if `owner` owns it.
    fn owned(&self, key: &str, owner: &str) -> Option<(u64, &Entry)> {
        let seq = *self.seq_of.get(key)?;
        self.by_seq
            .get(&seq)
            .filter(|e| e.owner == owner)
            .map(|e| (seq, e))
    }

    fn apply(&mut self, line: Line) -> bool {
        match line {
            Line::Put { key, value, owner } => {
                let seq = *self.seq_of.entry(key.clone()).or_insert_with(|| {
                    self.next += 1;
                    self.next
                });
                self.by_seq.insert(seq, Entry { key, value, owner });
                true
            }
            Line::Del { key } => match self.seq_of.remove(&key) {
                Some(seq) => self.by_seq.remove(&seq).is_some(),
                None => false,
            },
        }
    }

    fn append(&mut self, line: &Line) -> Result<(), String> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let mut text = serde_json::to_string(line).map_err(|e| e.to_string())?;
        text.push('\n');
        log.write_all(text.as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(|e| format!("writing the document log: {e}"))
    }
}

/// Every plugin's collections.
pub(crate) struct DocumentStore {
    dir: Option<PathBuf>,
    collections: Mutex<HashMap<(String, String), Collection>>,
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

impl DocumentStore {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        DocumentStore {
            dir,
            collections: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the collection, loading it from its log first if needed.
    fn with<T>(
        &self,
        plugin: &str,
        collection: &str,
        f: impl FnOnce(&mut Collection) -> Result<T, String>,
    ) -> Result<T, String> {
        check_name(collection)?;
        let mut all = self
            .collections
            .lock()
            .map_err(|_| "the document store is poisoned".to_owned())?;
        let id = (plugin.to_owned(), collection.to_owned());
        if !all.contains_key(&id) {
            let c = self.load(plugin, collection)?;
            all.insert(id.clone(), c);
        }
        let c = all
            .get_mut(&id)
            .ok_or_else(|| "collection vanished".to_owned())?;
        f(c)
    }

    fn load(&self, plugin: &str, collection: &str) -> Result<Collection, String> {
        let mut c = Collection::default();
        let Some(dir) = &self.dir else {
            return Ok(c);
        };
        let dir = dir.join(plugin);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{collection}.jsonl"));
        if let Ok(file) = File::open(&path) {
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
                match serde_json::from_str::<Line>(&line) {
                    Ok(l) => {
                        c.apply(l);
                    }
                    // A line cut short by a crash mid-write: the write never returned, skip it.
                    Err(e) => {
                        tracing::warn!(path = %path.display(), line = n + 1, error = %e, "skipping an unreadable document log line")
                    }
                }
            }
        }
        c.log = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
        Ok(c)
    }

    pub(crate) fn put(
        &self,
        plugin: &str,
        owner: &str,
        collection: &str,
        key: String,
        value: String,
    ) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(format!("keys are 1 to {MAX_KEY} characters"));
        }
        if value.len() > MAX_VALUE {
            return Err(format!("a value is at most {MAX_VALUE} bytes"));
        }
        self.with(plugin, collection, |c| {
            if c.seq_of.contains_key(&key) && c.owned(&key, owner).is_none() {
                // Ids are generated, so this is a plugin writing over a key it was never shown.
                return Err(format!("the key `{key}` belongs to another owner"));
            }
            let line = Line::Put {
                key,
                value,
                owner: owner.to_owned(),
            };
            c.append(&line)?;
            c.apply(line);
            Ok(())
        })
    }

    pub(crate) fn get(
        &self,
        plugin: &str,
        owner: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        self.with(plugin, collection, |c| {
            Ok(c.owned(key, owner).map(|(_, e)| e.value.clone()))
        })
    }

    pub(crate) fn delete(
        &self,
        plugin: &str,
        owner: &str,
        collection: &str,
        key: String,
    ) -> Result<bool, String> {
        self.with(plugin, collection, |c| {
            if c.owned(&key, owner).is_none() {
                return Ok(false);
            }
            let line = Line::Del { key };
            c.append(&line)?;
            Ok(c.apply(line))
        })
    }

    pub(crate) fn list(
        &self,
        plugin: &str,
        owner: &str,
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, String> {
        self.with(plugin, collection, |c| {
            // Start right after `after` through its sequence number, not by scanning: listing
            // pages through a collection one page at a time.
            let after = after.map(|a| c.owned(a, owner).map(|(seq, _)| seq));
            let entries: Box<dyn Iterator<Item = &Entry>> = match (after, newest_first) {
                // An unknown key (or another owner's) has nothing after it.
                (Some(None), _) => return Ok(Vec::new()),
                (Some(Some(seq)), false) => Box::new(c.by_seq.range(seq + 1..).map(|e| e.1)),
                (Some(Some(seq)), true) => Box::new(c.by_seq.range(..seq).rev().map(|e| e.1)),
                (None, false) => Box::new(c.by_seq.values()),
                (None, true) => Box::new(c.by_seq.values().rev()),
            };
            Ok(entries
                .filter(|e| e.owner == owner)
                .take(limit as usize)
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_survive_a_restart_in_order() {
        let dir = std::env::temp_dir().join(format!("cinder-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = DocumentStore::new(Some(dir.clone()));
        for k in ["a", "b", "c"] {
            s.put("p", "me", "col", k.into(), format!("v{k}")).unwrap();
        }
        s.put("p", "me", "col", "a".into(), "v2".into()).unwrap();
        assert!(s.delete("p", "me", "col", "b".into()).unwrap());
        assert!(!s.delete("p", "me", "col", "zz".into()).unwrap());
        // Another plugin's collection of the same name is another collection.
        assert_eq!(s.get("q", "me", "col", "a").unwrap(), None);

        let again = DocumentStore::new(Some(dir.clone()));
        assert_eq!(
            again.get("p", "me", "col", "a").unwrap().as_deref(),
            Some("v2")
        );
        let keys = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(again.list("p", "me", "col", None, 10, false).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            keys(again.list("p", "me", "col", None, 10, true).unwrap()),
            ["c", "a"]
        );
        assert_eq!(
            keys(again.list("p", "me", "col", Some("a"), 10, false).unwrap()),
            ["c"]
        );
        assert_eq!(
            keys(again.list("p", "me", "col", None, 1, false).unwrap()),
            ["a"]
        );
        assert!(
            again
                .put("p", "me", "Bad Name", "k".into(), "v".into())
                .is_err()
        );

        // Another owner sees none of them, cannot page from them, delete or overwrite them.
        assert_eq!(again.get("p", "you", "col", "a").unwrap(), None);
        assert!(
            again
                .list("p", "you", "col", None, 10, false)
                .unwrap()
                .is_empty()
        );
        assert!(
            again
                .list("p", "you", "col", Some("a"), 10, false)
                .unwrap()
                .is_empty()
        );
        assert!(!again.delete("p", "you", "col", "a".into()).unwrap());
        assert!(
            again
                .put("p", "you", "col", "a".into(), "x".into())
                .is_err()
        );
        again
            .put("p", "you", "col", "y".into(), "vy".into())
            .unwrap();
        // Pages of one owner skip the other's documents in between.
        again
            .put("p", "me", "col", "d".into(), "vd".into())
            .unwrap();
        assert_eq!(
            keys(again.list("p", "me", "col", Some("c"), 10, false).unwrap()),
            ["d"]
        );
        assert_eq!(
            keys(again.list("p", "you", "col", None, 10, true).unwrap()),
            ["y"]
        );
        // Lines written before owners were recorded belong to the local owner.
        let old = dir.join("p").join("old.jsonl");
        std::fs::write(&old, "{\"op\":\"put\",\"key\":\"k\",\"value\":\"v\"}\n").unwrap();
        let third = DocumentStore::new(Some(dir.clone()));
        assert_eq!(
            third.get("p", LOCAL_OWNER, "old", "k").unwrap().as_deref(),
            Some("v")
        );
        assert_eq!(third.get("p", "me", "old", "k").unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
