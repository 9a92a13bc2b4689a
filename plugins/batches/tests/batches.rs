//! The Batch API against the SDK's fake host: one in-memory store and job queue shared by the
//! requests and steps of a test; dispatched requests answered by the test (an echo that
//! refuses bodies asking for it), steps run as the host runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_plugin_batches::FirstParty;
use cinder_sdk::dispatch::Answer;
use cinder_sdk::host::Store as _;
use cinder_sdk::testing::{FakeHost, FakeJobs, FakeStore, request};
use cinder_sdk::{Error, Outcome, Route, ServeJobs};
use serde_json::{Value, json};

struct World {
    store: FakeStore,
    jobs: FakeJobs,
}

impl World {
    fn new() -> Self {
        // Echoes the request's body back with a usage; `{"fail": true}` is a 400 answer and
        // `{"crash": true}` a failed call.
        let jobs = FakeJobs::default().answering(|call| {
            let body: Value = serde_json::from_str(&call.body).unwrap();
            if body["raw"] == true {
                return Ok(Answer {
                    status: 200,
                    body: "not \"json\"".into(),
                });
            }
            if body["crash"] == true {
                return Err(Error::Internal("it trapped".into()));
            }
            if body["fail"] == true {
                return Ok(Answer {
                    status: 400,
                    body: json!({"error": {"message": "no", "type": "invalid_request_error", "param": "model", "code": null}}).to_string(),
                });
            }
            Ok(Answer {
                status: 200,
                body: json!({"echo": body, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).to_string(),
            })
        });
        World {
            store: FakeStore::default(),
            jobs,
        }
    }

    fn host(&self) -> FakeHost {
        FakeHost::new("m")
            .with_store(self.store.clone())
            .with_jobs(self.jobs.clone())
            .with_setting("requests_per_step", "2")
    }

    fn call(&self, route: Route, method: &str, body: Value) -> Result<Value, Error> {
        let h = self.host();
        FirstParty.serve(&route, request(method, "/v1/batches", &body), &h)?;
        Ok(h.take_response().map(|(_, v)| v).unwrap_or(Value::Null))
    }

    fn file(&self, purpose: &str, text: &str) -> String {
        let h = self.host();
        let mut w = h.blob_writer().unwrap();
        w.write(text.as_bytes()).unwrap();
        let blob = w.finish().unwrap();
        let shown = cinder_sdk::files::save(&h, None, "in.jsonl", purpose, &blob, None).unwrap();
        shown["id"].as_str().unwrap().to_owned()
    }

    fn create(&self, file: &str) -> Result<Value, Error> {
        self.call(
            Route::new("batches.create"),
            "POST",
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {"k": "v"}}),
        )
    }

    fn get(&self, id: &str) -> Value {
        self.call(
            Route::new("batches.retrieve").with_param("id", id),
            "GET",
            Value::Null,
        )
        .unwrap()
    }

    fn run(&self, id: &str, steps: usize) -> Vec<Outcome> {
        self.jobs.run(id, &FirstParty, &self.host(), steps).unwrap()
    }

    fn content(&self, file_id: &Value) -> Vec<Value> {
        let (_, file) = cinder_sdk::files::load(&self.host(), file_id.as_str().unwrap()).unwrap();
        let bytes = self.store.blob(&file.blob).unwrap();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn line(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| line(&format!("r{i}"), json!({"model": "m", "n": i})) + "\n")
        .collect()
}

fn param(e: Error) -> (u16, Option<String>) {
    let (status, body) = e.to_http();
    (status, body["error"]["param"].as_str().map(str::to_owned))
}

