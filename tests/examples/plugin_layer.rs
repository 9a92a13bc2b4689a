//! What the plugin layer costs, measured on the `misbehave` fixture (no model involved):
//! instantiate + call per request, per streamed event through the sink, and hot reload from a
//! file landing to the new version serving (compiled, and from the on-disk cache).
//!
//! `cargo xtask plugins` (or `cargo xtask test`) builds the fixtures first; then
//! `CINDER_FIXTURES=$CARGO_TARGET_DIR/cinder-fixtures cargo run --release --example plugin_layer`.

// Test and benchmark code: a panic here is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_core::ModelRegistry;
use cinder_runtime::{Limits, Output, PluginRequest, RouteMatch, Runtime};

const REQUESTS: usize = 300;
const EVENTS: u32 = 2000;
const RELOADS: usize = 5;

fn fixtures() -> PathBuf {
    std::env::var_os("CINDER_FIXTURES")
        .map(PathBuf::from)
        .expect("set CINDER_FIXTURES to the built fixture folder")
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        cpu_ms: 10_000,
        timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_instances: 8,
        max_queued: 64,
        max_file_bytes: 1 << 20,
    }
}

async fn call(rt: &Arc<Runtime>, body: &str) -> Vec<Output> {
    let RouteMatch::Found(plugin, route) = rt.route("POST", "/v1/test/misbehave") else {
        panic!("fixture route missing")
    };
    let mut rx = rt.call(
        plugin,
        PluginRequest {
            method: "POST".into(),
            path: "/v1/test/misbehave".into(),
            body: body.into(),
            request_id: "bench".into(),
            route: Some(route),
            owner: cinder_runtime::LOCAL_OWNER.into(),
            multipart: None,
            background: false,
            public_url: None,
        },
    );
    let mut out = Vec::new();
    while let Some(o) = rx.recv().await {
        out.push(o);
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p95(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// Appends a custom section: a different file (and content hash) with the same behaviour.
fn stamped(wasm: &[u8], stamp: usize) -> Vec<u8> {
    let name = b"cinder-bench-build";
    let payload: Vec<u8> = [&[name.len() as u8][..], name, stamp.to_string().as_bytes()].concat();
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend(payload);
    out
}

fn land(dir: &Path, wasm: &[u8], manifest: &str, version: &str) {
    let tmp = dir.with_extension("staging");
    std::fs::create_dir_all(&tmp).expect("staging");
    std::fs::write(tmp.join("plugin.wasm"), wasm).expect("write wasm");
    std::fs::write(
        tmp.join("plugin.toml"),
        manifest.replace("version = \"0.1.0\"", &format!("version = \"{version}\"")),
    )
    .expect("write manifest");
    std::fs::rename(tmp.join("plugin.wasm"), dir.join("plugin.wasm")).expect("land wasm");
    std::fs::rename(tmp.join("plugin.toml"), dir.join("plugin.toml")).expect("land manifest");
}

async fn reload_time(
    rt: &Arc<Runtime>,
    dir: &Path,
    wasm: &[u8],
    manifest: &str,
    version: &str,
) -> Duration {
    let landed = Instant::now();
    land(dir, wasm, manifest, version);
    loop {
        if rt.plugins().iter().any(|p| p.version == version) {
            // The first request after the swap is served by the new version.
            let _ = call(rt, "ok").await;
            return landed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let source = fixtures().join("misbehave");
    let rt = Runtime::new(Arc::new(ModelRegistry::default()), limits(), None).expect("runtime");
    rt.load_plugin(&source).expect("fixture loads");

    for _ in 0..20 {
        call(&rt, "ok").await;
    }
    let mut per_request = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let t = Instant::now();
        call(&rt, "ok").await;
        per_request.push(t.elapsed());
    }
    println!(
        "request (fresh instance + call + response), {REQUESTS} sequential: median {:?}, p95 {:?}",
        median(per_request.clone()),
        p95(per_request)
    );

    let mut per_event = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = call(&rt, &format!("events:{EVENTS}")).await;
        assert_eq!(out.len(), EVENTS as usize);
        per_event.push(t.elapsed() / EVENTS);
    }
    println!(
        "streamed event (guest send-event -> host channel -> reader), {EVENTS} per call: median {:?}",
        median(per_event)
    );

    let root = std::env::temp_dir().join(format!("cinder-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("plugins/misbehave");
    std::fs::create_dir_all(&dir).expect("dir");
    let wasm = std::fs::read(source.join("plugin.wasm")).expect("wasm");
    let manifest = std::fs::read_to_string(source.join("plugin.toml")).expect("manifest");
    std::fs::write(dir.join("plugin.wasm"), &wasm).expect("copy");
    std::fs::write(dir.join("plugin.toml"), &manifest).expect("copy");
    let cache = root.join("cache");
    let rt =
        Runtime::new(Arc::new(ModelRegistry::default()), limits(), Some(cache)).expect("runtime");
    rt.load_dir(&root.join("plugins")).expect("loads");
    rt.watch(&root.join("plugins")).expect("watch");
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for i in 0..RELOADS {
        let build = stamped(&wasm, i);
        compiled.push(reload_time(&rt, &dir, &build, &manifest, &format!("1.0.{i}")).await);
        // The same bytes again under another version: compiled artifact comes from disk.
        let hits = rt.compile_cache_hits();
        cached.push(reload_time(&rt, &dir, &build, &manifest, &format!("2.0.{i}")).await);
        assert!(rt.compile_cache_hits() > hits, "expected a cache hit");
    }
    println!(
        "reload, file landing -> first request served by the new version (250 ms debounce included): compiled median {:?}, from cache median {:?}",
        median(compiled),
        median(cached)
    );
    let _ = std::fs::remove_dir_all(&root);
}
