//! Vector indexes on both databases: exact search against a brute-force reference, groups
//! removed and searched by, replacement by id, owners apart, a second replica seeing writes
//! (its in-memory copy reloaded when the index's version moves), and bad vectors refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cinder_store::{IndexKey, StoreError, VectorEntry};
use support::Place;

cases!(
    search_is_exact_and_groups_filter_it,
    writes_replace_remove_and_stay_with_their_owner,
    a_second_replica_sees_every_write,
    bad_vectors_are_refused_and_nothing_is_half_written,
);

fn key<'a>(owner: &'a str, index: &'a str) -> IndexKey<'a> {
    IndexKey {
        space: "vector_chunks",
        owner,
        index,
    }
}

/// A deterministic pseudo-random vector.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..dims)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect()
}

fn entry(id: &str, group: &str, v: Vec<f32>) -> VectorEntry {
    VectorEntry {
        id: id.into(),
        group: group.into(),
        vector: v,
        payload: format!("{{\"text\": \"{id}\"}}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

async fn search_is_exact_and_groups_filter_it(place: Place) {
    let store = place.open().await;
    let dims = 24;
    let entries: Vec<VectorEntry> = (0..300)
        .map(|i| {
            entry(
                &format!("c{i}"),
                if i % 3 == 0 { "file-a" } else { "file-b" },
                vector(i, dims),
            )
        })
        .collect();
    for part in entries.chunks(128) {
        store
            .upsert_vectors(key("alice", "vs_1"), part.to_vec())
            .await
            .unwrap();
    }
    assert_eq!(
        store.count_vectors(key("alice", "vs_1")).await.unwrap(),
        300
    );
    for q in 1000..1005 {
        let query = vector(q, dims);
        let mut want: Vec<(f64, &str)> = entries
            .iter()
            .map(|e| (cosine(&query, &e.vector), e.id.as_str()))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hits = store
            .search_vectors(key("alice", "vs_1"), &query, 10, None)
            .await
            .unwrap();
        let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        let expected: Vec<&str> = want[..10].iter().map(|w| w.1).collect();
        assert_eq!(got, expected, "the exact top 10");
        for (h, w) in hits.iter().zip(&want) {
            assert!((f64::from(h.score) - w.0).abs() < 1e-5);
            assert_eq!(h.payload, format!("{{\"text\": \"{}\"}}", h.id));
        }
        let only_a = ["file-a".to_string()];
        let hits = store
            .search_vectors(key("alice", "vs_1"), &query, 5, Some(&only_a))
            .await
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.group == "file-a"));
        let expected: Vec<&str> = want
            .iter()
            .filter(|w| w.1[1..].parse::<u64>().unwrap() % 3 == 0)
            .take(5)
            .map(|w| w.1)
            .collect();
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            expected
        );
    }
    // No such index, or no such group: nothing, not an error.
    let q = vector(1, dims);
    assert!(
        store
            .search_vectors(key("alice", "vs_none"), &q, 3, None)
            .await
            .unwrap()
            .is_empty()
    );
    let none = ["file-z".to_string()];
    assert!(
        store
            .search_vectors(key("alice", "vs_1"), &q, 3, Some(&none))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn writes_replace_remove_and_stay_with_their_owner(place: Place) {
    let store = place.open().await;
    let k = key("alice", "vs_2");
    store
        .upsert_vectors(
            k,
            vec![
                entry("x", "f1", vec![1.0, 0.0]),
                entry("y", "f2", vec![0.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    let top = |hits: Vec<cinder_store::VectorHit>| hits[0].id.clone();
    assert_eq!(
        top(store.search_vectors(k, &[0.1, 1.0], 1, None).await.unwrap()),
        "y"
    );
    // The same id again replaces the entry (its vector, group and payload).
    store
        .upsert_vectors(k, vec![entry("x", "f1", vec![0.0, 3.0])])
        .await
        .unwrap();
    assert_eq!(store.count_vectors(k).await.unwrap(), 2);
    let hits = store.search_vectors(k, &[0.0, 1.0], 2, None).await.unwrap();
    assert!((hits[0].score - 1.0).abs() < 1e-6 && (hits[1].score - 1.0).abs() < 1e-6);
    // Another owner sees nothing of alice's, even under the same names.
    assert!(
        store
            .search_vectors(key("bob", "vs_2"), &[0.0, 1.0], 2, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .remove_vector_group(key("bob", "vs_2"), "f1")
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.remove_vector_group(k, "f1").await.unwrap(), 1);
    let hits = store.search_vectors(k, &[0.0, 1.0], 2, None).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["y"]
    );
    assert_eq!(store.drop_vector_index(k).await.unwrap(), 1);
    assert_eq!(store.count_vectors(k).await.unwrap(), 0);
    assert!(
        store
            .search_vectors(k, &[0.0, 1.0], 2, None)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_second_replica_sees_every_write(place: Place) {
    let a = place.open().await;
    let b = place.open().await;
    let k = key("alice", "vs_3");
    a.upsert_vectors(k, vec![entry("x", "f1", vec![1.0, 0.0])])
        .await
        .unwrap();
    // b loads its copy now; a's later writes move the version, and b loads again.
    assert_eq!(
        b.search_vectors(k, &[1.0, 0.0], 5, None)
            .await
            .unwrap()
            .len(),
        1
    );
    a.upsert_vectors(k, vec![entry("y", "f2", vec![0.0, 1.0])])
        .await
        .unwrap();
    let hits = b.search_vectors(k, &[0.0, 1.0], 5, None).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["y", "x"]
    );
    a.remove_vector_group(k, "f2").await.unwrap();
    assert_eq!(
        b.search_vectors(k, &[0.0, 1.0], 5, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn bad_vectors_are_refused_and_nothing_is_half_written(place: Place) {
    let store = place.open().await;
    let k = key("alice", "vs_4");
    store
        .upsert_vectors(k, vec![entry("x", "f", vec![1.0, 0.0, 0.0])])
        .await
        .unwrap();
    for bad in [
        vec![
            entry("y", "f", vec![1.0, 2.0, 3.0]),
            entry("z", "f", vec![1.0, 0.0]),
        ],
        vec![entry("y", "f", vec![0.0, 0.0, 0.0])],
        vec![entry("y", "f", vec![f32::INFINITY, 0.0, 0.0])],
        vec![entry("y\0", "f", vec![1.0, 0.0, 0.0])],
    ] {
        let e = store.upsert_vectors(k, bad).await.unwrap_err();
        assert!(
            matches!(e, StoreError::BadVector(_) | StoreError::NulCharacter(_)),
            "{e}"
        );
    }
    assert_eq!(
        store.count_vectors(k).await.unwrap(),
        1,
        "a refused upsert writes nothing"
    );
    for (query, kk) in [
        (vec![1.0, 0.0], 1),
        (vec![0.0; 3], 1),
        (vec![1.0, 0.0, 0.0], 0),
        (vec![1.0, 0.0, 0.0], 101),
    ] {
        let e = store.search_vectors(k, &query, kk, None).await.unwrap_err();
        assert!(matches!(e, StoreError::BadVector(_)), "{e}");
    }
}
