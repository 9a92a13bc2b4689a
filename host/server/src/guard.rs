//! What a web page the user happens to open cannot do to a local server.
//!
//! A browser lets any page send "simple" requests (no preflight) to any address, and a DNS
//! rebinding attack makes a page's own host name resolve to 127.0.0.1. So, before a request
//! reaches a route:
//! - **Host**: a server bound to a loopback address answers only requests whose `Host` is a
//!   loopback name (`localhost`, `127.0.0.1`, `[::1]`, any port) or one listed in
//!   `server.allowed_hosts` (for a reverse proxy; `*` turns the check off). 403 otherwise.
//! - **Origin**: a request from a browser origin CORS does not allow (`server.cors_origins`,
//!   loopback origins by default) may not change anything: anything but GET/HEAD/OPTIONS is a
//!   403, not merely a response the page cannot read.
//! - **Content type**: a POST/PUT/PATCH body must be `application/json` (or
//!   `multipart/form-data`, for uploads): a `text/plain` body is what a page sends without a
//!   preflight. 415 otherwise.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::AppState;

/// Whether `origin` matches one of `patterns`: `*`, an exact origin, or an origin whose port
/// is `*` (`http://localhost:*` matches `http://localhost:5173` and `http://localhost`).
pub fn origin_allowed(patterns: &[String], origin: &str) -> bool {
    patterns.iter().any(|p| {
        if p == "*" || p == origin {
            return true;
        }
        let Some(base) = p.strip_suffix(":*") else {
            return false;
        };
        match origin.strip_prefix(base) {
            Some("") => true,
            Some(port) => port
                .strip_prefix(':')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        }
    })
}

/// The host name of a `Host` header value, without its port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether `name` (a bind address or a `Host` name) is this machine's loopback.
pub fn is_loopback(name: &str) -> bool {
    let name = host_name(name).trim_end_matches('.');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A request with no `Host` (HTTP/1.0, in-process tests) is not a browser's: browsers always
/// send one.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    host.is_empty()
        || is_loopback(host)
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(host_name(host)))
}

/// Whether the request carries a body (a declared length above zero, or a chunked one).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

fn json_or_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| t == "application/json" || t == "multipart/form-data")
}

fn refuse(status: StatusCode, message: String, code: &str) -> Response {
    ApiError::new(status, "invalid_request_error", message, None, Some(code)).into_response()
}

pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let settings = s.settings.load();
    if s.bound_loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !host_allowed(&settings.allowed_hosts, host) {
            tracing::warn!(host, "request for a foreign Host refused");
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "This server answers only for localhost; `{host}` is not allowed (server.allowed_hosts)"
                ),
                "host_not_allowed",
            );
        }
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(&settings.cors_origins, origin) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Requests from the origin `{origin}` are not allowed (server.cors_origins)"
                ),
                "origin_not_allowed",
            );
        }
    }
    let writes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if writes && has_body(req.headers()) && !json_or_form(req.headers()) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The request body must be sent as `Content-Type: application/json`".into(),
            "unsupported_media_type",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_port_wildcard() {
        let defaults = cinder_config::loopback_origins();
        for ok in [
            "http://localhost:5173",
            "http://localhost",
            "http://127.0.0.1:8080",
            "https://[::1]:3000",
        ] {
            assert!(origin_allowed(&defaults, ok), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://localhost:80.evil.example",
            "http://127.0.0.1.nip.io:80",
            "null",
        ] {
            assert!(!origin_allowed(&defaults, bad), "{bad}");
        }
        assert!(origin_allowed(&["*".into()], "http://anything"));
        assert!(origin_allowed(
            &["https://app.example".into()],
            "https://app.example"
        ));
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9",
            "[::1]:8080",
            "LOCALHOST.",
            "127.3.4.5",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1",
            "0.0.0.0",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback(bad), "{bad}");
        }
        assert!(host_allowed(&["cinder.lan".into()], "cinder.lan:8080"));
        assert!(host_allowed(&["*".into()], "anything"));
        assert!(!host_allowed(&[], "rebind.evil.example:8080"));
        assert!(host_allowed(&[], ""));
    }
}
