//! Durable documents for plugins (WIT `documents`): one append-only log per plugin and
//! collection, `<dir>/<plugin id>/<collection>.jsonl`, one JSON line per write or delete,
//! synced before the call returns. A collection is replayed into memory the first time it is
//! used; after that reads come from memory. Without a folder (tests), documents live in
//! memory only.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const MAX_VALUE: usize = 4 << 20;
const MAX_KEY: usize = 256;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Put { key: String, value: String },
    Del { key: String },
}

#[derive(Default)]
struct Collection {
    /// Listing order: the sequence number of each key's first write.
    by_seq: BTreeMap<u64, (String, String)>,
    seq_of: HashMap<String, u64>,
    next: u64,
    log: Option<File>,
}

impl Collection {
    fn apply(&mut self, line: Line) -> bool {
        match line {
            Line::Put { key, value } => {
                let seq = *self.seq_of.entry(key.clone()).or_insert_with(|| {
                    self.next += 1;
                    self.next
                });
                self.by_seq.insert(seq, (key, value));
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
            let line = Line::Put { key, value };
            c.append(&line)?;
            c.apply(line);
            Ok(())
        })
    }

    pub(crate) fn get(
        &self,
        plugin: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        self.with(plugin, collection, |c| {
            Ok(c.seq_of
                .get(key)
                .and_then(|s| c.by_seq.get(s))
                .map(|(_, v)| v.clone()))
        })
    }

    pub(crate) fn delete(
        &self,
        plugin: &str,
        collection: &str,
        key: String,
    ) -> Result<bool, String> {
        self.with(plugin, collection, |c| {
            if !c.seq_of.contains_key(&key) {
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
        collection: &str,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<(String, String)>, String> {
        self.with(plugin, collection, |c| {
            // Start right after `after` through its sequence number, not by scanning: listing
            // pages through a collection one page at a time.
            let entries: Box<dyn Iterator<Item = &(String, String)>> =
                match (after.map(|a| c.seq_of.get(a)), newest_first) {
                    // An unknown key has nothing after it.
                    (Some(None), _) => return Ok(Vec::new()),
                    (Some(Some(&seq)), false) => Box::new(c.by_seq.range(seq + 1..).map(|e| e.1)),
                    (Some(Some(&seq)), true) => Box::new(c.by_seq.range(..seq).rev().map(|e| e.1)),
                    (None, false) => Box::new(c.by_seq.values()),
                    (None, true) => Box::new(c.by_seq.values().rev()),
                };
            Ok(entries.take(limit as usize).cloned().collect())
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
            s.put("p", "col", k.into(), format!("v{k}")).unwrap();
        }
        s.put("p", "col", "a".into(), "v2".into()).unwrap();
        assert!(s.delete("p", "col", "b".into()).unwrap());
        assert!(!s.delete("p", "col", "zz".into()).unwrap());
        // Another plugin's collection of the same name is another collection.
        assert_eq!(s.get("q", "col", "a").unwrap(), None);

        let again = DocumentStore::new(Some(dir.clone()));
        assert_eq!(again.get("p", "col", "a").unwrap().as_deref(), Some("v2"));
        let keys = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(again.list("p", "col", None, 10, false).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            keys(again.list("p", "col", None, 10, true).unwrap()),
            ["c", "a"]
        );
        assert_eq!(
            keys(again.list("p", "col", Some("a"), 10, false).unwrap()),
            ["c"]
        );
        assert_eq!(keys(again.list("p", "col", None, 1, false).unwrap()), ["a"]);
        assert!(again.put("p", "Bad Name", "k".into(), "v".into()).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
