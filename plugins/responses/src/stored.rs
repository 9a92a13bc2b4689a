//! Stored responses: one object per response in the `responses` collection (its `response`
//! object and its input items), so `previous_response_id` works across restarts and replicas.

use serde::{Deserialize, Serialize};

use cinder_sdk::host::Host;
use cinder_sdk::openai::responses::{OutputItem, Response};
use cinder_sdk::store::{Change, NewObject, Updated};
use cinder_sdk::{Error, ErrorDetail};

/// The store collection.
pub const COLLECTION: &str = "responses";

/// Responses followed back through `previous_response_id` at most, unless the plugin setting
/// `max_chain_responses` (1 to 100,000) says otherwise: a longer chain is a 400, so one request
/// cannot make the plugin read without end (an agent loop of many turns may need more).
pub const MAX_CHAIN: usize = 1024;

/// What is kept of a response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub response: Response,
    /// Its own input items (not those of the responses before it).
    pub input: Vec<OutputItem>,
}

/// `stored` as the store's object.
fn object(stored: &Stored) -> Result<NewObject, Error> {
    let body = serde_json::to_string(stored)
        .map_err(|e| Error::Internal(format!("serializing a response: {e}")))?;
    let metadata = stored
        .response
        .metadata
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(NewObject {
        id_prefix: "resp_".into(),
        status: Some(stored.response.status.clone()),
        metadata,
        body,
    })
}

/// Keeps `stored` under its response's id; returns the object's version.
pub fn save(host: &dyn Host, stored: &Stored) -> Result<i64, Error> {
    host.put_object(COLLECTION, &stored.response.id, &object(stored)?)
        .map(|o| o.version)
}

/// Replaces the stored response with `stored` if it is still at `version`: the new version,
/// or `None` when it moved on (a client cancelled it) or is gone.
pub fn update(host: &dyn Host, stored: &Stored, version: i64) -> Result<Option<i64>, Error> {
    let new = object(stored)?;
    let change = Change {
        status: new.status,
        metadata: new.metadata,
        body: new.body,
        expect_version: Some(version),
    };
    Ok(
        match host.update_object(COLLECTION, &stored.response.id, &change)? {
            Updated::Done(o) => Some(o.version),
            Updated::NotFound | Updated::Conflict(_) => None,
        },
    )
}

/// The stored response `id` and its object's version.
pub fn load_versioned(host: &dyn Host, id: &str) -> Result<Option<(Stored, i64)>, Error> {
    if !is_id(id) {
        return Ok(None);
    }
    let Some(object) = host.get_object(COLLECTION, id)? else {
        return Ok(None);
    };
    serde_json::from_str(&object.body)
        .map(|s| Some((s, object.version)))
        .map_err(|e| Error::Internal(format!("the stored response {id} is unreadable: {e}")))
}

/// The stored response `id`, if there is one (of the caller's).
pub fn load(host: &dyn Host, id: &str) -> Result<Option<Stored>, Error> {
    Ok(load_versioned(host, id)?.map(|(s, _)| s))
}

/// Whether `id` could be a response id (the store takes no other).
pub fn is_id(id: &str) -> bool {
    id.len() <= 128
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A 404 for a response that does not exist (or is another tenant's).
pub fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No response found with id '{id}'."),
        param: None,
        code: None,
    })
}

/// Every item of the chain that ends with the response `id` (inputs and outputs, oldest
/// first): what a response with `previous_response_id: id` continues.
pub fn context(host: &dyn Host, id: &str) -> Result<Vec<OutputItem>, Error> {
    let max = host
        .setting("max_chain_responses")
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=100_000).contains(n))
        .unwrap_or(MAX_CHAIN);
    let mut chain: Vec<Stored> = Vec::new();
    let mut next = Some(id.to_owned());
    while let Some(id) = next {
        if chain.len() == max {
            return Err(cinder_sdk::invalid_request(
                &format!("previous_response_id leads back through more than {max} responses"),
                Some("previous_response_id"),
            ));
        }
        let stored = load(host, &id)?.ok_or_else(|| {
            cinder_sdk::invalid_request(
                &format!("Previous response with id '{id}' not found."),
                Some("previous_response_id"),
            )
        })?;
        next = stored.response.previous_response_id.clone();
        chain.push(stored);
    }
    Ok(chain
        .into_iter()
        .rev()
        .flat_map(|s| s.input.into_iter().chain(s.response.output))
        .collect())
}
