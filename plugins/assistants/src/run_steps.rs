//! Submitting tool outputs to a run that waits for them, and reading a run's steps
//! (`message_creation` and `tool_calls`, objects in `run_steps` with their run in the store's
//! metadata).

use serde_json::{Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, Object, Updated};
use cinder_sdk::{Error, Request};

use crate::assistants::list_query;
use crate::bad;
use crate::runs::{KIND, RUNS, STEPS, body_of, find, now, shown};
use crate::stream::Log;

/// `POST .../submit_tool_outputs`: an output for every call the run is waiting on; the run
/// is queued again and its next step answers with them.
pub fn submit_tool_outputs(
    thread: &str,
    id: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &["tool_outputs", "stream"])?;
    let streaming = match given.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream must be a boolean", "stream")),
    };
    let run = find(host, thread, id)?;
    if run.status.as_deref() != Some("requires_action") {
        return Err(bad(
            format!(
                "Runs in status \"{}\" do not accept tool outputs.",
                run.status.clone().unwrap_or_default()
            ),
            "run_id",
        ));
    }
    let mut r = body_of(&run)?;
    let mut rounds = r["rounds"].as_array().cloned().unwrap_or_default();
    let Some(round) = rounds.last_mut() else {
        return Err(Error::Internal(format!("run {id} waits with no calls")));
    };
    let pending: Vec<String> = round["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let outputs = given
        .get("tool_outputs")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(
                "Missing required parameter: 'tool_outputs'.",
                "tool_outputs",
            )
        })?;
    let mut given_ids = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        let call = o["tool_call_id"].as_str().unwrap_or_default();
        if !pending.iter().any(|p| p == call) || given_ids.contains(&call) {
            return Err(bad(
                format!("No tool call '{call}' is waiting for an output in this run."),
                &format!("tool_outputs[{i}].tool_call_id"),
            ));
        }
        if !(o["output"].is_string() || o["output"].is_null()) {
            return Err(bad(
                "an output is a string",
                &format!("tool_outputs[{i}].output"),
            ));
        }
        given_ids.push(call);
    }
    if let Some(missing) = pending.iter().find(|p| !given_ids.contains(&p.as_str())) {
        return Err(bad(
            format!("Expected an output for tool call '{missing}'."),
            "tool_outputs",
        ));
    }
    let outputs: Vec<Value> = outputs
        .iter()
        .map(|o| json!({"tool_call_id": o["tool_call_id"], "output": o["output"].as_str().unwrap_or_default()}))
        .collect();
    round["outputs"] = json!(outputs);
    let step = round["step"].as_str().unwrap_or_default().to_owned();
    let n = rounds.len();
    r["rounds"] = json!(rounds);
    let change = Change {
        status: Some("queued".into()),
        metadata: run.metadata.clone(),
        body: {
            r["required_action"] = Value::Null;
            r.to_string()
        },
        expect_version: Some(run.version),
    };
    let Updated::Done(queued) = host.update_object(RUNS, id, &change)? else {
        return Err(bad(
            "The run changed meanwhile (cancelled?); look at it again.",
            "run_id",
        ));
    };
    // The tool_calls step is over: its calls now carry their outputs (best effort: the run
    // goes on either way).
    let completed = complete_step(host, &step, &outputs).unwrap_or_else(|e| {
        cinder_sdk::debug(&format!("the tool_calls step {step} kept its state: {e:?}"));
        None
    });
    let mut progress = json!({"run": id});
    if streaming {
        // The run's next segment of events, which this request follows.
        let thread = r["thread_id"].as_str().unwrap_or_default();
        let mut log = Log::new(id, thread, n as u32);
        if let Some(step) = &completed {
            log.push("thread.run.step.completed", shown_step(step)?);
        }
        log.push("thread.run.queued", shown(&queued)?);
        log.flush(host, false)?;
        progress["stream"] = json!(n);
    }
    host.enqueue_job(KIND, &format!("{id}-{n}"), &progress.to_string())?;
    match streaming {
        true => crate::stream::follow(host, id, n as u32),
        false => host.respond_json(200, &shown(&queued)?),
    }
}

