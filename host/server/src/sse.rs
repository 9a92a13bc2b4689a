//! Turns what a plugin writes into its sink into an HTTP response: one JSON body, or an SSE
//! stream that the host frames (`data:` events, keep-alives, `data: [DONE]`, and a single
//! error event if the plugin fails mid-stream).

use std::convert::Infallible;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cinder_runtime::Output;
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Waits for the plugin's first output, which decides the shape of the response.
/// Other plugins the call used (the tools plugin) are named in `x-cinder-uses`.
pub async fn respond(mut outputs: mpsc::Receiver<Output>) -> Result<Response, ApiError> {
    let mut uses = Vec::new();
    let mut res = loop {
        match outputs.recv().await {
            Some(Output::Uses(u)) => uses.push(u),
            None => return Err(ApiError::internal("the plugin ended without a response")),
            Some(Output::Failed(e)) => return Err(ApiError::from_call(&e)),
            Some(Output::Respond { status, body }) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut res = (status, body).into_response();
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                break res;
            }
            Some(Output::File {
                status,
                content_type,
                length,
                file,
            }) => break file_response(status, &content_type, length, file),
            Some(Output::Event(first)) => {
                break Sse::new(event_stream(None, first, outputs))
                    .keep_alive(KeepAlive::default())
                    .into_response();
            }
            Some(Output::NamedEvent(name, first)) => {
                break Sse::new(event_stream(Some(name), first, outputs))
                    .keep_alive(KeepAlive::default())
                    .into_response();
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&uses.join(", "))
        && !uses.is_empty()
    {
        res.headers_mut().insert("x-cinder-uses", v);
    }
    Ok(res)
}

/// Bytes read from a blob file per chunk of a download.
const FILE_CHUNK: usize = 256 << 10;

/// A stored blob as the whole body, read from disk a chunk at a time as the client takes it.
pub(crate) fn file_response(
    status: u16,
    content_type: &str,
    length: u64,
    file: tokio::fs::File,
) -> Response {
    use tokio::io::AsyncReadExt;
    let chunks = stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0; FILE_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            // The length was promised: the client sees a cut body, never a wrong one.
            Err(e) => Some((Err(e), None)),
        }
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, axum::body::Body::from_stream(chunks)).into_response();
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        axum::http::header::CONTENT_LENGTH,
        HeaderValue::from(length),
    );
    res
}

enum State {
    /// Still reading the plugin; `named` once it has named an event.
    Open {
        rx: mpsc::Receiver<Output>,
        named: bool,
    },
    Done,
}

/// An event, named as the stream's events are: a stream whose plugin names its events
/// (the Assistants API's) ends with `event: done` and fails with `event: error`, as OpenAI's.
fn framed(name: &str, data: String, named: bool) -> Event {
    // axum writes fields in call order; OpenAI's `event:` line comes first.
    let event = Event::default();
    let event = if named { event.event(name) } else { event };
    event.data(data)
}

fn event_stream(
    first_name: Option<String>,
    first: String,
    rx: mpsc::Receiver<Output>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let named = first_name.is_some();
    let rest = stream::unfold(State::Open { rx, named }, |state| async move {
        let State::Open { mut rx, mut named } = state else {
            return None;
        };
        loop {
            return match rx.recv().await {
                // Which other plugins the call used only matters before the headers are sent.
                Some(Output::Uses(_)) => continue,
                Some(Output::Event(data)) => {
                    Some((Event::default().data(data), State::Open { rx, named }))
                }
                Some(Output::NamedEvent(name, data)) => {
                    named = true;
                    Some((framed(&name, data, true), State::Open { rx, named }))
                }
                // A shape change mid-stream is a plugin bug; surface it as an error event.
                Some(Output::Respond { .. } | Output::File { .. }) => {
                    let body = cinder_openai::ErrorBody::new(
                        "server_error",
                        "the plugin sent a whole response after streaming",
                        None,
                        None,
                    );
                    Some((framed("error", body.to_json(), named), State::Done))
                }
                Some(Output::Failed(e)) => {
                    let body = ApiError::from_call(&e).body;
                    Some((framed("error", body.to_json(), named), State::Done))
                }
                None => Some((framed("done", "[DONE]".into(), named), State::Done)),
            };
        }
    });
    let first = framed(first_name.as_deref().unwrap_or_default(), first, named);
    stream::once(async move { first }).chain(rest).map(Ok)
}

#[cfg(test)]
mod tests {
    use cinder_runtime::{CallError, Detail, PluginError};

    use super::*;

    async fn body_of(outputs: Vec<Output>) -> (StatusCode, String) {
        let (tx, rx) = mpsc::channel(8);
        for o in outputs {
            tx.send(o).await.unwrap();
        }
        drop(tx);
        let res = match respond(rx).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_stream_ends_with_done() {
        let (status, body) =
            body_of(vec![Output::Event("1".into()), Output::Event("2".into())]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n");
    }

    #[tokio::test]
    async fn an_error_mid_stream_is_one_error_event_and_no_done() {
        let error = PluginError::Internal("boom".into());
        let (status, body) = body_of(vec![
            Output::Event("1".into()),
            Output::Failed(CallError::Plugin(error)),
        ])
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the status was sent with the first event"
        );
        let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{body}");
        assert!(events[1].starts_with("data: {\"error\":"), "{body}");
        assert!(events[1].contains("boom"), "{body}");
        assert!(!body.contains("[DONE]"));
    }

    #[tokio::test]
    async fn named_events_keep_their_names_and_so_do_done_and_error() {
        let named = |n: &str, d: &str| Output::NamedEvent(n.into(), d.into());
        let (_, body) = body_of(vec![named("thread.run.created", "{}"), named("x", "1")]).await;
        assert_eq!(
            body,
            "event: thread.run.created\ndata: {}\n\nevent: x\ndata: 1\n\nevent: done\ndata: [DONE]\n\n"
        );
        let error = PluginError::Internal("boom".into());
        let (_, body) = body_of(vec![
            named("a", "1"),
            Output::Failed(CallError::Plugin(error)),
        ])
        .await;
        assert!(body.contains("event: error\ndata: {\"error\":"), "{body}");
    }

    #[tokio::test]
    async fn an_error_before_anything_is_a_real_status() {
        let error = PluginError::InvalidRequest(Detail {
            message: "no".into(),
            param: Some("n".into()),
            code: None,
        });
        let (status, body) = body_of(vec![Output::Failed(CallError::Plugin(error))]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("\"param\":\"n\""), "{body}");
    }
}
