//! The Files and Uploads APIs against the SDK's fake host: one in-memory store shared by the
//! requests of a test, each request a host of its own (as the real host makes one per call).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cinder_plugin_files::FirstParty;
use cinder_sdk::testing::{FakeHost, FakeStore, request};
use cinder_sdk::{Error, Route, ServeJobs};
use serde_json::{Value, json};

fn host(store: &FakeStore) -> FakeHost {
    FakeHost::new("m").with_store(store.clone())
}

fn call(
    host: &FakeHost,
    route: Route,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value, Error> {
    FirstParty.serve(&route, request(method, path, &body), host)?;
    Ok(host.take_response().map(|(_, v)| v).unwrap_or(Value::Null))
}

/// A multipart form's parts: (name, filename, content).
type Form<'a> = Vec<(&'a str, Option<&'a str>, &'a [u8])>;

fn upload(store: &FakeStore, form: &[(&str, Option<&str>, &[u8])]) -> Result<Value, Error> {
    let h = host(store).with_form(form);
    call(
        &h,
        Route::new("files.create"),
        "POST",
        "/v1/files",
        Value::Null,
    )
}

fn get(store: &FakeStore, route: &str, id: &str) -> Result<Value, Error> {
    let h = host(store);
    let method = if route == "files.delete" {
        "DELETE"
    } else {
        "GET"
    };
    call(
        &h,
        Route::new(route).with_param("id", id),
        method,
        "/v1/files/x",
        Value::Null,
    )
}

fn list(store: &FakeStore, query: &str) -> Result<Value, Error> {
    let h = host(store);
    call(
        &h,
        Route::new("files.list"),
        "GET",
        &format!("/v1/files{query}"),
        Value::Null,
    )
}

fn param(e: &Error) -> Option<&str> {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.as_deref(),
        _ => None,
    }
}

const BATCH: &[u8] = b"{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n";

#[test]
fn a_file_round_trips_as_openai_shapes_it() {
    let store = FakeStore::default();
    let made = upload(
        &store,
        &[
            ("purpose", None, b"batch"),
            ("file", Some("in.jsonl"), BATCH),
        ],
    )
    .unwrap();
    assert!(made["id"].as_str().unwrap().starts_with("file-"));
    assert_eq!(made["object"], "file");
    assert_eq!(made["bytes"], BATCH.len());
    assert_eq!(made["filename"], "in.jsonl");
    assert_eq!(made["purpose"], "batch");
    assert_eq!(made["status"], "processed");
    assert_eq!(made["expires_at"], Value::Null);
    let id = made["id"].as_str().unwrap();
    assert_eq!(get(&store, "files.retrieve", id).unwrap(), made);

    // The content is answered by the host from the blob, untouched.
    let h = host(&store);
    FirstParty
        .serve(
            &Route::new("files.content").with_param("id", id),
            request("GET", "/", &Value::Null),
            &h,
        )
        .unwrap();
    let (blob, content_type) = store.sent_blob().unwrap();
    assert_eq!(store.blob(&blob).unwrap(), BATCH);
    assert_eq!(content_type, "application/octet-stream");

    let deleted = get(&store, "files.delete", id).unwrap();
    assert_eq!(
        deleted,
        json!({"id": id, "object": "file", "deleted": true})
    );
    assert_eq!(store.blob_count(), 0);
    let gone = get(&store, "files.retrieve", id).unwrap_err();
    assert!(matches!(gone, Error::NotFound(_)), "{gone:?}");
}

