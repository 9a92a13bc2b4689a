//! Multipart request bodies for routes that take them (`body = "multipart"` in a plugin's
//! manifest): parsed here, where HTTP lives, by multer (the parser axum's own `Multipart` is
//! built on), and handed to the plugin a part at a time through the runtime's
//! [`MultipartBody`]. The body is never buffered: each read pulls the next chunk from the
//! socket, bounded in size (`[limits] max_file_bytes`) and in time between chunks
//! (`server.body_read_timeout_secs`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use cinder_runtime::{BodyFailure, MultipartBody, PartHead};

/// Room for the form's other fields and framing beyond the largest file.
const FORM_OVERHEAD: u64 = 1 << 20;

pub(crate) struct Form {
    form: multer::Multipart<'static>,
    field: Option<multer::Field<'static>>,
    /// Bytes of the current part read from the socket but not yet handed over.
    pending: Bytes,
    limit: u64,
    idle: Duration,
}

impl Form {
    /// The body as a form, if `content_type` is `multipart/form-data` with a boundary.
    pub(crate) fn new(
        body: Body,
        content_type: Option<&str>,
        limit: u64,
        idle: Duration,
    ) -> Result<Form, String> {
        let boundary = content_type
            .and_then(|t| multer::parse_boundary(t).ok())
            .ok_or("The request body must be sent as `Content-Type: multipart/form-data` with a boundary")?;
        let constraints = multer::Constraints::new()
            .size_limit(multer::SizeLimit::new().whole_stream(limit.saturating_add(FORM_OVERHEAD)));
        Ok(Form {
            form: multer::Multipart::with_constraints(
                EofApart::new(body.into_data_stream()),
                boundary,
                constraints,
            ),
            field: None,
            pending: Bytes::new(),
            limit,
            idle,
        })
    }

    fn failure(&self, e: multer::Error) -> BodyFailure {
        match e {
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
                BodyFailure::TooLarge { limit: self.limit }
            }
            other => BodyFailure::Malformed(other.to_string()),
        }
    }
}

/// The body with its end reported in a poll of its own, after the last chunk. multer 3.1
/// looks for the first boundary, polls once more when it is not whole yet, and gives up if that
/// poll brought both the rest of it and the end of the body, without looking again: a form
/// whose first boundary the socket split (1 request in a few thousand under load) was refused
/// as incomplete. With the end always a poll later, multer looks again before it sees it.
struct EofApart<S> {
    inner: S,
    /// A chunk was the last thing returned: the end, if it comes, waits one poll.
    after_data: bool,
    /// The inner stream ended.
    ended: bool,
}

impl<S> EofApart<S> {
    fn new(inner: S) -> Self {
        EofApart {
            inner,
            after_data: false,
            ended: false,
        }
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for EofApart<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                // Never polled again once it ended (some streams panic if they are).
                self.ended = true;
                if self.after_data {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Ready(Some(item)) => {
                self.after_data = true;
                Poll::Ready(Some(item))
            }
            other => other,
        }
    }
}

