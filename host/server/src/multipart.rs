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
                body.into_data_stream(),
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
