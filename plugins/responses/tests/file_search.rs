//! The `file_search` tool against the SDK's fake host: stores made and ingested by the vector
//! stores plugin on the same store, searched in the request; the search is the first output
//! item (results only when `include` asks), the excerpts reach the prompt, the answer cites
//! the file, streamed events say it in order, and bad stores are OpenAI's errors.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cinder_sdk::testing::{FakeHost, FakeStore};
use cinder_sdk::{Error, Route, ServeAgent};
use common::*;
use serde_json::{Value, json};

const EMBEDDER: &str = "text-embedding-3-small";

/// A store holding two ingested files; returns the shared store, the store's id and the
/// files' ids.
fn two_files() -> (FakeStore, String, String, String) {
    let store = FakeStore::default();
    let host = FakeHost::new("m")
        .with_embedder(EMBEDDER, 32, 256)
        .with_store(store.clone());
    let cats = host.add_file("cats.txt", b"Cats sleep for most of the day.");
    let tea = host.add_file("tea.md", b"Green tea is brewed at eighty degrees.");
    let r = request(
        "POST",
        "/v1/vector_stores",
        json!({"file_ids": [cats, tea]}).to_string(),
        "vs",
    );
    cinder_plugin_vector_stores::FirstParty
        .serve(&Route::new("vector_stores.create"), r, &host)
        .unwrap();
    let vs = host.take_response().unwrap().1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for j in host.jobs().jobs() {
        host.jobs()
            .run_agent(
                &j.job.id,
                &cinder_plugin_vector_stores::FirstParty,
                &host,
                5,
            )
            .unwrap();
    }
    (store, vs, cats, tea)
}

fn searching(store: FakeStore, answer: &[&str]) -> FakeHost {
    fake()
        .with_embedder(EMBEDDER, 32, 256)
        .with_store(store)
        .generating(answer)
}

fn tool(vs: &str) -> Value {
    json!([{"type": "file_search", "vector_store_ids": [vs]}])
}

#[test]
fn a_response_searches_shows_the_call_and_cites_the_file() {
    let (store, vs, _, tea) = two_files();
    let host = searching(store.clone(), &["Eighty", " degrees."]);
    let question = "Green tea is brewed at eighty degrees.";
    create(
        &host,
        "r1",
        json!({"model": "m", "input": question, "instructions": "Be brief.", "tools": tool(&vs)}),
    )
    .unwrap();
    let (status, r) = host.take_response().unwrap();
    assert_eq!(status, 200, "{r}");
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{r}");
    assert_eq!(out[0]["type"], "file_search_call");
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(out[0]["queries"], json!([question]));
    assert_eq!(out[0]["results"], Value::Null, "results only when included");
    let text = &out[1]["content"][0];
    assert_eq!(text["text"], "Eighty degrees.");
    let notes = text["annotations"].as_array().unwrap();
    assert_eq!(notes[0]["type"], "file_citation");
    assert_eq!(notes[0]["file_id"], tea.as_str());
    assert_eq!(notes[0]["filename"], "tea.md");
    assert_eq!(notes[0]["index"], 15);
    // The best excerpt (the tea file) reached the prompt after the instructions.
    let prompt = prompt_of(&host, 0);
    let (rules, excerpt) = (
        prompt.find("Be brief.").unwrap(),
        prompt.find("[0] (tea.md)").unwrap(),
    );
    assert!(rules < excerpt, "{prompt}");

    // With `include`, the results: the right chunk first, with its file's name and score.
    let host = searching(store, &["Eighty."]);
    create(
        &host,
        "r2",
        json!({"model": "m", "input": question, "tools": tool(&vs),
               "include": ["file_search_call.results"]}),
    )
    .unwrap();
    let r = host.take_response().unwrap().1;
    let results = r["output"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["file_id"], tea.as_str());
    assert_eq!(results[0]["filename"], "tea.md");
    assert_eq!(results[0]["text"], question);
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    // No instructions: the excerpts are the system message.
    assert!(prompt_of(&host, 0).contains("[0] (tea.md)"));
}