fn complete_step(
    host: &dyn AgentHost,
    step: &str,
    outputs: &[Value],
) -> Result<Option<Object>, Error> {
    end_step(host, step, "completed", "completed_at", |s| {
        if let Some(calls) = s["step_details"]["tool_calls"].as_array_mut() {
            for c in calls {
                let out = outputs.iter().find(|x| x["tool_call_id"] == c["id"]);
                c["function"]["output"] = out.map_or(Value::Null, |x| x["output"].clone());
            }
        }
    })
}

/// Ends the run step `step` with `status`, stamping `stamp` now, after `edit`; the step as
/// written (no step: none).
pub(crate) fn end_step(
    host: &dyn AgentHost,
    step: &str,
    status: &str,
    stamp: &str,
    edit: impl FnOnce(&mut Value),
) -> Result<Option<Object>, Error> {
    let Some(o) = host.get_object(STEPS, step)? else {
        return Ok(None);
    };
    let mut s = body_of(&o)?;
    edit(&mut s);
    s["status"] = json!(status);
    s[stamp] = json!(now());
    let written = host.update_object(
        STEPS,
        step,
        &Change {
            status: Some(status.into()),
            metadata: o.metadata.clone(),
            body: s.to_string(),
            expect_version: None,
        },
    )?;
    Ok(match written {
        Updated::Done(o) => Some(o),
        Updated::NotFound | Updated::Conflict(_) => None,
    })
}

/// What `include[]` asks a step listing to show: file_search results' content (OpenAI's only
/// value), refused by name otherwise.
fn includes_content(request: &Request) -> Result<bool, Error> {
    let mut content = false;
    for (k, v) in request.query() {
        if k == "include[]" || k == "include" {
            if v != CONTENT {
                return Err(bad(
                    format!("include[] takes {CONTENT}, not `{v}`"),
                    "include[]",
                ));
            }
            content = true;
        }
    }
    Ok(content)
}

const CONTENT: &str = "step_details.tool_calls[*].file_search.results[*].content";

/// The step as shown, file_search results without their content unless it was asked for.
fn shown_with(o: &Object, content: bool) -> Result<Value, Error> {
    let mut v = shown_step(o)?;
    if !content && let Some(calls) = v["step_details"]["tool_calls"].as_array_mut() {
        for c in calls {
            if let Some(results) = c["file_search"]["results"].as_array_mut() {
                for r in results {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("content");
                    }
                }
            }
        }
    }
    Ok(v)
}

/// `GET .../runs/{run_id}/steps/{step_id}`.
pub fn retrieve_step(
    thread: &str,
    id: &str,
    step: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let content = includes_content(request)?;
    find(host, thread, id)?;
    let o = match cinder_sdk::well_formed_id(step, "step_") {
        true => host.get_object(STEPS, step)?,
        false => None,
    };
    let o = o
        .filter(|o| o.metadata.iter().any(|(k, v)| k == "run" && v == id))
        .ok_or_else(|| cinder_sdk::no_such("run step", step))?;
    host.respond_json(200, &shown_with(&o, content)?)
}

pub(crate) fn shown_step(o: &Object) -> Result<Value, Error> {
    let mut v = body_of(o)?;
    v["id"] = json!(o.id);
    v["created_at"] = json!(o.created_at);
    Ok(v)
}

/// `GET .../runs/{run_id}/steps`.
pub fn list_steps(
    thread: &str,
    id: &str,
    request: &Request,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let pairs: Vec<(String, String)> = request
        .query()
        .into_iter()
        .filter(|(k, _)| k != "include[]" && k != "include")
        .collect();
    let content = includes_content(request)?;
    let mut query = list_query(&pairs)?;
    find(host, thread, id)?;
    query.metadata = vec![("run".into(), id.to_owned())];
    let page = host.list_objects(STEPS, &query)?;
    cinder_sdk::respond_page(host, &page, |o| shown_with(o, content))
}
