//! What the assistants plugin's native tests share: requests to its routes on a fake host.

// Each test file uses some of these; none is dead in all of them.
#![allow(dead_code)]

use cinder_plugin_assistants::FirstParty;
use cinder_sdk::dispatch::Answer;
use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Request, Route, ServeAgent};
use serde_json::Value;

pub fn call(
    host: &FakeHost,
    route: Route,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value, Error> {
    let request = Request {
        method: method.into(),
        path: path.into(),
        body: if body.is_null() {
            String::new()
        } else {
            body.to_string()
        },
        request_id: "r".into(),
    };
    FirstParty.serve(&route, request, host)?;
    Ok(host.take_response().expect("answered").1)
}

pub fn create(host: &FakeHost, body: Value) -> Result<Value, Error> {
    call(
        host,
        Route::new("assistants.create"),
        "POST",
        "/v1/assistants",
        body,
    )
}

pub fn on(route: &str, id: &str) -> Route {
    Route::new(route).with_param("id", id)
}

pub fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400: {other:?}"),
    }
}

pub fn new_thread(host: &FakeHost, body: Value) -> String {
    let t = call(
        host,
        Route::new("threads.create"),
        "POST",
        "/v1/threads",
        body,
    )
    .unwrap();
    t["id"].as_str().unwrap().to_owned()
}

pub fn run(host: &FakeHost, thread: &str, body: Value) -> Result<Value, Error> {
    let path = format!("/v1/threads/{thread}/runs");
    call(host, on("threads.runs.create", thread), "POST", &path, body)
}

pub fn on_run(route: &str, thread: &str, run: &str) -> Route {
    on(route, thread).with_param("run_id", run)
}

pub fn get_run(host: &FakeHost, thread: &str, run: &str) -> Value {
    let path = format!("/v1/threads/{thread}/runs/{run}");
    call(
        host,
        on_run("threads.runs.retrieve", thread, run),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap()
}

/// The vector stores plugin on `host`: a route by path, as the host's router would.
pub fn vector_stores(host: &FakeHost, method: &str, path: &str, body: &str) -> Answer {
    let parts: Vec<&str> = path
        .trim_start_matches("/v1/vector_stores")
        .split('/')
        .collect();
    let route = match (method, parts.as_slice()) {
        ("POST", [""]) => Route::new("vector_stores.create"),
        ("GET", ["", id]) => Route::new("vector_stores.retrieve").with_param("id", id),
        ("POST", ["", id, "search"]) => Route::new("vector_stores.search").with_param("id", id),
        ("POST", ["", id, "file_batches"]) => {
            Route::new("vector_stores.file_batches.create").with_param("id", id)
        }
        other => panic!("no such route in this test: {other:?}"),
    };
    let request = Request {
        method: method.into(),
        path: path.into(),
        body: body.into(),
        request_id: "d".into(),
    };
    match cinder_plugin_vector_stores::FirstParty.serve(&route, request, host) {
        Ok(()) => {
            let (status, body) = host.take_response().expect("answered");
            Answer {
                status,
                body: body.to_string(),
            }
        }
        Err(e) => {
            let (status, body) = e.to_http();
            Answer {
                status,
                body: body.to_string(),
            }
        }
    }
}
