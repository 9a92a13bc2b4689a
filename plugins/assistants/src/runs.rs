//! Runs: an assistant answering in a thread, as a durable job (kind `run`). Creating a run
//! checks its settings, adds its `additional_messages` to the thread, stores it `queued` in
//! `runs` (its thread in the store's metadata, one active run per thread) and queues the job,
//! which `run_job.rs` answers; retrieving, listing, modifying and cancelling read and
//! compare-and-set the stored run.
//!
//! With `stream: true` the request follows the run's events (`stream.rs`) instead of
//! answering with the queued run.
//!
//! Not built yet, and refused by name: a structured `response_format` in a run that may call
//! functions.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::metadata;
use cinder_sdk::store::{Change, NewObject, Object, Order, Query, Updated};
use cinder_sdk::{Error, Request};

use crate::{bad, run_settings, stream};

use crate::assistants::{self, list_query};
use crate::threads::{self, MESSAGES};

pub const RUNS: &str = "runs";
pub const STEPS: &str = "run_steps";
/// The job kind (the manifest's `jobs`).
pub const KIND: &str = "run";

/// Seconds a queued run waits before OpenAI would call it expired: shown as `expires_at`.
const EXPIRES_AFTER: i64 = 600;
/// Statuses of a run that is not over.
pub(crate) const ACTIVE: [&str; 4] = ["queued", "in_progress", "requires_action", "cancelling"];

const KEYS: [&str; 17] = [
    "assistant_id",
    "model",
    "instructions",
    "additional_instructions",
    "additional_messages",
    "tools",
    "metadata",
    "temperature",
    "top_p",
    "stream",
    "max_prompt_tokens",
    "max_completion_tokens",
    "truncation_strategy",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
];

fn not_found(id: &str) -> Error {
    cinder_sdk::no_such("run", id)
}

pub(crate) fn now() -> i64 {
    i64::try_from(cinder_sdk::unix_time()).unwrap_or(0)
}

pub(crate) fn body_of(o: &Object) -> Result<Value, Error> {
    serde_json::from_str(&o.body)
        .map_err(|e| Error::Internal(format!("the stored run {} is unreadable: {e}", o.id)))
}

/// The run as OpenAI shows it.
pub(crate) fn shown(o: &Object) -> Result<Value, Error> {
    let mut v = body_of(o)?;
    v["id"] = json!(o.id);
    v["object"] = json!("thread.run");
    v["created_at"] = json!(o.created_at);
    v["status"] = json!(o.status.clone().unwrap_or_default());
    if let Some(m) = v.as_object_mut() {
        m.remove("rounds");
        m.remove("retrieved");
    }
    Ok(v)
}

/// The run `id` of the thread `thread`.
pub(crate) fn find(host: &dyn AgentHost, thread: &str, id: &str) -> Result<Object, Error> {
    threads::find_thread(host, thread)?;
    let o = match cinder_sdk::well_formed_id(id, "run_") {
        true => host.get_object(RUNS, id)?,
        false => None,
    };
    let run = o
        .filter(|o| o.metadata.iter().any(|(k, v)| k == "thread" && v == thread))
        .ok_or_else(|| not_found(id))?;
    expire_if_due(host, run)
}

/// A run left waiting for tool outputs, or queued and never started, past its `expires_at`
/// is `expired` (a waiting run's tool_calls step too, a queued one's job stopped), so it no
/// longer blocks its thread; looked at whenever it is read.
fn expire_if_due(host: &dyn AgentHost, run: Object) -> Result<Object, Error> {
    let due = body_of(&run)?["expires_at"]
        .as_i64()
        .is_some_and(|at| now() > at);
    let waiting = matches!(run.status.as_deref(), Some("requires_action" | "queued"));
    if !due || !waiting {
        return Ok(run);
    }
    let expired = advance(
        host,
        &run.id,
        &["requires_action", "queued"],
        "expired",
        &[("required_action", Value::Null)],
    )?;
    if run.status.as_deref() == Some("queued") {
        host.cancel_job(&run.id)?;
    }
    end_pending_step(host, &run, "expired")?;
    Ok(match expired {
        Some(o) => o,
        None => host.get_object(RUNS, &run.id)?.unwrap_or(run),
    })
}

