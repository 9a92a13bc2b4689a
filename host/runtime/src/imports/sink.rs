//! `cinder:plugin/sink`: the response. The first write decides its shape (one whole
//! response, or SSE events); every body and event must be JSON.

use wasmtime::component::Resource;

use crate::bindings::cinder::plugin::sink;
use crate::call::Output;
use crate::state::{HostState, ResponseState, SinkHandle};

impl HostState {
    pub(crate) async fn send(
        &mut self,
        output: Output,
        shape: ResponseState,
    ) -> Result<(), sink::SinkError> {
        match (self.response, shape) {
            (ResponseState::Whole, _) | (ResponseState::Streaming, ResponseState::Whole) => {
                return Err(sink::SinkError::AlreadyResponded);
            }
            _ => {}
        }
        self.response = shape;
        let sent = self.out.send(output).await;
        self.touch();
        sent.map_err(|_| sink::SinkError::Closed)
    }
}

impl sink::HostResponseSink for HostState {
    async fn send_event(
        &mut self,
        _sink: Resource<SinkHandle>,
        data: String,
    ) -> wasmtime::Result<Result<(), sink::SinkError>> {
        ensure_json(&data, "an event")?;
        Ok(self
            .send(Output::Event(data), ResponseState::Streaming)
            .await)
    }

    async fn send_named_event(
        &mut self,
        _sink: Resource<SinkHandle>,
        event: String,
        data: String,
    ) -> wasmtime::Result<Result<(), sink::SinkError>> {
        ensure_event_name(&event)?;
        ensure_json(&data, "an event")?;
        Ok(self
            .send(Output::NamedEvent(event, data), ResponseState::Streaming)
            .await)
    }

    async fn respond(
        &mut self,
        _sink: Resource<SinkHandle>,
        status: u16,
        body: String,
    ) -> wasmtime::Result<Result<(), sink::SinkError>> {
        if !(200..=599).contains(&status) {
            // A malformed response is a plugin bug: trap it, the request gets a 500.
            return Err(PluginFault(format!("it answered with HTTP status {status}")).into());
        }
        ensure_json(&body, "a response body")?;
        Ok(self
            .send(Output::Respond { status, body }, ResponseState::Whole)
            .await)
    }

    fn drop(&mut self, rep: Resource<SinkHandle>) -> wasmtime::Result<()> {
        // The host owns the sink and deletes it after the call; a guest drop of its borrow
        // never reaches here, but an owned handle would.
        self.table.delete(rep)?;
        Ok(())
    }
}

impl sink::Host for HostState {}

/// A plugin bug the host caught (malformed output): it ends the call like a trap, and its
/// message is what the client's 500 says.
#[derive(Debug)]
pub(crate) struct PluginFault(pub(crate) String);

impl std::fmt::Display for PluginFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginFault {}

/// Every body and event on OpenAI routes is JSON; anything else would reach clients as a
/// parse error in their SDK, so it is refused here, where the plugin can be named.
fn ensure_json(text: &str, what: &str) -> wasmtime::Result<()> {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(PluginFault(format!("it wrote {what} that is not JSON ({e})")).into()),
    }
}

/// An event name becomes an `event:` line: a newline in it would forge other fields.
fn ensure_event_name(name: &str) -> wasmtime::Result<()> {
    let ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(()),
        false => Err(PluginFault(format!(
            "it named an event {name:?} (names are 1 to 64 printable ASCII characters)"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_names_are_one_line_of_printable_ascii() {
        assert!(super::ensure_event_name("thread.run.created").is_ok());
        assert!(super::ensure_event_name("").is_err());
        assert!(super::ensure_event_name("a\ndata: x").is_err());
        assert!(super::ensure_event_name("a b").is_err());
        assert!(super::ensure_event_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn only_json_passes() {
        assert!(super::ensure_json("{\"a\": [1, 2]}", "x").is_ok());
        assert!(super::ensure_json("{not json", "x").is_err());
        assert!(super::ensure_json("", "x").is_err());
        assert!(super::ensure_json("1 2", "x").is_err());
    }
}
