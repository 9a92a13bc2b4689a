//! Plugins the host must refuse at load, with a reason, while what was serving keeps serving:
//! a component of another world, a route another plugin already owns, a second tools plugin,
//! a tools plugin with routes.

use crate::runtime::{assert_ok, call, fixtures, limits};
use crate::sandbox::{bare_runtime, misbehave_copy, temp};

#[test]
fn a_component_of_another_world_is_refused_at_load() {
    let rt = bare_runtime(limits(), None);
    let err = rt
        .load_plugin(&fixtures().join("wrong-world"))
        .expect_err("a handler of the wrong shape is refused")
        .to_string();
    assert!(
        err.contains("does not match the chat-plugin world") && err.contains("type mismatch"),
        "{err}"
    );

    // A manifest naming a world the host does not serve is refused before compiling.
    let dir = misbehave_copy("world", |m| {
        m.replace("world = \"chat-plugin\"", "world = \"images-plugin\"")
    });
    let err = rt.load_plugin(&dir).expect_err("unknown world").to_string();
    assert!(err.contains("images-plugin"), "{err}");
    assert!(rt.plugins().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_route_clash_is_refused_and_the_owner_keeps_serving() {
    let root = temp("clash");
    let owner = root.join("a-misbehave");
    std::fs::create_dir_all(&owner).expect("dir");
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(fixtures().join("misbehave").join(f), owner.join(f)).expect("copy");
    }
    // Another id, the same route.
    let intruder = misbehave_copy("intruder", |m| {
        m.replace("id = \"misbehave\"", "id = \"intruder\"")
    });
    std::fs::rename(&intruder, root.join("b-intruder")).expect("move");

    let rt = bare_runtime(limits(), None);
    rt.load_dir(&root).expect("folder loads");
    let failures = rt.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].0.ends_with("b-intruder"), "{failures:?}");
    assert!(
        failures[0].1.contains("/v1/test/misbehave") && failures[0].1.contains("`misbehave`"),
        "{failures:?}"
    );
    assert_eq!(rt.plugins().len(), 1);
    assert_ok(&call(&rt, "ok").await);
    let _ = std::fs::remove_dir_all(root);
}

