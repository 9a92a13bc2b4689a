//! Sandbox and loading rules with fixture plugins: guest output goes to the log without limit
//! on the guest, the idle timeout, parked time not charged as CPU, manifest capabilities held
//! against the component's imports, WIT versions, the on-disk compile cache and the smoke test
//! that runs before a plugin goes live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_core::ModelRegistry;
use cinder_runtime::{CallError, Limits, Output, Runtime};

use crate::runtime::{assert_ok, assert_server_error, call, fixtures, limits, runtime};

pub(crate) fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cinder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A copy of the misbehave fixture whose manifest is edited by `edit`.
pub(crate) fn misbehave_copy(name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = temp(name);
    std::fs::copy(
        fixtures().join("misbehave/plugin.wasm"),
        dir.join("plugin.wasm"),
    )
    .expect("copy");
    let manifest = std::fs::read_to_string(fixtures().join("misbehave/plugin.toml")).expect("read");
    std::fs::write(dir.join("plugin.toml"), edit(&manifest)).expect("write");
    dir
}

pub(crate) fn bare_runtime(limits: Limits, cache: Option<&Path>) -> Arc<Runtime> {
    Runtime::new(
        Arc::new(ModelRegistry::default()),
        limits,
        cache.map(Path::to_path_buf),
    )
    .expect("runtime starts")
}

#[tokio::test]
async fn guest_output_is_logged_without_failing_the_call() {
    // 200 KiB of stdout: more than any fixed capture buffer the host could keep.
    let rt = runtime(limits());
    assert_ok(&call(&rt, "print").await);
}

