//! `ApiError`: the one way the HTTP edge answers with an error, always in OpenAI's envelope.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cinder_openai::ErrorBody;
use cinder_runtime::{BodyFailure, CallError, Detail, PluginError};

/// An HTTP error status with OpenAI's error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds a refused client should wait (`Retry-After`), when the refusal says.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &str,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            retry_after: None,
            body: ErrorBody::new(
                kind,
                message,
                param.map(str::to_owned),
                code.map(str::to_owned),
            ),
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            param,
            None,
        )
    }

    pub fn not_found(message: impl Into<String>, code: Option<&str>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            message,
            None,
            code,
        )
    }

    pub fn model_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{id}` does not exist"),
            Some("model"),
            Some("model_not_found"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            message,
            None,
            None,
        )
    }

    /// A plugin call's failure as HTTP: the one place a runtime failure gets a status.
    pub fn from_call(e: &CallError) -> Self {
        let message = e.to_string();
        let server =
            |status, code: Option<&str>| Self::new(status, "server_error", &message, None, code);
        match e {
            CallError::Plugin(p) => Self::from_plugin(p),
            CallError::QueueFull { retry_after } => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    &message,
                    None,
                    Some("rate_limit_exceeded"),
                );
                e.retry_after = Some(retry_after.as_secs().max(1));
                e
            }
            CallError::Timeout(_) | CallError::Idle(_) => {
                server(StatusCode::GATEWAY_TIMEOUT, Some("timeout"))
            }
            CallError::NoResponse | CallError::OutOfFuel { .. } | CallError::Trapped { .. } => {
                server(StatusCode::INTERNAL_SERVER_ERROR, None)
            }
            CallError::Body(failure) => {
                let (status, code) = match failure {
                    BodyFailure::TooLarge { .. } => {
                        (StatusCode::PAYLOAD_TOO_LARGE, Some("request_too_large"))
                    }
                    BodyFailure::TimedOut(_) => {
                        (StatusCode::REQUEST_TIMEOUT, Some("request_timeout"))
                    }
                    BodyFailure::Malformed(_) => (StatusCode::BAD_REQUEST, None),
                };
                Self::new(status, "invalid_request_error", &message, None, code)
            }
        }
    }

    /// What a plugin returned through the WIT's error variant: each case is one OpenAI error
    /// type and status.
    fn from_plugin(e: &PluginError) -> Self {
        let with = |status, d: &Detail| {
            let (param, code) = (d.param.as_deref(), d.code.as_deref());
            Self::new(status, "invalid_request_error", &d.message, param, code)
        };
        match e {
            PluginError::InvalidRequest(d) => with(StatusCode::BAD_REQUEST, d),
            PluginError::NotFound(d) => with(StatusCode::NOT_FOUND, d),
            PluginError::RateLimited(m) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                m,
                None,
                Some("rate_limit_exceeded"),
            ),
            PluginError::Unavailable(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                m,
                None,
                Some("service_unavailable"),
            ),
            PluginError::Internal(m) => Self::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.body.error.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.body.error.message, "client error");
        }
        let mut res = (self.status, self.body.to_json()).into_response();
        res.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        res
    }
}

/// Every error answer carries OpenAI's envelope as JSON: an error response that is not JSON
/// (one axum or a layer made, with an empty or plain-text body) gets the envelope, with its
/// status and a message from its reason phrase and body.
pub async fn envelope_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = if text.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {text}")
    };
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let mut fixed = ApiError::new(status, kind, message, None, None).into_response();
    // Keep what the original said besides its body (`Allow`, `Retry-After`, CORS).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn status_of(e: CallError) -> (u16, ErrorBody, Option<u64>) {
        let api = ApiError::from_call(&e);
        (api.status.as_u16(), api.body, api.retry_after)
    }

    #[test]
    fn each_call_failure_has_one_status_and_envelope() {
        let detail = Detail {
            message: "bad".into(),
            param: Some("messages".into()),
            code: Some("context_length_exceeded".into()),
        };
        let (status, body, _) = status_of(PluginError::InvalidRequest(detail.clone()).into());
        assert_eq!(
            (status, body.error.kind.as_str()),
            (400, "invalid_request_error")
        );
        assert_eq!(body.error.param.as_deref(), Some("messages"));
        assert_eq!(body.error.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(status_of(PluginError::NotFound(detail).into()).0, 404);
        let (status, body, _) = status_of(PluginError::RateLimited("later".into()).into());
        assert_eq!(
            (status, body.error.kind.as_str()),
            (429, "rate_limit_error")
        );
        let (status, body, _) = status_of(PluginError::Unavailable("not built".into()).into());
        assert_eq!(status, 503);
        assert_eq!(body.error.code.as_deref(), Some("service_unavailable"));
        assert_eq!(status_of(PluginError::Internal("bug".into()).into()).0, 500);

        let (status, body, retry) = status_of(CallError::QueueFull {
            retry_after: Duration::from_millis(200),
        });
        assert_eq!(
            (status, retry),
            (429, Some(1)),
            "Retry-After is whole seconds, at least 1"
        );
        assert_eq!(body.error.code.as_deref(), Some("rate_limit_exceeded"));
        let (status, body, _) = status_of(CallError::Timeout(Duration::from_secs(3)));
        assert_eq!(status, 504);
        assert!(body.error.message.contains("longer than 3 s"), "{body:?}");
        assert_eq!(status_of(CallError::Idle(Duration::from_secs(1))).0, 504);
        assert_eq!(status_of(CallError::NoResponse).0, 500);
        let (status, body, _) = status_of(CallError::OutOfFuel { plugin: "p".into() });
        assert_eq!((status, body.error.kind.as_str()), (500, "server_error"));
        assert!(body.error.message.contains("CPU budget"), "{body:?}");
    }
}
