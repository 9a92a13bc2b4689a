//! The router: host-owned routes (`/v1/models`, `/health`) and everything else dispatched to
//! the plugin that owns the route.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cinder_core::ModelRegistry;
use cinder_openai::models::{Model, ModelList};
use cinder_runtime::{BodyFailure, CallError, Multipart, PluginRequest, RouteMatch, Runtime};
use tracing::Instrument;

use crate::error::ApiError;
use crate::sse::respond;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    pub runtime: Arc<Runtime>,
    /// The store, for the links to blobs the host serves itself (`/links/{token}`); none in
    /// unit tests of the router.
    pub store: Option<cinder_store::Store>,
    /// The settings a config edit changes while serving.
    pub settings: Arc<ArcSwap<Settings>>,
    /// The server listens on a loopback address only: `Host` must name this machine.
    pub bound_loopback: bool,
}

/// The part of the config the HTTP edge reads on every request.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// Largest file a multipart body may carry (`limits.max_file_bytes`).
    pub max_file_bytes: u64,
    /// Accepted bearer keys; empty: none required.
    pub api_keys: Vec<String>,
    /// Browser origins allowed by CORS; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Host names answered besides loopback ones when bound to loopback.
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request body.
    pub body_read_timeout: std::time::Duration,
    /// The URL clients reach this server at (`server.public_url`), for links.
    pub public_url: Option<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health).fallback(host_method_not_allowed))
        .route("/health/", get(health).fallback(host_method_not_allowed))
        .route(
            "/v1/models",
            get(list_models).fallback(host_method_not_allowed),
        )
        .route(
            "/v1/models/",
            get(list_models).fallback(host_method_not_allowed),
        )
        .route(
            "/v1/models/{*id}",
            get(get_model).fallback(host_method_not_allowed),
        )
        .route(
            "/links/{token}",
            get(crate::links::serve).fallback(host_method_not_allowed),
        )
        .fallback(dispatch)
        // Inside the span and the key check: what they answer is already in the envelope.
        .layer(middleware::from_fn(crate::error::envelope_errors))
        // `dispatch` enforces the live `server.max_body_bytes` itself.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ))
        // Outside the key check: preflights carry no credentials.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cors::cors,
        ))
        // Before CORS answers anything: a foreign Host or origin, or a body that is not JSON.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One `request{id, method, path}` span per request; the id also goes to plugins.
