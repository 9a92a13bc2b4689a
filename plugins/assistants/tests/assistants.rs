//! The Assistants API against the SDK's fake host: create, retrieve, modify, list and delete
//! through the plugin's routes, every setting's rule, and the routes not built yet.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Route};
use common::*;
use serde_json::{Value, json};

#[test]
fn an_assistant_is_created_retrieved_modified_and_deleted() {
    let host = FakeHost::new("m");
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "file_search"}
    ]);
    let a = create(
        &host,
        json!({"model": "m", "name": "Helper", "instructions": "Be brief.", "tools": tools,
               "metadata": {"team": "a"}, "temperature": 0.2}),
    )
    .unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("asst_"), "{id}");
    assert_eq!(a["object"], "assistant");
    assert_eq!(
        (
            &a["model"],
            &a["name"],
            &a["instructions"],
            &a["temperature"]
        ),
        (
            &json!("m"),
            &json!("Helper"),
            &json!("Be brief."),
            &json!(0.2)
        )
    );
    assert_eq!(
        (&a["top_p"], &a["response_format"]),
        (&json!(1.0), &json!("auto"))
    );
    assert_eq!(a["tools"], tools);
    assert!(a["created_at"].as_i64().unwrap() > 0);

    let path = format!("/v1/assistants/{id}");
    let got = call(
        &host,
        on("assistants.retrieve", &id),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(got, a);

    let changed = call(
        &host,
        on("assistants.modify", &id),
        "POST",
        &path,
        json!({"name": "Helper 2", "description": null, "metadata": {"team": "b"}}),
    )
    .unwrap();
    assert_eq!(
        (&changed["name"], &changed["metadata"]),
        (&json!("Helper 2"), &json!({"team": "b"}))
    );
    assert_eq!(
        changed["instructions"], "Be brief.",
        "untouched settings stay"
    );
    assert_eq!(changed["created_at"], a["created_at"]);

    let gone = call(
        &host,
        on("assistants.delete", &id),
        "DELETE",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(
        gone,
        json!({"id": id, "object": "assistant.deleted", "deleted": true})
    );
    let again = call(
        &host,
        on("assistants.retrieve", &id),
        "GET",
        &path,
        Value::Null,
    );
    assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
    let again = call(
        &host,
        on("assistants.delete", &id),
        "DELETE",
        &path,
        Value::Null,
    );
    assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
}

#[test]
fn listing_pages_newest_first_with_cursors_both_ways() {
    let host = FakeHost::new("m");
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let a = create(&host, json!({"model": "m", "name": format!("a{i}")})).unwrap();
            a["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let list = |q: &str| {
        call(
            &host,
            Route::new("assistants.list"),
            "GET",
            &format!("/v1/assistants{q}"),
            Value::Null,
        )
    };
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = list("").unwrap();
    assert_eq!(all["object"], "list");
    assert_eq!(names(&all), ["a4", "a3", "a2", "a1", "a0"]);
    let first = list("?limit=2").unwrap();
    assert_eq!(
        (names(&first), &first["has_more"]),
        (vec!["a4".to_owned(), "a3".to_owned()], &json!(true))
    );
    assert_eq!(first["last_id"], json!(ids[3]));
    let next = list(&format!("?limit=2&after={}", ids[3])).unwrap();
    assert_eq!(names(&next), ["a2", "a1"]);
    let asc = list("?order=asc&limit=3").unwrap();
    assert_eq!(names(&asc), ["a0", "a1", "a2"]);
    let before = list(&format!("?order=asc&before={}", ids[2])).unwrap();
    assert_eq!(names(&before), ["a0", "a1"]);
    assert_eq!(param(list("?limit=0").unwrap_err()), "limit");
    assert_eq!(param(list("?limit=101").unwrap_err()), "limit");
    assert_eq!(param(list("?order=up").unwrap_err()), "order");
    assert_eq!(param(list("?colour=red").unwrap_err()), "colour");
}

#[test]
fn every_setting_is_checked_and_the_error_names_it() {
    let host = FakeHost::new("m");
    let cases = [
        (json!({}), "model"),
        (json!({"model": 3}), "model"),
        (json!({"model": "not-served"}), "model"),
        (json!({"model": "m", "name": "n".repeat(257)}), "name"),
        (
            json!({"model": "m", "description": "d".repeat(513)}),
            "description",
        ),
        (json!({"model": "m", "instructions": 5}), "instructions"),
        (json!({"model": "m", "tools": {}}), "tools"),
        (
            json!({"model": "m", "tools": vec![json!({"type": "file_search"}); 129]}),
            "tools",
        ),
        (
            json!({"model": "m", "tools": [{"type": "code_interpreter"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "tools": [{"type": "retrieval"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "tools": [{"type": "function", "function": {"name": "a b"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": 1}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"model": "m", "tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]}),
            "tools[0].file_search.max_num_results",
        ),
        (
            json!({"model": "m", "tool_resources": {"file_search": {"vector_store_ids": ["vs_1", "vs_2"]}}}),
            "tool_resources.file_search.vector_store_ids",
        ),
        (
            json!({"model": "m", "tool_resources": {"code_interpreter": {"file_ids": []}}}),
            "tool_resources.code_interpreter",
        ),
        (json!({"model": "m", "metadata": {"k": 1}}), "metadata"),
        (json!({"model": "m", "temperature": 2.5}), "temperature"),
        (json!({"model": "m", "top_p": -0.1}), "top_p"),
        (
            json!({"model": "m", "response_format": "json"}),
            "response_format",
        ),
        (
            json!({"model": "m", "response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        (
            json!({"model": "m", "reasoning_effort": "high"}),
            "reasoning_effort",
        ),
        (json!({"model": "m", "file_ids": []}), "file_ids"),
    ];
    for (body, want) in cases {
        let Err(e) = create(&host, body.clone()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(param(e), want, "{body}");
    }
    // Nothing half-made was kept.
    let list = call(
        &host,
        Route::new("assistants.list"),
        "GET",
        "/v1/assistants",
        Value::Null,
    )
    .unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
    // Accepted shapes.
    for body in [
        json!({"model": "m", "response_format": {"type": "json_object"}, "top_p": 0.5}),
        json!({"model": "m", "response_format": {"type": "json_schema",
               "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
        json!({"model": "m", "tool_resources": {"file_search": {"vector_store_ids": []}}, "name": null}),
    ] {
        if let Err(e) = create(&host, body.clone()) {
            panic!("{body}: {e:?}");
        }
    }
    // A modification is checked the same way, and leaves the assistant as it was.
    let a = create(&host, json!({"model": "m", "name": "keep"})).unwrap();
    let id = a["id"].as_str().unwrap();
    let path = format!("/v1/assistants/{id}");
    let e = call(
        &host,
        on("assistants.modify", id),
        "POST",
        &path,
        json!({"temperature": 9}),
    )
    .unwrap_err();
    assert_eq!(param(e), "temperature");
    let e = call(
        &host,
        on("assistants.modify", id),
        "POST",
        &path,
        json!({"model": "gone"}),
    )
    .unwrap_err();
    assert_eq!(param(e), "model");
    let got = call(
        &host,
        on("assistants.retrieve", id),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(got, a);
}

#[test]
fn ids_that_are_not_assistants_are_not_found() {
    let host = FakeHost::new("m");
    for id in ["asst_nope", "file-abc", "asst_../x", ""] {
        let e = call(
            &host,
            on("assistants.retrieve", id),
            "GET",
            "/v1/assistants/x",
            Value::Null,
        );
        assert!(matches!(e, Err(Error::NotFound(_))), "{id}: {e:?}");
    }
    // Vector stores are another plugin's routes.
    let e = call(
        &host,
        on("vector_stores.create", "x"),
        "POST",
        "/v1/x",
        json!({}),
    );
    assert!(matches!(e, Err(Error::NotFound(_))), "{e:?}");
}
