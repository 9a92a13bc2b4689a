//! `POST /v1/vector_stores/{id}/search`: the request checked, then searched by
//! `cinder_file_search::search` (the query embedded by the store's embedding model, the
//! store's index searched exactly among its completed files that pass `filters`), each result
//! a chunk with its file's name, attributes and score.

use serde_json::{Map, Value, json};

use cinder_file_search::search;
use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::filters;
use cinder_sdk::{Error, Request};

use crate::bad;
use crate::stores;

/// Queries one search takes at most (each embedded and searched).
const MAX_QUERIES: usize = 8;
/// The longest query, in characters.
const MAX_QUERY_CHARS: usize = 4096;

/// The query or queries of a request (`query`: a string or an array of strings).
fn queries(v: Option<&Value>) -> Result<Vec<String>, Error> {
    let fine = |s: &str| !s.trim().is_empty() && s.chars().count() <= MAX_QUERY_CHARS;
    let qs: Option<Vec<String>> = match v {
        Some(Value::String(s)) if fine(s) => Some(vec![s.clone()]),
        Some(Value::Array(a)) if (1..=MAX_QUERIES).contains(&a.len()) => a
            .iter()
            .map(|x| x.as_str().filter(|s| fine(s)).map(str::to_owned))
            .collect(),
        _ => None,
    };
    qs.ok_or_else(|| {
        bad(
            format!(
                "query is a non-empty string of at most {MAX_QUERY_CHARS} characters, or an array \
                 of 1 to {MAX_QUERIES} of them"
            ),
            "query",
        )
    })
}

/// `POST /v1/vector_stores/{id}/search`.
pub fn route(store: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(
        &request.body,
        &[
            "query",
            "filters",
            "max_num_results",
            "ranking_options",
            "rewrite_query",
        ],
    )?;
    let s = stores::find(host, store)?;
    if stores::expired(&s)? {
        return Err(bad(
            format!("Vector store {store} has expired."),
            "vector_store_id",
        ));
    }
    let queries = queries(given.get("query"))?;
    if given.get("rewrite_query") == Some(&json!(true)) {
        return Err(bad(
            "rewrite_query is not built in Cinder yet",
            "rewrite_query",
        ));
    }
    let k = match given.get("max_num_results") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=50).contains(n))
            .ok_or_else(|| bad("max_num_results is 1 to 50", "max_num_results"))?
            as u32,
    };
    let threshold = ranking(given.get("ranking_options"))?;
    let filter = match given.get("filters") {
        None | Some(Value::Null) => None,
        Some(f) => Some(filters::parse(f).map_err(|m| bad(m, "filters"))?),
    };
    let model = stores::model_of(host, &s)?;
    let found = search(host, store, &model, &queries, k, filter.as_ref(), threshold)?;
    stores::touch(host, &s)?;
    let data = found
        .iter()
        .map(|f| {
            json!({"file_id": f.file_id, "filename": f.filename, "score": f.score,
                   "attributes": f.attributes, "content": [{"type": "text", "text": f.text}]})
        })
        .collect::<Vec<_>>();
    host.respond_json(
        200,
        &json!({"object": "vector_store.search_results.page", "search_query": queries,
                "data": data, "has_more": false, "next_page": null}),
    )
}

/// `ranking_options`: `ranker` (`auto`, `default-2024-11-15` or `none`: all rank by cosine
/// similarity here) and `score_threshold` (0 to 1).
fn ranking(v: Option<&Value>) -> Result<f32, Error> {
    let Some(Value::Object(o)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(f32::NEG_INFINITY),
            _ => Err(bad("ranking_options is an object", "ranking_options")),
        };
    };
    let o: &Map<String, Value> = o;
    if let Some(r) = o.get("ranker")
        && !["auto", "default-2024-11-15", "none"].contains(&r.as_str().unwrap_or_default())
    {
        return Err(bad(
            "ranker is auto, default-2024-11-15 or none",
            "ranking_options.ranker",
        ));
    }
    match o.get("score_threshold") {
        None | Some(Value::Null) => Ok(f32::NEG_INFINITY),
        Some(t) => t
            .as_f64()
            .filter(|t| (0.0..=1.0).contains(t))
            .map(|t| t as f32)
            .ok_or_else(|| {
                bad(
                    "score_threshold is 0 to 1",
                    "ranking_options.score_threshold",
                )
            }),
    }
}
