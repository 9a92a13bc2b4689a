//! Files given to file_search inline: a message's `attachments`, and a new assistant's or
//! thread's `tool_resources.file_search.vector_stores`. OpenAI puts them in a vector store of
//! the thread (made for it, expiring 7 days after its last use) or of the assistant. A live
//! request may not call the vector stores plugin (only job steps dispatch), so the request
//! checks the files and notes them as pending in the thread's or assistant's body (`attach`);
//! a job of kind `attach`, one at a time per owner (the body's `running` flag, set by
//! compare-and-set), makes the store or adds the files through the vector stores plugin's
//! routes, as a client would, and records the store in `tool_resources`. A run with
//! file_search waits for that, and for its stores' ingestion, before it searches.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use cinder_sdk::dispatch::Call;
use cinder_sdk::host::AgentHost;
use cinder_sdk::store::{Change, Updated};
use cinder_sdk::{Error, Job, Outcome};

use crate::bad;

/// The job kind (the manifest's `jobs`).
pub const KIND: &str = "attach";
/// Files one message may attach (OpenAI's bound).
pub const MAX_ATTACHMENTS: usize = 10;
/// Files an inline vector store is made with at most.
pub const MAX_INLINE_FILES: usize = 500;
/// Days a thread's store made from attachments lasts after its last use (OpenAI's default).
const THREAD_STORE_DAYS: i64 = 7;
/// How long a run waits for its files before it fails.
pub const FILE_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting run looks again (each look counts the stores' files).
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Compare-and-set tries before a change is given up as contended.
const TRIES: usize = 16;
/// File ids one call to the vector stores plugin carries (its own bound per request).
const PER_CALL: usize = 500;

/// The caller's file `id`, or a 400 naming `param`.
fn check_file(host: &dyn AgentHost, id: &Value, param: &str) -> Result<String, Error> {
    let id = id
        .as_str()
        .ok_or_else(|| bad("a file id is a string", param))?;
    cinder_sdk::files::load(host, id)
        .map_err(|_| bad(format!("No file found with id '{id}'."), param))?;
    Ok(id.to_owned())
}

/// A message's `attachments` as shown, and the files it gives file_search.
pub fn attachments(
    host: &dyn AgentHost,
    v: Option<&Value>,
    param: &str,
) -> Result<(Value, Vec<String>), Error> {
    let list = match v {
        None | Some(Value::Null) => return Ok((json!([]), Vec::new())),
        Some(Value::Array(a)) if a.len() <= MAX_ATTACHMENTS => a,
        Some(_) => {
            return Err(bad(
                format!("attachments is an array of at most {MAX_ATTACHMENTS} files"),
                param,
            ));
        }
    };
    let mut shown = Vec::new();
    let mut search = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let at = format!("{param}[{i}]");
        let file = check_file(host, &a["file_id"], &format!("{at}.file_id"))?;
        let tools = match &a["tools"] {
            Value::Null => Vec::new(),
            Value::Array(t) => t.clone(),
            _ => return Err(bad("tools is an array", &format!("{at}.tools"))),
        };
        for (j, t) in tools.iter().enumerate() {
            match t["type"].as_str() {
                Some("file_search") => {
                    if !search.contains(&file) {
                        search.push(file.clone());
                    }
                }
                Some("code_interpreter") => {
                    return Err(bad(
                        "code_interpreter is not available in Cinder",
                        &format!("{at}.tools[{j}].type"),
                    ));
                }
                _ => {
                    return Err(bad(
                        "an attachment's tool is file_search",
                        &format!("{at}.tools[{j}].type"),
                    ));
                }
            }
        }
        shown.push(json!({"file_id": file, "tools": tools}));
    }
    Ok((Value::Array(shown), search))
}

