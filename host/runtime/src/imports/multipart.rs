//! `cinder:plugin/multipart` (WIT 0.1.7): the request's multipart body, a part at a time.
//! A body that fails (too large, too slow, malformed) is remembered: the host answers for it
//! whatever the plugin returns next.

use crate::bindings::cinder::plugin::types;
use crate::bindings::store_world::cinder::plugin::multipart;
use crate::body::BodyFailure;
use crate::imports::invalid_argument;

/// A caller's mistake in argument `field` (WIT's name for it).
fn bad(message: impl Into<String>, field: &str) -> types::Error {
    invalid_argument(field, message, None)
}
use crate::state::HostState;

/// Largest chunk one `read` returns.
const MAX_CHUNK: u32 = 4 << 20;

impl HostState {
    /// The body is over (read to its end, or failed): the wall-clock limit starts counting.
    fn body_ended(&self) {
        if let Some(done) = &self.body_done {
            let ms = self.started.elapsed().as_millis() as u64;
            done.store(ms.min(u64::MAX - 1), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn failed_body(&mut self, f: BodyFailure) -> types::Error {
        self.body_ended();
        let message = f.to_string();
        self.body_failure = Some(f);
        types::Error::InvalidRequest(types::ErrorDetail {
            message,
            param: None,
            code: None,
        })
    }
}

impl multipart::Host for HostState {
    async fn next_part(
        &mut self,
    ) -> wasmtime::Result<Result<Option<multipart::Part>, types::Error>> {
        let Some(body) = self.multipart.clone() else {
            return Ok(Ok(None));
        };
        let next = body.0.lock().await.next_part().await;
        self.touch();
        if matches!(next, Ok(None)) {
            self.body_ended();
        }
        Ok(match next {
            Ok(part) => Ok(part.map(|p| multipart::Part {
                name: p.name,
                filename: p.filename,
                content_type: p.content_type,
            })),
            Err(f) => Err(self.failed_body(f)),
        })
    }

    async fn read(&mut self, max: u32) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        if max == 0 || max > MAX_CHUNK {
            return Ok(Err(bad(
                format!("a read returns 1 to {MAX_CHUNK} bytes"),
                "max",
            )));
        }
        let Some(body) = self.multipart.clone() else {
            return Ok(Ok(Vec::new()));
        };
        let chunk = body.0.lock().await.read(max as usize).await;
        self.touch();
        Ok(chunk.map_err(|f| self.failed_body(f)))
    }
}
