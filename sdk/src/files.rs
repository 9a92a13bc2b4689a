//! The `files` collection's record, shared by every family that reads or writes files: the
//! files plugin keeps them, batches read their input from one and write their output and
//! error files as new ones, later families (assistants, vector stores, fine-tuning) read them
//! too. A file is an object in the `files` collection (its purpose a filterable metadata pair)
//! whose content is a blob; the object is created only once the blob is whole, so a file is
//! either listed complete or absent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::Store;
use crate::store::{Blob, NewObject, Object};
use crate::{Error, ErrorDetail};

/// The store collection of files.
pub const COLLECTION: &str = "files";
/// The purpose of a batch's output and error files.
pub const BATCH_OUTPUT: &str = "batch_output";
/// Purposes of files the server makes: listed by them, never uploaded with them.
pub const MADE_PURPOSES: [&str; 1] = [BATCH_OUTPUT];

/// What the store keeps for a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    /// The name the client uploaded it with (or the family gave it).
    pub filename: String,
    /// The content's size.
    pub bytes: u64,
    /// What it is for (`batch`, `batch_output`, `fine-tune`, ...).
    pub purpose: String,
    /// The content's blob.
    pub blob: String,
    /// When it expires (seconds since the Unix epoch), if it does.
    pub expires_at: Option<i64>,
}

fn now() -> i64 {
    crate::unix_time() as i64
}

/// OpenAI's 404 for the file `id`.
pub fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No such File object: {id}"),
        param: Some("id".into()),
        code: None,
    })
}

/// OpenAI's File object.
pub fn shown(object: &Object, file: &StoredFile) -> Value {
    json!({
        "id": object.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": object.created_at,
        "expires_at": file.expires_at,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": null,
    })
}

/// The stored record of a file object.
pub fn read(object: &Object) -> Result<StoredFile, Error> {
    serde_json::from_str(&object.body)
        .map_err(|e| Error::Internal(format!("a stored file is unreadable: {e}")))
}

/// Removes an expired file (object, then content) and says whether it was one.
pub fn expired<H: Store + ?Sized>(
    host: &H,
    object: &Object,
    file: &StoredFile,
) -> Result<bool, Error> {
    if file.expires_at.is_none_or(|t| t > now()) {
        return Ok(false);
    }
    // The content first: a failure in between leaves the object, so the next read or the
    // expiry job retried finds it and tries again (a File whose blob is gone reads as gone).
    host.delete_blob(&file.blob)?;
    host.delete_object(COLLECTION, &object.id)?;
    Ok(true)
}

/// The file `id` of the caller's, unless it does not exist or has expired.
pub fn load<H: Store + ?Sized>(host: &H, id: &str) -> Result<(Object, StoredFile), Error> {
    let object = host
        .get_object(COLLECTION, id)?
        .ok_or_else(|| not_found(id))?;
    let file = read(&object)?;
    if expired(host, &object, &file)? {
        return Err(not_found(id));
    }
    Ok((object, file))
}

/// Keeps `blob` as a file (under `id` when given: the same work done twice, as a retried
/// upload completion, then makes one File, the first one's content removed); the blob goes if
/// the file cannot be kept.
pub fn save<H: Store + ?Sized>(
    host: &H,
    id: Option<&str>,
    filename: &str,
    purpose: &str,
    blob: &Blob,
    expires_at: Option<i64>,
) -> Result<Value, Error> {
    let file = StoredFile {
        filename: filename.to_owned(),
        bytes: blob.bytes,
        purpose: purpose.to_owned(),
        blob: blob.id.clone(),
        expires_at,
    };
    let body = serde_json::to_string(&file)
        .map_err(|e| Error::Internal(format!("storing a file: {e}")))?;
    let new = NewObject {
        id_prefix: "file-".into(),
        status: None,
        metadata: vec![("purpose".into(), purpose.to_owned())],
        body,
    };
    let kept = match id {
        None => host.create_object(COLLECTION, &new),
        Some(id) => {
            let earlier = host.get_object(COLLECTION, id)?;
            let kept = host.put_object(COLLECTION, id, &new);
            if kept.is_ok()
                && let Some(earlier) = earlier
                && let Ok(earlier) = read(&earlier)
                && earlier.blob != blob.id
            {
                host.delete_blob(&earlier.blob)?;
            }
            kept
        }
    };
    match kept {
        Ok(object) => Ok(shown(&object, &file)),
        Err(e) => {
            let _ = host.delete_blob(&blob.id);
            Err(e)
        }
    }
}
