//! Streaming runs (`stream: true` on create run, create-thread-and-run and
//! submit_tool_outputs). A run executes as a job on whichever process holds it, so its events
//! travel through an event log in the store: the request writes the first events (the thread,
//! the run created and queued) and follows the log, sending each event by its OpenAI name
//! (the SDKs dispatch on `event:`); the job's step appends the rest a few times a second and
//! closes the log with the run's last event. The host ends the stream with `event: done`.
//!
//! A run streams in segments: the one its create request follows (up to `requires_action` or
//! the end), then one per submit_tool_outputs. Each segment's chunks are objects
//! `<run>-<segment>-<n>` in `run_events`; the follower deletes them once it has sent the
//! last, and a thread's deletion removes any a departed client left.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cinder_sdk::Error;
use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{NewObject, Object};

use crate::runs::{RUNS, shown};

/// The collection of event-log chunks.
pub const EVENTS: &str = "run_events";

/// How often a step writes its new events to the log.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often a follower looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);
/// Follower polls between looks at the run itself (is it gone, or over with its log never
/// closed: a step ended by the host before it could close it).
const LOOK_EVERY: u32 = 10;
/// Statuses in which a step is still to write to the log.
const WORKING: [&str; 3] = ["queued", "in_progress", "cancelling"];

fn chunk_id(run: &str, segment: u32, n: u32) -> String {
    format!("{run}-{segment:03}-{n:06}")
}

fn get_chunk(
    host: &dyn AgentHost,
    run: &str,
    segment: u32,
    n: u32,
) -> Result<Option<Value>, Error> {
    host.get_object(EVENTS, &chunk_id(run, segment, n))?
        .map(|o| {
            serde_json::from_str(&o.body)
                .map_err(|e| Error::Internal(format!("an event log chunk is unreadable: {e}")))
        })
        .transpose()
}

/// One segment of a run's event log, as a writer sees it.
pub struct Log {
    run: String,
    thread: String,
    segment: u32,
    /// The next chunk's number.
    n: u32,
    /// Events not yet written: `{"event": name, "data": ...}`.
    pending: Vec<Value>,
    flushed: Instant,
}

impl Log {
    /// The log of a segment no chunk of which is written yet.
    pub fn new(run: &str, thread: &str, segment: u32) -> Log {
        Log {
            run: run.to_owned(),
            thread: thread.to_owned(),
            segment,
            n: 0,
            pending: Vec::new(),
            flushed: Instant::now(),
        }
    }

    /// The log of a segment others wrote to already (the request, a step that died): it goes
    /// on after their chunks.
    pub fn resume(
        host: &dyn AgentHost,
        run: &str,
        thread: &str,
        segment: u32,
    ) -> Result<Log, Error> {
        let mut log = Log::new(run, thread, segment);
        while host
            .get_object(EVENTS, &chunk_id(run, segment, log.n))?
            .is_some()
        {
            log.n += 1;
        }
        Ok(log)
    }

    /// Keeps the event `event` with `data` for the next write.
    pub fn push(&mut self, event: &str, data: Value) {
        self.pending.push(json!({"event": event, "data": data}));
    }

    /// Writes the pending events as the next chunk; `last` closes the segment.
    pub fn flush(&mut self, host: &dyn AgentHost, last: bool) -> Result<(), Error> {
        self.flushed = Instant::now();
        if self.pending.is_empty() && !last {
            return Ok(());
        }
        let chunk = json!({"events": std::mem::take(&mut self.pending), "last": last});
        let new = NewObject {
            id_prefix: "revt_".into(),
            status: None,
            metadata: vec![
                ("thread".into(), self.thread.clone()),
                ("run".into(), self.run.clone()),
            ],
            body: chunk.to_string(),
        };
        host.put_object(EVENTS, &chunk_id(&self.run, self.segment, self.n), &new)?;
        self.n += 1;
        Ok(())
    }

