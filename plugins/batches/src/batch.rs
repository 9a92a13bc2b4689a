//! The Batch object: what the store keeps for a batch, OpenAI's shape of it, and changes made
//! by compare-and-set (the job's steps and a client's cancel write the same object).

use std::collections::BTreeMap;

use cinder_sdk::host::Store;
use cinder_sdk::store::{Change, NewObject, Object, Updated};
use cinder_sdk::{Error, ErrorDetail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The store collection of batches.
pub const COLLECTION: &str = "batches";
/// Tries of a compare-and-set change before giving up (each retry re-reads the object).
const CAS_TRIES: usize = 16;

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Token use of the batch's successful requests (`usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
}

/// One entry of `errors.data`: why the input file was refused, or why the batch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

/// What the store keeps for a batch (its status is the object's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBatch {
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub in_progress_at: Option<i64>,
    pub expires_at: i64,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: Counts,
    pub usage: Usage,
    pub errors: Vec<LineError>,
    pub metadata: BTreeMap<String, String>,
}

/// Statuses after which nothing changes.
pub fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "expired" | "cancelled")
}

pub(crate) fn now() -> i64 {
    cinder_sdk::unix_time() as i64
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No batch found with id '{id}'."),
        param: Some("batch_id".into()),
        code: None,
    })
}

fn status(object: &Object) -> &str {
    object.status.as_deref().unwrap_or("validating")
}

/// The stored record of a batch object.
pub fn read(object: &Object) -> Result<StoredBatch, Error> {
    serde_json::from_str(&object.body)
        .map_err(|e| Error::Internal(format!("a stored batch is unreadable: {e}")))
}

fn body(batch: &StoredBatch) -> Result<String, Error> {
    serde_json::to_string(batch).map_err(|e| Error::Internal(format!("storing a batch: {e}")))
}

/// A new batch object, `validating`.
pub fn new_object(batch: &StoredBatch) -> Result<NewObject, Error> {
    Ok(NewObject {
        id_prefix: "batch_".into(),
        status: Some("validating".into()),
        metadata: Vec::new(),
        body: body(batch)?,
    })
}

/// OpenAI's Batch object.
pub fn shown(object: &Object, b: &StoredBatch) -> Value {
    let errors = (!b.errors.is_empty()).then(|| {
        json!({
            "object": "list",
            "data": b.errors,
        })
    });
    let u = b.usage;
    json!({
        "id": object.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": errors,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": status(object),
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": object.created_at,
        "in_progress_at": b.in_progress_at,
        "expires_at": b.expires_at,
        "finalizing_at": b.finalizing_at,
        "completed_at": b.completed_at,
        "failed_at": b.failed_at,
        "expired_at": b.expired_at,
        "cancelling_at": b.cancelling_at,
        "cancelled_at": b.cancelled_at,
        "request_counts": b.request_counts,
        "metadata": if b.metadata.is_empty() { Value::Null } else { json!(b.metadata) },
        "usage": {
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.input_tokens + u.output_tokens,
        },
    })
}

/// The batch `id` of the caller's.
pub fn load<H: Store + ?Sized>(host: &H, id: &str) -> Result<(Object, StoredBatch), Error> {
    let object = host
        .get_object(COLLECTION, id)?
        .ok_or_else(|| not_found(id))?;
    let batch = read(&object)?;
    Ok((object, batch))
}

/// Applies `change` to the batch `id` by compare-and-set, re-reading and re-applying it when
/// another writer got there first. `change` gets the status and the record and returns the
/// new status, or `None` to leave the object as it is. Returns the object as it ends up.
pub fn change<H: Store + ?Sized>(
    host: &H,
    id: &str,
    mut change: impl FnMut(&str, &mut StoredBatch) -> Option<String>,
) -> Result<(Object, StoredBatch), Error> {
    for _ in 0..CAS_TRIES {
        let (object, mut batch) = load(host, id)?;
        let Some(status) = change(status(&object), &mut batch) else {
            return Ok((object, batch));
        };
        let update = Change {
            status: Some(status),
            metadata: Vec::new(),
            body: body(&batch)?,
            expect_version: Some(object.version),
        };
        match host.update_object(COLLECTION, id, &update)? {
            Updated::Done(object) => return Ok((object, batch)),
            Updated::NotFound => return Err(not_found(id)),
            Updated::Conflict(_) => continue,
        }
    }
    Err(Error::Internal(format!(
        "the batch {id} kept changing while being updated"
    )))
}
