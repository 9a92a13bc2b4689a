//! `/v1/assistants`: an assistant is an object in the `assistants` collection whose body is
//! the assistant's settings (its id and creation time are the store's), so retrieving and
//! listing read them back, and a modification is a compare-and-set of the whole body.

use serde_json::{Map, Value, json};

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::params::metadata;
use cinder_sdk::store::{Change, NewObject, Object, Query, Updated};
use cinder_sdk::{Error, Request};

use crate::bad;

pub const COLLECTION: &str = "assistants";

/// The body keys an assistant takes (create and modify alike; `model` is needed to create).
const KEYS: [&str; 11] = [
    "model",
    "name",
    "description",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "response_format",
    "reasoning_effort",
];

/// OpenAI's limits on an assistant's texts and tools.
const MAX_NAME: usize = 256;
const MAX_DESCRIPTION: usize = 512;
pub const MAX_INSTRUCTIONS: usize = 256_000;
const MAX_TOOLS: usize = 128;
/// Tries of a modification that another one raced.
const UPDATE_TRIES: usize = 8;

fn not_found(id: &str) -> Error {
    cinder_sdk::no_such("assistant", id)
}

/// The assistant as OpenAI shows it: the stored settings with the store's id and time.
fn shown(o: &Object) -> Result<Value, Error> {
    let mut v: Value = serde_json::from_str(&o.body).map_err(|e| {
        Error::Internal(format!("the stored assistant {} is unreadable: {e}", o.id))
    })?;
    if let Some(m) = v.as_object_mut() {
        m.remove("attach");
    }
    v["id"] = json!(o.id);
    v["object"] = json!("assistant");
    v["created_at"] = json!(o.created_at);
    Ok(v)
}

/// Defaults of a new assistant, in OpenAI's order of fields.
fn defaults() -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("name", Value::Null),
        ("description", Value::Null),
        ("model", Value::Null),
        ("instructions", Value::Null),
        ("tools", json!([])),
        ("tool_resources", json!({})),
        ("metadata", json!({})),
        ("top_p", json!(1.0)),
        ("temperature", json!(1.0)),
        ("reasoning_effort", Value::Null),
        ("response_format", json!("auto")),
    ] {
        m.insert(k.into(), v);
    }
    m
}

/// Checks each given setting and writes it into `settings` (a key given as null resets it).
fn apply(
    settings: &mut Map<String, Value>,
    given: Map<String, Value>,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let fresh = defaults();
    for (key, value) in given {
        let value = match (key.as_str(), value) {
            ("model", Value::String(m)) => {
                host.describe_model(&m)
                    .map_err(|e| name_param(e, "model"))?;
                Value::String(m)
            }
            ("model", _) => return Err(bad("model must be a string", "model")),
            (_, Value::Null) => fresh.get(&key).cloned().unwrap_or(Value::Null),
            ("name", v) => text(v, "name", MAX_NAME)?,
            ("description", v) => text(v, "description", MAX_DESCRIPTION)?,
            ("instructions", v) => text(v, "instructions", MAX_INSTRUCTIONS)?,
            ("tools", v) => tools(v)?,
            ("tool_resources", v) => tool_resources(v)?,
            ("metadata", v) => metadata(Some(v))?.unwrap_or_else(|| json!({})),
            ("temperature", v) => number(v, "temperature", 2.0)?,
            ("top_p", v) => number(v, "top_p", 1.0)?,
            ("response_format", v) => response_format(v)?,
            ("reasoning_effort", _) => {
                return Err(bad(
                    "reasoning_effort is for reasoning models, and no served model is one",
                    "reasoning_effort",
                ));
            }
            (other, _) => return Err(bad(format!("Unknown parameter: '{other}'."), other)),
        };
        settings.insert(key, value);
    }
    Ok(())
}

/// The host's answer about `model`, naming the request's parameter.
pub fn name_param(e: Error, param: &str) -> Error {
    match e {
        Error::NotFound(mut d) | Error::InvalidRequest(mut d) => {
            d.param = Some(param.into());
            Error::InvalidRequest(d)
        }
        other => other,
    }
}

