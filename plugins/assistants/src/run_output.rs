//! What a run writes into its thread as it answers: the assistant message with its
//! `message_creation` step, or a `tool_calls` step, each announced on the run's event log
//! when its request streams (created, in progress, deltas, then how it ended), as OpenAI's.
//!
//! A streamed answer's message and step exist before its first token, so that each
//! `thread.message.delta` can name the message; one not streamed is written when it is over.

use serde_json::{Value, json};

use cinder_sdk::Error;
use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, NewObject, Object};
use cinder_sdk::tools::Call;

use crate::run_steps::{end_step, shown_step};
use crate::runs::{STEPS, body_of, now};
use crate::stream::Events;
use crate::threads::{MESSAGES, shown_message};

/// The events of a step created and started at once, and of a message.
pub const STEP_STARTED: [&str; 2] = ["thread.run.step.created", "thread.run.step.in_progress"];
const MESSAGE_STARTED: [&str; 2] = ["thread.message.created", "thread.message.in_progress"];

/// How an answer's message ended.
pub enum Ending {
    Completed,
    /// Cut at `max_completion_tokens`.
    MaxTokens,
}

/// The assistant message of a run's answer, once it exists, and its step.
#[derive(Default)]
pub struct Answer {
    written: Option<(Object, Object)>,
    text: String,
    /// The files the answer cites (file_search's): (id, name).
    cited: Vec<(String, String)>,
}

/// A message's JSON with `status`, as the SDK's snapshots start: in progress and empty.
fn starting(mut shown: Value) -> Value {
    shown["status"] = json!("in_progress");
    shown["content"] = json!([]);
    shown["completed_at"] = Value::Null;
    shown["incomplete_at"] = Value::Null;
    shown["incomplete_details"] = Value::Null;
    shown
}

/// A step's JSON as it started.
fn step_starting(mut shown: Value) -> Value {
    shown["status"] = json!("in_progress");
    shown["completed_at"] = Value::Null;
    shown["usage"] = Value::Null;
    if let Some(calls) = shown["step_details"]["tool_calls"].as_array_mut() {
        calls.clear();
    }
    shown
}

/// A new assistant message with no content yet (`conclude` gives it its last).
fn message_body(r: &Value, run: &str, status: &str) -> Value {
    json!({
        "thread_id": r["thread_id"],
        "status": status,
        "incomplete_details": null,
        "incomplete_at": null,
        "completed_at": null,
        "role": "assistant",
        "content": [],
        "assistant_id": r["assistant_id"],
        "run_id": run,
        "attachments": [],
        "metadata": {},
    })
}

impl Answer {
    /// A streamed answer's message and step, written in progress before its first token.
    pub fn open(
        host: &dyn AgentHost,
        run: &Object,
        r: &Value,
        ev: &mut Events,
    ) -> Result<Answer, Error> {
        let body = message_body(r, &run.id, "in_progress");
        let message = write_message(host, run, r, body)?;
        let details =
            json!({"type": "message_creation", "message_creation": {"message_id": message.id}});
        let step = new_step(host, run, r, "in_progress", details, None, Value::Null)?;
        ev.push_each(&STEP_STARTED, || shown_step(&step))?;
        ev.push_each(&MESSAGE_STARTED, || shown_message(&message))?;
        Ok(Answer {
            written: Some((message, step)),
            ..Answer::default()
        })
    }

    /// More of the answer's text; a `thread.message.delta` when it streams.
    pub fn delta(&mut self, text: &str, ev: &mut Events) -> Result<(), Error> {
        self.text.push_str(text);
        if let Some((message, _)) = &self.written {
            ev.push("thread.message.delta", || Ok(delta(&message.id, text)))?;
        }
        Ok(())
    }

