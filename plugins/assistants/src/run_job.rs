//! A run's job (kind `run`): its one step reads the thread, renders the model's chat
//! template with the assistant's instructions, generates (at background priority, looking
//! every [`CHECK_EVERY`] whether the run was cancelled) and writes the answer as an assistant
//! message of the thread with a `message_creation` run step, then the run `completed` (or
//! `incomplete` at `max_completion_tokens`) with its usage. A step that finds its run already
//! `in_progress` (the process that ran it died) ends it `failed` with a `last_error`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::inference::{self, Event, GenerateRequest};
use cinder_sdk::openai::params::SamplingFields;
use cinder_sdk::store::{NewObject, Object, Order, Query};
use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, Job, Outcome};

use crate::runs::{RUNS, STEPS, body_of, now, write};
use crate::threads::MESSAGES;

/// How often a generating step looks whether its run was cancelled.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Thread messages a run reads at most (the newest), before any truncation strategy.
pub const MAX_CONTEXT_MESSAGES: u32 = 1000;

/// Ends a run that asked to be cancelled, if it did.
fn end_cancelled(host: &dyn AgentHost, id: &str) -> Result<Outcome, Error> {
    if let Some(run) = host.get_object(RUNS, id)?
        && run.status.as_deref() == Some("cancelling")
    {
        write(host, &run, "cancelled", &[("cancelled_at", json!(now()))])?;
    }
    Ok(Outcome::Done)
}

/// The job's step: the whole run.
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let Some(run) = host.get_object(RUNS, &job.id)? else {
        return Ok(Outcome::Done); // its thread was deleted
    };
    let failed = |run: &Object, message: &str| -> Result<Outcome, Error> {
        let error = json!({"code": "server_error", "message": message});
        write(
            host,
            run,
            "failed",
            &[("failed_at", json!(now())), ("last_error", error)],
        )?;
        Ok(Outcome::Done)
    };
    match (&job.ending, run.status.as_deref()) {
        (Some(reason), _) => return failed(&run, reason),
        (None, Some("queued")) => {}
        (None, Some("in_progress")) => {
            return failed(
                &run,
                "The server stopped while this run was in progress; create it again",
            );
        }
        (None, Some("cancelling")) => return end_cancelled(host, &job.id),
        _ => return Ok(Outcome::Done),
    }
    let Some(run) = write(host, &run, "in_progress", &[("started_at", json!(now()))])? else {
        return end_cancelled(host, &job.id);
    };
    match answer(&run, host) {
        Ok(Some(_)) => Ok(Outcome::Done),
        // Cancelled meanwhile (or written by someone else: the cancel).
        Ok(None) => end_cancelled(host, &job.id),
        Err(e) => {
            let message = match &e {
                Error::InvalidRequest(d) | Error::NotFound(d) => d.message.clone(),
                Error::RateLimited(m) | Error::Unavailable(m) | Error::Internal(m) => m.clone(),
            };
            let current = host.get_object(RUNS, &job.id)?.unwrap_or(run);
            failed(&current, &message)
        }
    }
}

/// The thread's messages as the model's chat messages, oldest first: the newest
/// [`MAX_CONTEXT_MESSAGES`], then `last_messages` of them when the run says so.
fn context(host: &dyn AgentHost, run: &Value) -> Result<Vec<inference::ChatMessage>, Error> {
    let thread = run["thread_id"].as_str().unwrap_or_default();
    let page = host.list_objects(
        MESSAGES,
        &Query {
            limit: MAX_CONTEXT_MESSAGES,
            order: Order::Desc,
            after: None,
            before: None,
            status: None,
            metadata: vec![("thread".into(), thread.to_owned())],
        },
    )?;
    let keep = match run["truncation_strategy"]["type"].as_str() {
        Some("last_messages") => run["truncation_strategy"]["last_messages"]
            .as_u64()
            .map_or(usize::MAX, |n| n as usize),
        _ => usize::MAX,
    };
    let mut messages = Vec::new();
    for o in page.objects.iter().take(keep) {
        let m: Value = serde_json::from_str(&o.body).map_err(|e| {
            Error::Internal(format!("the stored message {} is unreadable: {e}", o.id))
        })?;
        let text: Vec<&str> = m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"]["value"].as_str())
            .collect();
        messages.push(inference::ChatMessage {
            role: m["role"].as_str().unwrap_or("user").to_owned(),
            content: text.join("\n"),
        });
    }
    messages.reverse();
    Ok(messages)
}