fn text(v: Value, param: &str, max: usize) -> Result<Value, Error> {
    match v {
        Value::String(s) if s.chars().count() <= max => Ok(Value::String(s)),
        Value::String(_) => Err(bad(format!("{param} is at most {max} characters"), param)),
        _ => Err(bad(format!("{param} must be a string"), param)),
    }
}

fn number(v: Value, param: &str, max: f64) -> Result<Value, Error> {
    match v.as_f64() {
        Some(x) if (0.0..=max).contains(&x) => Ok(v),
        _ => Err(bad(format!("{param} is a number from 0 to {max}"), param)),
    }
}

/// `tools`: at most 128 of `function` and `file_search`; `code_interpreter` is refused by
/// name, as Cinder has none.
pub fn tools(v: Value) -> Result<Value, Error> {
    let Value::Array(list) = &v else {
        return Err(bad("tools must be an array", "tools"));
    };
    if list.len() > MAX_TOOLS {
        return Err(bad(format!("tools holds at most {MAX_TOOLS}"), "tools"));
    }
    for (i, tool) in list.iter().enumerate() {
        let at = |field: &str| format!("tools[{i}]{field}");
        match tool["type"].as_str() {
            Some("function") => {
                let f = &tool["function"];
                let name = f["name"].as_str().unwrap_or_default();
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(bad(
                        "a function's name is 1 to 64 letters, digits, `_` or `-`",
                        &at(".function.name"),
                    ));
                }
                if !(f["parameters"].is_null() || f["parameters"].is_object()) {
                    return Err(bad(
                        "a function's parameters are a JSON Schema object",
                        &at(".function.parameters"),
                    ));
                }
            }
            Some("file_search") => {
                let n = &tool["file_search"]["max_num_results"];
                if !(n.is_null() || n.as_u64().is_some_and(|n| (1..=50).contains(&n))) {
                    return Err(bad(
                        "max_num_results is 1 to 50",
                        &at(".file_search.max_num_results"),
                    ));
                }
            }
            Some("code_interpreter") => {
                return Err(bad(
                    "code_interpreter is not available in Cinder: tools are function and \
                     file_search",
                    &at(".type"),
                ));
            }
            _ => {
                return Err(bad(
                    "a tool's type is function or file_search",
                    &at(".type"),
                ));
            }
        }
    }
    Ok(v)
}