    /// Writes the pending events if the last write was [`FLUSH_EVERY`] ago.
    pub fn tick(&mut self, host: &dyn AgentHost) -> Result<(), Error> {
        match self.flushed.elapsed() >= FLUSH_EVERY {
            true => self.flush(host, false),
            false => Ok(()),
        }
    }

    /// Forgets the segment's chunks (a request that failed before anyone followed them).
    pub fn discard(&self, host: &dyn AgentHost) -> Result<(), Error> {
        for n in 0..self.n {
            host.delete_object(EVENTS, &chunk_id(&self.run, self.segment, n))?;
        }
        Ok(())
    }
}

/// What a step says as it works: events into the run's log when its request streams,
/// nothing otherwise. The data of each event is what the object's own route would show.
pub struct Events(pub Option<Log>);

impl Events {
    /// `thread.run.<status>` with the run as it is now.
    pub fn run(&mut self, run: &Object) -> Result<(), Error> {
        if let Some(log) = &mut self.0 {
            let status = run.status.clone().unwrap_or_default();
            log.push(&format!("thread.run.{status}"), shown(run)?);
        }
        Ok(())
    }

    /// `name` with `data`, shown as the caller made it.
    pub fn push(
        &mut self,
        name: &str,
        data: impl FnOnce() -> Result<Value, Error>,
    ) -> Result<(), Error> {
        if let Some(log) = &mut self.0 {
            log.push(name, data()?);
        }
        Ok(())
    }

    /// Each of `names` with the same data (an object created and started at once).
    pub fn push_each(
        &mut self,
        names: &[&str],
        data: impl FnOnce() -> Result<Value, Error>,
    ) -> Result<(), Error> {
        if let Some(log) = &mut self.0 {
            let data = data()?;
            for name in names {
                log.push(name, data.clone());
            }
        }
        Ok(())
    }

    /// Whether anyone reads these events.
    pub fn streaming(&self) -> bool {
        self.0.is_some()
    }

    /// Writes what is pending, at most every [`FLUSH_EVERY`].
    pub fn tick(&mut self, host: &dyn AgentHost) -> Result<(), Error> {
        match &mut self.0 {
            Some(log) => log.tick(host),
            None => Ok(()),
        }
    }

    /// Writes what is pending and closes the segment: its follower stops after it.
    pub fn close(&mut self, host: &dyn AgentHost) -> Result<(), Error> {
        match &mut self.0 {
            Some(log) => log.flush(host, true),
            None => Ok(()),
        }
    }
}

/// Sends the events of `run`'s log segment `segment` as they come, by name, until its last
/// chunk; then removes the segment.
pub fn follow(host: &dyn AgentHost, run: &str, segment: u32) -> Result<(), Error> {
    let mut n = 0;
    let mut polls = 0u32;
    let mut over_looks = 0u32;
    loop {
        if let Some(chunk) = get_chunk(host, run, segment, n)? {
            for e in chunk["events"].as_array().into_iter().flatten() {
                let name = e["event"].as_str().unwrap_or("thread.run.unknown");
                host.send_named_event(name, &e["data"].to_string())?;
            }
            n += 1;
            if chunk["last"] == json!(true) {
                for k in 0..n {
                    host.delete_object(EVENTS, &chunk_id(run, segment, k))?;
                }
                return Ok(());
            }
            continue;
        }
        polls += 1;
        if polls.is_multiple_of(LOOK_EVERY) {
            match host.get_object(RUNS, run)? {
                // Its thread was deleted, and the log with it.
                None => return Ok(()),
                // Not working, yet its segment is open: its step was ended by the host
                // before it closed the log. What the run became is its last word.
                Some(o) if !WORKING.contains(&o.status.as_deref().unwrap_or_default()) => {
                    over_looks += 1;
                    if over_looks > 2 {
                        let status = o.status.clone().unwrap_or_default();
                        host.send_named_event(
                            &format!("thread.run.{status}"),
                            &shown(&o)?.to_string(),
                        )?;
                        return Ok(());
                    }
                }
                Some(_) => over_looks = 0,
            }
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
