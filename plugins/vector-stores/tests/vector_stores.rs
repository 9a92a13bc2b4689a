//! Vector stores against the SDK's fake host (its embedder reads a character as a token, its
//! vectors are searched exactly): files added and ingested by their jobs, searched with
//! filters, batches cancelled, bad input refused by name, deletion taking the chunks along.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_vector_stores::FirstParty;
use cinder_sdk::host::Vectors;
use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Request, Route, ServeAgent};
use serde_json::{Value, json};

const MODEL: &str = "text-embedding-3-small";

fn host() -> FakeHost {
    FakeHost::new("m").with_embedder(MODEL, 32, 256)
}

fn call(host: &FakeHost, route: Route, method: &str, body: Value) -> Result<Value, Error> {
    let request = Request {
        method: method.into(),
        path: "/v1/vector_stores".into(),
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

fn on(route: &str, id: &str) -> Route {
    Route::new(route).with_param("id", id)
}

fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400 or 404: {other:?}"),
    }
}

fn file(host: &FakeHost, name: &str, content: &str) -> String {
    host.add_file(name, content.as_bytes())
}

/// Runs every queued ingestion job to its end.
fn ingest(host: &FakeHost) {
    for j in host.jobs().jobs() {
        if !j.done {
            host.jobs()
                .run_agent(&j.job.id, &FirstParty, host, 50)
                .unwrap();
        }
    }
}

fn search(host: &FakeHost, store: &str, body: Value) -> Result<Value, Error> {
    call(host, on("vector_stores.search", store), "POST", body)
}