/// `tool_resources`: file_search's `vector_store_ids` (at most one store, as OpenAI allows
/// an assistant or a thread; it must exist when a run searches it). A store made inline
/// (`vector_stores`) is taken out before, where it is allowed (`attach::inline_store`), and
/// refused by name elsewhere; code_interpreter has none in Cinder.
pub fn tool_resources(v: Value) -> Result<Value, Error> {
    let Value::Object(map) = &v else {
        return Err(bad("tool_resources must be an object", "tool_resources"));
    };
    let mut out = serde_json::Map::new();
    for (k, r) in map {
        match k.as_str() {
            "file_search" => {
                if r["vector_stores"].as_array().is_some_and(|a| !a.is_empty()) {
                    return Err(bad(
                        "a vector store is made inside tool_resources only when an assistant or \
                         thread is created: create it with POST /v1/vector_stores and pass its \
                         id in vector_store_ids",
                        "tool_resources.file_search.vector_stores",
                    ));
                }
                let ids = match &r["vector_store_ids"] {
                    Value::Null => Vec::new(),
                    Value::Array(a) if a.len() <= 1 => a.clone(),
                    _ => {
                        return Err(bad(
                            "vector_store_ids is an array of at most one vector store id",
                            "tool_resources.file_search.vector_store_ids",
                        ));
                    }
                };
                if !ids.iter().all(|i| {
                    i.as_str()
                        .is_some_and(|i| cinder_sdk::well_formed_id(i, "vs_"))
                }) {
                    return Err(bad(
                        "a vector store id starts with vs_",
                        "tool_resources.file_search.vector_store_ids",
                    ));
                }
                out.insert(k.clone(), json!({"vector_store_ids": ids}));
            }
            "code_interpreter" => {
                return Err(bad(
                    "code_interpreter is not available in Cinder",
                    "tool_resources.code_interpreter",
                ));
            }
            other => {
                return Err(bad(
                    format!("Unknown tool resource: '{other}'"),
                    &format!("tool_resources.{other}"),
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

/// `response_format`: `auto`, or `{type: text | json_object | json_schema}` (a schema
/// object for the last).
pub fn response_format(v: Value) -> Result<Value, Error> {
    let ok = match &v {
        Value::String(s) => s == "auto",
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("text" | "json_object") => true,
            Some("json_schema") => o
                .get("json_schema")
                .is_some_and(|s| s["name"].is_string() && s["schema"].is_object()),
            _ => false,
        },
        _ => false,
    };
    match ok {
        true => Ok(v),
        false => Err(bad(
            "response_format is \"auto\" or {\"type\": \"text\" | \"json_object\" | \
             \"json_schema\"} (json_schema with a name and a schema object)",
            "response_format",
        )),
    }
}

/// `POST /v1/assistants`.
pub fn create(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut given = cinder_sdk::object_body(&request.body, &KEYS)?;
    let inline = match given.get_mut("tool_resources") {
        Some(r) => crate::attach::inline_store(host, r, "tool_resources")?,
        None => None,
    };
    if !given.get("model").is_some_and(Value::is_string) {
        return Err(bad("Missing required parameter: 'model'.", "model"));
    }
    let mut settings = defaults();
    apply(&mut settings, given, host)?;
    let new = NewObject {
        id_prefix: "asst_".into(),
        status: None,
        metadata: Vec::new(),
        body: Value::Object(settings).to_string(),
    };
    let o = host.create_object(COLLECTION, &new)?;
    if inline.is_some() {
        crate::attach::add(host, COLLECTION, &o.id, &[], inline)?;
    }
    host.respond_json(200, &shown(&o)?)
}

/// The assistant `id`, if the caller has one.
pub fn find(host: &dyn AgentHost, id: &str) -> Result<Object, Error> {
    match cinder_sdk::well_formed_id(id, "asst_") {
        true => host
            .get_object(COLLECTION, id)?
            .ok_or_else(|| not_found(id)),
        false => Err(not_found(id)),
    }
}

/// `GET /v1/assistants/{id}`.
pub fn retrieve(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    host.respond_json(200, &shown(&find(host, id)?)?)
}

/// `POST /v1/assistants/{id}`: the given settings replace the stored ones.
pub fn modify(id: &str, request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let given = cinder_sdk::object_body(&request.body, &KEYS)?;
    for _ in 0..UPDATE_TRIES {
        let o = find(host, id)?;
        let Value::Object(mut settings) = serde_json::from_str(&o.body).map_err(|e| {
            Error::Internal(format!("the stored assistant {id} is unreadable: {e}"))
        })?
        else {
            return Err(Error::Internal(format!(
                "the stored assistant {id} is no object"
            )));
        };
        apply(&mut settings, given.clone(), host)?;
        let change = Change {
            status: None,
            metadata: Vec::new(),
            body: Value::Object(settings).to_string(),
            expect_version: Some(o.version),
        };
        match host.update_object(COLLECTION, id, &change)? {
            Updated::Done(o) => return host.respond_json(200, &shown(&o)?),
            Updated::NotFound => return Err(not_found(id)),
            Updated::Conflict(_) => continue,
        }
    }
    Err(Error::RateLimited(format!(
        "assistant {id} is being modified by other requests; try again"
    )))
}

/// `DELETE /v1/assistants/{id}`.
pub fn delete(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    find(host, id)?;
    if !host.delete_object(COLLECTION, id)? {
        return Err(not_found(id));
    }
    host.respond_json(
        200,
        &json!({"id": id, "object": "assistant.deleted", "deleted": true}),
    )
}

/// A list request's paging (the SDK's [`cinder_sdk::list_query`]); any other parameter is
/// refused by name.
pub fn list_query(pairs: &[(String, String)]) -> Result<Query, Error> {
    cinder_sdk::list_query(pairs, &[])
}

/// `GET /v1/assistants`.
pub fn list(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let query = list_query(&request.query())?;
    let page = host.list_objects(COLLECTION, &query)?;
    cinder_sdk::respond_page(host, &page, shown)
}
