//! Micro-benchmarks of the CPU path's kernels on the default model's real weights: the
//! quantized matmul at decode (1 row), batched-decode (16 rows) and prefill (512 rows) shapes,
//! for a Q4_1 FFN matrix and the Q8_0 output head, and one whole decode step (30 layers and
//! the head) after a 64-token prompt, alone (and per decoder layer: the step without the
//! head, divided by the layers) and as 16 sequences in one batch; with 1 and 2 threads.
//! Medians of repeated runs. `kernels types`: the matmul of every GGUF tensor type as the CPU
//! path keeps it (a table per type); `kernels memory`: one row times a matrix far past the
//! caches per type, beside the bound the measured memory bandwidth sets.
//!
//! `cargo xtask fetch-models`, then `cargo run --release --example kernels [types]`;
//! `CINDER_KERNELS_MODEL=FILE` runs the `batched` and `decode` modes on another GGUF;
//! `--avx2` (after the mode) leaves the AVX-512 kernels unused, as on an AVX2-only machine;
//! `--q8` lays the matrices out for products on 8-bit activations (`activations = "q8"`) in
//! the `types`, `batched` and `decode` modes.

// Test and benchmark code: a panic here is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cinder_core::quant::QMatrix;
use cinder_core::{BackendPreference, Gguf, Llama};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// What the matrices are multiplied with: `--q8` for 8-bit activations.
fn acts() -> cinder_core::quant::Activations {
    match std::env::args().any(|a| a == "--q8") {
        true => cinder_core::quant::Activations::Q8,
        false => cinder_core::quant::Activations::F32,
    }
}

fn main() {
    if acts() == cinder_core::quant::Activations::Q8 {
        println!(
            "(8-bit activations; integer kernels here: {})",
            cinder_core::quant::q8_products_available()
        );
    }
    // `--avx2` (last): only what an AVX2-only machine has, in any mode.
    if std::env::args().any(|a| a == "--avx2") {
        cinder_core::quant::avx2_only(true);
        println!("(AVX2 kernels only)");
    }
    // `CINDER_KERNELS_MODEL=FILE`: the `batched` and `decode` modes on another GGUF.
    let path = std::env::var_os("CINDER_KERNELS_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(common::smollm2_path);
    let gguf = Gguf::open(&path).expect("model file");
    // `kernels batched`: only 16-sequence decode steps, long enough to profile.
    if std::env::args().nth(1).as_deref() == Some("batched") {
        let (model, _) =
            Llama::load_as(&gguf, BackendPreference::Cpu, 2, acts(), |_, _| {}).expect("model");
        // `STEPS=N`: fewer steps (a profile of a larger model).
        let steps = std::env::var("STEPS").ok().and_then(|s| s.parse().ok());
        let d = batched_step(&model, steps.unwrap_or(400));
        println!("{:.2} ms per 16-sequence step", d.as_secs_f64() * 1e3);
        return;
    }
    // `kernels decode`: only decode steps, long enough to profile (`perf record`).
    if std::env::args().nth(1).as_deref() == Some("decode") {
        let (model, _) =
            Llama::load_as(&gguf, BackendPreference::Cpu, 2, acts(), |_, _| {}).expect("model");
        // `kernels decode q8`: with activations rounded to 8 bits.
        model.set_q8_decode(std::env::args().nth(2).as_deref() == Some("q8"));
        let mut cache = model.new_cache();
        model
            .forward(&[100, 101, 102], &mut cache)
            .expect("prefill");
        let t = Instant::now();
        for k in 0..500 {
            model.forward(&[200 + k], &mut cache).expect("decode");
        }
        println!("{:.2} ms per decode step", t.elapsed().as_secs_f64() * 2.0);
        return;
    }
    // `kernels types`: the matmul of every GGUF tensor type as the CPU path keeps it.
    if std::env::args().nth(1).as_deref() == Some("types") {
        types_table();
        return;
    }
    // `kernels memory`: one row (decode) times a matrix far larger than the caches, per
    // type, beside the bound memory bandwidth sets.
    if std::env::args().nth(1).as_deref() == Some("memory") {
        memory_table();
        return;
    }
    let matrices = [
        (
            "ffn_up",
            QMatrix::from_gguf_as(&gguf, "blk.0.ffn_up.weight", acts()),
        ),
        (
            "ffn_down",
            QMatrix::from_gguf_as(&gguf, "blk.0.ffn_down.weight", acts()),
        ),
        (
            "head",
            QMatrix::from_gguf_as(&gguf, "token_embd.weight", acts()),
        ),
    ];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        println!("== {threads} thread(s)");
        let mut head_decode = Duration::ZERO;
        for (name, w) in &matrices {
            let w = w.as_ref().expect("matrix");
            for m in [1usize, 2, 4, 8, 16, 32, 64, 512] {
                if m == 512 && w.rows() > 10_000 {
                    continue;
                }
                let x: Vec<f32> = (0..m * w.cols())
                    .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                    .collect();
                let mut out = vec![0f32; m * w.rows()];
                let runs = if m == 512 { 5 } else { 50 };
                let d = pool.install(|| time(runs, || w.matmul(&x, m, &mut out)));
                if m == 1 && name.starts_with("head") {
                    head_decode = d;
                }
                let gflops = 2.0 * (m * w.rows() * w.cols()) as f64 / d.as_secs_f64() / 1e9;
                // One row again with 8-bit activations.
                let q8 = if m == 1 {
                    w.set_q8_decode(true);
                    let q = pool.install(|| time(runs, || w.matmul(&x, m, &mut out)));
                    w.set_q8_decode(false);
                    format!(" (8-bit activations: {:9.1} µs)", q.as_secs_f64() * 1e6)
                } else {
                    String::new()
                };
                let shape = format!("{name} {}x{}", w.rows(), w.cols());
                println!(
                    "{shape:24} m={m:3}: {:9.1} µs  {gflops:6.1} GFLOP/s{q8}",
                    d.as_secs_f64() * 1e6
                );
            }
        }
        let (model, _) =
            Llama::load(&gguf, BackendPreference::Cpu, threads, |_, _| {}).expect("model");
        let prompt: Vec<u32> = (0..64).map(|i| 100 + i).collect();
        let mut steps = Vec::new();
        for _ in 0..5 {
            let mut cache = model.new_cache();
            model.forward(&prompt, &mut cache).expect("prefill");
            let t = Instant::now();
            for k in 0..32 {
                model.forward(&[200 + k], &mut cache).expect("decode");
            }
            steps.push(t.elapsed() / 32);
        }
        let step = median(steps);
        println!(
            "decode step (every layer + head, 64-96 positions): {:.2} ms = {:.1} tokens/s",
            step.as_secs_f64() * 1e3,
            1.0 / step.as_secs_f64()
        );
        // One decoder layer: the step without the output head, per layer.
        let layers = model.config().n_layers as u32;
        println!(
            "one decoder layer at decode (step minus head, per layer): {:.1} µs",
            step.saturating_sub(head_decode).as_secs_f64() * 1e6 / f64::from(layers)
        );
        let step = batched_step(&model, 32);
        println!(
            "batched decode step, 16 sequences: {:.2} ms = {:.1} tokens/s",
            step.as_secs_f64() * 1e3,
            16.0 / step.as_secs_f64()
        );
        let t = Instant::now();
        let mut cache = model.new_cache();
        let long: Vec<u32> = (0..512).map(|i| 100 + (i % 1000)).collect();
        model.forward(&long, &mut cache).expect("prefill");
        let d = t.elapsed();
        println!(
            "prefill 512 tokens: {:.0} ms = {:.0} tokens/s",
            d.as_secs_f64() * 1e3,
            512.0 / d.as_secs_f64()
        );
    }
}

