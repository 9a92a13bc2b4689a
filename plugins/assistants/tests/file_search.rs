//! file_search in runs against the SDK's fake host: the run's search goes to the vector
//! stores plugin's route (dispatched, answered here by that plugin on a host sharing the
//! store), its results are a `file_search` step (content only when `include[]` asks), the
//! excerpts reach the prompt, and the answer cites the file they came from.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_plugin_assistants::FirstParty;
use cinder_sdk::dispatch::Answer;
use cinder_sdk::testing::{FakeHost, FakeJobs, FakeStore};
use cinder_sdk::{Request, Route, ServeAgent};
use common::*;
use serde_json::{Value, json};

const EMBEDDER: &str = "text-embedding-3-small";

fn file(host: &FakeHost, name: &str, content: &str) -> String {
    host.add_file(name, content.as_bytes())
}

#[test]
fn a_run_searches_its_stores_shows_the_results_and_cites_the_file() {
    let store = FakeStore::default();
    let vs_host = FakeHost::new("m")
        .with_embedder(EMBEDDER, 32, 256)
        .with_store(store.clone());
    let cats = file(&vs_host, "cats.txt", "Cats sleep for most of the day.");
    let tea = file(&vs_host, "tea.md", "Green tea is brewed at eighty degrees.");
    let made = vector_stores(
        &vs_host,
        "POST",
        "/v1/vector_stores",
        &json!({"file_ids": [cats, tea]}).to_string(),
    );
    let vs: Value = serde_json::from_str(&made.body).unwrap();
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    for j in vs_host.jobs().jobs() {
        vs_host
            .jobs()
            .run_agent(
                &j.job.id,
                &cinder_plugin_vector_stores::FirstParty,
                &vs_host,
                5,
            )
            .unwrap();
    }

    let host = FakeHost::new("m")
        .with_embedder(EMBEDDER, 32, 256)
        .with_store(store)
        .generating(&["Eighty", " degrees."])
        .with_jobs(
            FakeJobs::default()
                .answering(move |c| Ok(vector_stores(&vs_host, &c.method, &c.path, &c.body))),
        );
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}],
               "tool_resources": {"file_search": {"vector_store_ids": [vs_id]}}}),
    )
    .unwrap();
    assert_eq!(
        a["tool_resources"]["file_search"]["vector_store_ids"],
        json!([vs_id])
    );
    let question = "Green tea is brewed at eighty degrees.";
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": question}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done.get("retrieved").is_none(),
        "internal state is not shown"
    );

    // The steps: the search, then the answer; the right file ranks first.
    let path = format!("/v1/threads/{thread}/runs/{id}/steps");
    let steps = |query: &str| {
        let request = Request {
            method: "GET".into(),
            path: format!("{path}{query}"),
            body: String::new(),
            request_id: "r".into(),
        };
        let route = on_run("threads.runs.steps.list", &thread, &id);
        FirstParty.serve(&route, request, &host).unwrap();
        host.take_response().unwrap().1
    };
    let plain = steps("?order=asc");
    let types: Vec<&Value> = plain["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["type"])
        .collect();
    assert_eq!(types, [&json!("tool_calls"), &json!("message_creation")]);
    let call = &plain["data"][0]["step_details"]["tool_calls"][0];
    assert_eq!(call["type"], "file_search");
    let results = call["file_search"]["results"].as_array().unwrap();
    assert_eq!(
        (&results[0]["file_id"], &results[0]["file_name"]),
        (&json!(tea), &json!("tea.md"))
    );
    assert!(
        results[0].get("content").is_none(),
        "content only when include[] asks"
    );
    let with =
        steps("?order=asc&include[]=step_details.tool_calls[*].file_search.results[*].content");
    let first = &with["data"][0]["step_details"]["tool_calls"][0]["file_search"]["results"][0];
    assert_eq!(first["content"][0]["text"], question);
    let request = Request {
        method: "GET".into(),
        path: format!("{path}?include[]=nope"),
        body: String::new(),
        request_id: "r".into(),
    };
    let e = FirstParty
        .serve(
            &on_run("threads.runs.steps.list", &thread, &id),
            request,
            &host,
        )
        .unwrap_err();
    assert_eq!(param(e), "include[]");

    // The excerpts reached the prompt; the answer cites the file.
    let prompt: String = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(prompt.contains("(tea.md) Green tea is brewed"), "{prompt}");
    let path = format!("/v1/threads/{thread}/messages");
    let messages = call_get(&host, on("threads.messages.list", &thread), &path);
    let text = &messages["data"][0]["content"][0]["text"];
    let value = text["value"].as_str().unwrap();
    assert!(value.starts_with("Eighty degrees. 【0†tea.md】"), "{value}");
    let note = &text["annotations"][0];
    assert_eq!(
        (&note["type"], &note["file_citation"]["file_id"]),
        (&json!("file_citation"), &json!(tea))
    );
    let chars: Vec<char> = value.chars().collect();
    let (s, e) = (
        note["start_index"].as_u64().unwrap() as usize,
        note["end_index"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        chars[s..e].iter().collect::<String>(),
        note["text"].as_str().unwrap()
    );
}

fn call_get(host: &FakeHost, route: Route, path: &str) -> Value {
    call(host, route, "GET", path, Value::Null).unwrap()
}

#[test]
fn tool_resources_are_checked_and_a_missing_store_fails_the_run_by_name() {
    let host = FakeHost::new("m").with_jobs(FakeJobs::default().answering(|_| {
        Ok(Answer {
            status: 404,
            body: json!({"error": {"message": "No vector store found"}}).to_string(),
        })
    }));
    for (resources, want) in [
        (
            json!({"file_search": {"vector_store_ids": ["vs_a", "vs_b"]}}),
            "tool_resources.file_search.vector_store_ids",
        ),
        (
            json!({"file_search": {"vector_store_ids": ["nope"]}}),
            "tool_resources.file_search.vector_store_ids",
        ),
        (
            json!({"file_search": {"vector_stores": [{"file_ids": ["file-gone"]}]}}),
            "tool_resources.file_search.vector_stores[0].file_ids[0]",
        ),
        (
            json!({"file_search": {"vector_stores": [{}, {}]}}),
            "tool_resources.file_search.vector_stores",
        ),
        (
            json!({"file_search": {"vector_store_ids": ["vs_a"], "vector_stores": [{}]}}),
            "tool_resources.file_search.vector_stores",
        ),
    ] {
        let e = create(&host, json!({"model": "m", "tool_resources": resources})).unwrap_err();
        assert_eq!(param(e), want);
    }
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}],
               "tool_resources": {"file_search": {"vector_store_ids": ["vs_gone"]}}}),
    )
    .unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "Hi"}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "failed");
    assert!(
        done["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("vs_gone"),
        "{done}"
    );
}
