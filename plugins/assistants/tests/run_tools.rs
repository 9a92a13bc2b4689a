//! Runs that call functions or answer in a structured format, against the SDK's fake host
//! with the first-party tools plugin: a call stops the run for its output, the output
//! continues it, and a json_object / json_schema format constrains the answer.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_plugin_assistants::FirstParty;
use cinder_sdk::testing::FakeHost;

use common::*;
use serde_json::{Value, json};

#[test]
fn a_run_that_calls_a_function_waits_for_its_output_and_then_answers() {
    let host = FakeHost::new("m")
        .with_tools(cinder_plugin_tools::FirstParty)
        .generating(&[
            "[{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Oslo\"}}]",
        ])
        .generating(&["Sunny in Oslo."])
        // The third run calls again; it is cancelled while it waits.
        .generating(&["[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]"]);
    let weather = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let a = create(&host, json!({"model": "m", "tools": weather})).unwrap();
    let asst = a["id"].as_str().unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "Weather in Oslo?"}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": asst})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(r.get("rounds").is_none(), "internal state is not shown");
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let waiting = get_run(&host, &thread, &id);
    assert_eq!(waiting["status"], "requires_action", "{waiting}");
    let calls = &waiting["required_action"]["submit_tool_outputs"]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Oslo"})
    );
    let call_id = calls[0]["id"].as_str().unwrap().to_owned();

    let submit = |body: Value| {
        call(
            &host,
            on_run("threads.runs.submit_tool_outputs", &thread, &id),
            "POST",
            "/x",
            body,
        )
    };
    assert_eq!(
        param(submit(json!({"tool_outputs": []})).unwrap_err()),
        "tool_outputs"
    );
    assert_eq!(
        param(
            submit(json!({"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}]}))
                .unwrap_err()
        ),
        "tool_outputs[0].tool_call_id"
    );
    assert_eq!(
        param(
            submit(
                json!({"tool_outputs": [{"tool_call_id": call_id, "output": "{}"}], "stream": 1})
            )
            .unwrap_err()
        ),
        "stream"
    );
    let queued = submit(
        json!({"tool_outputs": [{"tool_call_id": call_id, "output": "{\"sky\": \"sunny\"}"}]}),
    )
    .unwrap();
    assert_eq!(
        (&queued["status"], &queued["required_action"]),
        (&json!("queued"), &Value::Null)
    );
    host.jobs()
        .run_agent(&format!("{id}-1"), &FirstParty, &host, 3)
        .unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "completed", "{done}");
    // The call and its output reached the model on the second round, freely answered.
    let prompt: String = host.generate_requests()[1]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(
        prompt.contains("get_weather") && prompt.contains("sunny"),
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
    assert_eq!(
        msgs["data"][0]["content"][0]["text"]["value"],
        "Sunny in Oslo."
    );
    let steps_path = format!("/v1/threads/{thread}/runs/{id}/steps?order=asc");
    let steps = call(
        &host,
        on_run("threads.runs.steps.list", &thread, &id),
        "GET",
        &steps_path,
        Value::Null,
    )
    .unwrap();
    let kinds: Vec<&str> = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["tool_calls", "message_creation"]);
    assert_eq!(steps["data"][0]["status"], "completed");
    assert_eq!(
        steps["data"][0]["step_details"]["tool_calls"][0]["function"]["output"],
        "{\"sky\": \"sunny\"}"
    );
    // A run waiting for outputs that is cancelled ends at once.
    let r = run(&host, &thread, json!({"assistant_id": asst})).unwrap();
    let id2 = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id2, &FirstParty, &host, 3).unwrap();
    let cancel = format!("/v1/threads/{thread}/runs/{id2}/cancel");
    let c = call(
        &host,
        on_run("threads.runs.cancel", &thread, &id2),
        "POST",
        &cancel,
        json!({}),
    )
    .unwrap();
    assert_eq!(c["status"], "cancelled");
    // Its tool_calls step ended with it.
    let steps_path = format!("/v1/threads/{thread}/runs/{id2}/steps");
    let steps = call(
        &host,
        on_run("threads.runs.steps.list", &thread, &id2),
        "GET",
        &steps_path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(steps["data"][0]["status"], "cancelled", "{steps}");

    // A run left waiting past its expires_at is expired when next read, and frees its thread.
    let r = run(&host, &thread, json!({"assistant_id": asst})).unwrap();
    let id3 = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id3, &FirstParty, &host, 3).unwrap();
    assert_eq!(get_run(&host, &thread, &id3)["status"], "requires_action");
    {
        use cinder_plugin_assistants::runs::RUNS;
        use cinder_sdk::host::Store;
        let o = host.get_object(RUNS, &id3).unwrap().unwrap();
        let mut body: Value = serde_json::from_str(&o.body).unwrap();
        body["expires_at"] = json!(1);
        let change = cinder_sdk::store::Change {
            status: o.status.clone(),
            metadata: o.metadata.clone(),
            body: body.to_string(),
            expect_version: None,
        };
        host.update_object(RUNS, &id3, &change).unwrap();
    }
    let expired = get_run(&host, &thread, &id3);
    assert_eq!(
        (&expired["status"], &expired["required_action"]),
        (&json!("expired"), &Value::Null)
    );
    let path = format!("/v1/threads/{thread}/messages");
    call(
        &host,
        on("threads.messages.create", &thread),
        "POST",
        &path,
        json!({"role": "user", "content": "again"}),
    )
    .unwrap();
}

#[test]
fn a_structured_response_format_constrains_the_answer() {
    use cinder_sdk::inference::Constraint;
    let host = FakeHost::new("m").generating(&["{\"a\":", " 1}"]);
    let a = create(
        &host,
        json!({"model": "m", "response_format": {"type": "json_object"}}),
    )
    .unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "JSON please"}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    host.jobs()
        .run_agent(r["id"].as_str().unwrap(), &FirstParty, &host, 3)
        .unwrap();
    let first = host.constraints();
    assert!(
        matches!(first.as_slice(), [Constraint::JsonObject]),
        "{first:?}"
    );
    let schema = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
        "properties": {"a": {"type": "integer"}}}}});
    let r = run(
        &host,
        &thread,
        json!({"assistant_id": a["id"], "response_format": schema}),
    )
    .unwrap();
    host.jobs()
        .run_agent(r["id"].as_str().unwrap(), &FirstParty, &host, 3)
        .unwrap();
    match &host.constraints()[1] {
        Constraint::JsonSchema(s) => {
            let s: Value = serde_json::from_str(s).unwrap();
            assert_eq!(
                s["additionalProperties"], false,
                "objects closed, as in chat"
            );
        }
        other => panic!("{other:?}"),
    }
}
