//! The responses plugin run natively against `testing::FakeHost` (one token per scripted
//! piece): the response object, the stream's event sequence, cut answers, function calls,
//! stored responses and the chains `previous_response_id` continues, and refusals by name.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_sdk::Error;
use common::*;
use serde_json::{Value, json};

#[test]
fn a_plain_answer_is_one_completed_message_with_usage() {
    let host = fake().generating(&["Hel", "lo."]);
    create(
        &host,
        "a1",
        json!({"model": "m", "input": "Say hello", "instructions": "Be kind"}),
    )
    .unwrap();
    let (status, r) = host.take_response().unwrap();
    assert_eq!(status, 200);
    assert_eq!(r["id"], "resp_a1");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["instructions"], "Be kind");
    assert_eq!(r["output"].as_array().unwrap().len(), 1);
    let msg = &r["output"][0];
    assert_eq!(
        (
            msg["type"].as_str(),
            msg["role"].as_str(),
            msg["status"].as_str()
        ),
        (Some("message"), Some("assistant"), Some("completed"))
    );
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(msg["content"][0]["text"], "Hello.");
    assert_eq!(r["usage"]["output_tokens"], 2);
    assert_eq!(
        r["usage"]["total_tokens"].as_u64(),
        Some(r["usage"]["input_tokens"].as_u64().unwrap() + 2)
    );
    assert!(r["incomplete_details"].is_null());
    // The instructions and the input reached the prompt.
    let prompt = prompt_of(&host, 0);
    assert!(
        prompt.contains("Be kind") && prompt.contains("Say hello"),
        "{prompt}"
    );
}

#[test]
fn a_stream_says_every_step_in_order_and_folds_to_the_same_response() {
    let host = fake().generating(&["Hel", "lo."]);
    create(
        &host,
        "s1",
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .unwrap();
    let events = host.events();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..10).collect::<Vec<_>>());
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[6]["text"], "Hello.");
    assert_eq!(
        events[9]["response"]["output"][0]["content"][0]["text"],
        "Hello."
    );
    // Stored: retrieving it gives the completed response.
    host.take_response();
    get(&host, "responses.retrieve", "resp_s1", "").unwrap();
    let (_, stored) = host.take_response().unwrap();
    assert_eq!(stored, events[9]["response"]);
}

#[test]
fn max_output_tokens_cuts_the_answer_as_incomplete() {
    let host = fake().generating(&["a"; 40]);
    create(
        &host,
        "c1",
        json!({"model": "m", "input": "count", "max_output_tokens": 16, "stream": true}),
    )
    .unwrap();
    let events = host.events();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    assert_eq!(last["response"]["usage"]["output_tokens"], 16);
}

#[test]
fn a_call_is_a_function_call_item_and_its_output_continues_the_chain() {
    let host = fake()
        .generating(&[
            "[{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Oslo\"}}]",
        ])
        .generating(&["Sunny in Oslo."]);
    create(
        &host,
        "t1",
        json!({"model": "m", "input": "Weather in Oslo?", "tools": weather(), "stream": true}),
    )
    .unwrap();
    let events = host.events();
    // Nothing of the envelope was said as text.
    assert!(
        events
            .iter()
            .all(|e| e["type"] != "response.output_text.delta"),
        "{events:?}"
    );
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(done["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Oslo"})
    );
    let r = &events.last().unwrap()["response"];
    assert_eq!(r["status"], "completed");
    let call = &r["output"][0];
    assert_eq!(call["type"], "function_call");
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    host.take_response();
    // The client runs the function and gives its output back, continuing the stored chain.
    create(&host, "t2", json!({"model": "m", "previous_response_id": "resp_t1", "tools": weather(),
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "{\"sky\": \"sunny\"}"}]})).unwrap();
    let (_, r) = host.take_response().unwrap();
    assert_eq!(r["output"][0]["content"][0]["text"], "Sunny in Oslo.");
    assert_eq!(r["previous_response_id"], "resp_t1");
    let prompt = prompt_of(&host, 1);
    // The first turn, its call and the call's output all reached the model.
    assert!(
        prompt.contains("Weather in Oslo?")
            && prompt.contains("get_weather")
            && prompt.contains("sunny"),
        "{prompt}"
    );
    // Its own input items only.
    get(&host, "responses.input_items", "resp_t2", "").unwrap();
    let (_, items) = host.take_response().unwrap();
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    assert_eq!(items["data"][0]["type"], "function_call_output");
}

