//! Background responses (`background: true`). The request stores the response `queued` and
//! queues a job; a job step generates it (its generations yield to live traffic) and stores
//! it as it ends. A client may poll it, cancel it, and, when the request streamed, follow its
//! events: the step writes them to an event log in the store (a few objects a second), which
//! the streaming create request and `GET /v1/responses/{id}?stream=true&starting_after=N`
//! read, on any replica.
//!
//! A cancel moves the stored response to `cancelled` (compare-and-set against the step's own
//! writes); the step sees the version move at its next check and stops, keeping what it had
//! said. Whoever ends a response closes its log with a last chunk, so followers stop.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use cinder_sdk::host::{AgentHost, Host};
use cinder_sdk::openai::responses::{OutputItem, StreamEvent};
use cinder_sdk::store::NewObject;
use cinder_sdk::{Error, Job, Outcome, Request};

use crate::emit::Emitter;
use crate::file_search;
use crate::run::{self, Generated, Plan};
use crate::stored::{self, Stored};

/// The job kind (the manifest's `jobs`).
pub const KIND: &str = "response";

/// The collection of event-log chunks (`<response id>-<n>`).
pub const EVENTS: &str = "response_events";

/// How often a step writes its new events to the log and looks whether it was cancelled.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How often a follower looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// Follower polls between looks at the response itself (is it gone, or over with its log
/// never closed: a job ended by the host without its last step).
const LOOK_EVERY: u32 = 10;

/// What a step needs of its request.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    body: String,
    request_id: String,
    stream: bool,
}

/// One object of the event log.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Chunk {
    events: Vec<Value>,
    /// Nothing follows.
    last: bool,
}

fn chunk_id(response: &str, n: u32) -> String {
    format!("{response}-{n:06}")
}

fn put_chunk(host: &dyn Host, response: &str, n: u32, chunk: &Chunk) -> Result<(), Error> {
    let new = NewObject {
        id_prefix: "revt_".into(),
        status: None,
        metadata: Vec::new(),
        body: json(chunk)?,
    };
    host.put_object(EVENTS, &chunk_id(response, n), &new)
        .map(drop)
}

fn get_chunk(host: &dyn Host, response: &str, n: u32) -> Result<Option<Chunk>, Error> {
    host.get_object(EVENTS, &chunk_id(response, n))?
        .map(|o| {
            serde_json::from_str(&o.body)
                .map_err(|e| Error::Internal(format!("an event log chunk is unreadable: {e}")))
        })
        .transpose()
}

fn json(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("serializing: {e}")))
}

/// Where the log of `response` ends: its next chunk's number and next event's sequence
/// number; `None` when the response keeps no log (its request did not stream).
fn log_end(host: &dyn Host, response: &str) -> Result<Option<(u32, u64)>, Error> {
    let mut n = 0;
    let mut next_seq = 0;
    while let Some(chunk) = get_chunk(host, response, n)? {
        if let Some(s) = chunk
            .events
            .iter()
            .filter_map(|e| e.get("sequence_number")?.as_u64())
            .max()
        {
            next_seq = s + 1;
        }
        n += 1;
    }
    Ok((n > 0).then_some((n, next_seq)))
}

/// Removes the event log of `response`.
pub fn delete_log(host: &dyn Host, response: &str) -> Result<(), Error> {
    let mut n = 0;
    while host.delete_object(EVENTS, &chunk_id(response, n))? {
        n += 1;
    }
    Ok(())
}

/// `POST /v1/responses` with `background: true`: stored `queued`, a job queued, and the
/// response answered at once (or its events followed, when the request streams).
pub fn start(request: &Request, plan: &Plan, host: &dyn AgentHost) -> Result<(), Error> {
    let p = &plan.params;
    if !p.store {
        return Err(cinder_sdk::invalid_request(
            "Background responses are stored: background: true needs store: true",
            Some("store"),
        ));
    }
    // The model and the prompt are checked now: a request that cannot run is refused at
    // once instead of failing in the background.
    run::prompt_tokens(plan, host)?;
    let response = run::response(plan, "queued");
    run::save(plan, &response, host)?;
    if p.stream {
        let r = Box::new(response.clone());
        let said = [
            StreamEvent::Created {
                sequence_number: 0,
                response: r.clone(),
            },
            StreamEvent::Queued {
                sequence_number: 1,
                response: r,
            },
        ];
        let events = said
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Internal(format!("serializing an event: {e}")))?;
        put_chunk(
            host,
            &plan.id,
            0,
            &Chunk {
                events,
                last: false,
            },
        )?;
    }
    let progress = Progress {
        body: request.body.clone(),
        request_id: request.request_id.clone(),
        stream: p.stream,
    };
    if let Err(e) = host.enqueue_job(KIND, &plan.id, &json(&progress)?) {
        // Nothing will run it: a queued response left behind would wait for ever.
        let _ = host.delete_object(stored::COLLECTION, &plan.id);
        let _ = delete_log(host, &plan.id);
        return Err(e);
    }
    if p.stream {
        follow(host, &plan.id, None)
    } else {
        host.respond_json(200, &response)
    }
}