#[test]
fn a_batch_runs_to_completion_with_one_result_line_per_request_in_order() {
    let w = World::new();
    let mut text = lines(5);
    text.push_str(&line("bad", json!({"fail": true})));
    text.push_str("\n\n");
    text.push_str(&line("trap", json!({"crash": true})));
    let file = w.file("batch", &text);
    let created = w.create(&file).unwrap();
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["metadata"], json!({"k": "v"}));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("batch_"));
    let outcomes = w.run(id, 100);
    assert_eq!(outcomes.last(), Some(&Outcome::Done));
    let done = w.get(id);
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["request_counts"],
        json!({"total": 7, "completed": 5, "failed": 2})
    );
    assert_eq!(done["usage"]["input_tokens"], 15);
    assert_eq!(done["usage"]["output_tokens"], 10);
    for key in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[key].is_i64(), "{key}: {done}");
    }
    let out = w.content(&done["output_file_id"]);
    let ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(out[2]["response"]["status_code"], 200);
    assert_eq!(out[2]["response"]["body"]["echo"]["n"], 2);
    assert!(out[2]["id"].as_str().unwrap().starts_with("batch_req_"));
    let errors = w.content(&done["error_file_id"]);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["custom_id"], "bad");
    assert_eq!(errors[0]["response"]["status_code"], 400);
    assert_eq!(errors[1]["response"]["status_code"], 500);
    assert_eq!(
        errors[1]["response"]["body"]["error"]["type"],
        "server_error"
    );
    // Every request went through dispatch once, to the batch's endpoint.
    let sent = w.jobs.dispatched();
    assert_eq!(sent.len(), 7);
    assert!(
        sent.iter()
            .all(|c| c.path == "/v1/chat/completions" && c.method == "POST")
    );
    // The segments are gone once joined: only the input and the two files remain.
    assert_eq!(w.store.blob_count(), 3);
}

#[test]
fn a_step_redone_after_a_crash_writes_each_request_once() {
    let w = World::new();
    let file = w.file("batch", &lines(6));
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 2); // validate, then one running step
    let saved = w.jobs.job(&id).unwrap().job.progress;
    w.run(&id, 1); // a step whose progress the host never saved:
    w.jobs.update(&id, |j| {
        j.job.progress = saved.clone();
        j.job.attempt = 2;
    });
    w.run(&id, 100);
    let done = w.get(&id);
    assert_eq!(done["status"], "completed");
    let out = w.content(&done["output_file_id"]);
    let ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(done["request_counts"]["completed"], 6);
    // The redone requests were sent twice, and got the same request ids.
    assert_eq!(w.jobs.dispatched().len(), 8);
}

#[test]
fn a_refused_input_file_fails_the_batch_naming_each_bad_line() {
    let w = World::new();
    let text = [
        line("a", json!({})),
        "not json".into(),
        line("a", json!({})),
        json!({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}).to_string(),
        json!({"custom_id": "d", "method": "POST", "url": "/v1/embeddings", "body": {}}).to_string(),
        json!({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions", "body": {"stream": true}}).to_string(),
        json!({"method": "POST", "url": "/v1/chat/completions", "body": {}}).to_string(),
    ]
    .join("\n");
    let file = w.file("batch", &text);
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(w.run(&id, 10), [Outcome::Done]);
    let failed = w.get(&id);
    assert_eq!(failed["status"], "failed");
    assert!(failed["failed_at"].is_i64());
    let errors = failed["errors"]["data"].as_array().unwrap();
    let seen: Vec<(&str, u64)> = errors
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("invalid_json_line", 2),
            ("duplicate_custom_id", 3),
            ("invalid_method", 4),
            ("mismatched_endpoint", 5),
            ("invalid_request", 6),
            ("missing_required_parameter", 7),
        ]
    );
    assert!(w.jobs.dispatched().is_empty());
}

#[test]
fn an_empty_input_file_fails_the_batch() {
    let w = World::new();
    let file = w.file("batch", "\n \n");
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 10);
    let failed = w.get(&id);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"][0]["code"], "empty_file");
}

#[test]
fn cancelling_keeps_the_requests_done_so_far() {
    let w = World::new();
    let file = w.file("batch", &lines(6));
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 2);
    let cancelling = w
        .call(
            Route::new("batches.cancel").with_param("id", &id),
            "POST",
            Value::Null,
        )
        .unwrap();
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancelling_at"].is_i64());
    assert!(w.jobs.job(&id).unwrap().job.cancel_requested);
    w.run(&id, 10);
    let cancelled = w.get(&id);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_i64());
    assert_eq!(
        cancelled["request_counts"],
        json!({"total": 6, "completed": 2, "failed": 0})
    );
    assert_eq!(w.content(&cancelled["output_file_id"]).len(), 2);
    // A finished batch cannot be cancelled.
    let again = w
        .call(
            Route::new("batches.cancel").with_param("id", &id),
            "POST",
            Value::Null,
        )
        .unwrap_err();
    assert_eq!(param(again), (400, Some("batch_id".into())));
}

