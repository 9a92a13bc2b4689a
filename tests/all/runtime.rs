//! Runtime tests with the `misbehave` fixture plugin (tests/fixtures/misbehave): a guest that
//! panics, loops forever or allocates without end fails only its own request with an OpenAI
//! error, and the next request on the same runtime succeeds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cinder_core::ModelRegistry;
use cinder_runtime::{CallError, Limits, Output, PluginError, PluginRequest, RouteMatch, Runtime};

pub(crate) fn fixtures() -> PathBuf {
    let dir = std::env::var_os("CINDER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("cinder-fixtures")
        });
    assert!(
        dir.join("misbehave/plugin.wasm").exists(),
        "fixture plugins missing in {}: run `cargo xtask test`",
        dir.display()
    );
    dir
}

pub(crate) fn limits() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        cpu_ms: 500,
        timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(60),
        max_instances: 4,
        max_queued: 64,
        max_file_bytes: 1 << 20,
    }
}

pub(crate) fn runtime(limits: Limits) -> Arc<Runtime> {
    let rt =
        Runtime::new(Arc::new(ModelRegistry::default()), limits, None).expect("runtime starts");
    rt.load_plugin(&fixtures().join("misbehave"))
        .expect("fixture loads");
    rt
}

pub(crate) async fn call(rt: &Arc<Runtime>, body: &str) -> Vec<Output> {
    call_at(rt, "/v1/test/misbehave", body).await
}

pub(crate) async fn call_at(rt: &Arc<Runtime>, path: &str, body: &str) -> Vec<Output> {
    let RouteMatch::Found(plugin, route) = rt.route("POST", path) else {
        panic!("route {path} missing")
    };
    let mut rx = rt.call(
        plugin,
        PluginRequest {
            route: Some(route),
            ..post(path, body)
        },
    );
    let mut outputs = Vec::new();
    while let Some(o) = rx.recv().await {
        outputs.push(o);
    }
    outputs
}

fn post(path: &str, body: &str) -> PluginRequest {
    PluginRequest {
        method: "POST".into(),
        path: path.into(),
        body: body.into(),
        request_id: "t".into(),
        route: None,
        owner: cinder_runtime::LOCAL_OWNER.into(),
        multipart: None,
        background: false,
        public_url: None,
    }
}

pub(crate) fn assert_ok(outputs: &[Output]) {
    match outputs {
        [Output::Respond { status: 200, body }] => assert_eq!(body, "\"fine\""),
        other => panic!("expected one 200 response, got {other:?}"),
    }
}