/// A background response's step: its events' way to the log, and its look-out for a cancel.
pub struct Watch {
    id: String,
    /// The stored response's version as this step last wrote it: any other version means a
    /// client cancelled (or deleted) it.
    version: i64,
    /// Events not yet in the log and the next chunk's number; `None` without a log.
    log: Option<(Vec<Value>, u32)>,
    next_seq: u64,
    checked: Instant,
}

impl Watch {
    /// The stored response's version this step last wrote.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The sequence number of the step's first event.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// Keeps `event` for the log.
    pub fn push(&mut self, event: &StreamEvent) -> Result<(), Error> {
        if let Some((events, _)) = &mut self.log {
            let value = serde_json::to_value(event)
                .map_err(|e| Error::Internal(format!("serializing an event: {e}")))?;
            events.push(value);
        }
        Ok(())
    }

    /// Whether the response was cancelled (or deleted): looked up at most every
    /// [`CHECK_EVERY`], when the events so far go to the log too.
    pub fn cancelled(&mut self, host: &dyn Host, now: bool) -> Result<bool, Error> {
        if !now && self.checked.elapsed() < CHECK_EVERY {
            return Ok(false);
        }
        self.checked = Instant::now();
        self.flush(host, false)?;
        Ok(match host.get_object(stored::COLLECTION, &self.id)? {
            Some(o) => o.version != self.version,
            None => true,
        })
    }

    fn flush(&mut self, host: &dyn Host, last: bool) -> Result<(), Error> {
        let Some((events, n)) = &mut self.log else {
            return Ok(());
        };
        if events.is_empty() && !last {
            return Ok(());
        }
        let chunk = Chunk {
            events: std::mem::take(events),
            last,
        };
        put_chunk(host, &self.id, *n, &chunk)?;
        *n += 1;
        Ok(())
    }
}

/// One step of a background response: it runs the whole response (a request's limits bound
/// it, as they bound one answered live).
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let progress: Progress = serde_json::from_str(&job.progress)
        .map_err(|e| Error::Internal(format!("a response job's record is unreadable: {e}")))?;
    // Deleted before it ran: nothing to do.
    let Some((stored, version)) = stored::load_versioned(host, &job.id)? else {
        return Ok(Outcome::Done);
    };
    let mut watch = Watch {
        id: job.id.clone(),
        version,
        log: progress.stream.then(|| (Vec::new(), 1)),
        next_seq: 2,
        checked: Instant::now(),
    };
    let interrupted = match (&job.ending, stored.response.status.as_str()) {
        (Some(reason), _) => Some(reason.clone()),
        (None, "queued") => None,
        // A step that started it died with its process: what it had said is in the log, but
        // the generation is gone.
        (None, "in_progress") => {
            Some("The server stopped while it generated this response; create it again".into())
        }
        // Cancelled before it started (the cancel closed the log), or already ended.
        _ => return Ok(Outcome::Done),
    };
    if let Some(reason) = interrupted {
        if let Some((n, next_seq)) = log_end(host, &job.id)? {
            watch.log = Some((Vec::new(), n));
            watch.next_seq = next_seq;
        }
        let emit = Emitter::new(progress.stream, false, stored.response, host).watched(watch);
        return failed(emit, Error::Unavailable(reason), stored.input, host);
    }
    let mut response = stored.response;
    response.status = "in_progress".into();
    let started = Stored {
        response,
        input: stored.input,
    };
    let Some(version) = stored::update(host, &started, version)? else {
        // Cancelled just now, before it started.
        return Ok(Outcome::Done);
    };
    watch.version = version;
    let Stored { response, input } = started;
    let request = Request {
        method: "POST".into(),
        path: "/v1/responses".into(),
        body: progress.body,
        request_id: progress.request_id,
    };
    let built = Plan::build(&request, host).and_then(|mut plan| {
        file_search::search(&mut plan, host)?;
        Ok(plan)
    });
    let plan = match built {
        Ok(plan) => plan,
        Err(e) => {
            let emit = Emitter::new(progress.stream, false, response, host).watched(watch);
            return failed(emit, e, input, host);
        }
    };
    let with_logprobs = plan.params.logprobs.is_some();
    let emit = Emitter::new(progress.stream, with_logprobs, response, host).watched(watch);
    match run::generate(&plan, emit, host) {
        Generated::Ready(mut emit) => {
            // The last look before it is stored: a cancel that came meanwhile wins.
            if emit.cancelled_now()? {
                return cancelled(emit, host);
            }
            let response = emit.response().clone();
            let version = emit.watch_version().ok_or_else(no_watch)?;
            let done = Stored { response, input };
            match stored::update(host, &done, version)? {
                Some(_) => {
                    run::append_to_conversation(&plan, &done.response, host)?;
                    let (_, watch) = emit.end()?;
                    watch.ok_or_else(no_watch)?.flush(host, true)?;
                    Ok(Outcome::Done)
                }
                // Cancelled between the look and the write.
                None => cancelled(emit, host),
            }
        }
        Generated::Cancelled(emit) => cancelled(emit, host),
        Generated::Refused(emit, e) | Generated::Failed(emit, e) => failed(emit, e, input, host),
    }
}