#[test]
fn bad_uploads_name_the_parameter_and_leave_nothing() {
    let store = FakeStore::default();
    let cases: Vec<(Form, &str)> = vec![
        (vec![("file", Some("a.txt"), b"hi")], "purpose"),
        (vec![("purpose", None, b"assistants")], "file"),
        (
            vec![
                ("purpose", None, b"nonsense"),
                ("file", Some("a.txt"), b"hi"),
            ],
            "purpose",
        ),
        (
            vec![("purpose", None, b"user_data"), ("file", None, b"hi")],
            "file",
        ),
        (
            vec![
                ("purpose", None, b"user_data"),
                ("file", Some("a.txt"), b""),
            ],
            "file",
        ),
        (
            vec![
                ("purpose", None, b"batch"),
                ("file", Some("a.jsonl"), b"{}\nnot json\n"),
            ],
            "file",
        ),
        (
            vec![
                ("purpose", None, b"fine-tune"),
                ("file", Some("a.jsonl"), b"[1]\n"),
            ],
            "file",
        ),
        (
            vec![
                ("purpose", None, b"user_data"),
                ("file", Some("a.txt"), b"x"),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"10"),
            ],
            "expires_after.seconds",
        ),
        (
            vec![
                ("purpose", None, b"user_data"),
                ("file", Some("a.txt"), b"x"),
                ("expires_after[anchor]", None, b"last_active_at"),
                ("expires_after[seconds]", None, b"3600"),
            ],
            "expires_after.anchor",
        ),
        (
            vec![
                ("purpose", None, b"user_data"),
                ("file", Some("a.txt"), b"x"),
                ("file", Some("b.txt"), b"y"),
            ],
            "file",
        ),
    ];
    for (form, expected) in cases {
        let e = upload(&store, &form).unwrap_err();
        assert_eq!(param(&e), Some(expected), "{form:?}: {e:?}");
        assert_eq!(store.blob_count(), 0, "{form:?} left a blob");
        assert!(store.objects("files").is_empty());
    }
    let e = upload(
        &store,
        &[
            ("purpose", None, b"batch"),
            ("file", Some("a.jsonl"), b"{}\n{}\n["),
        ],
    )
    .unwrap_err();
    let Error::InvalidRequest(d) = e else {
        panic!()
    };
    assert!(d.message.contains("line 3"), "{}", d.message);
    // Past the host's size limit: refused, nothing kept.
    let small = FakeStore::default().with_max_blob_bytes(4);
    assert!(
        upload(
            &small,
            &[
                ("purpose", None, b"user_data"),
                ("file", Some("a"), b"12345")
            ]
        )
        .is_err()
    );
    assert_eq!(small.blob_count(), 0);
}

#[test]
fn unknown_and_path_like_ids_are_404s() {
    let store = FakeStore::default();
    for id in ["file-nope", "../x", "", "file-\u{0}"] {
        for route in ["files.retrieve", "files.content", "files.delete"] {
            let e = get(&store, route, id).unwrap_err();
            assert!(matches!(e, Error::NotFound(_)), "{route} {id:?}: {e:?}");
        }
    }
}

#[test]
fn listing_pages_and_filters_by_purpose() {
    let store = FakeStore::default();
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose: &[u8] = if i % 2 == 0 { b"batch" } else { b"assistants" };
        let made = upload(
            &store,
            &[("purpose", None, purpose), ("file", Some("f"), BATCH)],
        )
        .unwrap();
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    let all = list(&store, "").unwrap();
    let got: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, newest_first);
    assert_eq!(
        (all["object"].as_str(), all["has_more"].as_bool()),
        (Some("list"), Some(false))
    );
    let page = list(&store, "?limit=2&order=asc").unwrap();
    assert_eq!(page["first_id"], ids[0].as_str());
    assert_eq!(page["last_id"], ids[1].as_str());
    assert_eq!(page["has_more"], true);
    let next = list(&store, &format!("?limit=2&order=asc&after={}", ids[1])).unwrap();
    assert_eq!(next["first_id"], ids[2].as_str());
    let batch = list(&store, "?purpose=batch").unwrap();
    assert_eq!(batch["data"].as_array().unwrap().len(), 3);
    for (query, expected) in [
        ("?purpose=nonsense", "purpose"),
        ("?limit=0", "limit"),
        ("?limit=10001", "limit"),
        ("?order=sideways", "order"),
        ("?after=file-unknown", "after"),
    ] {
        let e = list(&store, query).unwrap_err();
        assert_eq!(param(&e), Some(expected), "{query}: {e:?}");
    }
}