#[test]
fn a_streamed_search_says_its_phases_then_the_citation() {
    let (store, vs, _, _) = two_files();
    let host = searching(store, &["Eighty."]);
    create(
        &host,
        "r1",
        json!({"model": "m", "input": "tea temperature?", "stream": true,
               "tools": [{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}]}),
    )
    .unwrap();
    let types: Vec<String> = host
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    let want = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];
    assert_eq!(types, want);
    let events = host.events();
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..want.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[2]["item"]["status"], "in_progress");
    assert_eq!(events[6]["item"]["status"], "completed");
    assert_eq!(events[10]["annotation"]["type"], "file_citation");
    assert_eq!(events[10]["output_index"], 1);
}

#[test]
fn tool_choice_none_filters_and_thresholds_narrow_the_search() {
    let (store, vs, cats, _) = two_files();
    let host = searching(store.clone(), &["No."]);
    create(
        &host,
        "r1",
        json!({"model": "m", "input": "tea?", "tools": tool(&vs), "tool_choice": "none"}),
    )
    .unwrap();
    let r = host.take_response().unwrap().1;
    assert_eq!(r["output"].as_array().unwrap().len(), 1, "no search: {r}");
    assert!(!prompt_of(&host, 0).contains("excerpts"));

    // A threshold above every score: the search is said, with no results and no citation.
    let host = searching(store.clone(), &["No."]);
    let strict = json!([{"type": "file_search", "vector_store_ids": [vs],
                         "ranking_options": {"score_threshold": 1.0}}]);
    create(
        &host,
        "r2",
        json!({"model": "m", "input": "tea?", "tools": strict,
               "include": ["file_search_call.results"]}),
    )
    .unwrap();
    let r = host.take_response().unwrap().1;
    assert_eq!(r["output"][0]["results"], json!([]));
    assert_eq!(r["output"][1]["content"][0]["annotations"], json!([]));

    // max_num_results 1, filtered to the cats file by name: only it.
    let host = searching(store, &["Cats."]);
    let narrow = json!([{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}]);
    create(
        &host,
        "r3",
        json!({"model": "m", "input": "Cats sleep for most of the day.", "tools": narrow,
               "include": ["file_search_call.results"]}),
    )
    .unwrap();
    let r = host.take_response().unwrap().1;
    let results = r["output"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["file_id"], cats.as_str());
}

#[test]
fn unknown_or_foreign_stores_are_404_before_anything_is_said() {
    let (store, _, _, _) = two_files();
    for (i, id) in ["vs_missing000000000000000000", "nonsense"]
        .iter()
        .enumerate()
    {
        let host = searching(store.clone(), &["x"]);
        let e = create(
            &host,
            &format!("r{i}"),
            json!({"model": "m", "input": "tea?", "tools": tool(id), "stream": true}),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(host.events().is_empty());
        // A background response is refused at once too, not queued to fail later.
        let host = searching(store.clone(), &["x"]);
        let e = create(
            &host,
            &format!("b{i}"),
            json!({"model": "m", "input": "tea?", "tools": tool(id), "background": true}),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(host.jobs().jobs().is_empty());
    }
}

#[test]
fn excerpts_take_only_what_the_prompt_leaves_of_the_context() {
    let (store, vs, _, _) = two_files();
    // The fake model reads 2048 tokens (a byte each): a 1 780-byte question and 256 tokens of
    // room leave no space for an excerpt, so the prompt carries none, the search is still said.
    let host = searching(store, &["Eighty."]);
    let question = format!(
        "Green tea is brewed at eighty degrees. {}",
        "x".repeat(1740)
    );
    create(
        &host,
        "r1",
        json!({"model": "m", "input": question, "tools": tool(&vs)}),
    )
    .unwrap();
    let r = host.take_response().unwrap().1;
    assert_eq!(r["output"][0]["type"], "file_search_call");
    assert!(!prompt_of(&host, 0).contains("excerpts"), "no room left");
    assert_eq!(r["output"][1]["content"][0]["annotations"], json!([]));
}