/// The tool_calls step a run was waiting on ends with it (`cancelled` or `expired`).
fn end_pending_step(host: &dyn AgentHost, run: &Object, status: &str) -> Result<(), Error> {
    let r = body_of(run)?;
    let Some(step) = r["rounds"]
        .as_array()
        .and_then(|rs| rs.last())
        .filter(|round| round["outputs"].is_null())
        .and_then(|round| round["step"].as_str())
    else {
        return Ok(());
    };
    let stamp = if status == "cancelled" {
        "cancelled_at"
    } else {
        "expired_at"
    };
    crate::run_steps::end_step(host, step, status, stamp, |_| ())?;
    Ok(())
}

/// `POST /v1/threads/{id}/runs`.
pub fn create(thread: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    threads::find_thread(host, thread)?;
    let given = cinder_sdk::object_body(&request.body, &KEYS)?;
    let streaming = streams(&given)?;
    let run = start(thread, given, streaming.then(Vec::new), host)?;
    answer(&run, streaming, host)
}

/// Whether the request asks to stream (`stream: true`).
fn streams(given: &Map<String, Value>) -> Result<bool, Error> {
    match given.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad("stream must be a boolean", "stream")),
    }
}

/// The new run, or, when its request streams, its events until it ends or waits for tool
/// outputs.
fn answer(run: &Object, streaming: bool, host: &dyn AgentHost) -> Result<(), Error> {
    match streaming {
        true => stream::follow(host, &run.id, 0),
        false => host.respond_json(200, &shown(run)?),
    }
}

/// `POST /v1/threads/runs`: a thread made from `thread` (as `POST /v1/threads` takes it),
/// then a run on it.
pub fn create_thread_and_run(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut keys = KEYS.to_vec();
    keys.extend(["thread", "tool_resources"]);
    let mut given = cinder_sdk::object_body(&request.body, &keys)?;
    // The run's own resources replace the assistant's (checked like theirs).
    if let Some(r) = given.get_mut("tool_resources") {
        *r = match r.take() {
            Value::Null => Value::Null,
            v => assistants::tool_resources(v)?,
        };
    }
    let thread_body = match given.remove("thread") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(t)) => t,
        Some(_) => return Err(bad("thread must be an object", "thread")),
    };
    // The run's own settings are checked before the thread exists.
    run_settings::check(&given, host)?;
    let streaming = streams(&given)?;
    let thread = threads::make(thread_body, "thread", host)?;
    let prelude = match streaming {
        true => Some(vec![("thread.created", threads::shown_thread(&thread)?)]),
        false => None,
    };
    let run = start(&thread.id, given, prelude, host)?;
    answer(&run, streaming, host)
}

