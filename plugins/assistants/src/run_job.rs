//! A run's job (kind `run`): its one step reads the thread, renders the model's chat
//! template with the assistant's instructions, generates (at background priority, looking
//! every [`CHECK_EVERY`] whether the run was cancelled) and writes the answer as an assistant
//! message of the thread with a `message_creation` run step, then the run `completed` (or
//! `incomplete` at `max_completion_tokens`) with its usage. A step that finds its run already
//! `in_progress` (the process that ran it died) ends it `failed` with a `last_error`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::inference::{self, Constraint, Event, GenerateRequest};
use cinder_sdk::openai::params::SamplingFields;
use cinder_sdk::store::{Object, Order, Query};
use cinder_sdk::tools::{Call, Function, Message, ToolChoice, ToolUse};
use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, Job, Outcome};

use crate::attach;
use crate::file_search;
use crate::run_output::{Answer, Ending, tool_calls_step};
use crate::runs::{RUNS, STEPS, advance, body_of, now, stopped};
use crate::stream::{Events, Log};
use crate::threads::{MESSAGES, THREADS};

/// How often a generating step looks whether its run was cancelled.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Thread messages a run reads at most (the newest), before any truncation strategy.
pub const MAX_CONTEXT_MESSAGES: u32 = 1000;
/// Messages read from the store per query.
const PAGE: u32 = 50;

/// Ends a run that asked to be cancelled, if it did; the run as it is now.
fn end_cancelled(host: &dyn AgentHost, id: &str) -> Result<Option<Object>, Error> {
    let ended = advance(
        host,
        id,
        &["cancelling"],
        "cancelled",
        &[("cancelled_at", json!(now()))],
    )?;
    as_now(host, id, ended)
}

/// Ends a run that is not over yet `failed` with `message`; the run as it is now.
fn failed(host: &dyn AgentHost, id: &str, message: &str) -> Result<Option<Object>, Error> {
    let error = json!({"code": "server_error", "message": message});
    let ended = advance(
        host,
        id,
        &["queued", "in_progress", "cancelling"],
        "failed",
        &[("failed_at", json!(now())), ("last_error", error)],
    )?;
    as_now(host, id, ended)
}

/// `written`, or the run as another writer left it.
fn as_now(
    host: &dyn AgentHost,
    id: &str,
    written: Option<Object>,
) -> Result<Option<Object>, Error> {
    match written {
        Some(o) => Ok(Some(o)),
        None => host.get_object(RUNS, id),
    }
}

/// The job's step: the whole run (up to its end or its tool calls). Its progress names the
/// run (`run`: a run's later jobs, after tool outputs, have ids of their own) and, when a
/// request follows its events, the log segment it writes (`stream`).
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let progress = serde_json::from_str::<Value>(&job.progress).unwrap_or(Value::Null);
    let id = progress["run"]
        .as_str()
        .map_or_else(|| job.id.clone(), str::to_owned);
    let Some(run) = host.get_object(RUNS, &id)? else {
        return Ok(Outcome::Done); // its thread was deleted
    };
    let mut ev = Events(match progress["stream"].as_u64() {
        Some(segment) => {
            let thread = body_of(&run)?["thread_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Some(Log::resume(host, &id, &thread, segment as u32)?)
        }
        None => None,
    });
    let last = match (&job.ending, run.status.as_deref()) {
        (Some(reason), _) => failed(host, &id, reason)?,
        (None, Some("queued")) => work(&id, host, &mut ev)?,
        (None, Some("in_progress")) => failed(
            host,
            &id,
            "The server stopped while this run was in progress; create it again",
        )?,
        (None, Some("cancelling")) => end_cancelled(host, &id)?,
        // Over already (cancelled while queued, or ended by a step that died before it
        // closed the log): its state is the last word.
        _ => Some(run),
    };
    if let Some(o) = &last {
        ev.run(o)?;
    }
    ev.close(host)?;
    Ok(Outcome::Done)
}