fn no_watch() -> Error {
    Error::Internal("a background response's emitter has no watch".into())
}

/// Ends a response that failed: `failed` with the error, stored (unless a client cancelled it
/// meanwhile), and its log closed with `response.failed`.
fn failed(
    emit: Emitter,
    e: Error,
    input: Vec<OutputItem>,
    host: &dyn Host,
) -> Result<Outcome, Error> {
    let (response, watch) = emit.fail(&e.naming(&run::PARAMS))?;
    let mut watch = watch.ok_or_else(no_watch)?;
    match stored::update(host, &Stored { response, input }, watch.version)? {
        Some(_) => watch.flush(host, true)?,
        None => {
            if let Some((events, _)) = &mut watch.log {
                events.clear();
            }
            watch.flush(host, true)?;
        }
    }
    Ok(Outcome::Done)
}

/// Ends a response a client cancelled (or deleted): the output said so far is kept in the
/// cancelled response, and the log is closed.
fn cancelled(emit: Emitter, host: &dyn Host) -> Result<Outcome, Error> {
    let (said, watch) = emit.stop()?;
    let mut watch = watch.ok_or_else(no_watch)?;
    // The cancel moved the version on; a few tries in case it moves again.
    for _ in 0..4 {
        let Some((mut now, version)) = stored::load_versioned(host, &watch.id)? else {
            // Deleted: so is its log.
            return Ok(Outcome::Done);
        };
        if now.response.status != "cancelled" {
            break;
        }
        now.response.output = said.output.clone();
        if stored::update(host, &now, version)?.is_some() {
            break;
        }
    }
    watch.flush(host, true)?;
    Ok(Outcome::Done)
}

/// `POST /v1/responses/{id}/cancel`: a queued or running background response becomes
/// `cancelled`; one already over is answered as it is.
pub fn cancel(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    for _ in 0..8 {
        let (stored, version) =
            stored::load_versioned(host, id)?.ok_or_else(|| stored::not_found(id))?;
        if !stored.response.background {
            return Err(cinder_sdk::invalid_request(
                "Only responses created with background: true can be cancelled",
                None,
            ));
        }
        let was = stored.response.status.clone();
        if !matches!(was.as_str(), "queued" | "in_progress") {
            return host.respond_json(200, &stored.response);
        }
        let mut response = stored.response;
        response.status = "cancelled".into();
        let cancelled = Stored {
            response,
            input: stored.input,
        };
        if stored::update(host, &cancelled, version)?.is_some() {
            host.cancel_job(id)?;
            // No step started it, and none will: its log is closed here.
            if was == "queued"
                && let Some((n, _)) = log_end(host, id)?
            {
                put_chunk(
                    host,
                    id,
                    n,
                    &Chunk {
                        events: Vec::new(),
                        last: true,
                    },
                )?;
            }
            return host.respond_json(200, &cancelled.response);
        }
    }
    Err(Error::Unavailable(
        "the response kept changing while it was cancelled; try again".into(),
    ))
}

/// `GET /v1/responses/{id}?stream=true[&starting_after=N]`: a background response's events
/// (those after sequence number N), from the start of its log and on as they come.
pub fn stream(id: &str, request: &Request, host: &dyn Host) -> Result<(), Error> {
    let mut after = None;
    for (k, v) in request.query() {
        if k == "starting_after" {
            after = Some(v.parse::<u64>().map_err(|_| {
                cinder_sdk::invalid_request(
                    "starting_after is a sequence number (an integer from 0)",
                    Some("starting_after"),
                )
            })?);
        }
    }
    let stored = stored::load(host, id)?.ok_or_else(|| stored::not_found(id))?;
    if !stored.response.background || get_chunk(host, id, 0)?.is_none() {
        return Err(cinder_sdk::invalid_request(
            "Only a response created with background: true and stream: true can be streamed again",
            Some("stream"),
        ));
    }
    follow(host, id, after)
}

/// Sends the events of `id`'s log after sequence number `after`, waiting for more until the
/// log's last chunk.
fn follow(host: &dyn Host, id: &str, after: Option<u64>) -> Result<(), Error> {
    let mut n = 0;
    let mut polls = 0u32;
    let mut over_polls = 0u32;
    loop {
        if let Some(chunk) = get_chunk(host, id, n)? {
            for event in &chunk.events {
                let seq = event.get("sequence_number").and_then(Value::as_u64);
                if after.is_some_and(|a| seq.is_some_and(|s| s <= a)) {
                    continue;
                }
                host.send_event(&event.to_string())?;
            }
            if chunk.last {
                return Ok(());
            }
            n += 1;
            continue;
        }
        polls += 1;
        if polls.is_multiple_of(LOOK_EVERY) {
            match host.get_object(stored::COLLECTION, id)? {
                None => return Ok(()),
                // Over, yet its log stays open: its job was ended without a last step.
                Some(o) if !matches!(o.status.as_deref(), Some("queued" | "in_progress")) => {
                    over_polls += 1;
                    if over_polls > 2 {
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