impl MultipartBody for Form {
    fn next_part(
        &mut self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<PartHead>, BodyFailure>> + Send + '_>,
    > {
        Box::pin(async move {
            // Dropping the field makes multer skip what is left of it.
            self.field = None;
            self.pending = Bytes::new();
            let next = tokio::time::timeout(self.idle, self.form.next_field())
                .await
                .map_err(|_| BodyFailure::TimedOut(self.idle))?;
            let field = match next {
                Ok(f) => f,
                Err(e) => return Err(self.failure(e)),
            };
            Ok(field.map(|f| {
                let head = PartHead {
                    name: f.name().unwrap_or_default().to_owned(),
                    filename: f.file_name().map(str::to_owned),
                    content_type: f.content_type().map(|m| m.to_string()),
                };
                self.field = Some(f);
                head
            }))
        })
    }

    fn read(
        &mut self,
        max: usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<u8>, BodyFailure>> + Send + '_>,
    > {
        Box::pin(async move {
            if self.pending.is_empty() {
                let Some(field) = self.field.as_mut() else {
                    return Ok(Vec::new());
                };
                let chunk = tokio::time::timeout(self.idle, field.chunk())
                    .await
                    .map_err(|_| BodyFailure::TimedOut(self.idle))?;
                match chunk {
                    Ok(Some(bytes)) => self.pending = bytes,
                    Ok(None) => return Ok(Vec::new()),
                    Err(e) => return Err(self.failure(e)),
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form as httpx (the openai SDK's transport) writes it.
    fn form() -> (Vec<u8>, &'static str) {
        let boundary = "9f3e1c0a5b7d4e2f8a6c1b3d5e7f9a0b";
        let mut body = Vec::new();
        for part in [
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            ),
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nxxxxxxxxxx"
            ),
            format!("\r\n--{boundary}--\r\n"),
        ] {
            body.extend_from_slice(part.as_bytes());
        }
        (body, boundary)
    }

    /// Chunks with a pause (one `Pending`, waking itself) before each but the first, and the
    /// end right after the last: what a socket delivers when the client's writes arrive apart.
    fn paused(chunks: Vec<Vec<u8>>) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        let mut chunks: std::collections::VecDeque<Vec<u8>> = chunks.into();
        let mut paused = true;
        futures::stream::poll_fn(move |cx| {
            if chunks.is_empty() {
                return std::task::Poll::Ready(None);
            }
            if !paused {
                paused = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            paused = false;
            std::task::Poll::Ready(chunks.pop_front().map(|c| Ok(Bytes::from(c))))
        })
    }

    async fn read_all(
        stream: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        boundary: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, BodyFailure> {
        let ct = format!("multipart/form-data; boundary={boundary}");
        let mut form = Form::new(
            Body::from_stream(stream),
            Some(&ct),
            1 << 20,
            Duration::from_secs(5),
        )
        .map_err(BodyFailure::Malformed)?;
        let mut parts = Vec::new();
        while let Some(head) = form.next_part().await? {
            let mut content = Vec::new();
            loop {
                let chunk = form.read(4).await?;
                if chunk.is_empty() {
                    break;
                }
                content.extend_from_slice(&chunk);
            }
            parts.push((head.name, content));
        }
        Ok(parts)
    }

    #[tokio::test]
    async fn a_form_reads_the_same_however_the_socket_cuts_it() {
        let (body, boundary) = form();
        let expected = vec![
            ("purpose".to_owned(), b"user_data".to_vec()),
            ("file".to_owned(), b"xxxxxxxxxx".to_vec()),
        ];
        for i in 0..=body.len() {
            let two = vec![body[..i].to_vec(), body[i..].to_vec()];
            let at_once =
                futures::stream::iter(two.clone().into_iter().map(|c| Ok(Bytes::from(c))));
            let got = read_all(at_once, boundary).await;
            assert_eq!(got.as_ref().ok(), Some(&expected), "split at {i}: {got:?}");
            let got = read_all(paused(two), boundary).await;
            assert_eq!(
                got.as_ref().ok(),
                Some(&expected),
                "split at {i}, paused: {got:?}"
            );
        }
        for i in (0..body.len()).step_by(7) {
            for j in (i..body.len()).step_by(5) {
                let three = vec![body[..i].to_vec(), body[i..j].to_vec(), body[j..].to_vec()];
                let got = read_all(paused(three), boundary).await;
                assert_eq!(
                    got.as_ref().ok(),
                    Some(&expected),
                    "split at {i}, {j}: {got:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn cut_short_is_malformed_and_too_big_is_too_large() {
        let (body, boundary) = form();
        for end in [10, 60, body.len() - 30, body.len() - 4] {
            let cut =
                futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body[..end].to_vec()))]);
            let got = read_all(cut, boundary).await;
            assert!(
                matches!(got, Err(BodyFailure::Malformed(_))),
                "cut at {end}: {got:?}"
            );
        }
        let ct = format!("multipart/form-data; boundary={boundary}");
        let big = vec![b'x'; 3 << 20];
        let mut huge = body[..body.len() - 40].to_vec();
        huge.extend_from_slice(&big);
        let stream = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(huge))]);
        let mut form = Form::new(
            Body::from_stream(stream),
            Some(&ct),
            1 << 20,
            Duration::from_secs(5),
        )
        .unwrap();
        let mut failure = None;
        while failure.is_none() {
            match form.next_part().await {
                Ok(Some(_)) => loop {
                    match form.read(1 << 16).await {
                        Ok(c) if c.is_empty() => break,
                        Ok(_) => {}
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                },
                Ok(None) => break,
                Err(e) => failure = Some(e),
            }
        }
        assert_eq!(failure, Some(BodyFailure::TooLarge { limit: 1 << 20 }));
        for bad in [None, Some("multipart/form-data"), Some("application/json")] {
            assert!(
                Form::new(Body::empty(), bad, 1, Duration::from_secs(1)).is_err(),
                "{bad:?}"
            );
        }
    }
}
