//! The call path: one request in a fresh store. Waiting for an instance slot (bounded: a full
//! queue is a 429), the wall-clock and idle timeouts, the store itself (memory cap, CPU budget,
//! guest output to the log, only what the manifest grants), the handler call, and turning a
//! trap or a plugin fault into an OpenAI error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::Runtime;
use crate::bindings;
use crate::documents::Access;
use crate::failure::{CallError, PluginError};
use crate::guest_log;
use crate::imports::tools::{StoreMaker, ToolsLink};
use crate::manifest::Capability;
use crate::plugin::Plugin;
use crate::routing::MatchedRoute;
use crate::state::{self, HostState, TICK};

/// How long a client refused for a full queue is told to wait before retrying.
const QUEUE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory cap per instance (also the pool's slot size: fixed at start).
    pub memory_bytes: u64,
    /// CPU time the guest may spend running, per request.
    pub cpu_ms: u64,
    /// Wall-clock limit per request.
    pub timeout: Duration,
    /// Longest time a call may go without progress (a token from the engine, a write the
    /// client took) before it is ended.
    pub idle_timeout: Duration,
    /// Live instances at once (the pool's size: fixed at start).
    pub max_instances: u32,
    /// Requests waiting for an instance beyond which new ones get a 429 at once.
    pub max_queued: u32,
    /// The largest blob (file content) a call may write.
    pub max_file_bytes: u64,
}

/// One HTTP request handed to a plugin.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    pub method: String,
    pub path: String,
    pub body: String,
    pub request_id: String,
    /// The manifest route that matched (`None` for a call the host makes itself).
    pub route: Option<MatchedRoute>,
    /// Who is asking: the stored documents the call may see and writes under. A hash of the
    /// API key, or [`LOCAL_OWNER`] when the server takes no keys.
    pub owner: String,
    /// The body as a multipart form, on routes that take one (`body` is then empty).
    pub multipart: Option<crate::body::Multipart>,
    /// Made by a job step (`dispatch`): it waits for a slot however long the queue is, and
    /// its generations yield to live requests.
    pub background: bool,
    /// The URL clients reach the server at, for links the call makes (`store.share-blob`);
    /// `None` where it is not known (a job step without `server.public_url`).
    pub public_url: Option<String>,
}

/// What a plugin call produces, in order, on its channel. The channel closing after events
/// means the stream completed.
#[derive(Debug)]
pub enum Output {
    /// One SSE event's data.
    Event(String),
    /// One SSE event with an `event:` name (WIT `send-named-event`, 0.1.12): `(name, data)`.
    NamedEvent(String, String),
    /// A whole response.
    Respond { status: u16, body: String },
    /// The call failed; nothing follows.
    Failed(CallError),
    /// The call used another plugin (`id@version`; the tools plugin), before its response.
    Uses(String),
    /// A whole response whose body is a stored blob, streamed from disk (WIT `send-blob`).
    File {
        status: u16,
        content_type: String,
        length: u64,
        file: tokio::fs::File,
    },
}

/// Each call's generations form one group in the engine's fair admission.
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

