//! What the responses plugin's native tests share: a fake host with the first-party tools
//! plugin, requests to its routes, and reading back what the plugin did.

// Each test file uses some of these; none is dead in all of them.
#![allow(dead_code)]

use cinder_plugin_responses::FirstParty;
use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Request, Route, ServeAgent};
use serde_json::{Value, json};

pub fn fake() -> FakeHost {
    FakeHost::new("m").with_tools(cinder_plugin_tools::FirstParty)
}

pub fn request(method: &str, path: &str, body: String, id: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        body,
        request_id: id.into(),
    }
}

/// The prompt of the `k`-th generation (the fake tokenizer's ids are bytes).
pub fn prompt_of(host: &FakeHost, k: usize) -> String {
    host.generate_requests()[k]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect()
}

pub fn create(host: &FakeHost, id: &str, body: Value) -> Result<(), Error> {
    let r = request("POST", "/v1/responses", body.to_string(), id);
    FirstParty.serve(&Route::new("responses.create"), r, host)
}

pub fn get(host: &FakeHost, route: &str, id: &str, query: &str) -> Result<(), Error> {
    let r = request(
        "GET",
        &format!("/v1/responses/{id}{query}"),
        String::new(),
        "get",
    );
    FirstParty.serve(&Route::new(route).with_param("id", id), r, host)
}

pub fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400: {other:?}"),
    }
}

pub fn weather() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

pub fn call(
    host: &FakeHost,
    method: &str,
    route: Route,
    path: &str,
    body: Value,
) -> Result<Value, Error> {
    let id = format!("q{}", path.len() + host.generate_requests().len());
    FirstParty.serve(&route, request(method, path, body.to_string(), &id), host)?;
    Ok(host.take_response().expect("answered").1)
}

pub fn upload(host: &FakeHost, name: &str, content: &[u8]) -> String {
    use cinder_sdk::host::Store;
    let mut w = host.blob_writer().unwrap();
    w.write(content).unwrap();
    let blob = w.finish().unwrap();
    let shown = cinder_sdk::files::save(host, None, name, "user_data", &blob, None).unwrap();
    shown["id"].as_str().unwrap().to_owned()
}
