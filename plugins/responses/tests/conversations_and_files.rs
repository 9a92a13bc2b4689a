//! The responses plugin's Conversations API and input files, run natively against
//! `testing::FakeHost`: a conversation carried over turns and its items paged, and files a
//! message names read into the prompt, once, within bounds.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_sdk::{Error, Route};
use common::*;
use serde_json::{Value, json};

#[test]
fn a_conversation_carries_the_turns_and_lists_its_items() {
    let host = fake()
        .generating(&["Hi Ada."])
        .generating(&["Your name is Ada."]);
    let conv = call(&host, "POST", Route::new("conversations.create"), "/v1/conversations",
        json!({"metadata": {"topic": "names"}, "items": [{"role": "system", "content": "Be brief."}]})).unwrap();
    let cid = conv["id"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("conv_") && conv["object"] == "conversation");
    assert_eq!(conv["metadata"]["topic"], "names");
    create(
        &host,
        "u1",
        json!({"model": "m", "conversation": cid, "input": "I am Ada."}),
    )
    .unwrap();
    let (_, first) = host.take_response().unwrap();
    assert_eq!(first["conversation"]["id"], cid.as_str());
    create(
        &host,
        "u2",
        json!({"model": "m", "conversation": {"id": cid}, "input": "What is my name?"}),
    )
    .unwrap();
    host.take_response();
    let prompt = prompt_of(&host, 1);
    assert!(
        prompt.contains("Be brief.") && prompt.contains("I am Ada.") && prompt.contains("Hi Ada."),
        "{prompt}"
    );
    // system + (input, answer) × 2, newest first by default.
    let items_route = || Route::new("conversations.items.list").with_param("id", &cid);
    let list = call(
        &host,
        "GET",
        items_route(),
        "/v1/conversations/x/items",
        json!(null),
    )
    .unwrap();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(data[0]["content"][0]["text"], "Your name is Ada.");
    let asc = call(
        &host,
        "GET",
        items_route(),
        "/v1/conversations/x/items?order=asc&limit=2",
        json!(null),
    )
    .unwrap();
    assert_eq!(asc["data"][0]["content"][0]["text"], "Be brief.");
    assert_eq!(asc["has_more"], true);
    let after = asc["last_id"].as_str().unwrap();
    let next = call(
        &host,
        "GET",
        items_route(),
        &format!("/v1/conversations/x/items?order=asc&after={after}"),
        json!(null),
    )
    .unwrap();
    assert_eq!(next["data"].as_array().unwrap().len(), 3);
    // One item retrieved, then deleted; the conversation goes with its items.
    let item_id = data[4]["id"].as_str().unwrap();
    let item_route = |r: &str| {
        Route::new(r)
            .with_param("id", &cid)
            .with_param("item_id", item_id)
    };
    let got = call(
        &host,
        "GET",
        item_route("conversations.items.retrieve"),
        "/",
        json!(null),
    )
    .unwrap();
    assert_eq!(got["id"], item_id);
    call(
        &host,
        "DELETE",
        item_route("conversations.items.delete"),
        "/",
        json!(null),
    )
    .unwrap();
    assert!(matches!(
        call(
            &host,
            "GET",
            item_route("conversations.items.retrieve"),
            "/",
            json!(null)
        ),
        Err(Error::NotFound(_))
    ));
    let gone = call(
        &host,
        "DELETE",
        Route::new("conversations.delete").with_param("id", &cid),
        "/",
        json!(null),
    )
    .unwrap();
    assert_eq!(
        (gone["object"].as_str(), gone["deleted"].as_bool()),
        (Some("conversation.deleted"), Some(true))
    );
    assert!(matches!(
        create(
            &host,
            "u3",
            json!({"model": "m", "conversation": cid, "input": "x"})
        ),
        Err(Error::NotFound(_))
    ));
    // Bad input is named.
    let e = call(
        &host,
        "POST",
        Route::new("conversations.create"),
        "/v1/conversations",
        json!({"items": "x"}),
    )
    .unwrap_err();
    assert_eq!(param(e), "items");
    let e = call(
        &host,
        "POST",
        Route::new("conversations.create"),
        "/v1/conversations",
        json!({"colour": 1}),
    )
    .unwrap_err();
    assert_eq!(param(e), "colour");
}

/// A file of the caller's holding `content`; its id.

#[test]
fn an_input_file_is_read_into_the_prompt_and_kept_by_id() {
    let host = fake().generating(&["It says hello."]);
    let id = upload(&host, "note.txt", b"The secret word is lantern.");
    create(
        &host,
        "f1",
        json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What does the file say?"},
        {"type": "input_file", "file_id": id}]}]}),
    )
    .unwrap();
    host.take_response();
    assert!(
        prompt_of(&host, 0).contains("The secret word is lantern."),
        "{}",
        prompt_of(&host, 0)
    );
    get(&host, "responses.input_items", "resp_f1", "").unwrap();
    let (_, items) = host.take_response().unwrap();
    let part = &items["data"][0]["content"][1];
    assert_eq!(
        (
            part["type"].as_str(),
            part["file_id"].as_str(),
            part["filename"].as_str()
        ),
        (Some("input_file"), Some(id.as_str()), Some("note.txt"))
    );
    // A missing file, and one that is not text, are refused by name.
    let bin = upload(&host, "blob.bin", &[0xff, 0xfe, 0x00]);
    for (file, why) in [("file-nope", "No file"), (bin.as_str(), "not UTF-8")] {
        let e = create(
            &host,
            "f2",
            json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_file", "file_id": file}]}]}),
        )
        .unwrap_err();
        let Error::InvalidRequest(d) = e else {
            panic!("not a 400")
        };
        assert_eq!(d.param.as_deref(), Some("input[0].content[0].file_id"));
        assert!(d.message.contains(why), "{}", d.message);
    }
}

#[test]
fn files_named_again_are_read_once_and_their_total_is_bounded() {
    let host = fake()
        .with_setting("max_input_file_bytes", "10")
        .generating(&["ok"]);
    let ids: Vec<String> = (0..5)
        .map(|i| upload(&host, &format!("f{i}.txt"), b"123456789"))
        .collect();
    // One file named 50 times: read once, and once in the prompt.
    let part = json!({"type": "input_file", "file_id": ids[0]});
    let content: Vec<Value> = std::iter::repeat_n(part, 50).collect();
    create(
        &host,
        "b1",
        json!({"model": "m", "input": [{"role": "user", "content": content}]}),
    )
    .unwrap();
    host.take_response();
    assert_eq!(prompt_of(&host, 0).matches("12345678").count(), 1);
    // Five distinct files of 9 bytes pass four times the per-file bound (40 bytes).
    let content: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "input_file", "file_id": id}))
        .collect();
    let e = create(
        &host,
        "b2",
        json!({"model": "m", "input": [{"role": "user", "content": content}]}),
    )
    .unwrap_err();
    assert_eq!(param(e), "input[0].content[4].file_id");
}