fn uploads(
    store: &FakeStore,
    route: Route,
    body: Value,
    form: &[(&str, Option<&str>, &[u8])],
) -> Result<Value, Error> {
    let h = host(store).with_form(form);
    call(&h, route, "POST", "/v1/uploads", body)
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_upload_in_parts_becomes_one_file() {
    let store = FakeStore::default();
    let content = b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
    let created = uploads(
        &store,
        Route::new("uploads.create"),
        json!({"bytes": content.len(), "filename": "big.jsonl", "mime_type": "text/jsonl", "purpose": "batch"}),
        &[],
    )
    .unwrap();
    assert_eq!(
        (created["object"].as_str(), created["status"].as_str()),
        (Some("upload"), Some("pending"))
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    for chunk in content.chunks(10) {
        let part = uploads(
            &store,
            Route::new("uploads.parts").with_param("id", &id),
            Value::Null,
            &[("data", Some("blob"), chunk)],
        )
        .unwrap();
        assert_eq!(part["object"], "upload.part");
        assert_eq!(part["upload_id"], id.as_str());
        parts.push(part["id"].as_str().unwrap().to_owned());
    }
    // A wrong MD5, a part listed twice or a foreign part: refused, still pending.
    let complete = Route::new("uploads.complete").with_param("id", &id);
    let e = uploads(
        &store,
        complete.clone(),
        json!({"part_ids": parts, "md5": "00"}),
        &[],
    )
    .unwrap_err();
    assert_eq!(param(&e), Some("md5"));
    let twice = vec![parts[0].clone(), parts[0].clone()];
    let e = uploads(&store, complete.clone(), json!({"part_ids": twice}), &[]).unwrap_err();
    assert_eq!(param(&e), Some("part_ids"));
    let e = uploads(
        &store,
        complete.clone(),
        json!({"part_ids": [parts[0]]}),
        &[],
    )
    .unwrap_err();
    assert_eq!(param(&e), Some("part_ids"), "too few bytes");
    let blobs_before = store.blob_count();
    let done = uploads(
        &store,
        complete.clone(),
        json!({"part_ids": parts, "md5": md5_hex(content)}),
        &[],
    )
    .unwrap();
    assert_eq!(done["status"], "completed");
    let file = &done["file"];
    assert_eq!(
        (file["bytes"].as_u64(), file["purpose"].as_str()),
        (Some(content.len() as u64), Some("batch"))
    );
    // The parts are gone; the file's content is the parts in order.
    assert!(store.objects("upload_parts").is_empty());
    assert_eq!(store.blob_count(), blobs_before - parts.len() + 1);
    let stored: Value = serde_json::from_str(&store.objects("files")[0].body).unwrap();
    assert_eq!(
        store.blob(stored["blob"].as_str().unwrap()).unwrap(),
        content
    );
    // Over: no more parts, no second completion, no cancel.
    let e = uploads(&store, complete, json!({"part_ids": parts}), &[]).unwrap_err();
    assert_eq!(param(&e), Some("upload_id"));
    let e = uploads(
        &store,
        Route::new("uploads.cancel").with_param("id", &id),
        Value::Null,
        &[],
    )
    .unwrap_err();
    assert_eq!(param(&e), Some("upload_id"));
}

#[test]
fn a_cancelled_upload_keeps_no_parts() {
    let store = FakeStore::default();
    let created = uploads(
        &store,
        Route::new("uploads.create"),
        json!({"bytes": 3, "filename": "a", "mime_type": "text/plain", "purpose": "user_data"}),
        &[],
    )
    .unwrap();
    let id = created["id"].as_str().unwrap();
    uploads(
        &store,
        Route::new("uploads.parts").with_param("id", id),
        Value::Null,
        &[("data", Some("b"), b"abc")],
    )
    .unwrap();
    let cancelled = uploads(
        &store,
        Route::new("uploads.cancel").with_param("id", id),
        Value::Null,
        &[],
    )
    .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(store.blob_count(), 0);
    let e = uploads(
        &store,
        Route::new("uploads.parts").with_param("id", id),
        Value::Null,
        &[("data", Some("b"), b"x")],
    )
    .unwrap_err();
    assert_eq!(param(&e), Some("upload_id"));
    let e = uploads(
        &store,
        Route::new("uploads.parts").with_param("id", "upload_nope"),
        Value::Null,
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
    for (body, expected) in [
        (
            json!({"filename": "a", "mime_type": "t", "purpose": "batch"}),
            "bytes",
        ),
        (
            json!({"bytes": 1, "filename": "a", "mime_type": "t", "purpose": "x"}),
            "purpose",
        ),
        (
            json!({"bytes": 1, "filename": "", "mime_type": "t", "purpose": "batch"}),
            "filename",
        ),
        (
            json!({"bytes": -1, "filename": "a", "mime_type": "t", "purpose": "batch"}),
            "bytes",
        ),
    ] {
        let e = uploads(&store, Route::new("uploads.create"), body.clone(), &[]).unwrap_err();
        assert_eq!(param(&e), Some(expected), "{body}: {e:?}");
    }
}

#[test]
fn expired_files_vanish_without_breaking_a_listing() {
    let store = FakeStore::default();
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let made = upload(
                &store,
                &[
                    ("purpose", None, b"user_data"),
                    ("file", Some("f"), &[b'a' + i][..]),
                ],
            )
            .unwrap();
            made["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // Files 1 and 2 (the end of the first page of two) expired a while ago.
    let h = host(&store);
    for id in &ids[1..3] {
        support::backdate(&h, "files", id);
    }
    let page = list(&store, "?limit=2&order=asc").unwrap();
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[3].as_str()]);
    assert_eq!(page["has_more"], true);
    // They are gone, content and all.
    assert!(matches!(
        get(&store, "files.retrieve", &ids[1]).unwrap_err(),
        Error::NotFound(_)
    ));
    assert_eq!(store.blob_count(), 3);
    let rest = list(&store, &format!("?limit=2&order=asc&after={}", ids[3])).unwrap();
    assert_eq!(rest["data"][0]["id"], ids[4].as_str());
}

#[test]
fn parts_cannot_hold_more_than_the_upload() {
    let store = FakeStore::default();
    let created = uploads(
        &store,
        Route::new("uploads.create"),
        json!({"bytes": 4, "filename": "a", "mime_type": "text/plain", "purpose": "user_data"}),
        &[],
    )
    .unwrap();
    let id = created["id"].as_str().unwrap();
    let part = |data: &[u8]| {
        uploads(
            &store,
            Route::new("uploads.parts").with_param("id", id),
            Value::Null,
            &[("data", Some("b"), data)],
        )
    };
    part(b"abc").unwrap();
    let e = part(b"de").unwrap_err();
    assert_eq!(param(&e), Some("data"), "{e:?}");
    assert_eq!(store.blob_count(), 1, "the refused part left nothing");
    part(b"d").unwrap();
}

#[test]
fn a_completion_retried_after_a_dropped_call_makes_one_file() {
    use cinder_sdk::host::Store;
    use cinder_sdk::store::NewObject;
    let store = FakeStore::default();
    let created = uploads(
        &store,
        Route::new("uploads.create"),
        json!({"bytes": 3, "filename": "a.txt", "mime_type": "text/plain", "purpose": "user_data"}),
        &[],
    )
    .unwrap();
    let id = created["id"].as_str().unwrap();
    let part = uploads(
        &store,
        Route::new("uploads.parts").with_param("id", id),
        Value::Null,
        &[("data", Some("b"), b"abc")],
    )
    .unwrap();
    // What a first completion left when its call was dropped after keeping the File and
    // before marking the upload completed: the File, under the id the upload gives it.
    let h = host(&store);
    let mut w = h.blob_writer().unwrap();
    w.write(b"abc").unwrap();
    let first = w.finish().unwrap();
    let file_id = format!("file-{}", id.trim_start_matches("upload_"));
    let body = json!({"filename": "a.txt", "bytes": 3, "purpose": "user_data", "blob": first.id, "expires_at": null});
    let new = NewObject {
        id_prefix: "file-".into(),
        status: None,
        metadata: vec![("purpose".into(), "user_data".into())],
        body: body.to_string(),
    };
    h.put_object("files", &file_id, &new).unwrap();
    // The client's retry completes it: one File, the same id, the first content's blob gone.
    let done = uploads(
        &store,
        Route::new("uploads.complete").with_param("id", id),
        json!({"part_ids": [part["id"]]}),
        &[],
    )
    .unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["file"]["id"], file_id.as_str());
    assert_eq!(store.objects("files").len(), 1);
    assert!(store.blob(&first.id).is_none());
    assert_eq!(store.blob_count(), 1);
}