/// Takes `file_search.vector_stores` out of given `tool_resources` (the store to make), its
/// files checked; `param` names the tool_resources.
pub fn inline_store(
    host: &dyn AgentHost,
    resources: &mut Value,
    param: &str,
) -> Result<Option<Value>, Error> {
    let Some(fs) = resources
        .get_mut("file_search")
        .and_then(Value::as_object_mut)
    else {
        return Ok(None);
    };
    let at = format!("{param}.file_search.vector_stores");
    let stores = match fs.remove("vector_stores") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(s)) if s.is_empty() => return Ok(None),
        Some(Value::Array(s)) if s.len() == 1 => s,
        Some(_) => {
            return Err(bad("vector_stores holds at most one vector store", &at));
        }
    };
    if fs
        .get("vector_store_ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| !ids.is_empty())
    {
        return Err(bad("give vector_store_ids or vector_stores, not both", &at));
    }
    let spec = &stores[0];
    let Some(fields) = spec.as_object() else {
        return Err(bad("a vector store is an object", &format!("{at}[0]")));
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["file_ids", "chunking_strategy", "metadata"].contains(&k.as_str()))
    {
        return Err(bad(
            format!("Unknown parameter: '{k}'."),
            &format!("{at}[0].{k}"),
        ));
    }
    chunking(
        &spec["chunking_strategy"],
        &format!("{at}[0].chunking_strategy"),
    )?;
    cinder_sdk::openai::params::metadata(spec.get("metadata").cloned()).map_err(|mut e| {
        e.param = Some(format!("{at}[0].metadata"));
        Error::from(e)
    })?;
    let files = match &spec["file_ids"] {
        Value::Null => Vec::new(),
        Value::Array(f) if f.len() <= MAX_INLINE_FILES => f.clone(),
        _ => {
            return Err(bad(
                format!("file_ids is an array of at most {MAX_INLINE_FILES} file ids"),
                &format!("{at}[0].file_ids"),
            ));
        }
    };
    let files = files
        .iter()
        .enumerate()
        .map(|(i, f)| check_file(host, f, &format!("{at}[0].file_ids[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut made = Map::new();
    for key in ["chunking_strategy", "metadata"] {
        if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
            made.insert(key.into(), v.clone());
        }
    }
    // `make`: the store is made even with no files (OpenAI makes an empty one).
    Ok(Some(
        json!({"files": files, "store": made, "running": false, "seq": 0, "make": true}),
    ))
}

/// A `chunking_strategy` as OpenAI takes it: `auto`, or `static` with 100 to 4096 tokens a
/// chunk and an overlap of at most half of that (what the model's own limit allows is the
/// vector stores plugin's to say when the files are added).
fn chunking(v: &Value, param: &str) -> Result<(), Error> {
    let ok = match v["type"].as_str() {
        _ if v.is_null() => true,
        Some("auto") => v.as_object().is_some_and(|o| o.len() == 1),
        Some("static") => {
            let size = v["static"]["max_chunk_size_tokens"].as_u64();
            let overlap = v["static"]["chunk_overlap_tokens"].as_u64();
            matches!((size, overlap), (Some(s), Some(o)) if (100..=4096).contains(&s) && o <= s / 2)
        }
        _ => false,
    };
    match ok {
        true => Ok(()),
        false => Err(bad(
            "chunking_strategy is {\"type\": \"auto\"} or {\"type\": \"static\", \"static\": \
             {\"max_chunk_size_tokens\": 100 to 4096, \"chunk_overlap_tokens\": at most half}}",
            param,
        )),
    }
}

/// What a thread's attachments start: pending files for a store made for the thread.
pub fn for_attachments(files: Vec<String>) -> Value {
    json!({"files": files, "running": false, "seq": 0,
           "store": {"expires_after": {"anchor": "last_active_at", "days": THREAD_STORE_DAYS}}})
}

/// Adds `files` to the pending ones of the thread or assistant `id` in `collection` and, when
/// no job is making its store already, queues one.
pub fn add(
    host: &dyn AgentHost,
    collection: &str,
    id: &str,
    files: &[String],
    fresh: Option<Value>,
) -> Result<(), Error> {
    if files.is_empty() && fresh.is_none() {
        return Ok(());
    }
    let (mut start, mut seq) = (false, 0);
    let found = update_with(host, collection, id, |body| {
        let mut attach = match (&body["attach"], &fresh) {
            (Value::Null, Some(f)) => f.clone(),
            (Value::Null, None) => for_attachments(Vec::new()),
            (a, _) => a.clone(),
        };
        if let Some(p) = attach["files"].as_array_mut() {
            for f in files {
                if !p.iter().any(|x| x == f.as_str()) {
                    p.push(json!(f));
                }
            }
        }
        start = attach["running"] != json!(true);
        seq = attach["seq"].as_u64().unwrap_or(0) + u64::from(start);
        attach["running"] = json!(true);
        attach["seq"] = json!(seq);
        attach["error"] = Value::Null;
        body["attach"] = attach;
    })?;
    if !(found && start) {
        return Ok(());
    }
    let progress = json!({"collection": collection, "id": id}).to_string();
    if let Err(e) = host.enqueue_job(KIND, &format!("{id}-attach-{seq}"), &progress) {
        // No job will take the files: say so to the next run instead of waiting for one.
        update_with(host, collection, id, |b| {
            b["attach"]["running"] = json!(false);
            b["attach"]["error"] = json!(format!("no job could store the files: {e:?}"));
        })?;
        return Err(e);
    }
    Ok(())
}

/// One request to the vector stores plugin; its JSON answer, or the error it gave.
fn call(host: &dyn AgentHost, method: &str, path: String, body: Value) -> Result<Value, String> {
    let answers = host.dispatch(&[Call {
        method: method.into(),
        path,
        body: body.to_string(),
    }]);
    let answer = answers
        .into_iter()
        .next()
        .ok_or("the vector stores plugin gave no answer")?
        .map_err(|e| format!("the vector stores plugin failed: {e:?}"))?;
    let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    match answer.status {
        200 => Ok(v),
        s => Err(v["error"]["message"].as_str().map_or_else(
            || format!("the vector stores plugin answered {s}"),
            str::to_owned,
        )),
    }
}

/// Applies `f` to the body of `id` in `collection`, compare-and-set, again on a race;
/// `false` if the object is gone.
fn update_with(
    host: &dyn AgentHost,
    collection: &str,
    id: &str,
    mut f: impl FnMut(&mut Value),
) -> Result<bool, Error> {
    for _ in 0..TRIES {
        let Some(o) = host.get_object(collection, id)? else {
            return Ok(false);
        };
        let mut body: Value = serde_json::from_str(&o.body)
            .map_err(|e| Error::Internal(format!("the stored {id} is unreadable: {e}")))?;
        f(&mut body);
        let change = Change {
            status: o.status.clone(),
            metadata: o.metadata.clone(),
            body: body.to_string(),
            expect_version: Some(o.version),
        };
        match host.update_object(collection, id, &change)? {
            Updated::Done(_) => return Ok(true),
            Updated::NotFound => return Ok(false),
            Updated::Conflict(_) => continue,
        }
    }
    Err(Error::RateLimited(format!("{id} is changing; try again")))
}

/// The job: while the owner has pending files, makes its store with them (or adds them to
/// the store it has), then records the store and takes the files off the pending list; the
/// owner's `running` flag goes down with the last of them.
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
    let (Some(collection), Some(id)) = (progress["collection"].as_str(), progress["id"].as_str())
    else {
        return Ok(Outcome::Done);
    };
    // The host ends a job whose steps keep failing (or whose process kept dying): the owner
    // must not wait for it forever, nor keep files no job will store.
    if let Some(reason) = &job.ending {
        update_with(host, collection, id, |b| {
            b["attach"]["files"] = json!([]);
            b["attach"]["running"] = json!(false);
            b["attach"]["error"] = json!(reason);
        })?;
        return Ok(Outcome::Done);
    }
    loop {
        let Some(o) = host.get_object(collection, id)? else {
            return Ok(Outcome::Done);
        };
        let body: Value = serde_json::from_str(&o.body)
            .map_err(|e| Error::Internal(format!("the stored {id} is unreadable: {e}")))?;
        // A call at a time, each within the vector stores plugin's bound.
        let files: Vec<String> = body["attach"]["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .take(PER_CALL)
            .collect();
        let no_store = body["tool_resources"]["file_search"]["vector_store_ids"][0].is_null();
        if files.is_empty() && body["attach"]["make"] == json!(true) && no_store {
            // An inline store given no files is made empty, as OpenAI's.
            let made = call(
                host,
                "POST",
                "/v1/vector_stores".into(),
                body["attach"]["store"].clone(),
            );
            let found = update_with(host, collection, id, |b| {
                b["attach"]["make"] = json!(false);
                match &made {
                    Ok(v) => {
                        b["tool_resources"]["file_search"]["vector_store_ids"] = json!([v["id"]])
                    }
                    Err(message) => b["attach"]["error"] = json!(message),
                }
            })?;
            if !found {
                return Ok(Outcome::Done);
            }
            continue;
        }
        if files.is_empty() {
            // Done, unless files came between the read and this write (then go again).
            let mut more = false;
            let found = update_with(host, collection, id, |b| {
                more = b["attach"]["files"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if !more {
                    b["attach"]["running"] = json!(false);
                }
            })?;
            if !found || !more {
                return Ok(Outcome::Done);
            }
            continue;
        }
        let spec = &body["attach"]["store"];
        let made = match body["tool_resources"]["file_search"]["vector_store_ids"][0].as_str() {
            None => {
                let mut spec = spec.clone();
                spec["file_ids"] = json!(files);
                call(host, "POST", "/v1/vector_stores".into(), spec)
                    .map(|v| v["id"].as_str().map(str::to_owned))
            }
            Some(s) => {
                let mut batch = json!({"file_ids": files});
                if !spec["chunking_strategy"].is_null() {
                    batch["chunking_strategy"] = spec["chunking_strategy"].clone();
                }
                call(
                    host,
                    "POST",
                    format!("/v1/vector_stores/{s}/file_batches"),
                    batch,
                )
                .map(|_| None)
            }
        };
        let found = update_with(host, collection, id, |b| match &made {
            Ok(store) => {
                if let Some(s) = store {
                    b["tool_resources"]["file_search"]["vector_store_ids"] = json!([s]);
                }
                if let Some(p) = b["attach"]["files"].as_array_mut() {
                    p.retain(|f| !files.iter().any(|x| f == x.as_str()));
                }
            }
            // The files of the failed call are given up (the reason is said to the next
            // run); files added since stay for the next call.
            Err(message) => {
                if let Some(p) = b["attach"]["files"].as_array_mut() {
                    p.retain(|f| !files.iter().any(|x| f == x.as_str()));
                }
                b["attach"]["error"] = json!(message);
            }
        })?;
        if !found {
            return Ok(Outcome::Done);
        }
    }
}

/// What a run found about the files of its thread and assistant.
pub enum Files {
    /// Stored and ingested: the stores to search besides the run's own.
    Ready(Vec<String>),
    /// The run was cancelled while it waited.
    Stopped,
}

/// Waits until the run's thread and assistant have no files pending (at most [`FILE_WAIT`],
/// then the run fails saying so), then until the stores those files went to are ingested (at
/// most [`FILE_WAIT`] in all, then it searches what is).
pub fn wait(host: &dyn AgentHost, run: &str, r: &Value) -> Result<Files, Error> {
    let started = Instant::now();
    let owners = [
        (
            crate::threads::THREADS,
            r["thread_id"].as_str().unwrap_or_default(),
        ),
        (
            crate::assistants::COLLECTION,
            r["assistant_id"].as_str().unwrap_or_default(),
        ),
    ];
    let own: Vec<String> = ids(&r["tool_resources"]);
    loop {
        if crate::runs::stopped(host, run)? {
            return Ok(Files::Stopped);
        }
        let mut pending = false;
        let mut stores = own.clone();
        // Only the stores the inline files went to are waited for: a store of the user's
        // that other uploads are filling is searched as it is, as before.
        let mut watched: Vec<String> = Vec::new();
        for (collection, id) in owners {
            let Some(o) = host.get_object(collection, id)? else {
                continue;
            };
            let b: Value = serde_json::from_str(&o.body).unwrap_or(Value::Null);
            if let Some(e) = b["attach"]["error"].as_str() {
                let message = format!("The files given to file_search could not be stored: {e}");
                // Said once, by this run: the next run searches what was stored.
                update_with(host, collection, id, |b| b["attach"]["error"] = Value::Null)?;
                return Err(bad(message, "attachments"));
            }
            pending |= b["attach"]["running"] == json!(true);
            if b["attach"].is_object() {
                watched.extend(ids(&b["tool_resources"]));
            }
            // The assistant's own stores count when the run has none of its own (a run made
            // while its assistant's store was being made holds an empty copy).
            if collection == crate::threads::THREADS || own.is_empty() {
                for s in ids(&b["tool_resources"]) {
                    if !stores.contains(&s) {
                        stores.push(s);
                    }
                }
            }
        }
        let ingesting = !pending
            && watched.iter().any(|s| {
                call(host, "GET", format!("/v1/vector_stores/{s}"), Value::Null)
                    .is_ok_and(|v| v["file_counts"]["in_progress"].as_u64().unwrap_or(0) > 0)
            });
        let late = started.elapsed() > FILE_WAIT;
        if pending && late {
            return Err(Error::Unavailable(format!(
                "The run's files were still being stored after {} s",
                FILE_WAIT.as_secs()
            )));
        }
        // Stored: searched once ingested, or as far as ingested when that takes too long.
        if !pending && (!ingesting || late) {
            stores.retain(|s| !own.contains(s));
            return Ok(Files::Ready(stores));
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

/// `file_search.vector_store_ids` of a `tool_resources`.
fn ids(resources: &Value) -> Vec<String> {
    resources["file_search"]["vector_store_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}