async fn request_span(mut req: Request, next: Next) -> Response {
    // Unique across restarts too: stored completions keep their ids on disk.
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    });
    let id = format!(
        "{started:x}{:x}{:06x}",
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

/// Status, models and plugin ids for anyone; plugin folders and why one was refused only with
/// a key when keys are configured (they name paths on this machine).
async fn health(
    State(s): State<AppState>,
    trusted: Option<axum::Extension<crate::auth::Trusted>>,
) -> Response {
    let trusted = trusted.is_some_and(|t| t.0.0);
    let plugins: Vec<_> = s
        .runtime
        .plugins()
        .into_iter()
        .map(|p| serde_json::json!({"id": p.id, "version": p.version, "wit": p.wit_version, "routes": p.routes, "world": p.world, "exports": p.exports}))
        .collect();
    // Plugin folders refused at the last load; their previous versions (if any) still serve.
    let failures: Vec<_> = s
        .runtime
        .failures()
        .into_iter()
        .map(|(path, reason)| serde_json::json!({"path": path, "reason": reason}))
        .collect();
    let models: Vec<_> = s.models.ids().collect();
    if !trusted {
        let ids: Vec<_> = s.runtime.plugins().into_iter().map(|p| p.id).collect();
        return axum::Json(serde_json::json!({
            "status": "ok",
            "models": models,
            "plugins": ids,
            "plugin_failures": failures.len(),
        }))
        .into_response();
    }
    axum::Json(serde_json::json!({
        "status": "ok",
        "models": models,
        "plugins": plugins,
        "plugin_failures": failures,
    }))
    .into_response()
}

/// Ids first, in config order, then aliases: OpenAI tools look for names such as
/// `gpt-4o-mini` in this list before they use them.
async fn list_models(
    State(s): State<AppState>,
    axum::Extension(crate::auth::Owner(owner)): axum::Extension<crate::auth::Owner>,
) -> Response {
    let mut data: Vec<Model> = s
        .models
        .ids()
        .filter_map(|id| Some(Model::new(id, s.models.created(id)?)))
        .collect();
    for (alias, id) in s.models.aliases() {
        if let Some(created) = s.models.created(&id) {
            data.push(Model::new(alias, created));
        }
    }
    // Adapters last: the config's, and the caller's own fine-tuned models.
    for a in s.models.adapters_for(&owner) {
        data.push(adapter_model(&a));
    }
    axum::Json(ModelList::new(data)).into_response()
}

/// An adapter as OpenAI's `Model`: a tenant's is owned by them.
fn adapter_model(a: &cinder_core::AdapterModel) -> Model {
    let mut m = Model::new(a.info.id.clone(), a.info.created);
    if let Some(owner) = &a.owner {
        m.owned_by = owner.clone();
    }
    m
}

async fn get_model(
    State(s): State<AppState>,
    axum::Extension(crate::auth::Owner(owner)): axum::Extension<crate::auth::Owner>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = normalised(&id).trim_start_matches('/').to_owned();
    if let Some(a) = s.models.adapter(&id, &owner) {
        return Ok(axum::Json(adapter_model(&a)).into_response());
    }
    // Resolved once (any case, aliases); `created` then looks the exact id up.
    let canonical = s
        .models
        .canonical(&id)
        .ok_or_else(|| ApiError::model_not_found(&id))?;
    let created = s
        .models
        .created(&canonical)
        .ok_or_else(|| ApiError::model_not_found(&id))?;
    // Under the name asked for when it is an alias, else under the id as listed (the name
    // may differ from it in case).
    let name = if canonical.eq_ignore_ascii_case(&id) {
        canonical
    } else {
        id
    };
    Ok(axum::Json(Model::new(name, created)).into_response())
}

/// A host route asked with a method it does not serve (`POST /v1/models`).
async fn host_method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{method} is not allowed on {}", uri.path()),
        None,
        Some("method_not_allowed"),
    )
}

