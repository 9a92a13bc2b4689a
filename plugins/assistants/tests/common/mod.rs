//! What the assistants plugin's native tests share: requests to its routes on a fake host.

// Each test file uses some of these; none is dead in all of them.
#![allow(dead_code)]

use cinder_plugin_assistants::FirstParty;
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
