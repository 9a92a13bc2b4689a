//! Runs against the SDK's fake host: queued by the request, answered by their job's step
//! into the thread, listed with their steps, cancelled before they run, refused while another
//! is active, and what is not built yet refused by name.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_plugin_assistants::FirstParty;
use cinder_sdk::testing::FakeHost;
use cinder_sdk::{Error, Route};
use common::*;
use serde_json::{Value, json};

#[test]
fn a_run_answers_in_its_thread_through_its_job() {
    let host = FakeHost::new("m").generating(&["Four", "."]);
    let a = create(&host, json!({"model": "m", "instructions": "Be brief."})).unwrap();
    let asst = a["id"].as_str().unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "2+2?"}]}),
    );
    let r = run(
        &host,
        &thread,
        json!({"assistant_id": asst, "additional_instructions": "Use digits."}),
    )
    .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("run_"));
    assert_eq!(
        (&r["object"], &r["status"], &r["thread_id"], &r["model"]),
        (
            &json!("thread.run"),
            &json!("queued"),
            &json!(thread),
            &json!("m")
        )
    );
    assert_eq!(r["instructions"], "Be brief.\n\nUse digits.");
    assert!(
        host.generate_requests().is_empty(),
        "nothing generated before the job runs"
    );
    // Another run on the thread while this one is active: refused, as OpenAI does.
    let e = run(&host, &thread, json!({"assistant_id": asst})).unwrap_err();
    assert_eq!(param(e), "thread_id");

    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["completed_at"].as_i64().is_some() && done["started_at"].as_i64().is_some());
    assert_eq!(done["usage"]["completion_tokens"], 2);
    // The prompt: the instructions as the system message, then the thread.
    let prompt: String = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(
        prompt.contains("Be brief.") && prompt.contains("Use digits.") && prompt.contains("2+2?"),
        "{prompt}"
    );

    let path = format!("/v1/threads/{thread}/messages");
    let msgs = call(
        &host,
        on("threads.messages.list", &thread),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap();
    let newest = &msgs["data"][0];
    assert_eq!(
        (&newest["role"], &newest["run_id"], &newest["assistant_id"]),
        (&json!("assistant"), &json!(id), &json!(asst))
    );
    assert_eq!(newest["content"][0]["text"]["value"], "Four.");
    let by_run = call(
        &host,
        on("threads.messages.list", &thread),
        "GET",
        &format!("{path}?run_id={id}"),
        Value::Null,
    )
    .unwrap();
    assert_eq!(by_run["data"].as_array().unwrap().len(), 1);

    let steps_path = format!("/v1/threads/{thread}/runs/{id}/steps");
    let steps = call(
        &host,
        on_run("threads.runs.steps.list", &thread, &id),
        "GET",
        &steps_path,
        Value::Null,
    )
    .unwrap();
    let step = &steps["data"][0];
    assert_eq!(
        (&step["type"], &step["status"]),
        (&json!("message_creation"), &json!("completed"))
    );
    assert_eq!(
        step["step_details"]["message_creation"]["message_id"],
        newest["id"]
    );

    let runs = call(
        &host,
        on("threads.runs.list", &thread),
        "GET",
        &format!("/v1/threads/{thread}/runs"),
        Value::Null,
    )
    .unwrap();
    assert_eq!(runs["data"][0]["id"], json!(id));
    // An ended run cannot be cancelled, nor take tool outputs; a new run may start.
    let cancel = format!("/v1/threads/{thread}/runs/{id}/cancel");
    let e = call(
        &host,
        on_run("threads.runs.cancel", &thread, &id),
        "POST",
        &cancel,
        json!({}),
    )
    .unwrap_err();
    assert_eq!(param(e), "run_id");
    let e = call(
        &host,
        on_run("threads.runs.submit_tool_outputs", &thread, &id),
        "POST",
        "/x",
        json!({}),
    )
    .unwrap_err();
    assert_eq!(param(e), "run_id");
    run(&host, &thread, json!({"assistant_id": asst})).unwrap();
}