/// Checks `given`, adds its `additional_messages` to the thread, stores the run `queued` and
/// queues its job. With `prelude` (a streaming request's first events) the run's event log
/// starts with them, then the run created and queued.
fn start(
    thread: &str,
    given: Map<String, Value>,
    prelude: Option<Vec<(&str, Value)>>,
    host: &dyn AgentHost,
) -> Result<Object, Error> {
    let settings = run_settings::check(&given, host)?;
    let extra = match given.get("additional_messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) if m.len() <= threads::MAX_INITIAL_MESSAGES => m.clone(),
        Some(_) => {
            return Err(bad(
                format!(
                    "additional_messages is an array of at most {} messages",
                    threads::MAX_INITIAL_MESSAGES
                ),
                "additional_messages",
            ));
        }
    };
    let extra = extra
        .iter()
        .enumerate()
        .map(|(i, m)| threads::new_message(m, thread, &format!("additional_messages[{i}]"), host))
        .collect::<Result<Vec<_>, _>>()?;
    // One run at a time per thread, as OpenAI.
    if let Some(active) = active_run(host, thread)? {
        return Err(bad(
            format!("Thread {thread} already has an active run {}.", active.id),
            "thread_id",
        ));
    }
    let pick = |key: &str| {
        given
            .get(key)
            .filter(|v| !v.is_null())
            .unwrap_or(&settings[key])
            .clone()
    };
    let mut instructions = pick("instructions").as_str().unwrap_or_default().to_owned();
    if let Some(more) = given.get("additional_instructions").and_then(Value::as_str) {
        if !instructions.is_empty() {
            instructions.push_str("\n\n");
        }
        instructions.push_str(more);
    }
    let created = now();
    let body = json!({
        "assistant_id": given["assistant_id"],
        "thread_id": thread,
        "started_at": null,
        "expires_at": created + EXPIRES_AFTER,
        "cancelled_at": null,
        "failed_at": null,
        "completed_at": null,
        "required_action": null,
        "last_error": null,
        "model": pick("model"),
        "instructions": instructions,
        "tools": pick("tools"),
        "tool_resources": pick("tool_resources"),
        "metadata": given.get("metadata").filter(|m| !m.is_null()).cloned().unwrap_or(json!({})),
        "incomplete_details": null,
        "usage": null,
        "temperature": pick("temperature"),
        "top_p": pick("top_p"),
        "max_prompt_tokens": given.get("max_prompt_tokens").cloned().unwrap_or(Value::Null),
        "max_completion_tokens": given.get("max_completion_tokens").cloned().unwrap_or(Value::Null),
        "truncation_strategy": given
            .get("truncation_strategy")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or(json!({"type": "auto", "last_messages": null})),
        "response_format": pick("response_format"),
        "tool_choice": given.get("tool_choice").filter(|v| !v.is_null()).cloned().unwrap_or(json!("auto")),
        "parallel_tool_calls": given.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
        // Each round of calls the run made and the outputs given back (not shown).
        "rounds": [],
    });
    let run = host.create_object(
        RUNS,
        &NewObject {
            id_prefix: "run_".into(),
            status: Some("queued".into()),
            metadata: vec![("thread".into(), thread.to_owned())],
            body: body.to_string(),
        },
    )?;
    // Two creates may both have passed the check above: the thread is claimed by one.
    if let Err(e) = claim(host, thread, &run.id) {
        host.delete_object(RUNS, &run.id)?;
        return Err(e);
    }
    for (new, _) in &extra {
        host.create_object(MESSAGES, new)?;
    }
    let files: Vec<String> = extra.into_iter().flat_map(|(_, f)| f).collect();
    crate::attach::add(host, threads::THREADS, thread, &files, None)?;
    let mut progress = json!({"run": run.id});
    let log = match prelude {
        Some(events) => {
            let mut log = stream::Log::new(&run.id, thread, 0);
            for (name, data) in events {
                log.push(name, data);
            }
            log.push("thread.run.created", shown(&run)?);
            log.push("thread.run.queued", shown(&run)?);
            log.flush(host, false)?;
            progress["stream"] = json!(0);
            Some(log)
        }
        None => None,
    };
    if let Err(e) = host.enqueue_job(KIND, &run.id, &progress.to_string()) {
        if let Some(log) = log {
            log.discard(host)?;
        }
        // No job will ever run it: it must not block the thread.
        let error = json!({"code": "server_error", "message": "the run could not be queued"});
        write(
            host,
            &run,
            "failed",
            &[("failed_at", json!(now())), ("last_error", error)],
        )?;
        return Err(e);
    }
    Ok(run)
}

/// Marks `run` as its thread's active run, compare-and-set on the thread: of two creates that
/// both found no active run, one claims the thread and the other is refused as OpenAI refuses
/// a second run.
pub(crate) fn claim(host: &dyn AgentHost, thread: &str, run: &str) -> Result<(), Error> {
    for _ in 0..8 {
        let t = threads::find_thread(host, thread)?;
        let mut body: Value = serde_json::from_str(&t.body).map_err(|e| {
            Error::Internal(format!("the stored thread {thread} is unreadable: {e}"))
        })?;
        if let Some(other) = body["active_run"].as_str().filter(|o| *o != run)
            && host
                .get_object(RUNS, other)?
                .is_some_and(|o| ACTIVE.contains(&o.status.as_deref().unwrap_or_default()))
        {
            return Err(bad(
                format!("Thread {thread} already has an active run {other}."),
                "thread_id",
            ));
        }
        body["active_run"] = json!(run);
        let change = Change {
            status: t.status.clone(),
            metadata: t.metadata.clone(),
            body: body.to_string(),
            expect_version: Some(t.version),
        };
        match host.update_object(threads::THREADS, thread, &change)? {
            Updated::Done(_) => return Ok(()),
            Updated::Conflict(_) => continue,
            Updated::NotFound => return Err(cinder_sdk::no_such("thread", thread)),
        }
    }
    Err(Error::RateLimited(format!(
        "thread {thread} is changing; try again"
    )))
}