#[test]
fn files_are_ingested_by_their_jobs_and_searched_exactly_with_filters() {
    let host = host();
    let cats = "Cats sleep most of the day. ".repeat(6);
    let tea = "Tea is brewed from leaves. ".repeat(6);
    let a = file(&host, "cats.txt", &cats);
    let b = file(&host, "tea.md", &tea);
    let vs = call(
        &host,
        Route::new("vector_stores.create"),
        "POST",
        json!({"name": "notes", "file_ids": [a], "metadata": {"k": "v"},
               "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}}),
    )
    .unwrap();
    let id = vs["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("vs_"));
    assert_eq!(
        (&vs["object"], &vs["status"]),
        (&json!("vector_store"), &json!("in_progress"))
    );
    assert_eq!(vs["file_counts"]["in_progress"], 1);
    let added = call(
        &host,
        on("vector_stores.files.create", &id),
        "POST",
        json!({"file_id": b, "attributes": {"topic": "drinks", "year": 2024}}),
    )
    .unwrap();
    assert_eq!(
        (&added["id"], &added["status"]),
        (&json!(b), &json!("in_progress"))
    );
    // The default chunking fits the embedding model (256 tokens: 254 a chunk, 127 overlap).
    assert_eq!(
        added["chunking_strategy"]["static"]["max_chunk_size_tokens"],
        254
    );
    ingest(&host);
    let vs = call(&host, on("vector_stores.retrieve", &id), "GET", Value::Null).unwrap();
    assert_eq!(vs["status"], "completed", "{vs}");
    assert_eq!(vs["file_counts"]["completed"], 2);
    assert!(vs["usage_bytes"].as_u64().unwrap() > (cats.len() + tea.len()) as u64);
    // 168 characters in chunks of 100 with 20 overlap: 2 chunks; 162 in 254: 1.
    assert_eq!(host.count_vectors("vector_chunks", &id).unwrap(), 3);

    // A chunk's own text finds that chunk first, with its file's name and attributes.
    let first_tea = tea.as_str();
    let found = search(
        &host,
        &id,
        json!({"query": first_tea, "max_num_results": 3}),
    )
    .unwrap();
    assert_eq!(found["object"], "vector_store.search_results.page");
    assert_eq!(found["search_query"], json!([first_tea]));
    let top = &found["data"][0];
    assert_eq!(
        (&top["file_id"], &top["filename"]),
        (&json!(b), &json!("tea.md"))
    );
    assert_eq!(top["content"][0]["text"], first_tea);
    assert!((top["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert_eq!(top["attributes"], json!({"topic": "drinks", "year": 2024}));
    assert_eq!(found["data"].as_array().unwrap().len(), 3);
    // Filters keep only files whose attributes pass.
    let only_cats = search(
        &host,
        &id,
        json!({"query": first_tea, "filters": {"type": "ne", "key": "topic", "value": "drinks"}}),
    )
    .unwrap();
    let ids: Vec<&Value> = only_cats["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["file_id"])
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|f| **f == json!(a)),
        "{only_cats}"
    );
    let threshold = search(
        &host,
        &id,
        json!({"query": first_tea, "ranking_options": {"score_threshold": 0.99999}}),
    )
    .unwrap();
    assert_eq!(threshold["data"].as_array().unwrap().len(), 1);

    // Listing by status, the content, an update of attributes.
    let route = on("vector_stores.files.list", &id);
    let listed = call(&host, route, "GET", Value::Null).unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let content = call(
        &host,
        on("vector_stores.files.content", &id).with_param("file_id", &a),
        "GET",
        Value::Null,
    )
    .unwrap();
    assert_eq!(content["data"][0]["text"], cats);

    // A file removed takes its chunks along; the store's deletion takes the rest.
    let gone = call(
        &host,
        on("vector_stores.files.delete", &id).with_param("file_id", &b),
        "DELETE",
        Value::Null,
    )
    .unwrap();
    assert_eq!(gone["deleted"], true);
    assert_eq!(host.count_vectors("vector_chunks", &id).unwrap(), 2);
    let found = search(&host, &id, json!({"query": first_tea})).unwrap();
    assert!(
        found["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["file_id"] == json!(a))
    );
    call(
        &host,
        on("vector_stores.delete", &id),
        "DELETE",
        Value::Null,
    )
    .unwrap();
    assert_eq!(host.count_vectors("vector_chunks", &id).unwrap(), 0);
    let e = call(&host, on("vector_stores.retrieve", &id), "GET", Value::Null).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
}

#[test]
fn unreadable_files_fail_with_openais_codes() {
    let host = host();
    let pdf = file(&host, "slides.pptx", "PK");
    let empty = file(&host, "empty.txt", "");
    let vs = call(
        &host,
        Route::new("vector_stores.create"),
        "POST",
        json!({"file_ids": [pdf, empty]}),
    )
    .unwrap();
    let id = vs["id"].as_str().unwrap().to_owned();
    ingest(&host);
    let list = call(
        &host,
        on("vector_stores.files.list", &id),
        "GET",
        Value::Null,
    )
    .unwrap();
    let errors: Vec<(&Value, &Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (&f["status"], &f["last_error"]["code"]))
        .collect();
    assert!(
        errors.contains(&(&json!("failed"), &json!("unsupported_file"))),
        "{list}"
    );
    assert!(
        errors.contains(&(&json!("failed"), &json!("invalid_file"))),
        "{list}"
    );
    let vs = call(&host, on("vector_stores.retrieve", &id), "GET", Value::Null).unwrap();
    assert_eq!(
        (&vs["status"], &vs["file_counts"]["failed"]),
        (&json!("completed"), &json!(2))
    );
}

#[test]
fn batches_count_their_files_and_cancel_what_is_left() {
    let host = host();
    let f1 = file(&host, "a.txt", "alpha beta gamma");
    let f2 = file(&host, "b.txt", "delta epsilon");
    let vs = call(&host, Route::new("vector_stores.create"), "POST", json!({})).unwrap();
    let id = vs["id"].as_str().unwrap().to_owned();
    let batch = call(
        &host,
        on("vector_stores.file_batches.create", &id),
        "POST",
        json!({"files": [{"file_id": f1, "attributes": {"n": 1}}, {"file_id": f2}]}),
    )
    .unwrap();
    assert_eq!(
        (&batch["status"], &batch["file_counts"]["total"]),
        (&json!("in_progress"), &json!(2))
    );
    let bid = batch["id"].as_str().unwrap().to_owned();
    // One file ingests; the batch is cancelled before the other does.
    let first = host.jobs().jobs()[0].job.id.clone();
    host.jobs()
        .run_agent(&first, &FirstParty, &host, 5)
        .unwrap();
    let cancelled = call(
        &host,
        on("vector_stores.file_batches.cancel", &id).with_param("batch_id", &bid),
        "POST",
        Value::Null,
    )
    .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        (
            &cancelled["file_counts"]["completed"],
            &cancelled["file_counts"]["cancelled"]
        ),
        (&json!(1), &json!(1))
    );
    ingest(&host); // the cancelled file's job does nothing
    let files = call(
        &host,
        on("vector_stores.file_batches.files", &id).with_param("batch_id", &bid),
        "GET",
        Value::Null,
    )
    .unwrap();
    assert_eq!(files["data"].as_array().unwrap().len(), 2);
    let searched = search(&host, &id, json!({"query": "delta epsilon"})).unwrap();
    assert!(
        searched["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["file_id"] == json!(f1))
    );
}

#[test]
fn bad_input_is_a_400_or_404_naming_the_parameter() {
    let host = host();
    let f = file(&host, "a.txt", "some text");
    let create = |body: Value| call(&host, Route::new("vector_stores.create"), "POST", body);
    for (body, want) in [
        (json!({"file_ids": ["file-nope"]}), "file_ids"),
        (json!({"file_ids": "x"}), "file_ids"),
        (json!({"name": 5}), "name"),
        (
            json!({"expires_after": {"anchor": "created_at", "days": 3}}),
            "expires_after",
        ),
        (json!({"metadata": {"k": {"deep": 1}}}), "metadata"),
        (json!({"colour": "red"}), "colour"),
        (
            json!({"file_ids": [f], "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 100}}}),
            "chunking_strategy.static.max_chunk_size_tokens",
        ),
        (
            json!({"file_ids": [f], "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 60}}}),
            "chunking_strategy.static.chunk_overlap_tokens",
        ),
    ] {
        assert_eq!(param(create(body.clone()).unwrap_err()), want, "{body}");
    }
    let vs = create(json!({})).unwrap();
    let id = vs["id"].as_str().unwrap();
    for (body, want) in [
        (json!({}), "query"),
        (json!({"query": ""}), "query"),
        (json!({"query": vec!["a"; 9]}), "query"),
        (
            json!({"query": "a", "max_num_results": 51}),
            "max_num_results",
        ),
        (
            json!({"query": "a", "rewrite_query": true}),
            "rewrite_query",
        ),
        (
            json!({"query": "a", "filters": {"type": "like", "key": "a", "value": 1}}),
            "filters",
        ),
        (
            json!({"query": "a", "ranking_options": {"score_threshold": 2}}),
            "ranking_options.score_threshold",
        ),
    ] {
        assert_eq!(
            param(search(&host, id, body.clone()).unwrap_err()),
            want,
            "{body}"
        );
    }
    let add = |body: Value| call(&host, on("vector_stores.files.create", id), "POST", body);
    assert_eq!(param(add(json!({})).unwrap_err()), "file_id");
    assert_eq!(
        param(add(json!({"file_id": f, "attributes": {"k": [1]}})).unwrap_err()),
        "attributes"
    );
    let e = call(
        &host,
        on("vector_stores.retrieve", "vs_missing"),
        "GET",
        Value::Null,
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
    let e = call(
        &host,
        on("vector_stores.files.retrieve", id).with_param("file_id", &f),
        "GET",
        Value::Null,
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "a file not in the store");
}

#[test]
fn a_store_keeps_the_embedding_model_it_was_made_with() {
    let store = cinder_sdk::testing::FakeStore::default();
    let made_with = host().with_store(store.clone());
    let f = file(&made_with, "a.txt", "Owls hunt at night.");
    let vs = call(
        &made_with,
        Route::new("vector_stores.create"),
        "POST",
        json!({"file_ids": [f]}),
    )
    .unwrap();
    let id = vs["id"].as_str().unwrap().to_owned();
    ingest(&made_with);
    // The setting now names a model this host does not serve: the store still searches with
    // its own.
    let later = host()
        .with_setting("embedding_model", "another-model")
        .with_store(store);
    let found = search(&later, &id, json!({"query": "Owls hunt at night."})).unwrap();
    assert_eq!(found["data"][0]["file_id"], json!(f));
    let fresh = call(
        &later,
        Route::new("vector_stores.create"),
        "POST",
        json!({"file_ids": [f]}),
    );
    assert!(matches!(fresh, Err(Error::Unavailable(m)) if m.contains("another-model")));
}
