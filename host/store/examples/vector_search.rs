//! Vector search at scale, in the store alone: `N` (default 100 000) random vectors of 384
//! dimensions (all-MiniLM-L6-v2's size) upserted into one index in calls of 1024, then 200
//! searches for the top 10 timed (the first loads the index's copy into memory), over all
//! entries and over a tenth of them (a group filter). A scan's cost does not depend on what
//! the vectors say, so random ones measure it.
//!
//! `cargo run --release -p cinder-store --example vector_search [N] [--postgres URL]`

use std::time::Instant;

use cinder_store::{IndexKey, Store, VectorEntry};

const DIMS: usize = 384;

fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let url = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let dir = std::env::temp_dir().join(format!("cinder-vector-bench-{}", std::process::id()));
    let store = Store::open(&dir, url.as_deref()).await?;
    let key = IndexKey {
        space: "vector_chunks",
        owner: "bench",
        index: "vs_bench",
    };
    store.drop_vector_index(key).await?;
    let started = Instant::now();
    let ids: Vec<u64> = (0..n as u64).collect();
    for part in ids.chunks(1024) {
        let entries = part
            .iter()
            .map(|&i| VectorEntry {
                id: format!("file-{}.{i}", i % 1000),
                group: format!("file-{}", i % 10),
                vector: vector(i),
                payload: format!("{{\"text\": \"chunk {i}\"}}"),
            })
            .collect();
        store.upsert_vectors(key, entries).await?;
    }
    let upsert_s = started.elapsed().as_secs_f64();
    let rss_before = rss_mib();
    let t = Instant::now();
    store
        .search_vectors(key, &vector(u64::MAX), 10, None)
        .await?;
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    let one_group = ["file-3".to_string()];
    let mut all = Vec::new();
    let mut filtered = Vec::new();
    for q in 0..200u64 {
        let query = vector(1 << 40 | q);
        let t = Instant::now();
        let hits = store.search_vectors(key, &query, 10, None).await?;
        all.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(hits.len(), 10);
        let t = Instant::now();
        store
            .search_vectors(key, &query, 10, Some(&one_group))
            .await?;
        filtered.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    all.sort_by(f64::total_cmp);
    filtered.sort_by(f64::total_cmp);
    println!(
        "{n} vectors of {DIMS} on {}: upsert {:.0} entries/s ({upsert_s:.1} s); first search \
         (loads the copy) {first_ms:.0} ms; search top 10: p50 {:.2} ms, p95 {:.2} ms; a tenth \
         of the groups: p50 {:.2} ms, p95 {:.2} ms; RSS {:.0} MiB before the copy, {:.0} after",
        if url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        n as f64 / upsert_s,
        percentile(&all, 0.5),
        percentile(&all, 0.95),
        percentile(&filtered, 0.5),
        percentile(&filtered, 0.95),
        rss_before,
        rss_mib(),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