/// Writes `run` with `status` and the fields of `set`, if nobody wrote it since it was read.
pub(crate) fn write(
    host: &dyn AgentHost,
    run: &Object,
    status: &str,
    set: &[(&str, Value)],
) -> Result<Option<Object>, Error> {
    let mut body = body_of(run)?;
    for (k, v) in set {
        body[*k] = v.clone();
    }
    let change = Change {
        status: Some(status.into()),
        metadata: run.metadata.clone(),
        body: body.to_string(),
        expect_version: Some(run.version),
    };
    Ok(match host.update_object(RUNS, &run.id, &change)? {
        Updated::Done(o) => Some(o),
        Updated::NotFound | Updated::Conflict(_) => None,
    })
}

/// Writes the run `id` with `status` and `set` on whatever version it is at now, as long as
/// its status is one of `from`: another write (a metadata update) does not stop a step, a
/// cancel does. `None` when the run left those statuses or is gone.
pub(crate) fn advance(
    host: &dyn AgentHost,
    id: &str,
    from: &[&str],
    status: &str,
    set: &[(&str, Value)],
) -> Result<Option<Object>, Error> {
    for _ in 0..8 {
        let Some(run) = host.get_object(RUNS, id)? else {
            return Ok(None);
        };
        if !from.contains(&run.status.as_deref().unwrap_or_default()) {
            return Ok(None);
        }
        if let Some(o) = write(host, &run, status, set)? {
            return Ok(Some(o));
        }
    }
    Err(Error::Internal(format!(
        "run {id} kept changing under its step"
    )))
}

/// Whether the run `id` was cancelled (or is being cancelled), or is gone: its step stops.
pub(crate) fn stopped(host: &dyn AgentHost, id: &str) -> Result<bool, Error> {
    Ok(host
        .get_object(RUNS, id)?
        .is_none_or(|o| matches!(o.status.as_deref(), Some("cancelling" | "cancelled"))))
}

/// The thread's run that is not over, if any: one at a time, and no new message meanwhile.
pub(crate) fn active_run(host: &dyn AgentHost, thread: &str) -> Result<Option<Object>, Error> {
    for status in ACTIVE {
        let page = host.list_objects(
            RUNS,
            &Query {
                limit: 1,
                order: Order::Desc,
                after: None,
                before: None,
                status: Some(status.into()),
                metadata: vec![("thread".into(), thread.to_owned())],
            },
        )?;
        if let Some(run) = page.objects.into_iter().next() {
            let run = expire_if_due(host, run)?;
            if ACTIVE.contains(&run.status.as_deref().unwrap_or_default()) {
                return Ok(Some(run));
            }
        }
    }
    Ok(None)
}

/// `GET /v1/threads/{id}/runs/{run_id}`.
pub fn retrieve(thread: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    host.respond_json(200, &shown(&find(host, thread, id)?)?)
}

/// `GET /v1/threads/{id}/runs`: newest first by default, paged like every list.
pub fn list(thread: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut query = list_query(&request.query())?;
    threads::find_thread(host, thread)?;
    query.metadata = vec![("thread".into(), thread.to_owned())];
    let page = host.list_objects(RUNS, &query)?;
    cinder_sdk::respond_page(host, &page, shown)
}