#[test]
fn a_job_the_host_ends_fails_the_batch_with_the_reason() {
    let w = World::new();
    let file = w.file("batch", &lines(4));
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 2);
    w.jobs
        .update(&id, |j| j.job.ending = Some("interrupted 3 times".into()));
    assert_eq!(w.run(&id, 10), [Outcome::Done]);
    let failed = w.get(&id);
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["errors"]["data"][0]["message"],
        "interrupted 3 times"
    );
    // What it did is kept.
    assert_eq!(w.content(&failed["output_file_id"]).len(), 2);
}

#[test]
fn an_expired_batch_marks_the_requests_it_did_not_send() {
    let w = World::new();
    let file = w.file("batch", &lines(5));
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 2);
    // The completion window ends.
    let h = w.host();
    let object = h.get_object("batches", &id).unwrap().unwrap();
    let mut body: Value = serde_json::from_str(&object.body).unwrap();
    body["expires_at"] = json!(1);
    h.update_object(
        "batches",
        &id,
        &cinder_sdk::store::Change {
            status: object.status.clone(),
            metadata: Vec::new(),
            body: body.to_string(),
            expect_version: None,
        },
    )
    .unwrap();
    w.run(&id, 10);
    let expired = w.get(&id);
    assert_eq!(expired["status"], "expired");
    assert!(expired["expired_at"].is_i64());
    assert_eq!(
        expired["request_counts"],
        json!({"total": 5, "completed": 2, "failed": 3})
    );
    let errors = w.content(&expired["error_file_id"]);
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[0]["error"]["code"], "batch_expired");
    assert_eq!(errors[0]["custom_id"], "r2");
    assert!(errors[0]["response"].is_null());
}

#[test]
fn bad_requests_are_400s_naming_the_parameter() {
    let w = World::new();
    let file = w.file("batch", &lines(1));
    let other = w.file("fine-tune", &lines(1));
    let create = |body: Value| {
        w.call(Route::new("batches.create"), "POST", body)
            .unwrap_err()
    };
    let ok =
        json!({"input_file_id": file, "endpoint": "/v1/embeddings", "completion_window": "24h"});
    for (change, status, expected) in [
        (json!({"input_file_id": null}), 400, "input_file_id"),
        (json!({"endpoint": "/v1/images"}), 400, "endpoint"),
        (json!({"endpoint": null}), 400, "endpoint"),
        (json!({"completion_window": "1h"}), 400, "completion_window"),
        (json!({"metadata": {"k": 1}}), 400, "metadata"),
        (json!({"input_file_id": "file-nope"}), 404, "input_file_id"),
        (json!({"input_file_id": other}), 400, "input_file_id"),
        (json!({"input_file_id": 7}), 400, "input_file_id"),
    ] {
        let mut body = ok.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        assert_eq!(
            param(create(body.clone())),
            (status, Some(expected.into())),
            "{body}"
        );
    }
    // Nothing was created or queued by the refusals.
    assert!(w.jobs.jobs().is_empty());
    let missing = w
        .call(
            Route::new("batches.retrieve").with_param("id", "batch_x"),
            "GET",
            Value::Null,
        )
        .unwrap_err();
    assert_eq!(param(missing).0, 404);
}

#[test]
fn listing_pages_newest_first() {
    let w = World::new();
    let file = w.file("batch", &lines(1));
    let ids: Vec<String> = (0..3)
        .map(|_| w.create(&file).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    let h = w.host();
    let list = |query: &str| {
        FirstParty
            .serve(
                &Route::new("batches.list"),
                request("GET", &format!("/v1/batches{query}"), &Value::Null),
                &h,
            )
            .unwrap();
        h.take_response().unwrap().1
    };
    let page = list("?limit=2");
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"][0]["id"], ids[2].as_str());
    assert_eq!(page["has_more"], true);
    let rest = list(&format!(
        "?limit=2&after={}",
        page["last_id"].as_str().unwrap()
    ));
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
    let bad = FirstParty
        .serve(
            &Route::new("batches.list"),
            request("GET", "/v1/batches?limit=0", &Value::Null),
            &h,
        )
        .unwrap_err();
    assert_eq!(param(bad), (400, Some("limit".into())));
}

#[test]
fn an_answer_that_is_not_json_is_kept_as_a_string() {
    let w = World::new();
    let file = w.file("batch", &(line("raw", json!({"raw": true})) + "\n"));
    let id = w.create(&file).unwrap()["id"].as_str().unwrap().to_owned();
    w.run(&id, 10);
    let done = w.get(&id);
    let out = w.content(&done["output_file_id"]);
    assert_eq!(out[0]["response"]["body"], "not \"json\"");
    assert_eq!(done["usage"]["input_tokens"], 0);
}
