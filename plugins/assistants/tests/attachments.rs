//! Files given inline against the SDK's fake host: a message's `attachments` and a new
//! assistant's `tool_resources.file_search.vector_stores` become vector stores made by the
//! `attach` job through the vector stores plugin (answered here by that plugin on a host
//! sharing the store); a run waits for them and searches them; a file gone before its store
//! was made fails the run by name.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_plugin_assistants::FirstParty;
use cinder_sdk::ServeAgent;
use cinder_sdk::host::Store;
use cinder_sdk::testing::{FakeHost, FakeJobs, FakeStore};
use common::*;
use serde_json::{Value, json};
use std::rc::Rc;

const EMBEDDER: &str = "text-embedding-3-small";

/// An assistants host and a vector stores host on one store; the first's dispatches are
/// answered by the second. Returns both and the ids of two files.
fn hosts() -> (FakeHost, Rc<FakeHost>, String, String) {
    let store = FakeStore::default();
    let vs_host = Rc::new(
        FakeHost::new("m")
            .with_embedder(EMBEDDER, 32, 256)
            .with_store(store.clone()),
    );
    let cats = vs_host.add_file("cats.txt", b"Cats sleep for most of the day.");
    let tea = vs_host.add_file("tea.md", b"Green tea is brewed at eighty degrees.");
    let answering = Rc::clone(&vs_host);
    let host = FakeHost::new("m")
        .with_embedder(EMBEDDER, 32, 256)
        .with_store(store)
        .generating(&["Eighty", " degrees."])
        .with_jobs(
            FakeJobs::default()
                .answering(move |c| Ok(vector_stores(&answering, &c.method, &c.path, &c.body))),
        );
    (host, vs_host, cats, tea)
}

/// Runs every queued job of `kind` on `host` (the assistants plugin's).
fn run_jobs(host: &FakeHost, kind: &str) {
    for j in host.jobs().jobs() {
        if j.job.kind == kind {
            host.jobs()
                .run_agent(&j.job.id, &FirstParty, host, 5)
                .unwrap();
        }
    }
}

/// Ingests every file the vector stores host was given.
fn ingest(vs_host: &FakeHost) {
    for j in vs_host.jobs().jobs() {
        vs_host
            .jobs()
            .run_agent(
                &j.job.id,
                &cinder_plugin_vector_stores::FirstParty,
                vs_host,
                5,
            )
            .unwrap();
    }
}

/// The vector store an assistant's tool_resources name.
fn assistant_store(host: &FakeHost, id: &str) -> String {
    let got = call(
        host,
        on("assistants.retrieve", id),
        "GET",
        &format!("/v1/assistants/{id}"),
        Value::Null,
    )
    .unwrap();
    got["tool_resources"]["file_search"]["vector_store_ids"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

fn thread_of(host: &FakeHost, id: &str) -> Value {
    call(
        host,
        on("threads.retrieve", id),
        "GET",
        &format!("/v1/threads/{id}"),
        Value::Null,
    )
    .unwrap()
}

#[test]
fn attachments_make_the_threads_store_and_the_run_searches_it() {
    let (host, vs_host, cats, tea) = hosts();
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}]}),
    )
    .unwrap();
    let fs = json!([{"type": "file_search"}]);
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "Green tea is brewed at eighty degrees.",
                             "attachments": [{"file_id": tea, "tools": fs}]}]}),
    );
    // The message shows its attachment; the store is made by the job, not the request.
    let path = format!("/v1/threads/{thread}/messages");
    let listed = call(
        &host,
        on("threads.messages.list", &thread),
        "GET",
        &path,
        Value::Null,
    )
    .unwrap();
    assert_eq!(
        listed["data"][0]["attachments"],
        json!([{"file_id": tea, "tools": fs}])
    );
    assert_eq!(thread_of(&host, &thread)["tool_resources"], json!({}));
    run_jobs(&host, "attach");
    let resources = thread_of(&host, &thread)["tool_resources"].clone();
    let vs = resources["file_search"]["vector_store_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        thread_of(&host, &thread).get("attach").is_none(),
        "internal state is not shown"
    );
    // A second message adds its file to the same store.
    call(
        &host,
        on("threads.messages.create", &thread),
        "POST",
        &path,
        json!({"role": "user", "content": "and cats?", "attachments": [{"file_id": cats, "tools": fs}]}),
    )
    .unwrap();
    run_jobs(&host, "attach");
    assert_eq!(thread_of(&host, &thread)["tool_resources"], resources);
    ingest(&vs_host);
    let store = vector_stores(&vs_host, "GET", &format!("/v1/vector_stores/{vs}"), "");
    let store: Value = serde_json::from_str(&store.body).unwrap();
    assert_eq!(store["file_counts"]["completed"], 2, "{store}");
    assert_eq!(store["expires_after"]["days"], 7);

    // The run searches the thread's store: the tea file answers the first question.
    let r = run(
        &host,
        &thread,
        json!({"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "Green tea is brewed at eighty degrees."}]}),
    )
    .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "completed", "{done}");
    let prompt: String = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(prompt.contains("[0] (tea.md)"), "{prompt}");
}

