//! Synchronous host work done for a plugin (tokenizing a long prompt, rendering a template,
//! compiling a grammar, syncing a document to disk) runs on tokio's blocking threads, not on
//! the few async workers every other request (and `/health`) needs. The time it takes counts
//! against the calling plugin's CPU budget, as if the guest had spent it.

use std::time::Instant;

use crate::bindings::cinder::plugin::types;
use crate::state::{HostState, TICK};

impl HostState {
    /// Runs `work` on a blocking thread and charges its wall time to the call's CPU budget. A
    /// panic in it is the host's bug: the call gets an internal error, the server goes on.
    pub(crate) async fn blocking<T: Send + 'static>(
        &mut self,
        work: impl FnOnce() -> Result<T, types::Error> + Send + 'static,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(work).await;
        let ticks = started.elapsed().as_millis() / TICK.as_millis().max(1);
        self.cpu_ticks_left = self
            .cpu_ticks_left
            .saturating_sub(u64::try_from(ticks).unwrap_or(u64::MAX));
        // The budget, if spent, ends the call at the next epoch tick once the guest runs.
        self.touch();
        Ok(result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "host work for a plugin panicked");
            Err(types::Error::Internal(format!("the host failed: {e}")))
        }))
    }
}