#[test]
fn a_queued_run_cancelled_never_generates_and_a_cut_answer_is_incomplete() {
    let host = FakeHost::new("m").generating(&["a", "b", "c", "d"]);
    let a = create(&host, json!({"model": "m"})).unwrap();
    let asst = a["id"].as_str().unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": asst})).unwrap();
    let id = r["id"].as_str().unwrap();
    let cancel = format!("/v1/threads/{thread}/runs/{id}/cancel");
    let c = call(
        &host,
        on_run("threads.runs.cancel", &thread, id),
        "POST",
        &cancel,
        json!({}),
    )
    .unwrap();
    assert_eq!(c["status"], "cancelled");
    host.jobs().run_agent(id, &FirstParty, &host, 3).unwrap();
    assert!(host.generate_requests().is_empty());
    assert_eq!(get_run(&host, &thread, id)["status"], "cancelled");

    let r = run(
        &host,
        &thread,
        json!({"assistant_id": asst, "max_completion_tokens": 2}),
    )
    .unwrap();
    let id = r["id"].as_str().unwrap();
    host.jobs().run_agent(id, &FirstParty, &host, 3).unwrap();
    let cut = get_run(&host, &thread, id);
    assert_eq!(
        (&cut["status"], &cut["incomplete_details"]["reason"]),
        (&json!("incomplete"), &json!("max_completion_tokens")),
        "{cut}"
    );
    assert_eq!(host.generate_requests()[0].max_tokens, Some(2));

    // last_messages keeps the newest only.
    let r = run(&host, &thread, json!({"assistant_id": asst, "truncation_strategy": {"type": "last_messages", "last_messages": 1},
        "additional_messages": [{"role": "user", "content": "only this"}]})).unwrap();
    let id = r["id"].as_str().unwrap();
    host.jobs().run_agent(id, &FirstParty, &host, 3).unwrap();
    let prompt: String = host.generate_requests()[1]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(
        prompt.contains("only this") && !prompt.contains("hi\n"),
        "{prompt}"
    );
}

