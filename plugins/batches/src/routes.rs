//! `/v1/batches`: create (checks the request and the input file, stores the batch
//! `validating` and queues its job), list, retrieve, cancel.

use std::collections::BTreeMap;

use cinder_sdk::host::JobHost;
use cinder_sdk::openai::params::list::ListParams;
use cinder_sdk::store::Query;
use cinder_sdk::{Error, Request, invalid_request};
use serde::Deserialize;
use serde_json::Value;

use crate::batch::{self, COLLECTION, StoredBatch, is_final, now};
use crate::run::{JOB_KIND, Progress};
use crate::settings;

/// The endpoints a batch may send its requests to.
pub const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
/// How long a batch may take: OpenAI offers 24 hours only.
const WINDOW: (&str, i64) = ("24h", 86_400);

#[derive(Deserialize)]
struct CreateBody {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    metadata: Option<Value>,
}

fn missing(name: &str) -> Error {
    invalid_request(
        &format!("Missing required parameter: '{name}'."),
        Some(name),
    )
}

/// `POST /v1/batches`.
pub fn create(host: &dyn JobHost, request: &Request) -> Result<(), Error> {
    let body: CreateBody = cinder_sdk::parse_body(&request.body)?;
    let input_file_id = body.input_file_id.ok_or_else(|| missing("input_file_id"))?;
    let endpoint = body.endpoint.ok_or_else(|| missing("endpoint"))?;
    let window = body
        .completion_window
        .ok_or_else(|| missing("completion_window"))?;
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        return Err(invalid_request(
            &format!(
                "Invalid endpoint '{endpoint}': expected one of {}",
                ENDPOINTS.join(", ")
            ),
            Some("endpoint"),
        ));
    }
    if window != WINDOW.0 {
        return Err(invalid_request(
            &format!("Invalid completion_window '{window}': only '24h' is supported"),
            Some("completion_window"),
        ));
    }
    let metadata: BTreeMap<String, String> =
        match cinder_sdk::openai::params::metadata(body.metadata)? {
            Some(m) => serde_json::from_value(m).map_err(|e| {
                invalid_request(&format!("Invalid metadata: {e}"), Some("metadata"))
            })?,
            None => BTreeMap::new(),
        };
    let (_, file) = cinder_sdk::files::load(host, &input_file_id).map_err(|e| match e {
        Error::NotFound(mut d) => {
            d.param = Some("input_file_id".into());
            Error::NotFound(d)
        }
        other => other,
    })?;
    if file.purpose != "batch" {
        return Err(invalid_request(
            &format!(
                "The input file {input_file_id} has purpose '{}'; a batch's input file must have purpose 'batch'",
                file.purpose
            ),
            Some("input_file_id"),
        ));
    }
    let max_bytes = settings::max_input_bytes(host);
    if file.bytes > max_bytes {
        return Err(invalid_request(
            &format!(
                "The input file has {} bytes; a batch's input file may have at most {max_bytes}",
                file.bytes
            ),
            Some("input_file_id"),
        ));
    }
    let stored = StoredBatch {
        endpoint,
        input_file_id,
        completion_window: window,
        expires_at: now() + WINDOW.1,
        metadata,
        ..StoredBatch::default()
    };
    let object = host.create_object(COLLECTION, &batch::new_object(&stored)?)?;
    let progress = Progress::start(&file.blob, file.bytes);
    if let Err(e) = host.enqueue_job(JOB_KIND, &object.id, &progress.to_json()?) {
        let _ = host.delete_object(COLLECTION, &object.id);
        return Err(e);
    }
    host.respond_json(200, &batch::shown(&object, &stored))
}

/// `GET /v1/batches` (`limit` 1..=100, default 20; `after`), newest first.
pub fn list(host: &dyn JobHost, request: &Request) -> Result<(), Error> {
    let pairs = request.query();
    let query: Query = ListParams::parse(&pairs, 20, 100, true)?.into();
    let page = host.list_objects(COLLECTION, &query)?;
    let data = page
        .objects
        .iter()
        .map(|o| batch::read(o).map(|b| batch::shown(o, &b)))
        .collect::<Result<Vec<_>, _>>()?;
    host.respond_json(
        200,
        &cinder_sdk::openai::params::list::list_body(data, page.has_more),
    )
}

/// `GET /v1/batches/{id}`.
pub fn retrieve(host: &dyn JobHost, id: &str) -> Result<(), Error> {
    let (object, stored) = batch::load(host, id)?;
    host.respond_json(200, &batch::shown(&object, &stored))
}

/// `POST /v1/batches/{id}/cancel`: `cancelling` until the job's next step stops it (it then
/// becomes `cancelled`, with the requests done so far in its output file).
pub fn cancel(host: &dyn JobHost, id: &str) -> Result<(), Error> {
    let mut refused = None;
    let (object, stored) = batch::change(host, id, |status, b| {
        if is_final(status) || status == "finalizing" {
            refused = Some(status.to_owned());
            return None;
        }
        if status == "cancelling" {
            return None;
        }
        b.cancelling_at = Some(now());
        Some("cancelling".into())
    })?;
    if let Some(status) = refused {
        return Err(invalid_request(
            &format!("Cannot cancel a batch with status '{status}'."),
            Some("batch_id"),
        ));
    }
    host.cancel_job(id)?;
    host.respond_json(200, &batch::shown(&object, &stored))
}