pub(crate) fn assert_server_error(outputs: &[Output], needle: &str) {
    match outputs {
        [
            Output::Failed(
                e @ (CallError::Trapped { .. }
                | CallError::OutOfFuel { .. }
                | CallError::NoResponse
                | CallError::Plugin(PluginError::Internal(_))),
            ),
        ] => {
            let message = e.to_string();
            assert!(
                message.contains(needle),
                "{message:?} does not mention {needle:?}"
            );
        }
        other => panic!("expected one server-side failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_plugin_fails_only_its_request() {
    let rt = runtime(limits());
    assert_ok(&call(&rt, "ok").await);
    assert_server_error(&call(&rt, "panic").await, "panicked");
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_cpu_budget() {
    let rt = runtime(limits());
    assert_server_error(&call(&rt, "loop").await, "CPU budget");
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test]
async fn endless_allocation_is_stopped_by_the_memory_cap() {
    let rt = runtime(limits());
    let out = call(&rt, "alloc").await;
    assert!(
        matches!(out.as_slice(), [Output::Failed(CallError::Trapped { reason, .. })] if reason.contains("memory")),
        "{out:?}"
    );
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test]
async fn plugin_errors_become_openai_errors() {
    let rt = runtime(limits());
    match call(&rt, "dance").await.as_slice() {
        [Output::Failed(CallError::Plugin(PluginError::InvalidRequest(d)))] => {
            assert_eq!(d.param.as_deref(), Some("body"));
        }
        other => panic!("{other:?}"),
    }
    assert_server_error(&call(&rt, "silent").await, "without writing a response");
}

#[tokio::test]
async fn streamed_events_arrive_in_order_then_the_channel_closes() {
    let rt = runtime(limits());
    match call(&rt, "stream").await.as_slice() {
        [Output::Event(a), Output::Event(b)] => assert_eq!((a.as_str(), b.as_str()), ("1", "2")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn routes_know_methods_and_paths() {
    let rt = runtime(limits());
    assert!(matches!(
        rt.route("GET", "/v1/test/misbehave"),
        RouteMatch::MethodNotAllowed
    ));
    assert!(matches!(
        rt.route("POST", "/v1/test/elsewhere"),
        RouteMatch::NotFound
    ));
    let info = &rt.plugins()[0];
    assert_eq!(
        (info.id.as_str(), info.wit_version.as_str()),
        ("misbehave", "0.1.14")
    );
}

#[test]
fn broken_plugins_are_refused_with_a_reason() {
    let rt =
        Runtime::new(Arc::new(ModelRegistry::default()), limits(), None).expect("runtime starts");
    let dir = std::env::temp_dir().join(format!("cinder-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(
        fixtures().join("misbehave/plugin.toml"),
        dir.join("plugin.toml"),
    )
    .expect("manifest");
    std::fs::write(dir.join("plugin.wasm"), b"\0asm garbage").expect("garbage");
    let err = rt
        .load_plugin(&dir)
        .expect_err("garbage is refused")
        .to_string();
    assert!(err.contains("not a valid component"), "{err}");
    assert!(rt.plugins().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `done` until it holds; the generous limit only bounds a broken run.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_folder_hot_reloads_and_keeps_old_versions_of_broken_plugins() {
    let root = std::env::temp_dir().join(format!("cinder-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let first = root.join("misbehave");
    std::fs::create_dir_all(&first).expect("temp dir");
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(fixtures().join("misbehave").join(f), first.join(f)).expect("copy fixture");
    }
    let rt =
        Runtime::new(Arc::new(ModelRegistry::default()), limits(), None).expect("runtime starts");
    rt.load_dir(&root).expect("folder loads");
    rt.watch(&root).expect("watch starts");
    assert_ok(&call(&rt, "ok").await);

    // Adding a plugin adds its routes.
    let second = root.join("second");
    std::fs::create_dir_all(&second).expect("dir");
    std::fs::copy(first.join("plugin.wasm"), second.join("plugin.wasm")).expect("copy");
    let manifest = std::fs::read_to_string(first.join("plugin.toml")).expect("manifest");
    std::fs::write(
        second.join("plugin.toml"),
        manifest
            .replace("\"misbehave\"", "\"second\"")
            .replace("/v1/test/misbehave", "/v1/test/second"),
    )
    .expect("write");
    eventually("the second plugin serves", || {
        matches!(rt.route("POST", "/v1/test/second"), RouteMatch::Found(..))
    })
    .await;
    assert_ok(&call_at(&rt, "/v1/test/second", "ok").await);

    // A broken build is refused with a reason; the previous version keeps serving.
    std::fs::write(first.join("plugin.wasm"), b"not wasm").expect("break");
    eventually("the broken plugin is reported", || {
        rt.failures()
            .iter()
            .any(|(path, _)| path.ends_with("misbehave"))
    })
    .await;
    let (_, reason) = rt
        .failures()
        .into_iter()
        .find(|(p, _)| p.ends_with("misbehave"))
        .expect("failure");
    assert!(reason.contains("not a valid component"), "{reason}");
    assert_ok(&call(&rt, "ok").await);

    // A reload reads the files; that must not trigger another reload.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = rt.folder_loads();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rt.folder_loads(),
        settled,
        "the folder keeps reloading with nothing changed"
    );

    // Removing a plugin removes its routes.
    std::fs::remove_dir_all(&second).expect("remove");
    eventually("the second plugin is gone", || {
        matches!(rt.route("POST", "/v1/test/second"), RouteMatch::NotFound)
    })
    .await;
    let _ = std::fs::remove_dir_all(&root);
}

/// A runtime with one instance and room for one waiting request, its instance busy for 1.5 s.
async fn one_busy_slot() -> (Arc<Runtime>, tokio::task::JoinHandle<Vec<Output>>) {
    let rt = runtime(Limits {
        max_instances: 1,
        max_queued: 1,
        ..limits()
    });
    let busy = tokio::spawn({
        let rt = rt.clone();
        async move { call(&rt, "sleep:1500").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    (rt, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once_and_queued_requests_still_complete() {
    let (rt, busy) = one_busy_slot().await;
    let queued = tokio::spawn({
        let rt = rt.clone();
        async move { call(&rt, "ok").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    match call(&rt, "ok").await.as_slice() {
        [Output::Failed(CallError::QueueFull { retry_after })] => {
            assert!(!retry_after.is_zero())
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert!(matches!(
        busy.await.expect("join").as_slice(),
        [Output::Respond { status: 200, .. }]
    ));
    assert_ok(&queued.await.expect("join"));
    // With the queue drained, requests are served again.
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_the_queue_frees_its_place() {
    let (rt, busy) = one_busy_slot().await;
    // Queued, then gone (its receiver dropped, as when the HTTP client disconnects).
    let RouteMatch::Found(plugin, _) = rt.route("POST", "/v1/test/misbehave") else {
        panic!("route missing")
    };
    let gone = rt.call(plugin, post("/v1/test/misbehave", "ok"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Its place is free: this one queues instead of getting a 429.
    assert_ok(&call(&rt, "ok").await);
    assert!(matches!(
        busy.await.expect("join").as_slice(),
        [Output::Respond { status: 200, .. }]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_data_neither_reload_nor_postpone_a_reload() {
    let root = std::env::temp_dir().join(format!("cinder-churn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let plugin = root.join("misbehave");
    std::fs::create_dir_all(plugin.join("data")).expect("temp dir");
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(fixtures().join("misbehave").join(f), plugin.join(f)).expect("copy fixture");
    }
    let rt =
        Runtime::new(Arc::new(ModelRegistry::default()), limits(), None).expect("runtime starts");
    rt.load_dir(&root).expect("folder loads");
    rt.watch(&root).expect("watch starts");
    // Something keeps writing the plugin's data, faster than the reload's quiet period.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), plugin.join("data/churn"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::write(&file, n.to_string()).expect("write data");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let loads = rt.folder_loads();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rt.folder_loads(), loads, "data writes reloaded the folder");
    // A new version still goes live while the writes go on.
    let manifest = std::fs::read_to_string(plugin.join("plugin.toml")).expect("manifest");
    std::fs::write(
        plugin.join("plugin.toml"),
        manifest.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .expect("write");
    eventually("the new version serves", || {
        rt.plugins().first().is_some_and(|p| p.version == "0.2.0")
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let _ = std::fs::remove_dir_all(&root);
}
