//! `/v1/uploads`: a large file sent in parts. An upload is an object in `uploads` (its
//! status `pending`, `completed`, `cancelled` or `expired`); each part a blob with an object in
//! `upload_parts`. Completing joins the parts' blobs in the order given (in the host, in
//! chunks), checks the size and MD5, and keeps the result as a File.

use cinder_sdk::host::{JobHost, StoreHost};
use cinder_sdk::store::{Change, NewObject, Object, Query, Updated};
use cinder_sdk::{Error, ErrorDetail, Request, invalid_request};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::expiry::{self, Due};
use crate::jsonl::Lines;
use crate::{files, form, needs_jsonl, purpose};

const COLLECTION: &str = "uploads";
const PARTS: &str = "upload_parts";
/// An upload accepts parts for an hour, as OpenAI's do.
const LIFETIME: i64 = 3_600;
/// OpenAI's largest part.
const MAX_PART: u64 = 64 << 20;
/// Bytes read back per call when checking a joined JSONL file.
const CHECK_CHUNK: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUpload {
    filename: String,
    purpose: String,
    bytes: u64,
    mime_type: String,
    expires_at: i64,
    /// The File it became.
    file: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredPart {
    blob: String,
    bytes: u64,
}

fn now() -> i64 {
    cinder_sdk::unix_time() as i64
}

fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No such Upload object: {id}"),
        param: Some("upload_id".into()),
        code: None,
    })
}

fn json_text(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("storing an upload: {e}")))
}

fn shown(object: &Object, upload: &StoredUpload, status: &str) -> Value {
    json!({
        "id": object.id,
        "object": "upload",
        "bytes": upload.bytes,
        "created_at": object.created_at,
        "filename": upload.filename,
        "purpose": upload.purpose,
        "status": status,
        "expires_at": upload.expires_at,
        "file": upload.file,
    })
}

/// The upload with its status as it stands now (a pending one past its hour is expired).
fn load(host: &dyn StoreHost, id: &str) -> Result<(Object, StoredUpload, String), Error> {
    let object = host
        .get_object(COLLECTION, id)?
        .ok_or_else(|| not_found(id))?;
    let upload: StoredUpload = serde_json::from_str(&object.body)
        .map_err(|e| Error::Internal(format!("a stored upload is unreadable: {e}")))?;
    let status = object.status.clone().unwrap_or_else(|| "pending".into());
    if status == "pending" && upload.expires_at <= now() {
        // Past its hour: it ends here, and its parts go.
        let object = settle(host, &object, &upload, "expired")?;
        drop_parts(host, id)?;
        return Ok((object, upload, "expired".into()));
    }
    Ok((object, upload, status))
}

/// Ends the upload `id` if it is still pending past its hour: the step of its expiry job.
/// Whatever its status, its parts go (a completion or cancel whose clean-up failed half-way
/// left some). When it is still pending and not yet due (the clock stepped back), the time it
/// expires at.
pub fn expire(host: &dyn StoreHost, id: &str) -> Result<Option<i64>, Error> {
    let (_, upload, status) = load(host, id)?;
    if status == "pending" {
        return Ok(Some(upload.expires_at));
    }
    drop_parts(host, id)?;
    Ok(None)
}

fn pending(id: &str, status: &str) -> Result<(), Error> {
    if status == "pending" {
        return Ok(());
    }
    Err(invalid_request(
        &format!("Upload {id} is {status}; it accepts no more changes"),
        Some("upload_id"),
    ))
}

/// `POST /v1/uploads`.
pub fn create(host: &dyn JobHost, request: &Request) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Create {
        bytes: u64,
        filename: String,
        mime_type: String,
        purpose: String,
    }
    let c: Create = cinder_sdk::parse_body(&request.body)?;
    let purpose = purpose(&c.purpose)?;
    if c.filename.is_empty() || c.filename.len() > 512 {
        return Err(invalid_request(
            "filename must be 1 to 512 bytes",
            Some("filename"),
        ));
    }
    if c.mime_type.is_empty() || c.mime_type.len() > 256 {
        return Err(invalid_request(
            "mime_type must be 1 to 256 bytes",
            Some("mime_type"),
        ));
    }
    let upload = StoredUpload {
        filename: c.filename,
        purpose,
        bytes: c.bytes,
        mime_type: c.mime_type,
        expires_at: now() + LIFETIME,
        file: None,
    };
    let new = NewObject {
        id_prefix: "upload_".into(),
        status: Some("pending".into()),
        metadata: Vec::new(),
        body: json_text(&upload)?,
    };
    let object = host.create_object(COLLECTION, &new)?;
    // Its parts must not outlive it if it is never completed.
    let due = Due::Upload(object.id.clone());
    if let Err(e) = expiry::schedule(host, &due, upload.expires_at) {
        let _ = host.delete_object(COLLECTION, &object.id);
        return Err(e);
    }
    host.respond_json(200, &shown(&object, &upload, "pending"))
}

