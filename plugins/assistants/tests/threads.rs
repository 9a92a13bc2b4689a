//! Threads and their messages against the SDK's fake host: a thread created with messages,
//! messages added, listed (paged, both orders), retrieved, modified and deleted, a thread's
//! deletion taking its messages, and every refused input naming its parameter.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Route};
use common::*;
use serde_json::{Value, json};

fn thread(host: &FakeHost, body: Value) -> Result<Value, Error> {
    call(
        host,
        Route::new("threads.create"),
        "POST",
        "/v1/threads",
        body,
    )
}

fn add(host: &FakeHost, thread: &str, body: Value) -> Result<Value, Error> {
    let path = format!("/v1/threads/{thread}/messages");
    call(
        host,
        on("threads.messages.create", thread),
        "POST",
        &path,
        body,
    )
}

fn messages(host: &FakeHost, thread: &str, query: &str) -> Result<Value, Error> {
    let path = format!("/v1/threads/{thread}/messages{query}");
    call(
        host,
        on("threads.messages.list", thread),
        "GET",
        &path,
        Value::Null,
    )
}

fn on_message(route: &str, thread: &str, message: &str) -> Route {
    on(route, thread).with_param("message_id", message)
}

fn texts(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["content"][0]["text"]["value"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_thread_keeps_its_messages_in_order_and_takes_them_when_deleted() {
    let host = FakeHost::new("m");
    let t = thread(
        &host,
        json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "second"}]}
        ], "metadata": {"user": "u1"}}),
    )
    .unwrap();
    let id = t["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("thread_"), "{id}");
    assert_eq!(
        (&t["object"], &t["metadata"]),
        (&json!("thread"), &json!({"user": "u1"}))
    );
    let m = add(
        &host,
        &id,
        json!({"role": "user", "content": "third", "metadata": {"k": "v"}}),
    )
    .unwrap();
    let mid = m["id"].as_str().unwrap().to_owned();
    assert!(mid.starts_with("msg_"));
    assert_eq!(
        (&m["object"], &m["thread_id"], &m["role"], &m["status"]),
        (
            &json!("thread.message"),
            &json!(id),
            &json!("user"),
            &json!("completed")
        )
    );
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": {"value": "third", "annotations": []}}])
    );

    assert_eq!(
        texts(&messages(&host, &id, "").unwrap()),
        ["third", "second", "first"]
    );
    assert_eq!(
        texts(&messages(&host, &id, "?order=asc").unwrap()),
        ["first", "second", "third"]
    );
    let page = messages(&host, &id, "?order=asc&limit=2").unwrap();
    assert_eq!(
        (texts(&page), &page["has_more"]),
        (vec!["first".to_owned(), "second".to_owned()], &json!(true))
    );
    let last = page["last_id"].as_str().unwrap();
    assert_eq!(
        texts(&messages(&host, &id, &format!("?order=asc&after={last}")).unwrap()),
        ["third"]
    );
    assert!(texts(&messages(&host, &id, "?run_id=run_x").unwrap()).is_empty());

    let path = format!("/v1/threads/{id}/messages/{mid}");
    let got = call(
        &host,
        on_message("threads.messages.retrieve", &id, &mid),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(got, m);
    let changed = call(
        &host,
        on_message("threads.messages.modify", &id, &mid),
        "POST",
        &path,
        json!({"metadata": {"k": "w"}}),
    )
    .unwrap();
    assert_eq!(
        (&changed["metadata"], &changed["content"]),
        (&json!({"k": "w"}), &m["content"])
    );
    let e = call(
        &host,
        on_message("threads.messages.modify", &id, &mid),
        "POST",
        &path,
        json!({"content": "x"}),
    )
    .unwrap_err();
    assert_eq!(param(e), "content");
    let gone = call(
        &host,
        on_message("threads.messages.delete", &id, &mid),
        "DELETE",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(
        gone,
        json!({"id": mid, "object": "thread.message.deleted", "deleted": true})
    );
    assert_eq!(
        texts(&messages(&host, &id, "?order=asc").unwrap()),
        ["first", "second"]
    );

    let tpath = format!("/v1/threads/{id}");
    let t2 = call(
        &host,
        on("threads.modify", &id),
        "POST",
        &tpath,
        json!({"metadata": {"user": "u2"}}),
    )
    .unwrap();
    assert_eq!(
        (&t2["metadata"], &t2["created_at"]),
        (&json!({"user": "u2"}), &t["created_at"])
    );
    assert_eq!(
        call(
            &host,
            on("threads.retrieve", &id),
            "GET",
            &tpath,
            Value::Null
        )
        .unwrap(),
        t2
    );
    let gone = call(
        &host,
        on("threads.delete", &id),
        "DELETE",
        &tpath,
        Value::Null,
    )
    .unwrap();
    assert_eq!(
        gone,
        json!({"id": id, "object": "thread.deleted", "deleted": true})
    );
    assert!(matches!(messages(&host, &id, ""), Err(Error::NotFound(_))));
    assert!(matches!(
        call(
            &host,
            on("threads.retrieve", &id),
            "GET",
            &tpath,
            Value::Null
        ),
        Err(Error::NotFound(_))
    ));
    // Its messages went with it.
    use cinder_sdk::host::Store;
    let left = host
        .list_objects(
            cinder_plugin_assistants::threads::MESSAGES,
            &cinder_sdk::store::Query {
                limit: 100,
                order: cinder_sdk::store::Order::Asc,
                after: None,
                before: None,
                status: None,
                metadata: vec![],
            },
        )
        .unwrap();
    assert!(left.objects.is_empty(), "{:?}", left.objects);
}

#[test]
fn refused_input_names_its_parameter_and_stores_nothing() {
    let host = FakeHost::new("m");
    let many: Vec<Value> = (0..33)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    for (body, want) in [
        (json!({"messages": many}), "messages"),
        (json!({"messages": {}}), "messages"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": []}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "attachments": [{"file_id": "file-1"}]}]}),
            "messages[0].attachments[0].file_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "metadata": {"k": 1}}]}),
            "messages[0].metadata",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "name": "n"}]}),
            "messages[0].name",
        ),
        (json!({"metadata": "x"}), "metadata"),
        (
            json!({"tool_resources": {"code_interpreter": {}}}),
            "tool_resources.code_interpreter",
        ),
        (json!({"assistant_id": "asst_1"}), "assistant_id"),
    ] {
        let Err(e) = thread(&host, body.clone()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(param(e), want, "{body}");
    }
    let t = thread(&host, Value::Null).unwrap();
    let id = t["id"].as_str().unwrap();
    let huge = "x".repeat(256_001);
    for (body, want) in [
        (json!({"role": "user", "content": huge}), "content"),
        (json!({"role": "tool", "content": "x"}), "role"),
        (json!({"role": "user", "content": 5}), "content"),
    ] {
        let Err(e) = add(&host, id, body.clone()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(param(e), want);
    }
    assert!(texts(&messages(&host, id, "").unwrap()).is_empty());
    assert_eq!(
        param(messages(&host, id, "?limit=500").unwrap_err()),
        "limit"
    );
    // Unknown threads and messages, and a message asked for through another thread.
    let other = thread(&host, Value::Null).unwrap();
    let other = other["id"].as_str().unwrap();
    let m = add(&host, id, json!({"role": "user", "content": "mine"})).unwrap();
    let mid = m["id"].as_str().unwrap();
    for (t, msg) in [
        (other, mid),
        (id, "msg_nope"),
        ("thread_nope", mid),
        ("asst_x", mid),
    ] {
        let r = call(
            &host,
            on_message("threads.messages.retrieve", t, msg),
            "GET",
            "/x",
            Value::Null,
        );
        assert!(matches!(r, Err(Error::NotFound(_))), "{t} {msg}: {r:?}");
    }
    assert!(matches!(
        add(
            &host,
            "thread_nope",
            json!({"role": "user", "content": "x"})
        ),
        Err(Error::NotFound(_))
    ));
}