/// `POST /v1/threads/{id}/runs/{run_id}`: `metadata`.
pub fn modify(
    thread: &str,
    id: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &["metadata"])?;
    for _ in 0..8 {
        let run = find(host, thread, id)?;
        let meta = match given.get("metadata") {
            Some(m) => metadata(Some(m.clone()))?.unwrap_or_else(|| json!({})),
            None => body_of(&run)?["metadata"].clone(),
        };
        let status = run.status.clone().unwrap_or_default();
        if let Some(o) = write(host, &run, &status, &[("metadata", meta)])? {
            return host.respond_json(200, &shown(&o)?);
        }
    }
    Err(Error::RateLimited(format!(
        "run {id} is changing; try again"
    )))
}

/// `POST /v1/threads/{id}/runs/{run_id}/cancel`: a queued run is cancelled at once, one in
/// progress is `cancelling` until its step stops (within `run_job::CHECK_EVERY`); an ended run
/// cannot be cancelled.
pub fn cancel(thread: &str, id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    for _ in 0..8 {
        let run = find(host, thread, id)?;
        let written = match run.status.as_deref() {
            Some("queued") => write(host, &run, "cancelled", &[("cancelled_at", json!(now()))])?,
            // Nothing runs while the client owes tool outputs: it ends now.
            Some("requires_action") => {
                let done = write(
                    host,
                    &run,
                    "cancelled",
                    &[
                        ("cancelled_at", json!(now())),
                        ("required_action", Value::Null),
                    ],
                )?;
                if done.is_some() {
                    end_pending_step(host, &run, "cancelled")?;
                }
                done
            }
            Some("in_progress") => write(host, &run, "cancelling", &[])?,
            Some("cancelling") => Some(run),
            other => {
                return Err(bad(
                    format!(
                        "Cannot cancel run with status '{}'.",
                        other.unwrap_or_default()
                    ),
                    "run_id",
                ));
            }
        };
        if let Some(o) = written {
            return host.respond_json(200, &shown(&o)?);
        }
    }
    Err(Error::RateLimited(format!(
        "run {id} is changing; try again"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cinder_sdk::host::Store;
    use cinder_sdk::store::NewObject;
    use cinder_sdk::testing::FakeHost;

    use super::*;

    fn object(
        host: &FakeHost,
        collection: &str,
        prefix: &str,
        status: Option<&str>,
        body: &str,
    ) -> String {
        let new = NewObject {
            id_prefix: prefix.into(),
            status: status.map(str::to_owned),
            metadata: Vec::new(),
            body: body.into(),
        };
        host.create_object(collection, &new).unwrap().id
    }

    #[test]
    fn of_two_creates_that_raced_past_the_check_one_claims_the_thread() {
        let host = FakeHost::new("m");
        let thread = object(
            &host,
            threads::THREADS,
            "thread_",
            None,
            r#"{"metadata": {}}"#,
        );
        let a = object(&host, RUNS, "run_", Some("queued"), "{}");
        let b = object(&host, RUNS, "run_", Some("queued"), "{}");
        claim(&host, &thread, &a).unwrap();
        let e = claim(&host, &thread, &b).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidRequest(d) if d.message.contains(&a)),
            "{e:?}"
        );
        // Once the first is over, the thread is free again.
        let run = host.get_object(RUNS, &a).unwrap().unwrap();
        write(&host, &run, "completed", &[]).unwrap();
        claim(&host, &thread, &b).unwrap();
    }

    #[test]
    fn a_queued_run_that_never_started_expires_and_frees_its_thread() {
        let host = FakeHost::new("m");
        let past = r#"{"expires_at": 1, "rounds": []}"#;
        let id = object(&host, RUNS, "run_", Some("queued"), past);
        let run = host.get_object(RUNS, &id).unwrap().unwrap();
        assert_eq!(
            expire_if_due(&host, run).unwrap().status.as_deref(),
            Some("expired")
        );
        let fresh = r#"{"expires_at": 99999999999, "rounds": []}"#;
        let id = object(&host, RUNS, "run_", Some("queued"), fresh);
        let run = host.get_object(RUNS, &id).unwrap().unwrap();
        assert_eq!(
            expire_if_due(&host, run).unwrap().status.as_deref(),
            Some("queued")
        );
    }
}