#[test]
fn refusals_name_their_parameter_and_missing_responses_are_404() {
    let host = fake().generating(&["x"]);
    for (body, named) in [
        (json!({"model": "m", "input": "x", "mystery": 1}), "mystery"),
        (
            json!({"model": "m", "input": "x", "background": true, "store": false}),
            "store",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_none"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"model": "m"}), "input"),
    ] {
        assert_eq!(
            param(create(&host, "r", body.clone()).unwrap_err()),
            named,
            "{body}"
        );
    }
    assert!(matches!(
        get(&host, "responses.retrieve", "resp_none", ""),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        get(&host, "responses.retrieve", "../x", ""),
        Err(Error::NotFound(_))
    ));
    // Not stored: nothing to retrieve.
    create(
        &host,
        "n1",
        json!({"model": "m", "input": "x", "store": false}),
    )
    .unwrap();
    host.take_response();
    assert!(matches!(
        get(&host, "responses.retrieve", "resp_n1", ""),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn json_schema_output_is_constrained_and_logprobs_come_when_included() {
    let host = fake().generating(&["{\"a\":", "1}"]);
    create(&host, "j1", json!({"model": "m", "input": "give json",
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
        "include": ["message.output_text.logprobs"], "top_logprobs": 2})).unwrap();
    let (_, r) = host.take_response().unwrap();
    assert_eq!(host.constraints().len(), 1);
    assert_eq!(r["text"]["format"]["type"], "json_schema");
    let logprobs = r["output"][0]["content"][0]["logprobs"].as_array().unwrap();
    assert_eq!(logprobs.len(), 2);
    assert_eq!(logprobs[0]["top_logprobs"].as_array().unwrap().len(), 2);
}

#[test]
fn an_answer_the_limit_cut_is_incomplete_even_after_a_complete_call() {
    let call = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}, ";
    let mut pieces = vec!["[", call];
    pieces.extend(std::iter::repeat_n("{\"name\": \"get_w", 30));
    let host = fake().generating(&pieces);
    create(
        &host,
        "l1",
        json!({"model": "m", "input": "w?", "tools": weather(), "max_output_tokens": 16}),
    )
    .unwrap();
    let (_, r) = host.take_response().unwrap();
    assert_eq!(r["status"], "incomplete", "{r}");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    // The complete call stays; the cut one is dropped, never said as text.
    let kinds: Vec<&str> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert!(kinds.iter().all(|k| *k == "function_call"), "{r}");
}

#[test]
fn truncation_auto_leaves_out_the_oldest_turns_and_disabled_keeps_them() {
    let host = fake().generating(&["ok"]);
    // 60 turns of about 100 bytes: more than the fake model's 2048-token context.
    let input: Vec<Value> = (0..60)
        .map(|i| json!({"role": "user", "content": format!("turn {i:02} {}", "x".repeat(90))}))
        .collect();
    create(&host, "t1", json!({"model": "m", "instructions": "RULES", "input": input.clone(), "truncation": "auto", "max_output_tokens": 64})).unwrap();
    host.take_response();
    let prompt = prompt_of(&host, 0);
    assert!(prompt.len() <= 2048 - 64, "{}", prompt.len());
    assert!(
        prompt.contains("RULES") && prompt.contains("turn 59") && !prompt.contains("turn 00"),
        "{prompt}"
    );
    // Only the oldest went: the prompt still holds the last 15 turns (about 1,500 of its bytes).
    assert!(prompt.contains("turn 45"), "{prompt}");
    create(
        &host,
        "t2",
        json!({"model": "m", "input": input, "max_output_tokens": 64}),
    )
    .unwrap();
    host.take_response();
    assert!(prompt_of(&host, 1).contains("turn 00"));
}

#[test]
fn a_stream_that_fails_after_it_started_ends_with_response_failed() {
    let host = fake().generating(&["Hel", cinder_sdk::testing::FAILING]);
    create(
        &host,
        "x1",
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .unwrap();
    let events = host.events();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{events:?}");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());
    host.take_response();
    get(&host, "responses.retrieve", "resp_x1", "").unwrap();
    assert_eq!(host.take_response().unwrap().1["status"], "failed");
    // Not streaming, the failure is the answer.
    let host = fake().generating(&[cinder_sdk::testing::FAILING]);
    assert!(matches!(
        create(&host, "x2", json!({"model": "m", "input": "hi"})),
        Err(Error::Internal(_))
    ));
}

#[test]
fn a_chain_longer_than_the_setting_is_refused_by_name() {
    let host = fake()
        .with_setting("max_chain_responses", "2")
        .generating(&["ok"]);
    create(&host, "c1", json!({"model": "m", "input": "one"})).unwrap();
    host.take_response();
    create(
        &host,
        "c2",
        json!({"model": "m", "input": "two", "previous_response_id": "resp_c1"}),
    )
    .unwrap();
    host.take_response();
    create(
        &host,
        "c3",
        json!({"model": "m", "input": "three", "previous_response_id": "resp_c2"}),
    )
    .unwrap();
    host.take_response();
    let e = create(
        &host,
        "c4",
        json!({"model": "m", "input": "four", "previous_response_id": "resp_c3"}),
    )
    .unwrap_err();
    assert_eq!(param(e), "previous_response_id");
}

#[test]
fn text_held_back_while_it_might_be_a_call_keeps_its_logprobs() {
    let host = fake().generating(&[" ", "Hi", " there"]);
    create(
        &host,
        "h1",
        json!({"model": "m", "input": "hi", "tools": weather(),
        "include": ["message.output_text.logprobs"], "top_logprobs": 1}),
    )
    .unwrap();
    let (_, r) = host.take_response().unwrap();
    let part = &r["output"][0]["content"][0];
    assert_eq!(part["text"], " Hi there");
    assert_eq!(part["logprobs"].as_array().unwrap().len(), 3, "{part}");
}
