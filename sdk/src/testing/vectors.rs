//! The `vectors` import, faked over the fake store: entries kept in memory, searched exactly
//! by cosine similarity, with the host's limits on names, lengths and `k`.

use super::FakeHost;
use crate::Error;
use crate::host::Vectors;
use crate::vectors::{Entry, Hit};

fn bad(message: String, field: &str) -> Error {
    crate::invalid_request(&message, Some(field))
}

fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (n.is_finite() && n > 0.0).then(|| v.iter().map(|x| (f64::from(*x) / n) as f32).collect())
}

impl FakeHost {
    fn index_dims(&self, space: &str, index: &str) -> Option<usize> {
        self.store.with_vectors(|all| {
            all.iter()
                .find(|((s, i), _)| s == space && i == index)
                .map(|(_, e)| e.vector.len())
        })
    }
}

impl Vectors for FakeHost {
    fn upsert_vectors(&self, space: &str, index: &str, entries: &[Entry]) -> Result<(), Error> {
        if entries.len() > 1024 {
            return Err(bad("at most 1024 entries per upsert".into(), "entries"));
        }
        let dims = self
            .index_dims(space, index)
            .or(entries.first().map(|e| e.vector.len()));
        let mut kept = Vec::new();
        for e in entries {
            if Some(e.vector.len()) != dims {
                return Err(bad(format!("`{}` has another length", e.id), "entries"));
            }
            let vector = unit(&e.vector)
                .ok_or_else(|| bad(format!("`{}` is all zeros or not finite", e.id), "entries"))?;
            kept.push(Entry {
                vector,
                ..e.clone()
            });
        }
        self.store.with_vectors(|all| {
            for e in kept {
                let key = (space.to_owned(), index.to_owned());
                match all.iter_mut().find(|(k, old)| *k == key && old.id == e.id) {
                    Some(slot) => slot.1 = e,
                    None => all.push((key, e)),
                }
            }
        });
        Ok(())
    }

    fn remove_vector_group(&self, space: &str, index: &str, group: &str) -> Result<u64, Error> {
        Ok(self.store.with_vectors(|all| {
            let before = all.len();
            all.retain(|((s, i), e)| !(s == space && i == index && e.group == group));
            (before - all.len()) as u64
        }))
    }

    fn drop_vector_index(&self, space: &str, index: &str) -> Result<u64, Error> {
        Ok(self.store.with_vectors(|all| {
            let before = all.len();
            all.retain(|((s, i), _)| !(s == space && i == index));
            (before - all.len()) as u64
        }))
    }

    fn count_vectors(&self, space: &str, index: &str) -> Result<u64, Error> {
        Ok(self.store.with_vectors(|all| {
            all.iter()
                .filter(|((s, i), _)| s == space && i == index)
                .count() as u64
        }))
    }

    fn search_vectors(
        &self,
        space: &str,
        index: &str,
        query: &[f32],
        k: u32,
        groups: Option<&[String]>,
    ) -> Result<Vec<Hit>, Error> {
        if !(1..=100).contains(&k) {
            return Err(bad("k is 1 to 100".into(), "k"));
        }
        let Some(dims) = self.index_dims(space, index) else {
            return Ok(Vec::new());
        };
        if query.len() != dims {
            return Err(bad(
                format!("the index's vectors have {dims} numbers"),
                "query",
            ));
        }
        let q = unit(query).ok_or_else(|| bad("the query is all zeros".into(), "query"))?;
        let mut hits: Vec<Hit> = self.store.with_vectors(|all| {
            all.iter()
                .filter(|((s, i), e)| {
                    s == space && i == index && groups.is_none_or(|g| g.contains(&e.group))
                })
                .map(|(_, e)| Hit {
                    id: e.id.clone(),
                    group: e.group.clone(),
                    score: e.vector.iter().zip(&q).map(|(a, b)| a * b).sum(),
                    payload: e.payload.clone(),
                })
                .collect()
        });
        // Stable: equal scores keep their first-write order, as the host's scan does.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k as usize);
        Ok(hits)
    }
}
