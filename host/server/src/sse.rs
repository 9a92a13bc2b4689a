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
pub async fn respond(mut outputs: mpsc::Receiver<Output>) -> Result<Response, ApiError> {
    match outputs.recv().await {
        None => Err(ApiError::internal("the plugin ended without a response")),
        Some(Output::Error { status, body }) => Err(ApiError::from_parts(status, body)),
        Some(Output::Respond { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut res = (status, body).into_response();
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(res)
        }
        Some(Output::Event(first)) => Ok(Sse::new(event_stream(first, outputs))
            .keep_alive(KeepAlive::default())
            .into_response()),
    }
}

enum State {
    Open(mpsc::Receiver<Output>),
    Done,
}

fn event_stream(
    first: String,
    rx: mpsc::Receiver<Output>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let rest = stream::unfold(State::Open(rx), |state| async move {
        let State::Open(mut rx) = state else {
            return None;
        };
        match rx.recv().await {
            Some(Output::Event(data)) => Some((Event::default().data(data), State::Open(rx))),
            // A shape change mid-stream is a plugin bug; surface it as an error event.
            Some(Output::Respond { .. }) => {
                let body = cinder_openai::ErrorBody::new(
                    "server_error",
                    "the plugin sent a whole response after streaming",
                    None,
                    None,
                );
                Some((Event::default().data(body.to_json()), State::Done))
            }
            Some(Output::Error { body, .. }) => {
                Some((Event::default().data(body.to_json()), State::Done))
            }
            None => Some((Event::default().data("[DONE]"), State::Done)),
        }
    });
    stream::once(async move { Event::default().data(first) })
        .chain(rest)
        .map(Ok)
}