/// The route the host matched reaches the guest as data (WIT `route`, 0.1.6): the manifest's
/// id (or `METHOD /pattern` without one) and the path's parameters.
#[tokio::test]
async fn the_matched_route_reaches_the_plugin_as_data() {
    use cinder_runtime::Output;
    let respond = |out: Vec<Output>| match out.as_slice() {
        [Output::Respond { status: 200, body }] => body.clone(),
        other => panic!("{other:?}"),
    };
    let rt = crate::runtime::runtime(limits());
    let plain = respond(crate::runtime::call(&rt, "route").await);
    assert_eq!(plain, r#"["POST /v1/test/misbehave",[]]"#);

    let dir = misbehave_copy("route-ids", |m| {
        m.replace(
            r#"{ method = "POST", path = "/v1/test/misbehave" }"#,
            r#"{ id = "test.item", method = "POST", path = "/v1/test/items/{item}/parts/{part}" }"#,
        )
    });
    let rt = bare_runtime(limits(), None);
    rt.load_plugin(&dir).expect("loads");
    let named = respond(crate::runtime::call_at(&rt, "/v1/test/items/42/parts/a-1", "route").await);
    assert_eq!(named, r#"["test.item",[["item","42"],["part","a-1"]]]"#);
    let info = rt.plugins().into_iter().next().expect("loaded");
    assert_eq!(
        info.exports,
        ["cinder:plugin/handler@0.1.14"],
        "an SDK plugin exports only its world's interface"
    );

    // Job kinds: only a job plugin runs jobs, and a kind is a plain name.
    for (edit, why) in [
        (
            "jobs = [\"batch\"]\n",
            "runs no jobs: `jobs` needs world = \"job-plugin\"",
        ),
        ("jobs = [\"../x\"]\n", "job kind `../x` is not 1 to 64"),
    ] {
        let dir = misbehave_copy("job-kinds-bad", |m| format!("{edit}{m}"));
        let err = bare_runtime(limits(), None)
            .load_plugin(&dir)
            .expect_err(why)
            .to_string();
        assert!(err.contains(why), "{err}");
    }
    // A chat component declared a job plugin lacks `job-runner`: refused when linking.
    let dir = misbehave_copy("job-world-bad", |m| {
        m.replace("world = \"chat-plugin\"", "world = \"job-plugin\"")
    });
    let err = bare_runtime(limits(), None)
        .load_plugin(&dir)
        .expect_err("no job-runner")
        .to_string();
    assert!(err.contains("job-plugin"), "{err}");

    for (bad, why) in [
        (r#"id = "Item.Create", "#, "is not 1 to 64"),
        (r#"id = "a", "#, "two routes have the id"),
    ] {
        let dir = misbehave_copy("route-ids-bad", |m| {
            m.replace(
                r#"{ method = "POST", path = "/v1/test/misbehave" }"#,
                &format!(
                    r#"{{ {bad}method = "POST", path = "/v1/test/one" }}, {{ id = "a", method = "POST", path = "/v1/test/two" }}"#
                ),
            )
        });
        let err = bare_runtime(limits(), None)
            .load_plugin(&dir)
            .expect_err(why)
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[tokio::test]
async fn routes_with_parameters_match_one_segment_and_clash_by_shape() {
    use cinder_runtime::RouteMatch;
    let dir = misbehave_copy("params", |m| {
        m.replace("/v1/test/misbehave", "/v1/test/items/{id}")
    });
    let rt = bare_runtime(limits(), None);
    rt.load_plugin(&dir).expect("loads");
    assert!(matches!(
        rt.route("POST", "/v1/test/items/42"),
        RouteMatch::Found(..)
    ));
    assert!(matches!(
        rt.route("GET", "/v1/test/items/42"),
        RouteMatch::MethodNotAllowed
    ));
    assert!(matches!(
        rt.route("POST", "/v1/test/items"),
        RouteMatch::NotFound
    ));
    assert!(matches!(
        rt.route("POST", "/v1/test/items/42/x"),
        RouteMatch::NotFound
    ));
    let out = crate::runtime::call_at(&rt, "/v1/test/items/42", "ok").await;
    assert!(matches!(
        out.as_slice(),
        [cinder_runtime::Output::Respond { status: 200, .. }]
    ));

    let other = misbehave_copy("params2", |m| {
        m.replace("/v1/test/misbehave", "/v1/test/items/{item}")
            .replace("id = \"misbehave\"", "id = \"other\"")
    });
    let err = rt.load_plugin(&other).expect_err("same shape").to_string();
    assert!(err.contains("overlaps"), "{err}");
    // Not the same shape, but some paths match both: routing would go by load order.
    let wider = misbehave_copy("params3", |m| {
        m.replace("/v1/test/misbehave", "/v1/test/{what}/7")
            .replace("id = \"misbehave\"", "id = \"wider\"")
    });
    let err = rt.load_plugin(&wider).expect_err("overlap").to_string();
    assert!(err.contains("overlaps POST /v1/test/items/{id}"), "{err}");
    // Paths the host answers itself are nobody's.
    for route in ["/v1/models", "/v1/models/{id}", "/v1/{x}"] {
        let d = misbehave_copy("hostroute", |m| {
            m.replace("/v1/test/misbehave", route)
                .replace("id = \"misbehave\"", "id = \"hostroute\"")
        });
        let err = rt.load_plugin(&d).expect_err("host route").to_string();
        assert!(err.contains("the host serves"), "{route}: {err}");
        let _ = std::fs::remove_dir_all(d);
    }
    for d in [dir, other, wider] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test]
async fn a_plugin_added_later_cannot_take_a_live_plugins_routes() {
    let root = temp("latecomer");
    let owner = root.join("b-owner");
    std::fs::create_dir_all(&owner).expect("dir");
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(fixtures().join("misbehave").join(f), owner.join(f)).expect("copy");
    }
    let rt = bare_runtime(limits(), None);
    rt.load_dir(&root).expect("folder loads");
    // A folder that sorts first, claiming a pattern that covers the live route.
    let late = misbehave_copy("late", |m| {
        m.replace("/v1/test/misbehave", "/v1/test/{x}")
            .replace("id = \"misbehave\"", "id = \"late\"")
    });
    std::fs::rename(&late, root.join("a-late")).expect("move");
    rt.load_dir(&root).expect("folder reloads");
    let failures = rt.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].0.ends_with("a-late"), "{failures:?}");
    assert_eq!(rt.plugins().len(), 1);
    assert_eq!(rt.plugins()[0].id, "misbehave");
    assert_ok(&call(&rt, "ok").await);
    let _ = std::fs::remove_dir_all(root);
}

/// A copy of the first-party tools plugin (built beside the fixtures) in `dir`, its manifest
/// edited by `edit`.
fn tools_copy(dir: &std::path::Path, edit: impl Fn(&str) -> String) {
    let built = fixtures()
        .parent()
        .expect("the fixtures folder has a parent")
        .join("cinder-plugins/tools");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::copy(built.join("plugin.wasm"), dir.join("plugin.wasm")).expect("copy");
    let manifest = std::fs::read_to_string(built.join("plugin.toml")).expect("read");
    std::fs::write(dir.join("plugin.toml"), edit(&manifest)).expect("write");
}

#[test]
fn one_tools_plugin_serves_and_it_owns_no_routes() {
    let root = temp("tools");
    tools_copy(&root.join("a-tools"), str::to_owned);
    tools_copy(&root.join("b-more-tools"), |m| {
        m.replace("id = \"tools\"", "id = \"more-tools\"")
    });
    let rt = bare_runtime(limits(), None);
    rt.load_dir(&root).expect("folder loads");
    let failures = rt.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].0.ends_with("b-more-tools"), "{failures:?}");
    assert!(
        failures[0].1.contains("`tools` is already loaded"),
        "{failures:?}"
    );
    let plugins = rt.plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].world, "tools-plugin");
    assert_eq!(plugins[0].wit_version, "0.1.14");
    assert!(plugins[0].routes.is_empty());

    let routed = root.join("c-routed");
    tools_copy(&routed, |m| {
        format!("{m}routes = [{{ method = \"POST\", path = \"/v1/tools\" }}]\n")
    });
    let err = rt
        .load_plugin(&routed)
        .expect_err("routes refused")
        .to_string();
    assert!(err.contains("serves other plugins, not routes"), "{err}");
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn bad_ids_duplicate_ids_and_routes_outside_v1_are_refused() {
    // An id names the storage folder: a path must never get that far.
    let rt = bare_runtime(limits(), None);
    for bad in ["../../escape", "Misbehave", ""] {
        let dir = misbehave_copy("badid", |m| {
            m.replace("id = \"misbehave\"", &format!("id = \"{bad}\""))
        });
        let err = rt.load_plugin(&dir).expect_err("refused").to_string();
        assert!(err.contains("is not allowed"), "{bad}: {err}");
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(rt.plugins().is_empty());

    // Routes outside /v1/ are refused.
    for route in ["/health", "/admin", "/v1x/y"] {
        let dir = misbehave_copy("outside", |m| m.replace("/v1/test/misbehave", route));
        let err = rt.load_plugin(&dir).expect_err("refused").to_string();
        assert!(err.contains("outside /v1/"), "{route}: {err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    // Two folders with one id: the first (by name) keeps it, the second is refused and listed.
    let root = temp("dupid");
    let first = root.join("a-first");
    std::fs::create_dir_all(&first).expect("dir");
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(fixtures().join("misbehave").join(f), first.join(f)).expect("copy");
    }
    // The same id on another route, so only the id clashes.
    let second = misbehave_copy("dup", |m| m.replace("/v1/test/misbehave", "/v1/test/other"));
    std::fs::rename(&second, root.join("b-second")).expect("move");
    rt.load_dir(&root).expect("folder loads");
    let failures = rt.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].0.ends_with("b-second"), "{failures:?}");
    assert!(failures[0].1.contains("already taken"), "{failures:?}");
    assert_eq!(rt.plugins().len(), 1);
    assert_ok(&call(&rt, "ok").await);
    let _ = std::fs::remove_dir_all(root);
}
