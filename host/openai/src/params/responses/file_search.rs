//! The Responses API's `file_search` tool: `{"type": "file_search", "vector_store_ids": [...],
//! "max_num_results", "filters", "ranking_options"}`, and whether a request's `tool_choice`
//! lets it search.

use serde_json::{Map, Value};

use super::super::filters::{self, Filter};
use super::super::{Checked, Invalid};

/// Stores one tool searches at most.
pub const MAX_STORES: usize = 16;
/// OpenAI's bound for `max_num_results`.
pub const MAX_RESULTS: u32 = 50;

/// A checked `file_search` tool.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSearchTool {
    pub vector_store_ids: Vec<String>,
    /// `None`: the server's default.
    pub max_num_results: Option<u32>,
    pub filter: Option<Filter>,
    /// Results scoring under it are left out (0 to 1).
    pub score_threshold: Option<f32>,
}

const FIELDS: &[&str] = &[
    "type",
    "vector_store_ids",
    "max_num_results",
    "filters",
    "ranking_options",
];

/// Checks the tool `t`, `tools[i]` of the request.
pub fn tool(i: usize, t: &Value) -> Checked<FileSearchTool> {
    let at = |field: &str| format!("tools[{i}].{field}");
    let obj: &Map<String, Value> = t
        .as_object()
        .ok_or_else(|| Invalid::new("A tool must be an object", format!("tools[{i}]")))?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let mut e = Invalid::new(format!("Unknown parameter: 'tools[{i}].{k}'."), at(k));
        e.code = Some("unknown_parameter".into());
        return Err(e);
    }
    let ids = obj
        .get("vector_store_ids")
        .and_then(Value::as_array)
        .filter(|a| (1..=MAX_STORES).contains(&a.len()))
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                .collect::<Option<Vec<String>>>()
        })
        .ok_or_else(|| {
            Invalid::new(
                format!("vector_store_ids is an array of 1 to {MAX_STORES} vector store ids"),
                at("vector_store_ids"),
            )
        })?;
    // A store named twice is searched once.
    let mut ids = ids;
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let max_num_results = match obj.get("max_num_results") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=u64::from(MAX_RESULTS)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    Invalid::new(
                        format!("max_num_results is 1 to {MAX_RESULTS}"),
                        at("max_num_results"),
                    )
                })?,
        ),
    };
    let filter = match obj.get("filters") {
        None | Some(Value::Null) => None,
        Some(f) => Some(filters::parse(f).map_err(|m| Invalid::new(m, at("filters")))?),
    };
    Ok(FileSearchTool {
        vector_store_ids: ids,
        max_num_results,
        filter,
        score_threshold: ranking(obj.get("ranking_options"), &at("ranking_options"))?,
    })
}

/// `ranking_options`: `ranker` (`auto` or `default-2024-11-15`: both rank by cosine
/// similarity here) and `score_threshold` (0 to 1).
fn ranking(v: Option<&Value>, param: &str) -> Checked<Option<f32>> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(Invalid::new("ranking_options is an object", param)),
    };
    if let Some(r) = o.get("ranker").filter(|r| !r.is_null())
        && !["auto", "default-2024-11-15", "none"].contains(&r.as_str().unwrap_or_default())
    {
        return Err(Invalid::new(
            "ranker is auto or default-2024-11-15",
            format!("{param}.ranker"),
        ));
    }
    match o.get("score_threshold") {
        None | Some(Value::Null) => Ok(None),
        Some(t) => t
            .as_f64()
            .filter(|t| (0.0..=1.0).contains(t))
            .map(|t| Some(t as f32))
            .ok_or_else(|| {
                Invalid::new(
                    "score_threshold is 0 to 1",
                    format!("{param}.score_threshold"),
                )
            }),
    }
}
