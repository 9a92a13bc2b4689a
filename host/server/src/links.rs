//! `GET /links/{token}`: a blob a plugin shared (WIT `store.share-blob`, an image's `url`),
//! served by the host from the store with no API key until the link expires; an unknown or
//! expired token is a 404 in OpenAI's envelope.

use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::AppState;

pub async fn serve(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let found = match &s.store {
        Some(store) => store.shared_blob(&token).await,
        None => Ok(None),
    };
    match found {
        Ok(Some(shared)) => {
            let mut res = crate::sse::file_response(
                200,
                &shared.content_type,
                shared.blob.bytes,
                shared.file,
            );
            // Caches may keep it until the link expires, and no longer.
            let left = (shared.expires_at - cinder_store::now()).max(0);
            if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={left}")) {
                res.headers_mut()
                    .insert(axum::http::header::CACHE_CONTROL, v);
            }
            res
        }
        Ok(None) => ApiError::not_found("No such link, or it has expired", Some("link_not_found"))
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a shared blob");
            ApiError::internal("the store failed to read the link").into_response()
        }
    }
}

/// The URL links are made under for a request: `server.public_url`, else `http://` and the
/// request's `Host` (which the host check has already accepted).
pub fn public_url(configured: Option<&str>, headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(url) = configured {
        return Some(url.to_owned());
    }
    let host = headers
        .get(axum::http::header::HOST)?
        .to_str()
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))?;
    Some(format!("http://{host}"))
}
