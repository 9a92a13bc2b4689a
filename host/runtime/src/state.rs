//! The per-call host state: everything one plugin call may touch (a fresh one per request),
//! and the CPU budget's bookkeeping. The WIT imports it serves are in `imports/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cinder_core::{LoadedModel, ModelRegistry};
use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::cinder::plugin::types;
use crate::call::Output;
use crate::imports::wit_error;

/// How often the engine-wide epoch advances; one tick is the unit of the CPU budget.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Everything one plugin call may touch. A fresh one per request.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) models: Arc<ModelRegistry>,
    pub(crate) plugin_id: Arc<str>,
    /// Whose request this is: the documents it may see (`documents::LOCAL_OWNER` without keys).
    pub(crate) owner: Arc<str>,
    /// This call's generations share it: the engine admits fairly between calls.
    pub(crate) group: u64,
    /// The server's id for the request this call serves; the engine's log lines carry it.
    pub(crate) request_id: Arc<str>,
    /// The route the request matched, for `cinder:plugin/route` (none in a tools call).
    pub(crate) route: Option<crate::routing::MatchedRoute>,
    pub(crate) out: mpsc::Sender<Output>,
    pub(crate) response: ResponseState,
    /// CPU budget left, in epoch ticks.
    pub(crate) cpu_ticks_left: u64,
    /// When the guest last got control back from an async host call: an epoch tick that
    /// arrives right after is time spent parked, not running, and is not charged.
    pub(crate) resumed_at: Instant,
    /// Milliseconds from `started` to the last host call that returned (a token, a write the
    /// client took): the idle timeout counts from there.
    pub(crate) progress: Arc<AtomicU64>,
    pub(crate) started: Instant,
    /// This plugin's `[plugins.settings.<id>]`, sorted by key, as of the call's start.
    pub(crate) settings: Arc<Settings>,
    /// The store, when the manifest grants `storage` and the server keeps one.
    pub(crate) documents: crate::documents::Access,
    /// The store collections the manifest names (WIT `store`).
    pub(crate) collections: Arc<[String]>,
    /// The largest blob a call may write (`[limits] max_file_bytes`).
    pub(crate) max_file_bytes: u64,
    /// Blob writers open now (each holds a temporary file).
    pub(crate) open_blob_writers: u32,
    /// The URL clients reach the server at, for links (`store.share-blob`); none in a job
    /// step.
    pub(crate) public_url: Option<Arc<str>>,
    /// The request's multipart body, on routes that take one.
    pub(crate) multipart: Option<crate::body::Multipart>,
    /// When the multipart body ended (ms since `started`; MAX while it arrives): the
    /// wall-clock limit counts from there.
    pub(crate) body_done: Option<Arc<AtomicU64>>,
    /// Why the request body could not be read: the host answers for it (413, 408, 400)
    /// whatever the plugin returns after.
    pub(crate) body_failure: Option<crate::body::BodyFailure>,
    /// Host resources the call holds (open generations, log volume, stored bytes).
    pub(crate) quota: crate::quota::Quota,
    /// The tools plugin this call may reach through the `tools` import.
    pub(crate) tools: crate::imports::tools::ToolsLink,
    /// The job kinds it may queue; in a job step, where its dispatched calls go.
    pub(crate) jobs: crate::jobs::JobLink,
}

/// One plugin's settings, sorted by key.
pub type Settings = Vec<(String, String)>;

/// Which shape the response has taken so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseState {
    Nothing,
    Streaming,
    Whole,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host object behind a guest's `response-sink` handle. The state lives in [`HostState`]:
/// a request has exactly one sink.
pub struct SinkHandle;

impl HostState {
    /// Called whenever an async host call returns: the guest runs again (not charged for the
    /// wait) and the call made progress (the idle clock restarts).
    pub(crate) fn touch(&mut self) {
        self.resumed_at = Instant::now();
        let ms = self.started.elapsed().as_millis() as u64;
        self.progress.store(ms, Ordering::Relaxed);
    }

    /// The chat model called `id`; for an adapter the caller's owner may use, its base
    /// (whose tokenizer, template and engine it shares).
    pub(crate) fn model(&self, id: &str) -> Result<Arc<LoadedModel>, types::Error> {
        if let Some(adapter) = self.adapter(id) {
            return self.models.get(&adapter.base).map_err(wit_error);
        }
        self.models.get(id).map_err(wit_error)
    }

    /// The adapter served as `id`, if the caller's owner may use it.
    pub(crate) fn adapter(&self, id: &str) -> Option<Arc<cinder_core::AdapterModel>> {
        self.models.adapter(id, &self.owner)
    }
}

/// The epoch callback's verdict: charge a tick if the guest has really been running.
pub(crate) fn charge_tick(
    state: &mut HostState,
    tick: std::time::Duration,
) -> Result<(), wasmtime::Error> {
    if state.resumed_at.elapsed() < tick {
        return Ok(());
    }
    if state.cpu_ticks_left == 0 {
        return Err(wasmtime::Error::from(Trap::Interrupt));
    }
    state.cpu_ticks_left -= 1;
    Ok(())
}