/// `path` without trailing slashes (`/v1/completions/` is `/v1/completions`), so the route
/// table and the plugin see one spelling of it.
pub(crate) fn normalised(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// Every other route: find the plugin that owns it and hand it the request.
async fn dispatch(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    axum::Extension(crate::auth::Owner(owner)): axum::Extension<crate::auth::Owner>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let path = normalised(uri.path()).to_owned();
    let (plugin, route) = match s.runtime.route(method.as_str(), &path) {
        RouteMatch::Found(p, route) => (p, route),
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
    let (limit, file_limit, read_timeout, public_url) = {
        let settings = s.settings.load();
        (
            settings.max_body_bytes,
            settings.max_file_bytes,
            settings.body_read_timeout,
            crate::links::public_url(settings.public_url.as_deref(), &headers),
        )
    };
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, multipart) = if route.body.reads_form(content_type) {
        let form = crate::multipart::Form::new(body, content_type, file_limit, read_timeout)
            .map_err(|m| ApiError::bad_request(m, None))?;
        (String::new(), Some(Multipart::new(Box::new(form))))
    } else {
        (read_body(body, limit, read_timeout).await?, None)
    };
    // Which plugin build answered: operators and tests can see a hot swap take effect.
    let served_by = axum::http::HeaderValue::from_str(&format!(
        "{}@{}",
        plugin.info().id,
        plugin.info().version
    ))
    .ok();
    // Plugins get the query string too (list endpoints take `limit`, `after`, filters).
    let path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let outputs = s.runtime.call(
        plugin,
        PluginRequest {
            method: method.to_string(),
            path,
            body,
            request_id,
            route: Some(route),
            owner,
            multipart,
            background: false,
            public_url,
        },
    );
    let mut res = respond(outputs)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if let Some(v) = served_by {
        res.headers_mut().insert("x-cinder-plugin", v);
    }
    if res.status() == StatusCode::TOO_MANY_REQUESTS {
        // The SDKs honour it: they wait this long before their retry.
        res.headers_mut()
            .entry(axum::http::header::RETRY_AFTER)
            .or_insert(axum::http::HeaderValue::from_static("1"));
    }
    Ok(res)
}

/// A JSON route's body, whole, as text: at most `limit` bytes, within `read_timeout`.
async fn read_body(
    body: Body,
    limit: usize,
    read_timeout: std::time::Duration,
) -> Result<String, ApiError> {
    let body = tokio::time::timeout(read_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::from_call(&CallError::Body(BodyFailure::TimedOut(read_timeout))))?
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::from_call(&CallError::Body(BodyFailure::TooLarge {
                    limit: limit as u64,
                }))
            } else {
                ApiError::bad_request(format!("Could not read the request body: {e}"), None)
            }
        })?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("The request body is not valid UTF-8", None))
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;

    fn app(keys: &[&str]) -> Router {
        let models = Arc::new(ModelRegistry::default());
        let limits = cinder_runtime::Limits {
            memory_bytes: 16 << 20,
            cpu_ms: 100,
            timeout: std::time::Duration::from_secs(5),
            idle_timeout: std::time::Duration::from_secs(5),
            max_instances: 2,
            max_queued: 8,
            max_file_bytes: 4096,
        };
        let runtime = Runtime::new(models.clone(), limits, None).unwrap();
        router(AppState {
            models,
            runtime,
            store: None,
            settings: Arc::new(ArcSwap::from_pointee(Settings {
                max_body_bytes: 1024,
                max_file_bytes: 4096,
                api_keys: keys.iter().map(|k| k.to_string()).collect(),
                cors_origins: vec!["http://app.example".into()],
                allowed_hosts: Vec::new(),
                body_read_timeout: std::time::Duration::from_secs(5),
                public_url: None,
            })),
            bound_loopback: true,
        })
    }

    async fn get(app: Router, path: &str, key: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = HttpRequest::get(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn assert_envelope(v: &serde_json::Value, code: &str) {
        let e = &v["error"];
        for k in ["message", "type", "param", "code"] {
            assert!(e.get(k).is_some(), "missing {k} in {v}");
        }
        assert_eq!(e["code"], code);
    }

    #[tokio::test]
    async fn keys_guard_v1_but_not_health() {
        let (status, body) = get(app(&["sk-right"]), "/v1/models", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_envelope(&body, "invalid_api_key");
        let (status, _) = get(app(&["sk-right"]), "/v1/models", Some("sk-wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = get(app(&["sk-right"]), "/v1/models", Some("sk-right")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["object"], "list");
        let (status, body) = get(app(&["sk-right"]), "/health", None).await;
        assert_eq!(status, StatusCode::OK);
        // Without the key: no folder paths, only how many plugins were refused.
        assert_eq!(body["plugin_failures"], 0);
        let (_, body) = get(app(&["sk-right"]), "/health", Some("sk-right")).await;
        assert!(body["plugin_failures"].is_array(), "{body}");
        // Plugin routes outside /v1/ are guarded too.
        let (status, body) = get(app(&["sk-right"]), "/test/anything", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_envelope(&body, "invalid_api_key");
    }

    async fn send(
        app: Router,
        method: &str,
        path: &str,
    ) -> (StatusCode, String, serde_json::Value) {
        let req = HttpRequest::builder()
            .method(method)
            .uri(path)
            .body(Body::from("{}"))
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (
            status,
            ct,
            serde_json::from_slice(&body).expect("a JSON body"),
        )
    }

    #[tokio::test]
    async fn links_need_no_key_and_an_unknown_one_is_a_404_envelope() {
        let (status, body) = get(app(&["sk-right"]), "/links/link-nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_envelope(&body, "link_not_found");
        let (status, _, _) = send(app(&[]), "POST", "/links/link-nope").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        for other in ["/linksx/a", "/links/a/../../v1/models"] {
            let (status, _) = get(app(&["sk-right"]), other, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}");
        }
    }

    #[tokio::test]
    async fn wrong_methods_on_host_routes_are_405_envelopes() {
        for (method, path) in [
            ("POST", "/v1/models"),
            ("POST", "/health"),
            ("DELETE", "/v1/models/some-model"),
            ("PUT", "/v1/models/"),
        ] {
            let (status, ct, body) = send(app(&[]), method, path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(ct, "application/json");
            assert_envelope(&body, "method_not_allowed");
        }
        // A trailing slash is the same route.
        let (status, _) = get(app(&[]), "/v1/models/", None).await;
        assert_eq!(status, StatusCode::OK);
        // Methods are case-sensitive: `get` is not GET, and nothing routes it.
        let (status, ct, body) = send(app(&[]), "get", "/v1/embeddings").await;
        assert!(status.is_client_error(), "{status}");
        assert_eq!(ct, "application/json");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    async fn status_of(app: Router, req: HttpRequest<Body>) -> (StatusCode, serde_json::Value) {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn foreign_hosts_origins_and_plain_text_bodies_are_refused() {
        let req = |method: &str, headers: &[(&str, &str)], body: &'static str| {
            let mut r = HttpRequest::builder().method(method).uri("/v1/nope");
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(Body::from(body)).unwrap()
        };
        // DNS rebinding: a page's own name, resolved to 127.0.0.1.
        let (status, body) = status_of(
            app(&[]),
            req("GET", &[("host", "rebind.evil.example:8080")], ""),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_envelope(&body, "host_not_allowed");
        // A page from another origin may not change anything.
        let json = [
            ("host", "localhost:8080"),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ];
        let (status, body) = status_of(app(&[]), req("POST", &json, "{}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_envelope(&body, "origin_not_allowed");
        // A CORS "simple request" body.
        let plain = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ];
        let (status, body) = status_of(app(&[]), req("POST", &plain, "{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_envelope(&body, "unsupported_media_type");
        // What a local client sends goes through (to a 404: no plugin owns /v1/nope here).
        let ok = [
            ("host", "localhost:8080"),
            ("origin", "http://app.example"),
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "2"),
        ];
        let (status, body) = status_of(app(&[]), req("POST", &ok, "{}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_envelope(&body, "unknown_url");
    }

    #[tokio::test]
    async fn no_keys_configured_means_any_key_works() {
        let (status, _) = get(app(&[]), "/v1/models", Some("anything")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_routes_and_models_are_404_envelopes() {
        let (status, body) = get(app(&[]), "/v1/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_envelope(&body, "unknown_url");
        let (status, body) = get(app(&[]), "/v1/models/gpt-9", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_envelope(&body, "model_not_found");
    }

    #[tokio::test]
    async fn cors_preflight_skips_auth_and_responses_carry_the_origin() {
        let preflight = HttpRequest::builder()
            .method("OPTIONS")
            .uri("/v1/chat/completions")
            .header("origin", "http://app.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-stainless-lang, cookie",
            )
            .body(Body::empty())
            .unwrap();
        let res = app(&["sk-right"]).oneshot(preflight).await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], "http://app.example");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert_eq!(allowed, "authorization, content-type, x-stainless-lang");

        let get = HttpRequest::get("/v1/models")
            .header("origin", "http://app.example")
            .body(Body::empty())
            .unwrap();
        let res = app(&["sk-right"]).oneshot(get).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "http://app.example"
        );

        let other = HttpRequest::get("/health")
            .header("origin", "http://evil.example")
            .body(Body::empty())
            .unwrap();
        let res = app(&[]).oneshot(other).await.unwrap();
        assert!(!res.headers().contains_key("access-control-allow-origin"));
    }
}