/// Starts the queued run `id` and answers; the run as it ended (or stopped for outputs).
fn work(id: &str, host: &dyn AgentHost, ev: &mut Events) -> Result<Option<Object>, Error> {
    let started = advance(
        host,
        id,
        &["queued"],
        "in_progress",
        &[("started_at", json!(now()))],
    )?;
    let Some(run) = started else {
        return end_cancelled(host, id);
    };
    ev.run(&run)?;
    let mut said = Answer::default();
    match answer(&run, host, ev, &mut said) {
        Ok(Some(o)) => Ok(Some(o)),
        // Cancelled meanwhile.
        Ok(None) => {
            said.abandon(host, "cancelled", ev)?;
            end_cancelled(host, id)
        }
        Err(e) => {
            let message = match &e {
                Error::InvalidRequest(d) | Error::NotFound(d) => d.message.clone(),
                Error::RateLimited(m) | Error::Unavailable(m) | Error::Internal(m) => m.clone(),
            };
            said.abandon(host, "failed", ev)?;
            failed(host, id, &message)
        }
    }
}

/// The thread's messages as the model's chat messages, oldest first: the newest, read a page
/// at a time until `budget` characters (more than the model's context can hold) or
/// [`MAX_CONTEXT_MESSAGES`], then `last_messages` of them when the run says so.
fn context(host: &dyn AgentHost, run: &Value, budget: usize) -> Result<Vec<Message>, Error> {
    let thread = run["thread_id"].as_str().unwrap_or_default();
    let keep = match run["truncation_strategy"]["type"].as_str() {
        Some("last_messages") => run["truncation_strategy"]["last_messages"]
            .as_u64()
            .map_or(usize::MAX, |n| n as usize),
        _ => usize::MAX,
    }
    .min(MAX_CONTEXT_MESSAGES as usize);
    let mut messages = Vec::new();
    let mut chars = 0;
    let mut after = None;
    'pages: loop {
        let page = host.list_objects(
            MESSAGES,
            &Query {
                limit: PAGE,
                order: Order::Desc,
                after: after.take(),
                before: None,
                status: None,
                metadata: vec![("thread".into(), thread.to_owned())],
            },
        )?;
        for o in &page.objects {
            if messages.len() >= keep || chars > budget {
                break 'pages;
            }
            let m: Value = serde_json::from_str(&o.body).map_err(|e| {
                Error::Internal(format!("the stored message {} is unreadable: {e}", o.id))
            })?;
            let text: Vec<&str> = m["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["text"]["value"].as_str())
                .collect();
            let content = text.join("\n");
            chars += content.len();
            messages.push(Message {
                role: m["role"].as_str().unwrap_or("user").to_owned(),
                content,
                calls: Vec::new(),
                tool_call_id: None,
            });
        }
        match page.objects.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    messages.reverse();
    Ok(messages)
}

/// The run's functions as the tools plugin takes them, unless it has none or `tool_choice`
/// is `none`. After outputs came back the model answers freely: a call forced every round
/// would never end.
fn tool_use(r: &Value) -> Option<ToolUse> {
    let functions: Vec<Function> = r["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .map(|t| {
            let f = &t["function"];
            Function {
                name: f["name"].as_str().unwrap_or_default().to_owned(),
                description: f["description"].as_str().map(str::to_owned),
                parameters: match &f["parameters"] {
                    Value::Null => json!({"type": "object", "properties": {}}).to_string(),
                    p => p.to_string(),
                },
            }
        })
        .collect();
    let answered = r["rounds"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|x| x["outputs"].is_array()));
    let choice = match &r["tool_choice"] {
        Value::String(c) if c == "none" => return None,
        _ if answered => ToolChoice::Auto,
        Value::String(c) if c == "required" => ToolChoice::Required,
        Value::Object(o) => match o["function"]["name"].as_str() {
            Some(n) => ToolChoice::Function(n.to_owned()),
            None => ToolChoice::Auto,
        },
        _ => ToolChoice::Auto,
    };
    (!functions.is_empty()).then(|| ToolUse {
        functions,
        choice,
        parallel: r["parallel_tool_calls"] != json!(false),
    })
}