#[test]
fn what_runs_cannot_do_yet_is_refused_by_name() {
    let host = FakeHost::new("m");
    let plain = create(&host, json!({"model": "m"})).unwrap();
    let asst = plain["id"].as_str().unwrap();
    let with_fn = create(
        &host,
        json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}]}),
    )
    .unwrap();
    let thread = new_thread(&host, Value::Null);
    for (body, want) in [
        (json!({}), "assistant_id"),
        (
            json!({"assistant_id": with_fn["id"], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
        (
            json!({"assistant_id": asst, "tools": [{"type": "code_interpreter"}]}),
            "tools[0].type",
        ),
        (json!({"assistant_id": asst, "stream": "yes"}), "stream"),
        (
            json!({"assistant_id": with_fn["id"], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"assistant_id": asst, "response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        (
            json!({"assistant_id": asst, "temperature": 5}),
            "temperature",
        ),
        (json!({"assistant_id": asst, "model": "other"}), "model"),
        (
            json!({"assistant_id": asst, "max_completion_tokens": 0}),
            "max_completion_tokens",
        ),
        (
            json!({"assistant_id": asst, "truncation_strategy": {"type": "middle"}}),
            "truncation_strategy",
        ),
        (
            json!({"assistant_id": asst, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"assistant_id": asst, "additional_messages": [{"role": "system", "content": "x"}]}),
            "additional_messages[0].role",
        ),
        (json!({"assistant_id": asst, "colour": 1}), "colour"),
        (
            json!({"assistant_id": asst, "instructions": 5}),
            "instructions",
        ),
        (
            json!({"assistant_id": asst, "additional_instructions": "x".repeat(256_001)}),
            "additional_instructions",
        ),
    ] {
        let Err(e) = run(&host, &thread, body.clone()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(param(e), want, "{body}");
    }
    let e = run(&host, &thread, json!({"assistant_id": "asst_nope"})).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let e = run(&host, "thread_nope", json!({"assistant_id": asst})).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    // Create-thread-and-run: one request, a thread and a queued run on it.
    let r = call(
        &host,
        Route::new("threads.create_and_run"),
        "POST",
        "/v1/threads/runs",
        json!({"assistant_id": asst, "thread": {"messages": [{"role": "user", "content": "hey"}]}}),
    )
    .unwrap();
    assert_eq!(r["status"], "queued");
    let bad = call(
        &host,
        Route::new("threads.create_and_run"),
        "POST",
        "/v1/threads/runs",
        json!({"assistant_id": asst, "thread": {"messages": [{"role": "bot", "content": "x"}]}}),
    )
    .unwrap_err();
    assert_eq!(param(bad), "thread.messages[0].role");
}

#[test]
fn a_run_left_in_progress_by_a_dead_process_ends_failed_at_its_next_step() {
    use cinder_plugin_assistants::runs::RUNS;
    use cinder_sdk::host::Store;
    use cinder_sdk::store::Change;
    let host = FakeHost::new("m").generating(&["x"]);
    let a = create(&host, json!({"model": "m"})).unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap();
    // What a step leaves behind when its process dies mid-answer.
    let o = host.get_object(RUNS, id).unwrap().unwrap();
    let change = Change {
        status: Some("in_progress".into()),
        metadata: o.metadata.clone(),
        body: o.body.clone(),
        expect_version: None,
    };
    host.update_object(RUNS, id, &change).unwrap();
    host.jobs().run_agent(id, &FirstParty, &host, 3).unwrap();
    let failed = get_run(&host, &thread, id);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["last_error"]["code"], "server_error");
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    assert!(failed["failed_at"].as_i64().is_some());
    assert!(
        host.generate_requests().is_empty(),
        "nothing generated again"
    );
    // The thread is free for a new run.
    run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
}

#[test]
fn review_cases_a_metadata_update_mid_run_a_message_meanwhile_and_a_huge_budget() {
    let host = FakeHost::new("m").generating(&["ok"]);
    let a = create(&host, json!({"model": "m"})).unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    // More completion tokens than the context holds: the prompt still fits, the answer is
    // capped at what is left.
    let r = run(
        &host,
        &thread,
        json!({"assistant_id": a["id"], "max_completion_tokens": 1_000_000, "metadata": {"k": "v"}}),
    )
    .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    // A message while the run is active: refused, as OpenAI does.
    let path = format!("/v1/threads/{thread}/messages");
    let e = call(
        &host,
        on("threads.messages.create", &thread),
        "POST",
        &path,
        json!({"role": "user", "content": "more"}),
    )
    .unwrap_err();
    assert_eq!(param(e), "thread_id");
    // A metadata update of the queued run: not a cancel, and an update without metadata keeps it.
    let rpath = format!("/v1/threads/{thread}/runs/{id}");
    let m = call(
        &host,
        on_run("threads.runs.modify", &thread, &id),
        "POST",
        &rpath,
        json!({}),
    )
    .unwrap();
    assert_eq!(m["metadata"], json!({"k": "v"}));
    call(
        &host,
        on_run("threads.runs.modify", &thread, &id),
        "POST",
        &rpath,
        json!({"metadata": {"k": "w"}}),
    )
    .unwrap();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(
        (&done["status"], &done["metadata"]),
        (&json!("completed"), &json!({"k": "w"})),
        "{done}"
    );
    let cap = host.generate_requests()[0].max_tokens.unwrap();
    assert!(cap < 2048, "{cap}");
    // A step by id, under its run only.
    let steps_path = format!("{rpath}/steps");
    let steps = call(
        &host,
        on_run("threads.runs.steps.list", &thread, &id),
        "GET",
        &steps_path,
        Value::Null,
    )
    .unwrap();
    let step = steps["data"][0]["id"].as_str().unwrap();
    let got = call(
        &host,
        on_run("threads.runs.steps.retrieve", &thread, &id).with_param("step_id", step),
        "GET",
        "/x",
        Value::Null,
    )
    .unwrap();
    assert_eq!(got, steps["data"][0]);
    let other = call(
        &host,
        on_run("threads.runs.steps.retrieve", &thread, &id).with_param("step_id", "step_nope"),
        "GET",
        "/x",
        Value::Null,
    );
    assert!(matches!(other, Err(Error::NotFound(_))));
    // The run is over: messages may be added again.
    call(
        &host,
        on("threads.messages.create", &thread),
        "POST",
        &path,
        json!({"role": "user", "content": "more"}),
    )
    .unwrap();
}