/// GFLOP/s of each GGUF tensor type's matmul as the CPU path keeps it (Q4_0/Q4_K as Q4_1,
/// Q5_0 as Q8_0, Q6_K/Q3_K as Q8x16, the rest as f32), on a 640 × 2048 matrix (Gemma 3
/// 270M's `ffn_down`) filled with the fixture blocks of `tests/fixtures/quants`, at 1, 8 and
/// 16 activation rows; 1 and 2 threads.
/// Every GGUF tensor type the CPU path keeps, with its fixture's name.
const TYPES: [(cinder_core::GgmlType, &str); 12] = {
    use cinder_core::GgmlType as T;
    [
        (T::Q4_0, "q4_0"),
        (T::Q4_1, "q4_1"),
        (T::Q5_0, "q5_0"),
        (T::Q5_1, "q5_1"),
        (T::Q8_0, "q8_0"),
        (T::Q2_K, "q2_k"),
        (T::Q3_K, "q3_k"),
        (T::Q4_K, "q4_k"),
        (T::Q5_K, "q5_k"),
        (T::Q6_K, "q6_k"),
        (T::F16, "f16"),
        (T::BF16, "bf16"),
    ]
};

/// A `rows` × `cols` matrix of `ty` filled with the type's fixture blocks, and its size in
/// the file.
fn fixture_matrix(
    ty: cinder_core::GgmlType,
    name: &str,
    rows: usize,
    cols: usize,
) -> (QMatrix, usize) {
    let path = format!("{}/fixtures/quants/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let blocks = std::fs::read(&path).expect("fixture");
    let (per_block, block_bytes) = ty.block();
    let want = rows * cols / per_block * block_bytes;
    let whole = blocks.len() / block_bytes * block_bytes;
    let bytes: Vec<u8> = blocks[..whole].iter().copied().cycle().take(want).collect();
    (
        QMatrix::from_blocks_as(ty, rows, cols, &bytes, acts()).expect("matrix"),
        want,
    )
}

/// Bytes per second read from memory by `pool`'s threads: a 512 MiB buffer (far past the
/// caches) summed, best of 5 passes.
fn read_bandwidth(pool: &rayon::ThreadPool) -> f64 {
    use rayon::prelude::*;
    let words = 64usize << 20;
    let buf: Vec<u64> = (0..words as u64).collect();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let sum: u64 = pool.install(|| {
                buf.par_chunks(1 << 16)
                    .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
                    .sum()
            });
            std::hint::black_box(sum);
            t.elapsed()
        })
        .min()
        .expect("five passes");
    (words * 8) as f64 / best.as_secs_f64()
}

