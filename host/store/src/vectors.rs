//! Vector indexes: entries (an id, a group, a unit-length vector and a payload) kept in the
//! database, searched exactly (cosine similarity over every vector of the index, or of the
//! groups asked for) from an in-memory copy of the index's vectors.
//!
//! Why exact: at the sizes a vector store reaches here (100k chunks of 384 dimensions is
//! 150 MB of f32), one pass over the copy takes milliseconds, every answer is the true
//! top-k (recall 1 by construction, nothing to tune), and writes cost one row each. The
//! copy is per index, loaded on the first search and again whenever the index's version has
//! moved (any replica's write bumps it), so replicas on one PostgreSQL agree.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use sqlx::Row;

use crate::{Store, StoreError};

/// Entries one upsert takes at most.
pub const MAX_UPSERT: usize = 1024;
/// Results one search returns at most.
pub const MAX_K: usize = 100;
/// The longest vector kept.
pub const MAX_DIMS: usize = 8192;
/// The largest payload kept, in bytes.
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Floats the in-memory copies hold together before older indexes are dropped from memory.
const CACHE_FLOATS: usize = 256 << 20;

/// Which index: its space (a collection name), owner and name.
#[derive(Debug, Clone, Copy)]
pub struct IndexKey<'a> {
    pub space: &'a str,
    pub owner: &'a str,
    pub index: &'a str,
}

/// One vector with what it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorEntry {
    pub id: String,
    pub group: String,
    pub vector: Vec<f32>,
    pub payload: String,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub id: String,
    pub group: String,
    /// Cosine similarity to the query.
    pub score: f32,
    pub payload: String,
}

/// An index's vectors in memory, as of `version`.
struct Loaded {
    version: i64,
    dims: usize,
    ids: Vec<String>,
    /// Each entry's group, as an index into `group_names`.
    groups: Vec<u32>,
    group_names: Vec<String>,
    /// Row-major, `dims` floats per entry, each row of unit length.
    data: Vec<f32>,
}

/// The in-memory copies, by (owner, space, index).
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<(String, String, String), Arc<Loaded>>>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vector cache")
    }
}

fn cache_key(key: IndexKey<'_>) -> (String, String, String) {
    (key.owner.into(), key.space.into(), key.index.into())
}

/// `v` at unit length, or `None` if it has no direction (all zeros) or is not finite.
fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    (norm.is_finite() && norm > 0.0)
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Dot product with eight running sums, so the compiler keeps them in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A candidate in the top-k heap: the smallest score on top, so it is the one replaced.
#[derive(PartialEq)]
struct Candidate(f32, usize);

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap. Equal scores: the later entry ranks lower.
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

/// The `k` rows of `loaded` most similar to `query` among `allowed` groups: (row, score),
/// best first.
fn scan(
    loaded: &Loaded,
    query: &[f32],
    k: usize,
    allowed: Option<&HashSet<u32>>,
) -> Vec<(usize, f32)> {
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (row, v) in loaded.data.chunks_exact(loaded.dims).enumerate() {
        if allowed.is_some_and(|a| !a.contains(&loaded.groups[row])) {
            continue;
        }
        let score = dot(query, v);
        if heap.len() < k {
            heap.push(Candidate(score, row));
        } else if heap.peek().is_some_and(|worst| score > worst.0) {
            heap.pop();
            heap.push(Candidate(score, row));
        }
    }
    let mut best: Vec<(usize, f32)> = heap.into_iter().map(|c| (c.1, c.0)).collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    best
}

