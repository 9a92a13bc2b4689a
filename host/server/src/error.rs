//! `ApiError`: the one way the HTTP edge answers with an error, always in OpenAI's envelope.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cinder_openai::ErrorBody;

/// An HTTP error status with OpenAI's error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
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

    pub fn from_parts(status: u16, body: ErrorBody) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
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
