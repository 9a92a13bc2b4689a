//! A guest's stdout and stderr, streamed line by line into `tracing` under the plugin's id.
//!
//! A fixed in-memory pipe would trap a guest that prints more than it holds, and would only
//! show the output once the call is over; a plugin author debugging a hang needs it live.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line logged as one record; a longer one is split.
const MAX_LINE: usize = 8 << 10;
/// Output logged per stream and request; the rest is counted and dropped, so a guest printing
/// in a loop cannot flood the log (its CPU budget ends the loop itself).
const MAX_TOTAL: usize = 1 << 20;

/// Which of the guest's two output streams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Given to `WasiCtxBuilder::stdout`/`stderr`.
#[derive(Clone)]
pub(crate) struct GuestLog {
    plugin: Arc<str>,
    stream: Stream,
}

impl GuestLog {
    pub(crate) fn new(plugin: Arc<str>, stream: Stream) -> Self {
        GuestLog { plugin, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
            total: 0,
            dropped: 0,
        })
    }
}

/// Buffers bytes until a newline, then logs the line. The rest is logged when dropped
/// (the store, and with it the stream, goes away when the call ends).
struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
    total: usize,
    dropped: usize,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        let plugin = &*self.log.plugin;
        match self.log.stream {
            Stream::Stdout => tracing::info!(plugin, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(plugin, stream = "stderr", "{text}"),
        }
        self.line.clear();
    }

    fn take(&mut self, buf: &[u8]) {
        let room = MAX_TOTAL.saturating_sub(self.total);
        let (kept, rest) = buf.split_at(buf.len().min(room));
        self.total += kept.len();
        self.dropped += rest.len();
        for mut chunk in kept.split_inclusive(|b| *b == b'\n') {
            while !chunk.is_empty() {
                let n = (MAX_LINE - self.line.len()).min(chunk.len());
                self.line.extend_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                if self.line.len() >= MAX_LINE || self.line.ends_with(b"\n") {
                    self.emit();
                }
            }
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
        if self.dropped > 0 {
            tracing::warn!(plugin = %self.log.plugin, dropped_bytes = self.dropped, "guest output over the per-request limit was not logged");
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().emit();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> LineWriter {
        LineWriter {
            log: GuestLog::new("t".into(), Stream::Stdout),
            line: Vec::new(),
            total: 0,
            dropped: 0,
        }
    }

    #[test]
    fn splits_lines_and_caps_output() {
        let mut w = writer();
        w.take(b"one\ntw");
        assert_eq!(w.line, b"tw");
        w.take(b"o\n");
        assert!(w.line.is_empty());
        w.take(&vec![b'x'; MAX_LINE + 10]);
        assert_eq!(w.line.len(), 10, "a long line is logged in pieces");
        w.take(&vec![b'y'; MAX_TOTAL]);
        assert_eq!(w.total, MAX_TOTAL);
        assert!(w.dropped > 0);
    }
}