/// `POST /v1/uploads/{id}/parts` (multipart: `data`).
pub fn add_part(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    let (object, upload, status) = load(host, id)?;
    pending(id, &status)?;
    // The parts may hold at most the bytes the upload was created for.
    let stored: u64 = all_parts(host, id)?.iter().map(|(_, p)| p.bytes).sum();
    let room = upload.bytes.saturating_sub(stored);
    let mut streamed = None;
    while let Some(part) = host.next_part()? {
        if part.name == "data" {
            if streamed.is_some() {
                return Err(invalid_request("Send one `data` per part", Some("data")));
            }
            streamed = Some(form::stream(host, "data", Some(MAX_PART.min(room)), false)?);
        }
    }
    let streamed = streamed
        .ok_or_else(|| invalid_request("Missing required parameter: 'data'", Some("data")))?;
    let bytes = streamed.bytes;
    let blob = streamed.writer.finish()?;
    let new = NewObject {
        id_prefix: "part_".into(),
        status: None,
        metadata: vec![("upload_id".into(), object.id.clone())],
        body: json_text(&StoredPart {
            blob: blob.id.clone(),
            bytes,
        })?,
    };
    let part = match host.create_object(PARTS, &new) {
        Ok(p) => p,
        Err(e) => {
            let _ = host.delete_blob(&blob.id);
            return Err(e);
        }
    };
    // Completed or cancelled while this part streamed in: it must not linger.
    if let Err(e) = load(host, id).and_then(|(_, _, status)| pending(id, &status)) {
        let _ = host.delete_object(PARTS, &part.id);
        let _ = host.delete_blob(&blob.id);
        return Err(e);
    }
    host.respond_json(
        200,
        &json!({"id": part.id, "object": "upload.part", "created_at": part.created_at, "upload_id": object.id}),
    )
}

/// Every part of the upload (to clean up after it ends).
fn all_parts(host: &dyn StoreHost, id: &str) -> Result<Vec<(Object, StoredPart)>, Error> {
    let mut out = Vec::new();
    let mut q = Query {
        limit: 1000,
        order: cinder_sdk::store::Order::Asc,
        after: None,
        before: None,
        status: None,
        metadata: vec![("upload_id".into(), id.to_owned())],
    };
    loop {
        let page = host.list_objects(PARTS, &q)?;
        for o in page.objects {
            let p: StoredPart = serde_json::from_str(&o.body)
                .map_err(|e| Error::Internal(format!("a stored part is unreadable: {e}")))?;
            q.after = Some(o.id.clone());
            out.push((o, p));
        }
        if !page.has_more {
            return Ok(out);
        }
    }
}

fn drop_parts(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    for (o, p) in all_parts(host, id)? {
        host.delete_blob(&p.blob)?;
        host.delete_object(PARTS, &o.id)?;
    }
    Ok(())
}

/// Moves the upload to `status` (from the version read), keeping `upload`.
fn settle(
    host: &dyn StoreHost,
    object: &Object,
    upload: &StoredUpload,
    status: &str,
) -> Result<Object, Error> {
    let change = Change {
        status: Some(status.into()),
        metadata: Vec::new(),
        body: json_text(upload)?,
        expect_version: Some(object.version),
    };
    match host.update_object(COLLECTION, &object.id, &change)? {
        Updated::Done(o) => Ok(o),
        Updated::NotFound => Err(not_found(&object.id)),
        Updated::Conflict(_) => Err(invalid_request(
            &format!("Upload {} changed while this request ran; retry", object.id),
            Some("upload_id"),
        )),
    }
}