#[tokio::test]
async fn a_call_without_progress_ends_at_the_idle_timeout() {
    let rt = runtime(Limits {
        idle_timeout: Duration::from_secs(1),
        ..limits()
    });
    let started = Instant::now();
    match call(&rt, "sleep:60000").await.as_slice() {
        [Output::Failed(e @ CallError::Idle(_))] => {
            assert!(e.to_string().contains("no progress"), "{e:?}")
        }
        other => panic!("expected a 504, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test]
async fn time_parked_in_the_host_is_not_charged_as_cpu() {
    // 2 s asleep against a 200 ms CPU budget: sleeping is waiting, not running.
    let rt = runtime(Limits {
        cpu_ms: 200,
        ..limits()
    });
    assert_ok_with(&call(&rt, "sleep:2000").await, "\"fine\"");
}

pub(crate) fn assert_ok_with(outputs: &[Output], want: &str) {
    match outputs {
        [Output::Respond { status: 200, body }] => assert_eq!(body, want),
        other => panic!("expected 200 {want}, got {other:?}"),
    }
}

#[tokio::test]
async fn imports_beyond_the_manifest_are_refused_and_grants_work() {
    let rt = bare_runtime(limits(), None);
    let without = misbehave_copy("nonet", |m| m.replace("capabilities = [\"network\"]", ""));
    let err = rt
        .load_plugin(&without)
        .expect_err("a socket import without `network` is refused")
        .to_string();
    assert!(
        err.contains("wasi:sockets") && err.contains("`network`"),
        "{err}"
    );
    assert!(rt.plugins().is_empty());

    let unknown = misbehave_copy("badcap", |m| m.replace("\"network\"", "\"root\""));
    let err = rt
        .load_plugin(&unknown)
        .expect_err("unknown capability")
        .to_string();
    assert!(err.contains("root"), "{err}");

    // With the grant the guest has sockets, but loopback is closed to it until the operator
    // grants the range for this plugin ([plugins.network]).
    let rt = runtime(limits());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let refused = call(&rt, &format!("connect:{port}")).await;
    match refused.as_slice() {
        [Output::Respond { status: 200, body }] => {
            assert!(body.starts_with("\"refused"), "{body}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    rt.set_network_grants([(
        "misbehave".to_string(),
        vec!["127.0.0.1/32".parse().expect("a range")],
    )]);
    assert_ok_with(
        &call(&rt, &format!("connect:{port}")).await,
        "\"connected\"",
    );
    // Another plugin's grant opens nothing for this one.
    rt.set_network_grants([(
        "other".to_string(),
        vec!["127.0.0.0/8".parse().expect("a range")],
    )]);
    assert!(!matches!(
        call(&rt, &format!("connect:{port}")).await.as_slice(),
        [Output::Respond { body, .. }] if body == "\"connected\""
    ));
    for d in [without, unknown] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn an_unsupported_wit_version_is_refused_naming_both_versions() {
    let rt = bare_runtime(limits(), None);
    let err = rt
        .load_plugin(&fixtures().join("future-wit"))
        .expect_err("a 0.9.0 plugin is refused")
        .to_string();
    assert!(err.contains("0.9.0") && err.contains("0.1."), "{err}");
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_and_a_bad_artifact_is_recompiled() {
    let cache = temp("compile-cache");
    let plugin = fixtures().join("misbehave");

    let first = bare_runtime(limits(), Some(&cache));
    first.load_plugin(&plugin).expect("compiles");
    assert_eq!(first.compile_cache_hits(), 0);
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");

    let second = bare_runtime(limits(), Some(&cache));
    second.load_plugin(&plugin).expect("loads from cache");
    assert_eq!(second.compile_cache_hits(), 1);
    assert_ok(&crate::runtime::call(&second, "ok").await);

    // The folder is this user's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    std::fs::write(&artifacts[0], b"not an artifact").expect("corrupt");
    let third = bare_runtime(limits(), Some(&cache));
    third.load_plugin(&plugin).expect("recompiles");
    assert_eq!(third.compile_cache_hits(), 0);
    assert_ok(&crate::runtime::call(&third, "ok").await);

    // One flipped bit deep inside (wasmtime's header checks would pass): not run, recompiled.
    let mut bytes = std::fs::read(&artifacts[0]).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&artifacts[0], &bytes).expect("flip");
    let fourth = bare_runtime(limits(), Some(&cache));
    fourth.load_plugin(&plugin).expect("recompiles");
    assert_eq!(fourth.compile_cache_hits(), 0);
    assert_ok(&crate::runtime::call(&fourth, "ok").await);

    // A folder others can write is made private again before it is trusted.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let fifth = bare_runtime(limits(), Some(&cache));
    fifth.load_plugin(&plugin).expect("loads");
    assert_eq!(fifth.compile_cache_hits(), 1);
    let mode = std::fs::metadata(&cache)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_plugin_that_cannot_start_is_refused_before_it_serves() {
    // The pool admits the component, but the per-store cap (lowered while running, as a
    // config edit does) leaves less memory than it needs to instantiate.
    let rt = bare_runtime(limits(), None);
    rt.set_limits(Limits {
        memory_bytes: 64 << 10,
        ..limits()
    });
    let err = rt
        .load_plugin(&fixtures().join("misbehave"))
        .expect_err("refused by the smoke test")
        .to_string();
    assert!(err.contains("fails to start"), "{err}");
    assert!(rt.plugins().is_empty());
}

#[tokio::test]
async fn a_plugin_built_against_the_frozen_0_1_0_wit_still_loads_and_works() {
    let rt = bare_runtime(limits(), None);
    let info = rt
        .load_plugin(&fixtures().join("frozen-v0.1"))
        .expect("a 0.1.0 plugin loads in every 0.1.x host");
    assert_eq!(info.wit_version, "0.1.0");
    let out = crate::runtime::call_at(&rt, "/v1/test/frozen", "").await;
    assert_ok_with(&out, "\"not-found:model\"");
}

#[tokio::test]
async fn plugins_read_their_own_settings_and_edits_apply_to_the_next_call() {
    let rt = runtime(limits());
    assert_ok_with(&call(&rt, "setting:greeting").await, "null");
    let settings = |v: &str| {
        std::collections::HashMap::from([
            (
                "misbehave".to_string(),
                vec![("greeting".to_string(), v.to_string())],
            ),
            (
                "someone-else".to_string(),
                vec![("secret".to_string(), "x".to_string())],
            ),
        ])
    };
    rt.set_plugin_settings(settings("hello"));
    assert_ok_with(&call(&rt, "setting:greeting").await, "\"hello\"");
    rt.set_plugin_settings(settings("bye"));
    assert_ok_with(&call(&rt, "setting:greeting").await, "\"bye\"");
    // Another plugin's settings are not visible.
    assert_ok_with(&call(&rt, "setting:secret").await, "null");
}

#[tokio::test]
async fn malformed_output_fails_only_its_request() {
    let rt = runtime(limits());
    assert_server_error(&call(&rt, "garbage").await, "not JSON");
    assert_server_error(&call(&rt, "badstatus").await, "status 999");
    assert_ok(&call(&rt, "ok").await);
}

#[tokio::test]
async fn the_wall_clock_limit_ends_a_call_that_keeps_waiting() {
    let rt = runtime(Limits {
        timeout: Duration::from_secs(1),
        ..limits()
    });
    match call(&rt, "sleep:60000").await.as_slice() {
        [Output::Failed(e @ CallError::Timeout(_))] => {
            assert!(e.to_string().contains("longer than 1 s"), "{e:?}")
        }
        other => panic!("expected a 504, got {other:?}"),
    }
}

#[tokio::test]
async fn no_environment_and_no_files_unless_granted() {
    let rt = runtime(limits());
    assert_ok_with(&call(&rt, "env").await, "0");
    let denied = call(&rt, "read:/etc/hostname").await;
    match denied.as_slice() {
        [Output::Respond { status: 200, body }] => assert!(body.starts_with("\"error"), "{body}"),
        other => panic!("{other:?}"),
    }

    // `filesystem` mounts the plugin's own data/ folder read-only at /data, nothing else.
    let dir = misbehave_copy("fs", |m| {
        m.replace("[\"network\"]", "[\"network\", \"filesystem\"]")
    });
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::write(dir.join("data/hello.txt"), "hi from data").expect("data file");
    let rt = bare_runtime(limits(), None);
    rt.load_plugin(&dir).expect("loads with filesystem");
    assert_ok_with(&call(&rt, "read:/data/hello.txt").await, "\"hi from data\"");
    // Links inside data/ that lead out of it are not followed, whether absolute or `..`.
    std::os::unix::fs::symlink("/etc/hostname", dir.join("data/abs")).expect("link");
    std::os::unix::fs::symlink("../plugin.toml", dir.join("data/up")).expect("link");
    for path in [
        "/etc/hostname",
        "/data/abs",
        "/data/up",
        "/data/../plugin.toml",
    ] {
        match call(&rt, &format!("read:{path}")).await.as_slice() {
            [Output::Respond { status: 200, body }] => {
                assert!(body.starts_with("\"error"), "{path}: {body}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // A data/ that is itself a link is refused when the plugin loads.
    let linked = misbehave_copy("fslink", |m| {
        m.replace("[\"network\"]", "[\"network\", \"filesystem\"]")
            .replace("id = \"misbehave\"", "id = \"fslink\"")
    });
    std::os::unix::fs::symlink("/etc", linked.join("data")).expect("link");
    let err = rt.load_plugin(&linked).expect_err("refused").to_string();
    assert!(err.contains("symbolic link"), "{err}");
    let _ = std::fs::remove_dir_all(linked);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn documents_need_the_storage_grant_and_persist_across_runtimes() {
    // The fixture's manifest does not ask for `storage`: every call fails, naming it.
    let rt = runtime(limits());
    assert_server_error(&call(&rt, "docput:a=1").await, "storage");

    let dir = misbehave_copy("storage", |m| {
        m.replace("[\"network\"]", "[\"network\", \"storage\"]")
    });
    let docs = temp("documents");
    let rt = bare_runtime(limits(), None);
    rt.set_store(cinder_store::Store::open(&docs, None).await.expect("store"));
    rt.load_plugin(&dir).expect("loads with storage");
    assert_ok_with(&call(&rt, "docput:a=1").await, "\"stored\"");
    assert_ok_with(&call(&rt, "docget:a").await, "\"1\"");
    drop(rt);
    let again = bare_runtime(limits(), None);
    again.set_store(cinder_store::Store::open(&docs, None).await.expect("store"));
    again.load_plugin(&dir).expect("loads");
    assert_ok_with(&call(&again, "docget:a").await, "\"1\"");
    assert_ok_with(&call(&again, "docget:b").await, "null");
    for d in [dir, docs] {
        let _ = std::fs::remove_dir_all(d);
    }
}
