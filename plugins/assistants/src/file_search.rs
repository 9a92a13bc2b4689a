//! The `file_search` tool in a run: before the model answers, the last user message is
//! searched in the run's vector stores (the assistant's or the run's `tool_resources`, and
//! the thread's) through the vector stores plugin's own route (`dispatch`, as any client
//! would), the results kept as a completed `tool_calls` step of type `file_search`, and the
//! best excerpts given to the model with the instructions. The answer cites the files they
//! came from (`file_citation` annotations).

use serde_json::{Value, json};

use cinder_file_search::{Excerpts, Found};
use cinder_sdk::dispatch::Call;
use cinder_sdk::host::AgentHost;
use cinder_sdk::store::Object;
use cinder_sdk::{Error, ErrorDetail};

use crate::run_output::{STEP_STARTED, new_step};
use crate::run_steps::shown_step;
use crate::stream::Events;

/// Results a search asks for when the tool says nothing (OpenAI's default for small models).
const DEFAULT_RESULTS: u64 = 5;
/// Files an answer cites at most.
const MAX_CITED: usize = 3;

/// The excerpts (what the model is given, and whom the answer cites: `cinder_file_search`'s,
/// as the Responses API's file_search makes them) as kept in the run's body between its steps.
pub fn to_json(e: &Excerpts) -> Value {
    json!({"excerpts": e.text, "cited": e.cited})
}

pub fn from_json(v: &Value) -> Option<Excerpts> {
    Some(Excerpts {
        text: v["excerpts"].as_str()?.to_owned(),
        cited: v["cited"]
            .as_array()?
            .iter()
            .filter_map(|c| Some((c[0].as_str()?.to_owned(), c[1].as_str()?.to_owned())))
            .collect(),
    })
}

/// The vector stores a run searches: its own (or its assistant's), its thread's, and `extra`
/// (its assistant's store made since the run was).
pub fn stores(r: &Value, thread: &Value, extra: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = extra.to_vec();
    for res in [&r["tool_resources"], &thread["tool_resources"]] {
        for id in res["file_search"]["vector_store_ids"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = id.as_str()
                && !ids.iter().any(|x| x == id)
            {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// Searches `stores` for `query` when the run has the file_search tool and stores to
/// search; the excerpts fit in `budget` characters. Writes the `file_search` step.
pub fn retrieve(
    host: &dyn AgentHost,
    run: &Object,
    r: &Value,
    stores: Vec<String>,
    query: &str,
    budget: usize,
    ev: &mut Events,
) -> Result<Option<Excerpts>, Error> {
    let Some(tool) = r["tools"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["type"] == "file_search"))
    else {
        return Ok(None);
    };
    if stores.is_empty() || query.trim().is_empty() {
        return Ok(None);
    }
    let k = tool["file_search"]["max_num_results"]
        .as_u64()
        .unwrap_or(DEFAULT_RESULTS);
    let threshold = tool["file_search"]["ranking_options"]["score_threshold"]
        .as_f64()
        .unwrap_or(0.0);
    let body = json!({"query": query, "max_num_results": k,
                      "ranking_options": {"score_threshold": threshold}})
    .to_string();
    let calls: Vec<Call> = stores
        .iter()
        .map(|s| Call {
            method: "POST".into(),
            path: format!("/v1/vector_stores/{s}/search"),
            body: body.clone(),
        })
        .collect();
    let mut results: Vec<Value> = Vec::new();
    for (store, answer) in stores.iter().zip(host.dispatch(&calls)) {
        let answer = answer?;
        if answer.status == 404 {
            return Err(Error::NotFound(ErrorDetail {
                message: format!("Vector store {store} was not found (file_search)."),
                param: None,
                code: None,
            }));
        }
        let page: Value = serde_json::from_str(&answer.body).map_err(|e| {
            Error::Internal(format!("the vector store search answered no JSON: {e}"))
        })?;
        if answer.status != 200 {
            return Err(Error::Internal(format!(
                "searching vector store {store} failed: {}",
                page["error"]["message"]
            )));
        }
        results.extend(page["data"].as_array().cloned().unwrap_or_default());
    }
    results.sort_by(|a, b| {
        let s = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
        s(b).total_cmp(&s(a))
    });
    results.truncate(k as usize);
    let shown: Vec<Value> = results
        .iter()
        .map(|x| {
            json!({"file_id": x["file_id"], "file_name": x["filename"], "score": x["score"],
                   "content": x["content"]})
        })
        .collect();
    let suffix = run.id.trim_start_matches("run_");
    let details = json!({"type": "tool_calls", "tool_calls": [{
        "id": format!("call_{suffix}_fs"), "type": "file_search",
        "file_search": {"ranking_options": {"ranker": "default_2024_08_21", "score_threshold": threshold},
                        "results": shown}}]});
    let step = new_step(
        host,
        run,
        r,
        "completed",
        details,
        Some(crate::runs::now()),
        Value::Null,
    )?;
    ev.push_each(&STEP_STARTED, || shown_step(&step))?;
    ev.push("thread.run.step.completed", || shown_step(&step))?;
    let found: Vec<Found> = results
        .iter()
        .map(|x| Found {
            file_id: x["file_id"].as_str().unwrap_or_default().to_owned(),
            filename: x["filename"].as_str().unwrap_or_default().to_owned(),
            score: x["score"].as_f64().unwrap_or(0.0) as f32,
            text: x["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            attributes: x["attributes"].clone(),
        })
        .collect();
    let retrieved = Excerpts::of(&found, budget, MAX_CITED);
    Ok((!retrieved.text.is_empty()).then_some(retrieved))
}

/// The citation markers appended to an answer and their annotations: `【i†name】` for each
/// cited file, as OpenAI writes them, with character offsets into the whole text.
pub fn citations(text: &str, cited: &[(String, String)]) -> (String, Vec<Value>) {
    if cited.is_empty() {
        return (String::new(), Vec::new());
    }
    let mut extra = String::from(if text.is_empty() { "" } else { " " });
    let base = text.chars().count();
    let mut annotations = Vec::new();
    for (i, (id, name)) in cited.iter().enumerate() {
        let marker = format!("【{i}†{name}】");
        let start = base + extra.chars().count();
        extra.push_str(&marker);
        annotations.push(json!({"type": "file_citation", "text": marker,
                                "start_index": start, "end_index": start + marker.chars().count(),
                                "file_citation": {"file_id": id}}));
    }
    (extra, annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_point_at_their_markers() {
        let cited = vec![
            ("file-a".to_owned(), "a.txt".to_owned()),
            ("file-b".into(), "b.md".into()),
        ];
        let text = "Tea.";
        let (extra, notes) = citations(text, &cited);
        let whole: Vec<char> = format!("{text}{extra}").chars().collect();
        for n in &notes {
            let (s, e) = (
                n["start_index"].as_u64().unwrap() as usize,
                n["end_index"].as_u64().unwrap() as usize,
            );
            let marked: String = whole[s..e].iter().collect();
            assert_eq!(marked, n["text"].as_str().unwrap());
        }
        assert_eq!(notes[1]["file_citation"]["file_id"], "file-b");
        assert!(citations("x", &[]).1.is_empty());
    }
}
