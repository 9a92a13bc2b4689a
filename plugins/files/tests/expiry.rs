//! Expiry on time: files made with `expires_after` and uploads queue a job due when they
//! expire, and that job's step removes what has expired (and nothing that has not).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cinder_plugin_files::FirstParty;
use cinder_sdk::host::Store;
use cinder_sdk::testing::{FakeHost, FakeJobs, FakeStore, request};
use cinder_sdk::{Error, Route, ServeJobs};
use serde_json::{Value, json};

struct World {
    store: FakeStore,
    jobs: FakeJobs,
}

impl World {
    fn new() -> Self {
        World {
            store: FakeStore::default(),
            jobs: FakeJobs::default(),
        }
    }

    fn host(&self) -> FakeHost {
        FakeHost::new("m")
            .with_store(self.store.clone())
            .with_jobs(self.jobs.clone())
    }

    fn call(&self, h: FakeHost, route: Route, body: Value) -> Result<Value, Error> {
        FirstParty.serve(&route, request("POST", "/v1/x", &body), &h)?;
        Ok(h.take_response().map(|(_, v)| v).unwrap_or(Value::Null))
    }

    /// Runs the job `id` now, as the host would once it is due.
    fn run(&self, id: &str) {
        self.jobs.run(id, &FirstParty, &self.host(), 3).unwrap();
    }

    fn backdate(&self, collection: &str, id: &str) {
        support::backdate(&self.host(), collection, id);
    }
}

fn now() -> i64 {
    cinder_sdk::unix_time() as i64
}

#[test]
fn a_file_with_expires_after_is_removed_by_its_job_when_due() {
    let w = World::new();
    let form: &[(&str, Option<&str>, &[u8])] = &[
        ("purpose", None, b"user_data"),
        ("expires_after[anchor]", None, b"created_at"),
        ("expires_after[seconds]", None, b"3600"),
        ("file", Some("f.txt"), b"hello"),
    ];
    let made = w
        .call(
            w.host().with_form(form),
            Route::new("files.create"),
            Value::Null,
        )
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let at = made["expires_at"].as_i64().unwrap();
    assert!((at - now() - 3600).abs() <= 2, "{made}");
    // One job, due when the file expires.
    let jobs = w.jobs.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job.kind, "expire");
    assert_eq!(jobs[0].job.id, format!("expire-{id}"));
    assert_eq!(jobs[0].not_before, Some(at));
    // Run before its time (the clock stepped back between taking the job and running it),
    // it leaves the file alone and a job due at the same time in its place.
    w.run(&jobs[0].job.id);
    assert_eq!(w.store.objects("files").len(), 1);
    assert_eq!(w.store.blob_count(), 1);
    let again = format!("expire-{id}-at-{at}");
    let queued = w.jobs.job(&again).expect("queued again");
    assert_eq!((queued.not_before, queued.done), (Some(at), false));

    // A second file, deleted by its owner before it expires: its job finds nothing to do.
    let other = w
        .call(
            w.host().with_form(form),
            Route::new("files.create"),
            Value::Null,
        )
        .unwrap();
    let other_id = other["id"].as_str().unwrap();
    let h = w.host();
    FirstParty
        .serve(
            &Route::new("files.delete").with_param("id", other_id),
            request("DELETE", "/v1/files/x", &Value::Null),
            &h,
        )
        .unwrap();
    w.run(&format!("expire-{other_id}"));

    // Due: the file and its content go.
    w.backdate("files", &id);
    w.run(&again);
    assert!(w.store.objects("files").is_empty());
    assert_eq!(w.store.blob_count(), 0);
    assert!(w.jobs.jobs().iter().all(|j| j.done));
}

#[test]
fn a_file_without_expiry_queues_nothing() {
    let w = World::new();
    let form: &[(&str, Option<&str>, &[u8])] =
        &[("purpose", None, b"user_data"), ("file", Some("f"), b"x")];
    w.call(
        w.host().with_form(form),
        Route::new("files.create"),
        Value::Null,
    )
    .unwrap();
    assert!(w.jobs.jobs().is_empty());
}

#[test]
fn an_abandoned_upload_loses_its_parts_when_its_hour_is_up() {
    let w = World::new();
    let created = w
        .call(
            w.host(),
            Route::new("uploads.create"),
            json!({"bytes": 6, "filename": "a.txt", "mime_type": "text/plain", "purpose": "user_data"}),
        )
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let part: &[(&str, Option<&str>, &[u8])] = &[("data", Some("b"), b"abc")];
    w.call(
        w.host().with_form(part),
        Route::new("uploads.parts").with_param("id", &id),
        Value::Null,
    )
    .unwrap();
    let jobs = w.jobs.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job.id, format!("expire-{id}"));
    assert_eq!(jobs[0].not_before, created["expires_at"].as_i64());
    assert_eq!(w.store.blob_count(), 1);

    w.backdate("uploads", &id);
    w.run(&jobs[0].job.id);
    let upload = w.host().get_object("uploads", &id).unwrap().unwrap();
    assert_eq!(upload.status.as_deref(), Some("expired"));
    assert_eq!(w.store.blob_count(), 0, "its parts are gone");
    assert!(w.store.objects("upload_parts").is_empty());
}

#[test]
fn a_completed_upload_is_left_as_it_is_by_its_expiry_job() {
    let w = World::new();
    let created = w
        .call(
            w.host(),
            Route::new("uploads.create"),
            json!({"bytes": 3, "filename": "a.txt", "mime_type": "text/plain", "purpose": "user_data"}),
        )
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let part: &[(&str, Option<&str>, &[u8])] = &[("data", Some("b"), b"abc")];
    let p = w
        .call(
            w.host().with_form(part),
            Route::new("uploads.parts").with_param("id", &id),
            Value::Null,
        )
        .unwrap();
    w.call(
        w.host(),
        Route::new("uploads.complete").with_param("id", &id),
        json!({"part_ids": [p["id"]]}),
    )
    .unwrap();
    // A part the completion's clean-up left behind (it failed half-way): the expiry job
    // removes it, and nothing else.
    let h = w.host();
    let mut writer = h.blob_writer().unwrap();
    writer.write(b"left").unwrap();
    let blob = writer.finish().unwrap();
    let stray = cinder_sdk::store::NewObject {
        id_prefix: "part_".into(),
        status: None,
        metadata: vec![("upload_id".into(), id.clone())],
        body: json!({"blob": blob.id, "bytes": 4}).to_string(),
    };
    h.create_object("upload_parts", &stray).unwrap();
    w.backdate("uploads", &id);
    w.run(&format!("expire-{id}"));
    let upload = w.host().get_object("uploads", &id).unwrap().unwrap();
    assert_eq!(upload.status.as_deref(), Some("completed"));
    assert_eq!(w.store.objects("files").len(), 1);
    assert!(w.store.objects("upload_parts").is_empty());
    assert_eq!(w.store.blob_count(), 1, "the file's content stays");
}