/// Generates the run's answer; `None` if it was cancelled meanwhile.
fn answer(run: &Object, host: &dyn AgentHost) -> Result<Option<Object>, Error> {
    let r = body_of(run)?;
    let model = r["model"].as_str().unwrap_or_default().to_owned();
    let info = host.describe_model(&model)?;
    let mut messages = context(host, &r)?;
    let instructions = r["instructions"].as_str().unwrap_or_default();
    let system = (!instructions.is_empty()).then(|| inference::ChatMessage {
        role: "system".into(),
        content: instructions.to_owned(),
    });
    let max_completion = r["max_completion_tokens"].as_u64().map(|n| n as u32);
    let max_prompt = r["max_prompt_tokens"]
        .as_u64()
        .map_or(u64::from(info.context_length), |n| {
            n.min(u64::from(info.context_length))
        });
    // The oldest messages go first when the prompt is too long for the model (`auto`) or for
    // `max_prompt_tokens`.
    let prompt = loop {
        let all: Vec<_> = system
            .iter()
            .cloned()
            .chain(messages.iter().cloned())
            .collect();
        let text = host.apply_chat_template(&model, &all, true)?;
        let ids = host.tokenize(&model, &text, true)?;
        let room = max_prompt.min(
            u64::from(info.context_length).saturating_sub(u64::from(max_completion.unwrap_or(1))),
        );
        if ids.len() as u64 <= room {
            break ids;
        }
        if messages.len() <= 1 {
            let reason = json!({"reason": "max_prompt_tokens"});
            return write(host, run, "incomplete", &[("incomplete_details", reason)]);
        }
        messages.remove(0);
    };
    let sampling = SamplingFields {
        temperature: r["temperature"].as_f64().map(|t| t as f32),
        top_p: r["top_p"].as_f64().map(|t| t as f32),
        ..SamplingFields::default()
    }
    .check()?;
    let generation = host.generate(&GenerateRequest {
        model: model.clone(),
        prompt: prompt.clone(),
        max_tokens: max_completion,
        sampling: sampling.into(),
        stop: Vec::new(),
        top_logprobs: None,
    })?;
    let mut text = String::new();
    let mut looked = Instant::now();
    let (reason, usage) = loop {
        match generation.next()? {
            Some(Event::Delta(d)) => {
                text.push_str(&d.text);
                if looked.elapsed() >= CHECK_EVERY {
                    looked = Instant::now();
                    let now = host.get_object(RUNS, &run.id)?;
                    if now.is_none_or(|o| o.version != run.version) {
                        return Ok(None);
                    }
                }
            }
            Some(Event::Finished(f)) => break (f.reason, f.usage),
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
    };
    // The last look before the answer is kept: a cancel that came meanwhile wins.
    if host
        .get_object(RUNS, &run.id)?
        .is_none_or(|o| o.version != run.version)
    {
        return Ok(None);
    }
    let thread = r["thread_id"].as_str().unwrap_or_default();
    let message = host.create_object(
        MESSAGES,
        &NewObject {
            id_prefix: "msg_".into(),
            status: None,
            metadata: vec![
                ("thread".into(), thread.to_owned()),
                ("run".into(), run.id.clone()),
            ],
            body: json!({
                "thread_id": thread,
                "status": "completed",
                "incomplete_details": null,
                "incomplete_at": null,
                "role": "assistant",
                "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
                "assistant_id": r["assistant_id"],
                "run_id": run.id,
                "attachments": [],
                "metadata": {},
            })
            .to_string(),
        },
    )?;
    let usage = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    });
    let done = now();
    host.create_object(
        STEPS,
        &NewObject {
            id_prefix: "step_".into(),
            status: Some("completed".into()),
            metadata: vec![("run".into(), run.id.clone())],
            body: json!({
                "object": "thread.run.step",
                "assistant_id": r["assistant_id"],
                "thread_id": thread,
                "run_id": run.id,
                "type": "message_creation",
                "status": "completed",
                "step_details": {"type": "message_creation", "message_creation": {"message_id": message.id}},
                "last_error": null,
                "expired_at": null,
                "cancelled_at": null,
                "failed_at": null,
                "completed_at": done,
                "metadata": {},
                "usage": usage,
            })
            .to_string(),
        },
    )?;
    let (status, details) = match reason {
        FinishReason::Length if max_completion.is_some() => {
            ("incomplete", json!({"reason": "max_completion_tokens"}))
        }
        _ => ("completed", Value::Null),
    };
    let stamp = if status == "completed" {
        "completed_at"
    } else {
        "incomplete_at"
    };
    write(
        host,
        run,
        status,
        &[
            (stamp, json!(done)),
            ("usage", usage),
            ("incomplete_details", details),
        ],
    )
}