    /// The answer will cite these files (file_search's excerpts came from them).
    pub fn cite(&mut self, cited: Vec<(String, String)>) {
        self.cited = cited;
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The answer is over: its message holds its text (`incomplete` when cut short) and its
    /// step is `completed` with `usage`. Returns the message and the step.
    pub fn finish(
        self,
        host: &dyn AgentHost,
        run: &Object,
        r: &Value,
        ending: Ending,
        usage: Value,
        ev: &mut Events,
    ) -> Result<(Object, Object), Error> {
        let done = now();
        // What the model said, then the markers of the files it was given.
        let (marks, annotations) = crate::file_search::citations(&self.text, &self.cited);
        let mut text = self.text.clone();
        text.push_str(&marks);
        let (status, details, stamp) = match ending {
            Ending::Completed => ("completed", Value::Null, "completed_at"),
            Ending::MaxTokens => (
                "incomplete",
                json!({"reason": "max_tokens"}),
                "incomplete_at",
            ),
        };
        let content =
            json!([{"type": "text", "text": {"value": text, "annotations": &annotations}}]);
        let (message, step) = match self.written {
            Some((message, step)) => {
                let message = end_message(host, &message, status, details, stamp, content)?;
                let step = end_step(host, &step.id, "completed", "completed_at", |s| {
                    s["usage"] = usage;
                })?
                .unwrap_or(step);
                (message, step)
            }
            None => {
                // Not streamed so far (a run that may call functions is read whole first):
                // written once, as it ends, and its events say at once what a streamed
                // one says token by token.
                let mut body = message_body(r, &run.id, status);
                conclude(&mut body, status, details, stamp, content);
                let message = write_message(host, run, r, body)?;
                let details = json!({"type": "message_creation",
                                     "message_creation": {"message_id": message.id}});
                let step = new_step(host, run, r, "completed", details, Some(done), usage)?;
                ev.push_each(&STEP_STARTED, || shown_step(&step).map(step_starting))?;
                ev.push_each(&MESSAGE_STARTED, || shown_message(&message).map(starting))?;
                ev.push("thread.message.delta", || {
                    Ok(delta(&message.id, &self.text))
                })?;
                (message, step)
            }
        };
        if !marks.is_empty() {
            ev.push("thread.message.delta", || {
                let mut d = delta(&message.id, &marks);
                d["delta"]["content"][0]["text"]["annotations"] = json!(annotations);
                Ok(d)
            })?;
        }
        ev.push(&format!("thread.message.{status}"), || {
            shown_message(&message)
        })?;
        ev.push("thread.run.step.completed", || shown_step(&step))?;
        Ok((message, step))
    }

    /// The run stopped before its answer was over (`cancelled` or `failed`): a message
    /// already written keeps what was said and is `incomplete`, its step ends with the run.
    pub fn abandon(self, host: &dyn AgentHost, why: &str, ev: &mut Events) -> Result<(), Error> {
        let Some((message, step)) = self.written else {
            return Ok(());
        };
        let reason = json!({"reason": format!("run_{why}")});
        if host.get_object(MESSAGES, &message.id)?.is_some() {
            let content =
                json!([{"type": "text", "text": {"value": self.text, "annotations": []}}]);
            let message = end_message(
                host,
                &message,
                "incomplete",
                reason,
                "incomplete_at",
                content,
            )?;
            ev.push("thread.message.incomplete", || shown_message(&message))?;
        }
        let stamp = if why == "cancelled" {
            "cancelled_at"
        } else {
            "failed_at"
        };
        if let Some(step) = end_step(host, &step.id, why, stamp, |_| ())? {
            ev.push(&format!("thread.run.step.{why}"), || shown_step(&step))?;
        }
        Ok(())
    }

    /// Removes what was written (a cancel came between the answer's end and the run's).
    pub fn remove(host: &dyn AgentHost, message: &Object, step: &Object) -> Result<(), Error> {
        host.delete_object(MESSAGES, &message.id)?;
        host.delete_object(STEPS, &step.id)?;
        Ok(())
    }
}

fn delta(message: &str, text: &str) -> Value {
    json!({"id": message, "object": "thread.message.delta",
           "delta": {"content": [{"index": 0, "type": "text", "text": {"value": text}}]}})
}

fn write_message(
    host: &dyn AgentHost,
    run: &Object,
    r: &Value,
    body: Value,
) -> Result<Object, Error> {
    let thread = r["thread_id"].as_str().unwrap_or_default();
    host.create_object(
        MESSAGES,
        &NewObject {
            id_prefix: "msg_".into(),
            status: None,
            metadata: vec![
                ("thread".into(), thread.to_owned()),
                ("run".into(), run.id.clone()),
            ],
            body: body.to_string(),
        },
    )
}

/// A message body as its answer ended: `status`, why it is incomplete, stamped `stamp` now.
fn conclude(m: &mut Value, status: &str, details: Value, stamp: &str, content: Value) {
    m["status"] = json!(status);
    m["incomplete_details"] = details;
    m[stamp] = json!(now());
    m["content"] = content;
}

/// The message `message` with its final `content` and `status`, stamped `stamp` now.
fn end_message(
    host: &dyn AgentHost,
    message: &Object,
    status: &str,
    details: Value,
    stamp: &str,
    content: Value,
) -> Result<Object, Error> {
    let mut m = body_of(message)?;
    conclude(&mut m, status, details, stamp, content);
    let change = Change {
        status: None,
        metadata: message.metadata.clone(),
        body: m.to_string(),
        expect_version: None,
    };
    match host.update_object(MESSAGES, &message.id, &change)? {
        cinder_sdk::store::Updated::Done(o) => Ok(o),
        _ => Ok(message.clone()),
    }
}

/// The run stops for the client's tool outputs: a `tool_calls` step in progress with its
/// calls (their outputs still null), announced with one delta carrying them. Returns the step
/// and the calls as `required_action` lists them.
pub fn tool_calls_step(
    host: &dyn AgentHost,
    run: &Object,
    r: &Value,
    calls: &[Call],
    ev: &mut Events,
) -> Result<(Object, Vec<Value>), Error> {
    let n = r["rounds"].as_array().map_or(0, Vec::len);
    let suffix = run.id.trim_start_matches("run_");
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": format!("call_{suffix}_{n}_{i}"), "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect();
    let pending: Vec<Value> = calls
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["function"]["output"] = Value::Null;
            c
        })
        .collect();
    let details = json!({"type": "tool_calls", "tool_calls": pending});
    let step = new_step(host, run, r, "in_progress", details, None, Value::Null)?;
    ev.push_each(&STEP_STARTED, || shown_step(&step).map(step_starting))?;
    ev.push("thread.run.step.delta", || {
        let indexed: Vec<Value> = pending
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c["index"] = json!(i);
                c
            })
            .collect();
        Ok(json!({"id": step.id, "object": "thread.run.step.delta",
                  "delta": {"step_details": {"type": "tool_calls", "tool_calls": indexed}}}))
    })?;
    Ok((step, calls))
}

/// A run step of `run` (whose body is `r`): `message_creation` or `tool_calls`.
pub fn new_step(
    host: &dyn AgentHost,
    run: &Object,
    r: &Value,
    status: &str,
    details: Value,
    completed_at: Option<i64>,
    usage: Value,
) -> Result<Object, Error> {
    host.create_object(
        STEPS,
        &NewObject {
            id_prefix: "step_".into(),
            status: Some(status.into()),
            metadata: vec![("run".into(), run.id.clone())],
            body: json!({
                "object": "thread.run.step",
                "assistant_id": r["assistant_id"],
                "thread_id": r["thread_id"],
                "run_id": run.id,
                "type": details["type"],
                "status": status,
                "step_details": details,
                "last_error": null,
                "expired_at": null,
                "cancelled_at": null,
                "failed_at": null,
                "completed_at": completed_at,
                "metadata": {},
                "usage": usage,
            })
            .to_string(),
        },
    )
}
