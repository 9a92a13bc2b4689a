//! API keys: with `server.api_keys` set, every route but `/health` and the links to blobs
//! (`/links/{token}`, whose unguessable token is their key) needs one, and the key a request
//! carries decides whose stored objects it sees.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::{AppState, Settings, normalised};

/// Compares in time independent of where the strings differ, so keys cannot be guessed
/// byte by byte from response times.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key in `Authorization: Bearer <key>`, if any.
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether the request carries one of the configured keys (`Authorization: Bearer <key>`).
fn key_given(settings: &Settings, req: &Request) -> Option<bool> {
    let given = bearer(req)?;
    Some(
        settings
            .api_keys
            .iter()
            .any(|k| same_key(k.as_bytes(), given.as_bytes())),
    )
}

/// Marks a request that presented a valid key (or needed none), for `/health`'s details.
#[derive(Clone, Copy)]
pub struct Trusted(pub bool);

/// Whom the stored objects a request creates belong to, and whose it may see.
#[derive(Clone)]
pub struct Owner(pub String);

/// A key's owner id: a hash, so the key itself is never written next to what it stored, and
/// a key removed from the config and later added back finds its objects again.
fn owner_of(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

/// With `server.api_keys` set, every route but `/health` needs `Authorization: Bearer <one
/// of them>`: plugin routes outside `/v1/` too.
pub async fn require_key(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let settings = s.settings.load();
    let given = key_given(&settings, &req);
    let trusted = settings.api_keys.is_empty() || given == Some(true);
    req.extensions_mut().insert(Trusted(trusted));
    let owner = match bearer(&req) {
        Some(key) if !settings.api_keys.is_empty() && trusted => owner_of(key),
        _ => cinder_runtime::LOCAL_OWNER.to_owned(),
    };
    req.extensions_mut().insert(Owner(owner));
    // A link's token is its key (an image's `url` is fetched as OpenAI's are, with none).
    let path = normalised(req.uri().path());
    let link = path
        .strip_prefix("/links/")
        .is_some_and(|token| !token.contains('/'));
    if trusted || path == "/health" || link {
        return next.run(req).await;
    }
    let message = match given {
        Some(_) => "Incorrect API key provided.",
        None => "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
    };
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        message,
        None,
        Some("invalid_api_key"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(same_key(b"abc", b"abc"));
        assert!(!same_key(b"abc", b"abd"));
        assert!(!same_key(b"abc", b"abcd"));
    }

    #[test]
    fn owners_are_stable_and_distinct_and_hide_the_key() {
        assert_eq!(owner_of("sk-one"), owner_of("sk-one"));
        assert_ne!(owner_of("sk-one"), owner_of("sk-two"));
        assert!(!owner_of("sk-one").contains("sk-one"));
        assert_ne!(owner_of("local"), cinder_runtime::LOCAL_OWNER);
    }
}