#[test]
fn an_assistants_inline_store_is_made_and_searched() {
    let (host, vs_host, _, tea) = hosts();
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}],
               "tool_resources": {"file_search": {"vector_stores": [{"file_ids": [tea],
                   "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100,
                                                                      "chunk_overlap_tokens": 10}}}]}}}),
    )
    .unwrap();
    assert!(a.get("attach").is_none());
    let id = a["id"].as_str().unwrap().to_owned();
    // A run made before the store exists still searches it: it waits for the store.
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "Green tea is brewed at eighty degrees."}]}),
    );
    let r = run(&host, &thread, json!({"assistant_id": id})).unwrap();
    run_jobs(&host, "attach");
    ingest(&vs_host);
    let vs = assistant_store(&host, &id);
    let files = vector_stores(&vs_host, "GET", &format!("/v1/vector_stores/{vs}"), "");
    assert!(files.body.contains("\"completed\":1"), "{}", files.body);
    let run_id = r["id"].as_str().unwrap().to_owned();
    host.jobs()
        .run_agent(&run_id, &FirstParty, &host, 3)
        .unwrap();
    assert_eq!(get_run(&host, &thread, &run_id)["status"], "completed");
    let prompt: String = host.generate_requests()[0]
        .prompt
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(prompt.contains("(tea.md) Green tea"), "{prompt}");
}

#[test]
fn bad_attachments_are_400s_and_a_file_gone_fails_the_run_by_name() {
    let (host, _vs_host, _, tea) = hosts();
    for (attachments, want) in [
        (
            json!([{"file_id": "file-nope", "tools": [{"type": "file_search"}]}]),
            "attachments[0].file_id",
        ),
        (
            json!([{"file_id": tea, "tools": [{"type": "code_interpreter"}]}]),
            "attachments[0].tools[0].type",
        ),
        (
            json!([{"file_id": tea, "tools": "file_search"}]),
            "attachments[0].tools",
        ),
        (
            json!((0..11).map(|_| json!({"file_id": tea})).collect::<Vec<_>>()),
            "attachments",
        ),
    ] {
        let thread = new_thread(&host, json!({}));
        let e = call(
            &host,
            on("threads.messages.create", &thread),
            "POST",
            &format!("/v1/threads/{thread}/messages"),
            json!({"role": "user", "content": "x", "attachments": attachments}),
        )
        .unwrap_err();
        assert_eq!(param(e), want);
    }
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}]}),
    )
    .unwrap();
    let thread = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "tea?",
                             "attachments": [{"file_id": tea, "tools": [{"type": "file_search"}]}]}]}),
    );
    // The file is deleted before the job stores it.
    assert!(host.delete_object("files", &tea).unwrap());
    run_jobs(&host, "attach");
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &thread, &id);
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("could not be stored") && message.contains(&tea),
        "{message}"
    );
    // Said once: the next run goes on with what was stored (nothing here).
    let r = run(&host, &thread, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    assert_eq!(get_run(&host, &thread, &id)["status"], "completed");
}