fn memory_table() {
    // 8192 × 8192: 50 MB and up as kept, past this machine's caches.
    let (rows, cols) = (8192usize, 8192usize);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let bw = read_bandwidth(&pool);
        println!(
            "== {threads} thread(s), {rows} x {cols}, one row; memory read bandwidth {:.1} GB/s",
            bw / 1e9
        );
        for (ty, name) in TYPES {
            let (w, file_bytes) = fixture_matrix(ty, name, rows, cols);
            let kept = w.resident_bytes();
            let x: Vec<f32> = (0..cols).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
            let mut out = vec![0f32; rows];
            let d = pool.install(|| time(30, || w.matmul(&x, 1, &mut out)));
            let flops = 2.0 * (rows * cols) as f64;
            let gflops = flops / d.as_secs_f64() / 1e9;
            // Reading the matrix once at the measured bandwidth bounds a decode matmul.
            let bound = flops / (kept as f64 / bw) / 1e9;
            // With 8-bit activations, where the type has that kernel.
            w.set_q8_decode(true);
            let q8 = pool.install(|| time(30, || w.matmul(&x, 1, &mut out)));
            let q8 = if q8 < d * 9 / 10 {
                format!(
                    "; 8-bit activations {:8.1} µs, {:5.1} GFLOP/s",
                    q8.as_secs_f64() * 1e6,
                    flops / q8.as_secs_f64() / 1e9
                )
            } else {
                String::new()
            };
            println!(
                "{:5} {:5.2} bits/value kept ({:5.2} in the file): {:8.1} µs, {:5.1} GB/s read, {gflops:5.1} GFLOP/s, bound {bound:5.1} ({:3.0}%){q8}",
                ty.name(),
                kept as f64 * 8.0 / (rows * cols) as f64,
                file_bytes as f64 * 8.0 / (rows * cols) as f64,
                d.as_secs_f64() * 1e6,
                kept as f64 / d.as_secs_f64() / 1e9,
                100.0 * gflops / bound,
            );
        }
    }
}

fn types_table() {
    let (rows, cols) = (640usize, 2048usize);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        println!("== {threads} thread(s), {rows} x {cols}");
        for (ty, name) in TYPES {
            let (w, want) = fixture_matrix(ty, name, rows, cols);
            let mut line = format!(
                "{:5} ({:6.2} MB in the file):",
                ty.name(),
                want as f64 / 1e6
            );
            for m in [1usize, 8, 16, 64] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                    .collect();
                let mut out = vec![0f32; m * rows];
                let d = pool.install(|| time(200, || w.matmul(&x, m, &mut out)));
                let gflops = 2.0 * (m * rows * cols) as f64 / d.as_secs_f64() / 1e9;
                line += &format!(
                    "  m={m:2} {:7.1} µs {gflops:5.1} GFLOP/s",
                    d.as_secs_f64() * 1e6
                );
            }
            println!("{line}");
        }
    }
}

/// The mean time of `steps` decode steps of 16 sequences side by side (what 16 streams make
/// the engine do), each after a 64-token prompt.
fn batched_step(model: &Llama, steps: u32) -> Duration {
    let mut caches: Vec<_> = (0..16).map(|_| model.new_cache()).collect();
    for (s, cache) in caches.iter_mut().enumerate() {
        let prompt: Vec<u32> = (0..64).map(|i| 100 + i + s as u32).collect();
        model.forward(&prompt, cache).expect("prefill");
    }
    // The engine keeps its logits buffer from step to step.
    let mut logits = Vec::new();
    let t = Instant::now();
    for k in 0..steps {
        let tokens: Vec<[u32; 1]> = (0..16).map(|s| [300 + (k + s) % 1000]).collect();
        let mut items: Vec<(&[u32], _)> = tokens
            .iter()
            .map(|t| &t[..])
            .zip(caches.iter_mut())
            .collect();
        model
            .forward_batch_into(&mut items, &mut logits)
            .expect("batched decode");
    }
    t.elapsed() / steps
}