impl Store {
    /// Adds or replaces `entries` in the index `key` (created by its first entries, whose
    /// length every later vector must have). Vectors are kept at unit length.
    pub async fn upsert_vectors(
        &self,
        key: IndexKey<'_>,
        entries: Vec<VectorEntry>,
    ) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if entries.len() > MAX_UPSERT {
            return Err(StoreError::BadVector(format!(
                "at most {MAX_UPSERT} entries per upsert"
            )));
        }
        let dims = first.vector.len();
        if dims == 0 || dims > MAX_DIMS {
            return Err(StoreError::BadVector(format!(
                "a vector has 1 to {MAX_DIMS} numbers"
            )));
        }
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            if e.payload.len() > MAX_PAYLOAD {
                return Err(StoreError::BadVector(format!(
                    "a payload is at most {MAX_PAYLOAD} bytes"
                )));
            }
            for text in [&e.id, &e.group, &e.payload] {
                if text.contains('\0') {
                    return Err(StoreError::NulCharacter("vector entry"));
                }
            }
            let v = unit(&e.vector).ok_or_else(|| {
                StoreError::BadVector(format!(
                    "the vector of `{}` is all zeros or not finite",
                    e.id
                ))
            })?;
            rows.push((e.id, e.group, to_bytes(&v), e.payload, e.vector.len()));
        }
        let mut tx = self.pool.begin().await?;
        let q = self.sql(
            "INSERT INTO vector_indexes (owner, space, idx, dims, version) VALUES (?, ?, ?, ?, 0) \
             ON CONFLICT (owner, space, idx) DO NOTHING",
        );
        sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .bind(dims as i64)
            .execute(&mut *tx)
            .await?;
        // Taking the row's lock first: concurrent writers of one index queue here.
        let q = self.sql(
            "UPDATE vector_indexes SET version = version + 1 WHERE owner = ? AND space = ? AND idx = ? RETURNING dims",
        );
        let row = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .fetch_one(&mut *tx)
            .await?;
        let want: i64 = row.try_get("dims")?;
        let q = self.sql(
            "INSERT INTO vectors (owner, space, idx, id, grp, vec, payload) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (owner, space, idx, id) DO UPDATE SET grp = excluded.grp, vec = excluded.vec, payload = excluded.payload",
        );
        for (id, group, bytes, payload, len) in rows {
            if len as i64 != want {
                return Err(StoreError::BadVector(format!(
                    "the index's vectors have {want} numbers; `{id}`'s has {len}"
                )));
            }
            sqlx::query(q.clone())
                .bind(key.owner)
                .bind(key.space)
                .bind(key.index)
                .bind(id)
                .bind(group)
                .bind(bytes)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the entries of `group`; how many there were.
    pub async fn remove_vector_group(
        &self,
        key: IndexKey<'_>,
        group: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = self.sql(
            "UPDATE vector_indexes SET version = version + 1 WHERE owner = ? AND space = ? AND idx = ?",
        );
        let exists = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if exists == 0 {
            return Ok(0);
        }
        let q =
            self.sql("DELETE FROM vectors WHERE owner = ? AND space = ? AND idx = ? AND grp = ?");
        let n = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .bind(group)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Removes the index and its entries; how many entries there were.
    pub async fn drop_vector_index(&self, key: IndexKey<'_>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = self.sql("DELETE FROM vector_indexes WHERE owner = ? AND space = ? AND idx = ?");
        sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .execute(&mut *tx)
            .await?;
        let q = self.sql("DELETE FROM vectors WHERE owner = ? AND space = ? AND idx = ?");
        let n = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if let Ok(mut cache) = self.vectors.0.lock() {
            cache.remove(&cache_key(key));
        }
        Ok(n)
    }

    /// How many entries the index holds.
    pub async fn count_vectors(&self, key: IndexKey<'_>) -> Result<u64, StoreError> {
        let q =
            self.sql("SELECT COUNT(*) AS n FROM vectors WHERE owner = ? AND space = ? AND idx = ?");
        let row = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as u64)
    }

    /// The `k` entries most similar to `query`, best first, among the entries of `groups`
    /// (`None`: all). An index that does not exist has none.
    pub async fn search_vectors(
        &self,
        key: IndexKey<'_>,
        query: &[f32],
        k: usize,
        groups: Option<&[String]>,
    ) -> Result<Vec<VectorHit>, StoreError> {
        if k == 0 || k > MAX_K {
            return Err(StoreError::BadVector(format!("k is 1 to {MAX_K}")));
        }
        let Some(loaded) = self.loaded(key).await? else {
            return Ok(Vec::new());
        };
        if query.len() != loaded.dims {
            return Err(StoreError::BadVector(format!(
                "the index's vectors have {} numbers; the query has {}",
                loaded.dims,
                query.len()
            )));
        }
        let query = unit(query).ok_or_else(|| {
            StoreError::BadVector("the query vector is all zeros or not finite".into())
        })?;
        let allowed: Option<HashSet<u32>> = groups.map(|gs| {
            let wanted: HashSet<&str> = gs.iter().map(String::as_str).collect();
            (0..loaded.group_names.len() as u32)
                .filter(|&g| wanted.contains(loaded.group_names[g as usize].as_str()))
                .collect()
        });
        // A pass over a large index is milliseconds of CPU: off the async workers.
        let scanned = Arc::clone(&loaded);
        let best = tokio::task::spawn_blocking(move || scan(&scanned, &query, k, allowed.as_ref()))
            .await
            .map_err(|e| StoreError::SearchStopped(e.to_string()))?;
        if best.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; best.len()].join(", ");
        let q = self.sql(&format!(
            "SELECT id, payload FROM vectors WHERE owner = ? AND space = ? AND idx = ? AND id IN ({marks})"
        ));
        let mut select = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index);
        for (row, _) in &best {
            select = select.bind(loaded.ids[*row].clone());
        }
        let mut payloads: HashMap<String, String> = HashMap::new();
        for r in select.fetch_all(&self.pool).await? {
            payloads.insert(r.try_get("id")?, r.try_get("payload")?);
        }
        // An entry removed since the copy was made is left out.
        Ok(best
            .into_iter()
            .filter_map(|(row, score)| {
                let id = &loaded.ids[row];
                payloads.remove(id).map(|payload| VectorHit {
                    id: id.clone(),
                    group: loaded.group_names[loaded.groups[row] as usize].clone(),
                    score,
                    payload,
                })
            })
            .collect())
    }

    /// The index's vectors in memory, loaded again if its version moved; `None` if it does
    /// not exist.
    async fn loaded(&self, key: IndexKey<'_>) -> Result<Option<Arc<Loaded>>, StoreError> {
        let q = self.sql(
            "SELECT dims, version FROM vector_indexes WHERE owner = ? AND space = ? AND idx = ?",
        );
        let Some(row) = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let dims: i64 = row.try_get("dims")?;
        let version: i64 = row.try_get("version")?;
        let ck = cache_key(key);
        if let Ok(cache) = self.vectors.0.lock()
            && let Some(l) = cache.get(&ck)
            && l.version == version
        {
            return Ok(Some(Arc::clone(l)));
        }
        // Read after the version: the rows are at least that new (a later write only makes
        // the next search load again).
        let q =
            self.sql("SELECT id, grp, vec FROM vectors WHERE owner = ? AND space = ? AND idx = ?");
        let dims = dims as usize;
        let mut loaded = Loaded {
            version,
            dims,
            ids: Vec::new(),
            groups: Vec::new(),
            group_names: Vec::new(),
            data: Vec::new(),
        };
        let mut group_of: HashMap<String, u32> = HashMap::new();
        // Row by row: the rows of a large index never sit in memory beside its copy.
        let mut rows = sqlx::query(q)
            .bind(key.owner)
            .bind(key.space)
            .bind(key.index)
            .fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let id: String = r.try_get("id")?;
            let bytes: Vec<u8> = r.try_get("vec")?;
            if bytes.len() != dims * 4 {
                return Err(StoreError::Corrupt {
                    id,
                    reason: format!(
                        "a vector of {} bytes in an index of {dims} numbers",
                        bytes.len()
                    ),
                });
            }
            let group: String = r.try_get("grp")?;
            let next = group_of.len() as u32;
            let g = *group_of.entry(group.clone()).or_insert_with(|| {
                loaded.group_names.push(group);
                next
            });
            loaded.ids.push(id);
            loaded.groups.push(g);
            loaded.data.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        let loaded = Arc::new(loaded);
        if let Ok(mut cache) = self.vectors.0.lock() {
            let held: usize = cache.values().map(|l| l.data.len()).sum();
            if held + loaded.data.len() > CACHE_FLOATS {
                cache.clear();
            }
            cache.insert(ck, Arc::clone(&loaded));
        }
        Ok(Some(loaded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_keeps_the_best_k_in_order_and_respects_groups() {
        let rows: [[f32; 2]; 4] = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]];
        let loaded = Loaded {
            version: 1,
            dims: 2,
            ids: (0..4).map(|i| i.to_string()).collect(),
            groups: vec![0, 1, 0, 1],
            group_names: vec!["a".into(), "b".into()],
            data: rows.iter().flatten().copied().collect(),
        };
        let q = [1.0, 0.0];
        let best = scan(&loaded, &q, 2, None);
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 3]);
        let only_b: HashSet<u32> = [1].into();
        let best = scan(&loaded, &q, 3, Some(&only_b));
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), [3, 1]);
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [1, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
        assert!(unit(&[0.0, 0.0]).is_none());
        assert!(unit(&[f32::NAN, 1.0]).is_none());
    }
}
