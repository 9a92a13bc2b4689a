//! `/v1/files`: upload (multipart, streamed into a blob), list, retrieve, content, delete.
//! The record a file is stored as is the SDK's (`cinder_sdk::files`), shared with the families
//! that read and write files.

pub use cinder_sdk::files::{COLLECTION, StoredFile, load, save, shown};
use cinder_sdk::files::{expired, not_found, read};
use cinder_sdk::host::{JobHost, StoreHost};
use cinder_sdk::{Error, invalid_request};
use serde_json::json;

use crate::expiry::{self, Due};
use crate::{form, listing, needs_jsonl, purpose};

const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 10_000;
const MAX_FILENAME: usize = 512;
/// `expires_after[seconds]`: one hour to thirty days, as OpenAI allows.
const EXPIRY_SECONDS: std::ops::RangeInclusive<i64> = 3_600..=2_592_000;

fn now() -> i64 {
    cinder_sdk::unix_time() as i64
}

/// `expires_after[anchor]` and `expires_after[seconds]` as an expiry time.
fn expiry(anchor: Option<String>, seconds: Option<String>) -> Result<Option<i64>, Error> {
    match (anchor, seconds) {
        (None, None) => Ok(None),
        (Some(anchor), Some(seconds)) => {
            if anchor != "created_at" {
                return Err(invalid_request(
                    "expires_after.anchor must be 'created_at'",
                    Some("expires_after.anchor"),
                ));
            }
            let seconds = seconds
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|s| EXPIRY_SECONDS.contains(s))
                .ok_or_else(|| {
                    invalid_request(
                        "expires_after.seconds must be between 3600 (1 hour) and 2592000 (30 days)",
                        Some("expires_after.seconds"),
                    )
                })?;
            Ok(Some(now() + seconds))
        }
        (None, Some(_)) => Err(invalid_request(
            "Missing required parameter: 'expires_after.anchor'",
            Some("expires_after.anchor"),
        )),
        (Some(_), None) => Err(invalid_request(
            "Missing required parameter: 'expires_after.seconds'",
            Some("expires_after.seconds"),
        )),
    }
}

/// `POST /v1/files` (multipart: `file`, `purpose`, optional `expires_after`).
pub fn create(host: &dyn JobHost) -> Result<(), Error> {
    let (mut purpose_text, mut anchor, mut seconds, mut file) = (None, None, None, None);
    while let Some(part) = host.next_part()? {
        match part.name.as_str() {
            "purpose" => purpose_text = Some(form::text(host, "purpose", 64)?),
            "expires_after[anchor]" => anchor = Some(form::text(host, "expires_after.anchor", 64)?),
            "expires_after[seconds]" => {
                seconds = Some(form::text(host, "expires_after.seconds", 32)?)
            }
            "file" => {
                if file.is_some() {
                    return Err(invalid_request("Send one `file` per request", Some("file")));
                }
                let filename = part.filename.filter(|f| !f.is_empty()).ok_or_else(|| {
                    invalid_request("The `file` part has no filename", Some("file"))
                })?;
                if filename.len() > MAX_FILENAME {
                    return Err(invalid_request(
                        &format!("The filename is longer than {MAX_FILENAME} bytes"),
                        Some("file"),
                    ));
                }
                // The SDKs send `purpose` first; a form that does not is checked as JSONL in
                // case its purpose turns out to need it.
                let jsonl = purpose_text.as_deref().is_none_or(needs_jsonl);
                file = Some((filename, form::stream(host, "file", None, jsonl)?));
            }
            // Fields OpenAI may add later are skipped, not refused.
            _ => {}
        }
    }
    let (filename, streamed) =
        file.ok_or_else(|| invalid_request("Missing required parameter: 'file'", Some("file")))?;
    let purpose = purpose(&purpose_text.ok_or_else(|| {
        invalid_request("Missing required parameter: 'purpose'", Some("purpose"))
    })?)?;
    let expires_at = expiry(anchor, seconds)?;
    if streamed.bytes == 0 {
        return Err(invalid_request("The file is empty", Some("file")));
    }
    if needs_jsonl(&purpose)
        && let Err(problem) = streamed.lines.finish()
    {
        return Err(invalid_request(
            &format!("The file is not valid JSONL for purpose '{purpose}': {problem}"),
            Some("file"),
        ));
    }
    let blob = streamed.writer.finish()?;
    let shown = save(host, None, &filename, &purpose, &blob, expires_at)?;
    if let (Some(at), Some(id)) = (expires_at, shown["id"].as_str())
        && let Err(e) = expiry::schedule(host, &Due::File(id.to_owned()), at)
    {
        // A file that would never be removed on time is not kept.
        let _ = host.delete_object(COLLECTION, id);
        let _ = host.delete_blob(&blob.id);
        return Err(e);
    }
    host.respond_json(200, &shown)
}

/// `GET /v1/files` (`purpose`, `limit`, `order`, `after`).
pub fn list(host: &dyn StoreHost, request: &cinder_sdk::Request) -> Result<(), Error> {
    let pairs = request.query();
    let mut q = listing::query(&pairs, DEFAULT_LIMIT, MAX_LIMIT)?;
    if let Some((_, p)) = pairs.iter().find(|(k, _)| k == "purpose") {
        let p = if cinder_sdk::files::MADE_PURPOSES.contains(&p.as_str()) {
            p.clone()
        } else {
            purpose(p)?
        };
        q.metadata = vec![("purpose".into(), p)];
    }
    let want = q.limit as usize;
    // Expired files are skipped as they are met and removed after the listing (removing one
    // before the next page is read would pull the cursor from under it).
    let mut data = Vec::new();
    let mut expired_files = Vec::new();
    let mut has_more = false;
    'pages: loop {
        let page = host.list_objects(COLLECTION, &q)?;
        for object in &page.objects {
            q.after = Some(object.id.clone());
            let file = read(object)?;
            if file.expires_at.is_some_and(|t| t <= now()) {
                expired_files.push((object.clone(), file));
                continue;
            }
            if data.len() == want {
                has_more = true;
                break 'pages;
            }
            data.push(shown(object, &file));
        }
        if !page.has_more {
            break;
        }
        if data.len() == want {
            has_more = true;
            break;
        }
    }
    for (object, file) in &expired_files {
        expired(host, object, file)?;
    }
    host.respond_json(200, &listing::body(data, has_more))
}

/// `GET /v1/files/{id}`.
pub fn retrieve(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    let (object, file) = load(host, id)?;
    host.respond_json(200, &shown(&object, &file))
}

/// `GET /v1/files/{id}/content`: the bytes, streamed by the host from the blob.
pub fn content(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    let (_, file) = load(host, id)?;
    host.send_blob(&file.blob, "application/octet-stream")
        .map_err(|e| match e {
            // Deleted by another request a moment ago.
            Error::NotFound(_) => not_found(id),
            other => other,
        })
}

/// `DELETE /v1/files/{id}`.
pub fn delete(host: &dyn StoreHost, id: &str) -> Result<(), Error> {
    let (object, file) = load(host, id)?;
    host.delete_object(COLLECTION, &object.id)?;
    host.delete_blob(&file.blob)?;
    host.respond_json(
        200,
        &json!({"id": object.id, "object": "file", "deleted": true}),
    )
}
