//! CORS for browser clients (the JS SDK with `dangerouslyAllowBrowser`, web UIs on another
//! port). Preflights are answered here, before the key check, since browsers never send
//! credentials on them; every other response to an allowed origin, SSE streams included,
//! carries the allow-origin header.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::routes::AppState;

/// Request headers a browser may send: what the OpenAI SDKs and curl-like tools use.
fn header_allowed(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "content-type" | "accept" | "x-request-id"
    ) || name.starts_with("openai-")
        || name.starts_with("x-stainless-")
}

use crate::guard::origin_allowed;

fn allow_origin(headers: &mut HeaderMap, origin: &HeaderValue) {
    // The origin is mirrored rather than `*`, so requests made with credentials work too.
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

pub async fn cors(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| origin_allowed(&s.settings.load().cors_origins, o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            // No allow headers: the browser refuses the real request.
            return StatusCode::NO_CONTENT.into_response();
        }
        let requested = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let headers: Vec<&str> = requested
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty() && header_allowed(h))
            .collect();
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        allow_origin(h, &origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        if let Ok(v) = HeaderValue::from_str(&headers.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return res;
    }
    let mut res = next.run(req).await;
    if allowed {
        let h = res.headers_mut();
        allow_origin(h, &origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-cinder-plugin, x-cinder-uses, retry-after"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_headers_and_origins() {
        for h in [
            "Authorization",
            "content-type",
            "OpenAI-Organization",
            "x-stainless-os",
        ] {
            assert!(header_allowed(h), "{h}");
        }
        assert!(!header_allowed("cookie"));
        let origins = vec!["http://localhost:3000".to_string()];
        assert!(origin_allowed(&origins, "http://localhost:3000"));
        assert!(!origin_allowed(&origins, "http://evil.example"));
        assert!(origin_allowed(&["*".to_string()], "http://anything"));
    }
}
