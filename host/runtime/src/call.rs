//! The call path: one request in a fresh store. Waiting for an instance slot (bounded: a full
//! queue is a 429), the wall-clock and idle timeouts, the store itself (memory cap, CPU budget,
//! guest output to the log, only what the manifest grants), the handler call, and turning a
//! trap or a plugin fault into an OpenAI error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cinder_openai::ErrorBody;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::plugin::Plugin;
use crate::{
    Capability, HostState, Limits, Output, PluginRequest, Runtime, TICK, bindings, error_output,
    guest_log, host,
};

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
                    Err(_) => {
                        let limit = runtime.limits.load().max_queued as usize;
                        let Some(_waiting) = Waiting::enter(&runtime.waiting, limit) else {
                            debug!(queued = limit, "saturated; refusing with 429");
                            let _ = tx.send(Output::Error {
                                status: 429,
                                body: ErrorBody::new(
                                    "rate_limit_error",
                                    "The server is busy with other requests; retry shortly",
                                    None,
                                    Some("rate_limit_exceeded".into()),
                                ),
                            }).await;
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
                let call = runtime.run(&plugin, &limits, request, tx.clone(), progress.clone());
                tokio::pin!(call);
                let deadline = started + limits.timeout;
                let outcome = loop {
                    let idle_at = started + Duration::from_millis(progress.load(Ordering::Relaxed)) + limits.idle_timeout;
                    tokio::select! {
                        r = &mut call => break r,
                        _ = tx.closed() => {
                            debug!("client gone; plugin call dropped");
                            return;
                        }
                        _ = tokio::time::sleep_until(deadline.min(idle_at).into()) => {
                            let now = Instant::now();
                            let idle_at = started + Duration::from_millis(progress.load(Ordering::Relaxed)) + limits.idle_timeout;
                            let message = if now >= deadline {
                                format!("The request took longer than {} s", limits.timeout.as_secs())
                            } else if now >= idle_at {
                                format!("The plugin made no progress for {} s", limits.idle_timeout.as_secs_f32())
                            } else {
                                continue;
                            };
                            warn!(plugin = %plugin.info.id, "{message}; call ended");
                            break Err(Output::Error {
                                status: 504,
                                body: ErrorBody::new("server_error", message, None, Some("timeout".into())),
                            });
                        }
                    }
                };
                debug!(plugin = %plugin.info.id, elapsed_ms = started.elapsed().as_millis() as u64, failed = outcome.is_err(), "plugin call done");
                if let Err(output) = outcome {
                    let _ = tx.send(output).await;
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
            quota: crate::quota::Quota::default(),
            out,
            response: host::ResponseState::Nothing,
            cpu_ticks_left: (limits.cpu_ms / TICK.as_millis() as u64).max(1),
            resumed_at: Instant::now(),
            progress,
            started: Instant::now(),
            documents: plugin
                .capabilities
                .contains(&Capability::Storage)
                .then(|| self.documents.load_full()),
            settings: self
                .settings
                .load()
                .get(&plugin.info.id)
                .cloned()
                .unwrap_or_default(),
            tools: match plugin.pre {
                crate::plugin::Pre::Handler(..) => crate::tools_link::ToolsLink::Chat {
                    plugin: self.registry.load().tools(),
                    runtime: self.me.clone(),
                    session: None,
                },
                crate::plugin::Pre::Tools(_) => crate::tools_link::ToolsLink::None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            host::charge_tick(ctx.data_mut(), TICK)?;
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
        out: mpsc::Sender<Output>,
        progress: Arc<AtomicU64>,
    ) -> Result<(), Output> {
        let mut store = self.store(plugin, limits, out.clone(), progress, &request.owner);
        store.data_mut().request_id = request.request_id.as_str().into();
        let result = async {
            let crate::plugin::Pre::Handler(pre, _) = &plugin.pre else {
                return Err(wasmtime::Error::msg("a tools plugin serves no routes"));
            };
            let instance = pre.instantiate_async(&mut store).await?;
            let sink: Resource<host::SinkHandle> = store.data_mut().table.push(host::SinkHandle)?;
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
        let responded = store.data().response != host::ResponseState::Nothing;
        match result {
            Ok(Ok(())) if responded => Ok(()),
            Ok(Ok(())) => Err(Output::Error {
                status: 500,
                body: ErrorBody::new(
                    "server_error",
                    "The plugin returned without writing a response",
                    None,
                    None,
                ),
            }),
            Ok(Err(e)) => {
                if matches!(&e, bindings::cinder::plugin::types::Error::Unavailable(_))
                    && out.is_closed()
                {
                    return Ok(());
                }
                Err(error_output(&e))
            }
            Err(trap) => {
                let reason = describe_trap(&trap, store.data().cpu_ticks_left == 0);
                warn!(plugin = %plugin.info.id, error = %format!("{trap:?}"), "plugin failed");
                Err(Output::Error {
                    status: 500,
                    body: ErrorBody::new(
                        "server_error",
                        format!("The plugin `{}` failed: {reason}", plugin.info.id),
                        None,
                        None,
                    ),
                })
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

pub(crate) fn describe_trap(e: &wasmtime::Error, out_of_cpu: bool) -> String {
    if out_of_cpu {
        return "it used up its CPU budget".into();
    }
    if let Some(fault) = e.downcast_ref::<host::PluginFault>() {
        return fault.0.clone();
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => "it panicked or aborted".into(),
        Some(wasmtime::Trap::Interrupt) => "it used up its CPU budget".into(),
        Some(t) => format!("it trapped ({t})"),
        None if format!("{e:?}").contains("memory") => "it ran out of memory".into(),
        // Not a trap of the guest's own: a host-side refusal (e.g. its exports do not match
        // the world's types); the chain says which.
        None => format!("{e:#}"),
    }
}