impl Runtime {
    /// Runs `plugin` on `request` in a fresh sandbox. Outputs arrive on the returned channel;
    /// dropping it (client gone) cancels the call and, with it, any generation.
    pub fn call(
        self: &Arc<Self>,
        plugin: Arc<Plugin>,
        request: PluginRequest,
    ) -> mpsc::Receiver<Output> {
        let (tx, rx) = mpsc::channel(8);
        let runtime = self.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let _slot = match runtime.slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    // Background work is not refused for a full queue: it waits its turn.
                    Err(_) if request.background => match runtime.slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    Err(_) => {
                        let limit = runtime.limits.load().max_queued as usize;
                        let Some(_waiting) = Waiting::enter(&runtime.waiting, limit) else {
                            debug!(queued = limit, "saturated; refusing with 429");
                            let full = CallError::QueueFull { retry_after: QUEUE_RETRY_AFTER };
                            let _ = tx.send(Output::Failed(full)).await;
                            return;
                        };
                        // A client that leaves while queued leaves the queue at once, instead
                        // of holding its place until a slot frees.
                        tokio::select! {
                            slot = runtime.slots.clone().acquire_owned() => match slot {
                                Ok(slot) => slot,
                                Err(_) => return,
                            },
                            _ = tx.closed() => {
                                debug!("client gone while queued");
                                return;
                            }
                        }
                    }
                };
                let limits = runtime.limits.load_full();
                let started = Instant::now();
                let progress = Arc::new(AtomicU64::new(0));
                // A multipart body may take long to arrive (a large upload on a slow link):
                // the wall-clock limit counts from its end (ms since `started`; MAX while it
                // arrives), and the idle limit and the body's own read timeout cover a stall.
                let body_done = Arc::new(AtomicU64::new(match request.multipart {
                    Some(_) => u64::MAX,
                    None => 0,
                }));
                let call = runtime.run(
                    &plugin,
                    &limits,
                    request,
                    (tx.clone(), progress.clone(), body_done.clone()),
                );
                tokio::pin!(call);
                let outcome = loop {
                    let deadline = match body_done.load(Ordering::Relaxed) {
                        u64::MAX => None,
                        ms => Some(started + Duration::from_millis(ms) + limits.timeout),
                    };
                    let idle_at = started + Duration::from_millis(progress.load(Ordering::Relaxed)) + limits.idle_timeout;
                    tokio::select! {
                        r = &mut call => break r,
                        _ = tx.closed() => {
                            debug!("client gone; plugin call dropped");
                            return;
                        }
                        _ = tokio::time::sleep_until(deadline.map_or(idle_at, |d| d.min(idle_at)).into()) => {
                            let now = Instant::now();
                            let idle_at = started + Duration::from_millis(progress.load(Ordering::Relaxed)) + limits.idle_timeout;
                            let failure = if deadline.is_some_and(|d| now >= d) {
                                CallError::Timeout(limits.timeout)
                            } else if now >= idle_at {
                                CallError::Idle(limits.idle_timeout)
                            } else {
                                continue;
                            };
                            warn!(plugin = %plugin.info.id, "{failure}; call ended");
                            break Err(failure);
                        }
                    }
                };
                debug!(plugin = %plugin.info.id, elapsed_ms = started.elapsed().as_millis() as u64, failed = outcome.is_err(), "plugin call done");
                if let Err(failure) = outcome {
                    let _ = tx.send(Output::Failed(failure)).await;
                }
            }
            .instrument(span),
        );
        rx
    }

    /// A fresh store for one call of `plugin`: memory cap, CPU budget, guest output to the
    /// log, and only what the manifest grants.
    pub(crate) fn store(
        &self,
        plugin: &Plugin,
        limits: &Limits,
        out: mpsc::Sender<Output>,
        progress: Arc<AtomicU64>,
        owner: &str,
    ) -> Store<HostState> {
        let id: Arc<str> = plugin.info.id.as_str().into();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(guest_log::GuestLog::new(
            id.clone(),
            guest_log::Stream::Stdout,
        ))
        .stderr(guest_log::GuestLog::new(
            id.clone(),
            guest_log::Stream::Stderr,
        ));
        if plugin.capabilities.contains(&Capability::Network) {
            let grants = self
                .network
                .load()
                .get(&plugin.info.id)
                .cloned()
                .unwrap_or_else(|| Arc::from([]));
            wasi.inherit_network()
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true)
                .socket_addr_check(crate::net_policy::check(id.clone(), grants));
        }
        let data = plugin.dir.join("data");
        if plugin.capabilities.contains(&Capability::Filesystem)
            && data.is_dir()
            && let Err(e) = wasi.preopened_dir(&data, "/data", FsPerms::ReadOnly)
        {
            warn!(plugin = %id, error = %e, "cannot open the plugin's data folder");
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes as usize)
                .trap_on_grow_failure(true)
                .build(),
            models: self.models.clone(),
            plugin_id: id,
            owner: owner.into(),
            group: NEXT_GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            request_id: Arc::from(""),
            route: None,
            quota: crate::quota::Quota::default(),
            out,
            response: state::ResponseState::Nothing,
            cpu_ticks_left: (limits.cpu_ms / TICK.as_millis() as u64).max(1),
            resumed_at: Instant::now(),
            progress,
            started: Instant::now(),
            documents: match self.store.load_full() {
                _ if !plugin.capabilities.contains(&Capability::Storage) => Access::NotGranted,
                Some(store) => Access::Granted((*store).clone()),
                None => Access::NoStore,
            },
            collections: plugin.collections.clone(),
            max_file_bytes: limits.max_file_bytes,
            open_blob_writers: 0,
            multipart: None,
            public_url: None,
            body_done: None,
            body_failure: None,
            settings: self
                .settings
                .load()
                .get(&plugin.info.id)
                .cloned()
                .unwrap_or_default(),
            jobs: crate::jobs::JobLink {
                kinds: plugin
                    .jobs
                    .as_ref()
                    .map(|(_, kinds)| kinds.clone())
                    .unwrap_or_else(|| Arc::from([])),
                wake: self.jobs_wake.clone(),
                step: None,
                background: false,
            },
            tools: match plugin.pre {
                crate::plugin::Pre::Handler(..) => ToolsLink::Chat {
                    plugin: self.registry.load().tools(),
                    runtime: self.me.clone() as std::sync::Weak<dyn StoreMaker>,
                    session: None,
                },
                crate::plugin::Pre::Tools(_) => ToolsLink::None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            state::charge_tick(ctx.data_mut(), TICK)?;
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// One call in a fresh store; `Err` carries the output that reports the failure.
    async fn run(
        &self,
        plugin: &Plugin,
        limits: &Limits,
        request: PluginRequest,
        (out, progress, body_done): (mpsc::Sender<Output>, Arc<AtomicU64>, Arc<AtomicU64>),
    ) -> Result<(), CallError> {
        let mut store = self.store(plugin, limits, out.clone(), progress, &request.owner);
        store.data_mut().body_done = Some(body_done);
        store.data_mut().request_id = request.request_id.as_str().into();
        store.data_mut().route = request.route;
        store.data_mut().multipart = request.multipart;
        store.data_mut().public_url = request.public_url.map(Arc::from);
        store.data_mut().jobs.background = request.background;
        let result = async {
            let crate::plugin::Pre::Handler(pre, _) = &plugin.pre else {
                return Err(wasmtime::Error::msg("a tools plugin serves no routes"));
            };
            let instance = pre.instantiate_async(&mut store).await?;
            let sink: Resource<state::SinkHandle> =
                store.data_mut().table.push(state::SinkHandle)?;
            let borrowed = Resource::new_borrow(sink.rep());
            let req = bindings::exports::cinder::plugin::handler::Request {
                method: request.method,
                path: request.path,
                body: request.body,
                request_id: request.request_id,
            };
            let r = instance
                .cinder_plugin_handler()
                .call_handle(&mut store, &req, borrowed)
                .await;
            let _ = store.data_mut().table.delete(sink);
            r
        }
        .await;

        let dropped = store.data().quota.log_dropped;
        if dropped > 0 {
            warn!(plugin = %plugin.info.id, bytes = dropped, "log messages past the request's budget were dropped");
        }
        let responded = store.data().response != state::ResponseState::Nothing;
        // A body that could not be read decides the answer, whatever the plugin made of it.
        if let Some(failure) = store.data_mut().body_failure.take()
            && !responded
        {
            return Err(CallError::Body(failure));
        }
        match result {
            Ok(Ok(())) if responded => Ok(()),
            Ok(Ok(())) => Err(CallError::NoResponse),
            Ok(Err(e)) => {
                if matches!(&e, bindings::cinder::plugin::types::Error::Unavailable(_))
                    && out.is_closed()
                {
                    return Ok(());
                }
                Err(CallError::Plugin(PluginError::from(e)))
            }
            Err(trap) => {
                warn!(plugin = %plugin.info.id, error = %format!("{trap:?}"), "plugin failed");
                let out_of_cpu = store.data().cpu_ticks_left == 0;
                Err(CallError::from_trap(
                    plugin.info.id.clone(),
                    &trap,
                    out_of_cpu,
                ))
            }
        }
    }
}

/// One request counted as waiting for a slot while it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts one more waiter unless `limit` are waiting already.
    fn enter(count: &'a std::sync::atomic::AtomicUsize, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StoreMaker for Runtime {
    fn store_for(
        &self,
        plugin: &Plugin,
        out: mpsc::Sender<Output>,
        progress: Arc<AtomicU64>,
        owner: &str,
    ) -> Store<HostState> {
        let limits = self.limits.load_full();
        self.store(plugin, &limits, out, progress, owner)
    }
}
