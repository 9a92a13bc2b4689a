//! Stored responses: one object per response in the `responses` collection (its `response`
//! object and its input items), so `previous_response_id` works across restarts and replicas.

use serde::{Deserialize, Serialize};

use cinder_sdk::host::Host;
use cinder_sdk::openai::responses::{OutputItem, Response};
use cinder_sdk::store::NewObject;
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

/// Keeps `stored` under its response's id.
pub fn save(host: &dyn Host, stored: &Stored) -> Result<(), Error> {
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
    let new = NewObject {
        id_prefix: "resp_".into(),
        status: Some(stored.response.status.clone()),
        metadata,
        body,
    };
    host.put_object(COLLECTION, &stored.response.id, &new)
        .map(drop)
}

/// The stored response `id`, if there is one (of the caller's).
pub fn load(host: &dyn Host, id: &str) -> Result<Option<Stored>, Error> {
    if !is_id(id) {
        return Ok(None);
    }
    let Some(object) = host.get_object(COLLECTION, id)? else {
        return Ok(None);
    };
    serde_json::from_str(&object.body)
        .map(Some)
        .map_err(|e| Error::Internal(format!("the stored response {id} is unreadable: {e}")))
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