/// Reads the joined blob back as JSONL (batch and fine-tune files must be): the first
/// problem, if any; a store failure is the store's error, not the file's.
fn check_jsonl(host: &dyn StoreHost, blob: &str, bytes: u64) -> Result<Option<String>, Error> {
    let mut lines = Lines::default();
    let mut offset = 0;
    while offset < bytes {
        let chunk = host.read_blob(blob, offset, CHECK_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        lines.feed(&chunk);
    }
    Ok(lines.finish().err())
}

/// `POST /v1/uploads/{id}/complete` (`part_ids` in order, optional `md5`).
pub fn complete(host: &dyn StoreHost, id: &str, request: &Request) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Complete {
        part_ids: Vec<String>,
        md5: Option<String>,
    }
    let c: Complete = cinder_sdk::parse_body(&request.body)?;
    let (object, mut upload, status) = load(host, id)?;
    pending(id, &status)?;
    let mut blobs = Vec::with_capacity(c.part_ids.len());
    for (n, part_id) in c.part_ids.iter().enumerate() {
        let not_ours = || {
            invalid_request(
                &format!("part_ids[{n}]: `{part_id}` is not a part of upload {id}"),
                Some("part_ids"),
            )
        };
        if c.part_ids[..n].contains(part_id) {
            return Err(invalid_request(
                &format!("part_ids[{n}]: `{part_id}` is listed twice"),
                Some("part_ids"),
            ));
        }
        let part = host.get_object(PARTS, part_id)?.ok_or_else(not_ours)?;
        if !part
            .metadata
            .iter()
            .any(|(k, v)| k == "upload_id" && v == id)
        {
            return Err(not_ours());
        }
        let stored: StoredPart = serde_json::from_str(&part.body)
            .map_err(|e| Error::Internal(format!("a stored part is unreadable: {e}")))?;
        blobs.push(stored.blob);
    }
    let joined = host.concat_blobs(&blobs)?;
    let refuse = |message: String, param: &str| {
        let _ = host.delete_blob(&joined.id);
        Err(invalid_request(&message, Some(param)))
    };
    if joined.bytes != upload.bytes {
        return refuse(
            format!(
                "The parts hold {} bytes; the upload was created for {}",
                joined.bytes, upload.bytes
            ),
            "part_ids",
        );
    }
    if let Some(md5) = &c.md5
        && !md5.eq_ignore_ascii_case(&joined.md5)
    {
        return refuse(
            format!("The parts' MD5 is {}, not {md5}", joined.md5),
            "md5",
        );
    }
    let problem = if needs_jsonl(&upload.purpose) {
        match check_jsonl(host, &joined.id, joined.bytes) {
            Ok(problem) => problem,
            Err(e) => {
                let _ = host.delete_blob(&joined.id);
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Some(problem) = problem {
        return refuse(
            format!(
                "The file is not valid JSONL for purpose '{}': {problem}",
                upload.purpose
            ),
            "part_ids",
        );
    }
    // The File's id comes from the upload's: a completion retried after a call that died
    // between keeping the File and marking the upload completed replaces that File.
    let file_id = format!("file-{}", id.trim_start_matches("upload_"));
    let file = files::save(
        host,
        Some(&file_id),
        &upload.filename,
        &upload.purpose,
        &joined,
        None,
    )?;
    upload.file = Some(file.clone());
    let done = match settle(host, &object, &upload, "completed") {
        Ok(o) => o,
        Err(e) => {
            // Someone else finished or cancelled it first: this File must not linger.
            if let Some(file_id) = file["id"].as_str() {
                let _ = host.delete_object(files::COLLECTION, file_id);
            }
            let _ = host.delete_blob(&joined.id);
            return Err(e);
        }
    };
    drop_parts(host, id)?;
    host.respond_json(200, &shown(&done, &upload, "completed"))
}

/// `POST /v1/uploads/{id}/cancel`.
pub fn cancel(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    let (object, upload, status) = load(host, id)?;
    pending(id, &status)?;
    let done = settle(host, &object, &upload, "cancelled")?;
    drop_parts(host, id)?;
    host.respond_json(200, &shown(&done, &upload, "cancelled"))
}