#[test]
fn more_files_than_one_call_takes_go_in_several_and_a_job_given_up_is_said() {
    let (host, vs_host, _, tea) = hosts();
    let many: Vec<String> = (0..500)
        .map(|i| vs_host.add_file(&format!("f{i}.txt"), b"text"))
        .collect();
    let thread = new_thread(
        &host,
        json!({"tool_resources": {"file_search": {"vector_stores": [{"file_ids": many}]}},
               "messages": [{"role": "user", "content": "x",
                             "attachments": [{"file_id": tea, "tools": [{"type": "file_search"}]}]}]}),
    );
    run_jobs(&host, "attach");
    let vs = thread_of(&host, &thread)["tool_resources"]["file_search"]["vector_store_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let store = vector_stores(&vs_host, "GET", &format!("/v1/vector_stores/{vs}"), "");
    let store: Value = serde_json::from_str(&store.body).unwrap();
    assert_eq!(store["file_counts"]["total"], 501, "{store}");

    // A job the host ended (its steps kept failing) lets the owner go, and says why.
    let a = create(
        &host,
        json!({"model": "m", "tools": [{"type": "file_search"}]}),
    )
    .unwrap();
    let other = new_thread(
        &host,
        json!({"messages": [{"role": "user", "content": "x",
                             "attachments": [{"file_id": tea, "tools": [{"type": "file_search"}]}]}]}),
    );
    let job = host
        .jobs()
        .jobs()
        .into_iter()
        .find(|j| j.job.kind == "attach" && j.job.id.starts_with(&other))
        .unwrap();
    let mut ended = job.job.clone();
    ended.ending = Some("the step failed 5 times".into());
    FirstParty.step(ended, &host).unwrap();
    let r = run(&host, &other, json!({"assistant_id": a["id"]})).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    host.jobs().run_agent(&id, &FirstParty, &host, 3).unwrap();
    let done = get_run(&host, &other, &id);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed 5 times")
    );
}

#[test]
fn inline_stores_are_checked_at_once_and_one_without_files_is_made_empty() {
    let (host, vs_host, _, tea) = hosts();
    let at = "tool_resources.file_search.vector_stores[0]";
    for (store, want) in [
        (
            json!({"file_ids": [tea], "chunking_strategy": {"type": "static",
                   "static": {"max_chunk_size_tokens": 5, "chunk_overlap_tokens": 0}}}),
            format!("{at}.chunking_strategy"),
        ),
        (
            json!({"chunking_strategy": {"type": "auto", "extra": 1}}),
            format!("{at}.chunking_strategy"),
        ),
        (json!({"metadata": {"k": 1}}), format!("{at}.metadata")),
        (json!({"colour": "red"}), format!("{at}.colour")),
        (json!(5), at.to_owned()),
    ] {
        let e = create(
            &host,
            json!({"model": "m", "tool_resources": {"file_search": {"vector_stores": [store]}}}),
        )
        .unwrap_err();
        assert_eq!(param(e), want);
    }
    let a = create(
        &host,
        json!({"model": "m", "tool_resources": {"file_search": {"vector_stores": [{"metadata": {"k": "v"}}]}}}),
    )
    .unwrap();
    run_jobs(&host, "attach");
    let id = a["id"].as_str().unwrap();
    let vs = assistant_store(&host, id);
    let store = vector_stores(&vs_host, "GET", &format!("/v1/vector_stores/{vs}"), "");
    let store: Value = serde_json::from_str(&store.body).unwrap();
    assert_eq!(
        (&store["file_counts"]["total"], &store["metadata"]),
        (&json!(0), &json!({"k": "v"}))
    );
}
