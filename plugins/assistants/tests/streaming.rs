//! Streaming runs against the SDK's fake host: the request follows the run's event log,
//! written by its job (run at once by a fake worker), and sends OpenAI's named events in
//! OpenAI's order; a function call ends the stream at `requires_action` and streaming tool
//! outputs continues it; a run cut short, cancelled or ended by the host says so last.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_plugin_assistants::{FirstParty, stream};
use cinder_sdk::host::Store;
use cinder_sdk::store::{Order, Query};
use cinder_sdk::testing::{FakeHost, FakeJobs};
use cinder_sdk::{Request, Route, ServeAgent};
use common::*;
use serde_json::{Value, json};

/// Serves a request that streams; its events, by name.
fn streamed(host: &FakeHost, route: Route, path: &str, body: Value) -> Vec<(String, Value)> {
    let request = Request {
        method: "POST".into(),
        path: path.into(),
        body: body.to_string(),
        request_id: "r".into(),
    };
    FirstParty.serve(&route, request, host).unwrap();
    let events = host.named_events();
    assert!(
        host.take_response().is_none(),
        "a stream, not a whole response"
    );
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn worked(host: FakeHost) -> FakeHost {
    host.with_jobs(FakeJobs::default().worked_by(FirstParty))
}

fn no_chunks_left(host: &FakeHost) {
    let q = Query {
        limit: 10,
        order: Order::Asc,
        after: None,
        before: None,
        status: None,
        metadata: Vec::new(),
    };
    let left = host.list_objects(stream::EVENTS, &q).unwrap();
    assert!(left.objects.is_empty(), "the follower removes what it sent");
}

#[test]
fn a_streamed_run_sends_openais_events_in_order_and_the_text_as_deltas() {
    let host = worked(FakeHost::new("m").generating(&["Four", " it", " is."]));
    let a = create(&host, json!({"model": "m"})).unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "2+2?"}]}),
    );
    let path = format!("/v1/threads/{thread}/runs");
    let events = streamed(
        &host,
        on("threads.runs.create", &thread),
        &path,
        json!({"assistant_id": a["id"], "stream": true}),
    );
    assert_eq!(
        names(&events),
        [
            "thread.run.created",
            "thread.run.queued",
            "thread.run.in_progress",
            "thread.run.step.created",
            "thread.run.step.in_progress",
            "thread.message.created",
            "thread.message.in_progress",
            "thread.message.delta",
            "thread.message.delta",
            "thread.message.delta",
            "thread.message.completed",
            "thread.run.step.completed",
            "thread.run.completed",
        ]
    );
    let run = &events[0].1;
    assert_eq!(
        (&run["object"], &run["status"]),
        (&json!("thread.run"), &json!("queued"))
    );
    let created = &events[5].1;
    assert_eq!(
        (
            &created["status"],
            &created["content"],
            &created["completed_at"]
        ),
        (&json!("in_progress"), &json!([]), &Value::Null)
    );
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "thread.message.delta")
        .map(|(_, d)| {
            assert_eq!(d["id"], created["id"]);
            assert_eq!(d["object"], "thread.message.delta");
            d["delta"]["content"][0]["text"]["value"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "Four it is.");
    let done = &events[10].1;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["content"][0]["text"]["value"], "Four it is.");
    assert!(done["completed_at"].as_i64().is_some());
    let step = &events[11].1;
    assert_eq!(
        step["step_details"]["message_creation"]["message_id"],
        created["id"]
    );
    assert_eq!(step["usage"]["completion_tokens"], 3);
    assert_eq!(events[12].1["usage"]["completion_tokens"], 3);
    // The stored thread holds what was streamed.
    let id = run["id"].as_str().unwrap();
    assert_eq!(get_run(&host, &thread, id)["status"], "completed");
    no_chunks_left(&host);
}

#[test]
fn create_thread_and_run_streams_the_thread_first_and_a_cut_answer_is_incomplete() {
    let host = worked(FakeHost::new("m").generating(&["a", "b", "c", "d"]));
    let a = create(&host, json!({"model": "m"})).unwrap();
    let events = streamed(
        &host,
        Route::new("threads.create_and_run"),
        "/v1/threads/runs",
        json!({"assistant_id": a["id"], "stream": true, "max_completion_tokens": 2,
               "thread": {"messages": [{"role": "user", "content": "Count"}]}}),
    );
    let names = names(&events);
    assert_eq!(
        names[..3],
        ["thread.created", "thread.run.created", "thread.run.queued"]
    );
    assert_eq!(events[0].1["object"], "thread");
    assert_eq!(
        names[names.len() - 3..],
        [
            "thread.message.incomplete",
            "thread.run.step.completed",
            "thread.run.incomplete"
        ]
    );
    let message = &events[names.len() - 3].1;
    assert_eq!(message["incomplete_details"]["reason"], "max_tokens");
    let run = &events[names.len() - 1].1;
    assert_eq!(run["incomplete_details"]["reason"], "max_completion_tokens");
}

