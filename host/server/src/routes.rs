//! The router: host-owned routes (`/v1/models`, `/health`) and everything else dispatched to
//! the plugin that owns the route.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cinder_core::ModelRegistry;
use cinder_openai::models::{Model, ModelList};
use cinder_runtime::{PluginRequest, RouteMatch, Runtime};
use tracing::Instrument;

use crate::error::ApiError;
use crate::sse::respond;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    pub runtime: Arc<Runtime>,
    pub max_body_bytes: usize,
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One `request{id, method, path}` span per request; the id also goes to plugins.
async fn request_span(mut req: Request, next: Next) -> Response {
    let id = format!(
        "{:x}{:06x}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    req.extensions_mut().insert(RequestId(id));
    next.run(req).instrument(span).await
}

#[derive(Clone)]
struct RequestId(String);

async fn health(State(s): State<AppState>) -> Response {
    let plugins: Vec<_> = s
        .runtime
        .plugins()
        .into_iter()
        .map(|p| serde_json::json!({"id": p.id, "version": p.version, "wit": p.wit_version, "routes": p.routes}))
        .collect();
    let models: Vec<_> = s.models.iter().map(|m| m.info.id.clone()).collect();
    axum::Json(serde_json::json!({"status": "ok", "models": models, "plugins": plugins}))
        .into_response()
}

fn model_object(m: &cinder_core::LoadedModel) -> Model {
    Model::new(m.info.id.clone(), m.info.created)
}

async fn list_models(State(s): State<AppState>) -> Response {
    axum::Json(ModelList::new(
        s.models.iter().map(|m| model_object(m)).collect(),
    ))
    .into_response()
}

async fn get_model(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let m = s
        .models
        .get(&id)
        .map_err(|_| ApiError::model_not_found(&id))?;
    Ok(axum::Json(model_object(m)).into_response())
}

/// Every other route: find the plugin that owns it and hand it the request.
async fn dispatch(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let path = uri.path().to_owned();
    let plugin = match s.runtime.route(method.as_str(), &path) {
        RouteMatch::Found(p) => p,
        RouteMatch::MethodNotAllowed => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                format!("{method} is not allowed on {path}"),
                None,
                Some("method_not_allowed"),
            ));
        }
        RouteMatch::NotFound => {
            return Err(ApiError::not_found(
                format!("Unknown request URL: {method} {path}"),
                Some("unknown_url"),
            ));
        }
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "The request body is larger than the limit of {} bytes",
                    s.max_body_bytes
                ),
                None,
                Some("request_too_large"),
            )
        } else {
            ApiError::bad_request(format!("Could not read the request body: {e}"), None)
        }
    })?;
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("The request body is not valid UTF-8", None))?;
    let outputs = s.runtime.call(
        plugin,
        PluginRequest {
            method: method.to_string(),
            path,
            body,
            request_id,
        },
    );
    respond(outputs).await
}