/// The run's earlier rounds as messages: each assistant turn of calls, then its outputs.
fn rounds(r: &Value) -> Vec<Message> {
    let mut out = Vec::new();
    for round in r["rounds"].as_array().into_iter().flatten() {
        let Some(outputs) = round["outputs"].as_array() else {
            continue;
        };
        let calls = round["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Call {
                id: c["id"].as_str().unwrap_or_default().to_owned(),
                name: c["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                arguments: c["function"]["arguments"]
                    .as_str()
                    .unwrap_or("{}")
                    .to_owned(),
            })
            .collect();
        out.push(Message {
            role: "assistant".into(),
            content: String::new(),
            calls,
            tool_call_id: None,
        });
        for o in outputs {
            out.push(Message {
                role: "tool".into(),
                content: o["output"].as_str().unwrap_or_default().to_owned(),
                calls: Vec::new(),
                tool_call_id: o["tool_call_id"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// What file_search found for the run: searched at its first step (the last user message
/// in its vector stores), kept in the run for the steps after tool outputs.
fn search_files(
    run: &Object,
    r: &Value,
    messages: &[Message],
    context_length: u32,
    host: &dyn AgentHost,
    ev: &mut Events,
) -> Result<Option<cinder_file_search::Excerpts>, Error> {
    if let Some(kept) = file_search::from_json(&r["retrieved"]) {
        return Ok(Some(kept));
    }
    if r["rounds"].as_array().is_some_and(|rs| !rs.is_empty()) {
        return Ok(None);
    }
    if !r["tools"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["type"] == "file_search"))
    {
        return Ok(None);
    }
    // The files given inline are stored and ingested first, as OpenAI's runs wait for them.
    let extra = match attach::wait(host, &run.id, r)? {
        attach::Files::Ready(stores) => stores,
        attach::Files::Stopped => return Ok(None),
    };
    let thread = match host.get_object(THREADS, r["thread_id"].as_str().unwrap_or_default())? {
        Some(t) => serde_json::from_str(&t.body).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let query = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
        .unwrap_or_default();
    // The excerpts take at most about half the context (a token is rarely under 4 characters
    // of English).
    let budget = 2 * context_length as usize;
    let stores = file_search::stores(r, &thread, &extra);
    let found = file_search::retrieve(host, run, r, stores, &query, budget, ev)?;
    if let Some(f) = &found {
        advance(
            host,
            &run.id,
            &["in_progress"],
            "in_progress",
            &[("retrieved", file_search::to_json(f))],
        )?;
    }
    Ok(found)
}

/// Generates the run's answer into `said`; the run as it ended, `None` if it was cancelled
/// meanwhile.
fn answer(
    run: &Object,
    host: &dyn AgentHost,
    ev: &mut Events,
    said: &mut Answer,
) -> Result<Option<Object>, Error> {
    let r = body_of(run)?;
    let model = r["model"].as_str().unwrap_or_default().to_owned();
    let info = host.describe_model(&model)?;
    // Characters enough for any prompt the context holds (a token is rarely under 2).
    let budget = 8 * info.context_length as usize;
    let mut messages = context(host, &r, budget)?;
    let retrieved = search_files(run, &r, &messages, info.context_length, host, ev)?;
    let instructions = r["instructions"].as_str().unwrap_or_default();
    let instructions = match &retrieved {
        Some(x) => x.into_instructions(instructions),
        None => instructions.to_owned(),
    };
    let system = (!instructions.is_empty()).then(|| Message {
        role: "system".into(),
        content: instructions.clone(),
        calls: Vec::new(),
        tool_call_id: None,
    });
    let tools = tool_use(&r);
    // JSON by construction, as in chat (checked at creation: never with functions to call).
    let format = match r["response_format"]["type"].as_str() {
        Some("json_object") => Some(Constraint::JsonObject),
        Some("json_schema") => Some(Constraint::JsonSchema(
            cinder_sdk::schema::close_objects(
                r["response_format"]["json_schema"]["schema"].clone(),
            )
            .to_string(),
        )),
        _ => None,
    };
    let earlier = rounds(&r);
    let max_completion = r["max_completion_tokens"]
        .as_u64()
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    let max_prompt = r["max_prompt_tokens"]
        .as_u64()
        .map_or(u64::from(info.context_length), |n| {
            n.min(u64::from(info.context_length))
        });
    // The oldest messages go first when the prompt is too long for the model (`auto`) or for
    // `max_prompt_tokens`.
    let (prompt, constraint) = loop {
        let all: Vec<Message> = system
            .iter()
            .cloned()
            .chain(messages.iter().cloned())
            .chain(earlier.iter().cloned())
            .collect();
        let (text, constraint): (String, Option<Constraint>) =
            if tools.is_some() || !earlier.is_empty() {
                let p = host.render_tools(&model, &all, tools.as_ref())?;
                (p.text, p.constraint.filter(|_| tools.is_some()))
            } else {
                let plain: Vec<inference::ChatMessage> = all
                    .iter()
                    .map(|m| inference::ChatMessage {
                        role: m.role.clone(),
                        content: m.content.clone(),
                    })
                    .collect();
                (
                    host.apply_chat_template(&model, &plain, true)?,
                    format.clone(),
                )
            };
        let ids = host.tokenize(&model, &text, true)?;
        // Room kept for the answer: what it may take, at most half the context.
        let reserve = max_completion.unwrap_or(1).min(info.context_length / 2);
        let room = max_prompt.min(u64::from(info.context_length - reserve));
        if ids.len() as u64 <= room {
            break (ids, constraint);
        }
        if messages.len() <= 1 {
            let reason = json!({"reason": "max_prompt_tokens"});
            return advance(
                host,
                &run.id,
                &["in_progress"],
                "incomplete",
                &[("incomplete_details", reason)],
            );
        }
        messages.remove(0);
    };
    let sampling = SamplingFields {
        temperature: r["temperature"].as_f64().map(|t| t as f32),
        top_p: r["top_p"].as_f64().map(|t| t as f32),
        ..SamplingFields::default()
    }
    .check()?;
    let request = GenerateRequest {
        model: model.clone(),
        prompt: prompt.clone(),
        max_tokens: max_completion.map(|m| {
            m.min(
                info.context_length
                    .saturating_sub(prompt.len() as u32)
                    .max(1),
            )
        }),
        sampling: sampling.into(),
        stop: Vec::new(),
        top_logprobs: None,
    };
    let generation = match &constraint {
        Some(c) => host.generate_constrained(&request, c)?,
        None => host.generate(&request)?,
    };
    // A run that may call functions is read whole first: only then is it known whether the
    // text is calls or a message.
    if ev.streaming() && tools.is_none() {
        *said = Answer::open(host, run, &r, ev)?;
    }
    if let Some(x) = &retrieved {
        said.cite(x.cited.clone());
    }
    let mut looked = Instant::now();
    let (reason, usage) = loop {
        match generation.next()? {
            Some(Event::Delta(d)) => {
                said.delta(&d.text, ev)?;
                ev.tick(host)?;
                if looked.elapsed() >= CHECK_EVERY {
                    looked = Instant::now();
                    if stopped(host, &run.id)? {
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
    if stopped(host, &run.id)? {
        return Ok(None);
    }
    let usage = json!({
        "prompt_tokens": usage.prompt_tokens + r["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        "completion_tokens": usage.completion_tokens + r["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens + r["usage"]["total_tokens"].as_u64().unwrap_or(0) as u32,
    });
    if let Some(t) = &tools
        && let Some(calls) = host
            .parse_tool_calls(&model, said.text(), t)?
            .filter(|c| !c.is_empty())
    {
        return requires_action(run, &r, &calls, usage, host, ev);
    }
    let cut = matches!(reason, FinishReason::Length) && max_completion.is_some();
    let ending = match cut {
        true => Ending::MaxTokens,
        false => Ending::Completed,
    };
    let (message, step) = std::mem::take(said).finish(host, run, &r, ending, usage.clone(), ev)?;
    let (status, details, stamp) = match cut {
        true => (
            "incomplete",
            json!({"reason": "max_completion_tokens"}),
            "incomplete_at",
        ),
        false => ("completed", Value::Null, "completed_at"),
    };
    let ended = advance(
        host,
        &run.id,
        &["in_progress"],
        status,
        &[
            (stamp, json!(now())),
            ("usage", usage),
            ("incomplete_details", details),
        ],
    )?;
    if ended.is_none() {
        // Cancelled between the last look and this write: the answer goes with the run.
        Answer::remove(host, &message, &step)?;
    }
    Ok(ended)
}

/// The run stops for the client's tool outputs: its calls in `required_action`, a
/// `tool_calls` step in progress, and the round kept for the step that continues.
fn requires_action(
    run: &Object,
    r: &Value,
    calls: &[Call],
    usage: Value,
    host: &dyn AgentHost,
    ev: &mut Events,
) -> Result<Option<Object>, Error> {
    let (step, calls) = tool_calls_step(host, run, r, calls, ev)?;
    let mut rounds = r["rounds"].as_array().cloned().unwrap_or_default();
    rounds.push(json!({"calls": calls, "outputs": null, "step": step.id}));
    let waiting = advance(
        host,
        &run.id,
        &["in_progress"],
        "requires_action",
        &[
            (
                "required_action",
                json!({"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}),
            ),
            ("rounds", json!(rounds)),
            ("usage", usage),
        ],
    )?;
    if waiting.is_none() {
        host.delete_object(STEPS, &step.id)?;
    }
    Ok(waiting)
}