#[test]
fn a_function_call_ends_the_stream_at_requires_action_and_streamed_outputs_continue_it() {
    let host = worked(
        FakeHost::new("m")
            .with_tools(cinder_plugin_tools::FirstParty)
            .generating(&[
                "[{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": \"Oslo\"}}]",
            ])
            .generating(&["Sunny", "."]),
    );
    let weather = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let a = create(&host, json!({"model": "m", "tools": weather})).unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "Weather in Oslo?"}]}),
    );
    let path = format!("/v1/threads/{thread}/runs");
    let events = streamed(
        &host,
        on("threads.runs.create", &thread),
        &path,
        json!({"assistant_id": a["id"], "stream": true}),
    );
    assert_eq!(
        names(&events),
        [
            "thread.run.created",
            "thread.run.queued",
            "thread.run.in_progress",
            "thread.run.step.created",
            "thread.run.step.in_progress",
            "thread.run.step.delta",
            "thread.run.requires_action",
        ]
    );
    let delta = &events[5].1["delta"]["step_details"];
    assert_eq!(delta["tool_calls"][0]["index"], 0);
    assert_eq!(delta["tool_calls"][0]["function"]["name"], "get_weather");
    let waiting = &events[6].1;
    let call_id = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap();
    assert_eq!(delta["tool_calls"][0]["id"], call_id);
    let run = waiting["id"].as_str().unwrap();
    no_chunks_left(&host);

    let events = streamed(
        &host,
        on_run("threads.runs.submit_tool_outputs", &thread, run),
        "/submit_tool_outputs",
        json!({"tool_outputs": [{"tool_call_id": call_id, "output": "sunny"}], "stream": true}),
    );
    let names = names(&events);
    assert_eq!(
        names[..3],
        [
            "thread.run.step.completed",
            "thread.run.queued",
            "thread.run.in_progress"
        ]
    );
    assert_eq!(
        events[0].1["step_details"]["tool_calls"][0]["function"]["output"],
        "sunny"
    );
    // The answer after the outputs is read whole (functions may be called again), then told.
    assert_eq!(
        names[3..],
        [
            "thread.run.step.created",
            "thread.run.step.in_progress",
            "thread.message.created",
            "thread.message.in_progress",
            "thread.message.delta",
            "thread.message.completed",
            "thread.run.step.completed",
            "thread.run.completed",
        ]
    );
    assert_eq!(events[5].1["status"], "in_progress");
    assert_eq!(
        events[7].1["delta"]["content"][0]["text"]["value"],
        "Sunny."
    );
    no_chunks_left(&host);
}

#[test]
fn a_run_cancelled_or_ended_by_the_host_says_so_last() {
    // No worker: the test runs the jobs itself, after a cancel or as the host ending them.
    let host = FakeHost::new("m").generating(&["x"]);
    let a = create(&host, json!({"model": "m"})).unwrap();
    for (ending, want) in [
        (None, "thread.run.cancelled"),
        (Some("it ran too long"), "thread.run.failed"),
    ] {
        let thread = new_thread(
            &host,
            json!({"messages": [{"role": "user", "content": "Hi"}]}),
        );
        let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
        let id = r["id"].as_str().unwrap().to_owned();
        // The request would have streamed: its job writes segment 0 of the log.
        host.jobs().update(&id, |j| {
            j.job.progress = json!({"run": id, "stream": 0}).to_string()
        });
        match ending {
            None => {
                let path = format!("/v1/threads/{thread}/runs/{id}/cancel");
                call(
                    &host,
                    on_run("threads.runs.cancel", &thread, &id),
                    "POST",
                    &path,
                    Value::Null,
                )
                .unwrap();
            }
            Some(why) => host.jobs().update(&id, |j| j.job.ending = Some(why.into())),
        }
        host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
        stream::follow(&host, &id, 0).unwrap();
        let events = host.named_events();
        host.take_response();
        assert_eq!(names(&events), [want]);
        if ending.is_some() {
            assert_eq!(events[0].1["last_error"]["message"], "it ran too long");
        }
        no_chunks_left(&host);
    }
}
