//! Cinder's plugin runtime: a wasmtime component host. Plugins are compiled once into an
//! `InstancePre`; every request gets a fresh `Store` from the pooling allocator, with a memory
//! cap, a CPU budget counted in epoch ticks while the guest runs, and a wall-clock timeout
//! enforced by dropping the call. Host imports that wait (tokens, client backpressure) are
//! async, so a parked plugin holds no OS thread.
//!
//! This is the only crate that imports wasmtime.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cinder_core::ModelRegistry;
use cinder_openai::ErrorBody;
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, warn};
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

mod host;
mod plugin;
mod reload;

pub use host::HostState;
use plugin::{Plugin, Registry};
pub use plugin::{PluginInfo, RouteMatch};

/// Bindings for the `chat-plugin` world of `wit/v0.1`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "chat-plugin",
        imports: {
            "cinder:plugin/inference.[method]generation.next": async | trappable,
            "cinder:plugin/sink.[method]response-sink.send-event": async | trappable,
            "cinder:plugin/sink.[method]response-sink.respond": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "cinder:plugin/inference.generation": crate::host::GenerationHandle,
            "cinder:plugin/sink.response-sink": crate::host::SinkHandle,
        },
    });
}

/// How often the engine-wide epoch advances; one tick is the unit of the CPU budget.
const TICK: Duration = Duration::from_millis(10);
/// Guest stdout/stderr kept per request (panic messages land there).
const GUEST_OUTPUT_BYTES: usize = 64 << 10;

/// What the runtime can fail at (loading; request failures become [`Output::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("plugin {path}: {reason}")]
    Plugin { path: String, reason: String },
}

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_ms: u64,
    pub timeout: Duration,
    pub max_instances: u32,
}

/// One HTTP request handed to a plugin.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    pub method: String,
    pub path: String,
    pub body: String,
    pub request_id: String,
}

/// What a plugin call produces, in order, on its channel. The channel closing after events
/// means the stream completed.
#[derive(Debug)]
pub enum Output {
    /// One SSE event's data.
    Event(String),
    /// A whole response.
    Respond { status: u16, body: String },
    /// The call failed; nothing follows.
    Error { status: u16, body: ErrorBody },
}

/// Maps a WIT error onto an HTTP status and OpenAI's envelope.
pub(crate) fn error_output(e: &bindings::cinder::plugin::types::Error) -> Output {
    use bindings::cinder::plugin::types::Error as E;
    let (status, body) = match e {
        E::InvalidRequest(d) => (
            400,
            ErrorBody::new(
                "invalid_request_error",
                &d.message,
                d.param.clone(),
                d.code.clone(),
            ),
        ),
        E::NotFound(d) => (
            404,
            ErrorBody::new(
                "invalid_request_error",
                &d.message,
                d.param.clone(),
                d.code.clone(),
            ),
        ),
        E::RateLimited(m) => (
            429,
            ErrorBody::new(
                "rate_limit_error",
                m,
                None,
                Some("rate_limit_exceeded".into()),
            ),
        ),
        E::Unavailable(m) => (
            503,
            ErrorBody::new("server_error", m, None, Some("service_unavailable".into())),
        ),
        E::Internal(m) => (500, ErrorBody::new("server_error", m, None, None)),
    };
    Output::Error { status, body }
}

/// The plugin host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    models: Arc<ModelRegistry>,
    limits: Limits,
    registry: ArcSwap<Registry>,
    /// Bounds live instances to the pool's size: excess requests wait instead of failing.
    slots: Arc<Semaphore>,
    /// How many times the plugin folder has been (re)loaded.
    loads: std::sync::atomic::AtomicU64,
    /// Keeps the plugin-folder watcher alive.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

fn engine_config(limits: &Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances;
        pool.total_component_instances(n);
        pool.total_core_instances(n * 16);
        pool.max_core_instances_per_component(16);
        pool.total_memories(n * 2);
        pool.max_memories_per_component(2);
        pool.total_tables(n * 8);
        pool.max_tables_per_component(8);
        pool.max_memory_size(limits.memory_bytes as usize);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    /// Builds the engine (pooling allocator, falling back to on-demand allocation where the
    /// machine refuses the reservation) and starts the epoch ticker.
    pub fn new(models: Arc<ModelRegistry>, limits: Limits) -> Result<Arc<Self>, RuntimeError> {
        let engine = match Engine::new(&engine_config(&limits, true)) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                Engine::new(&engine_config(&limits, false))
                    .map_err(|e| RuntimeError::Engine(e.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::ChatPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        Ok(Arc::new(Runtime {
            engine,
            linker,
            models,
            limits,
            registry: ArcSwap::from_pointee(Registry::default()),
            slots,
            loads: std::sync::atomic::AtomicU64::new(0),
            watcher: std::sync::Mutex::new(None),
        }))
    }

    /// Loads every plugin folder under `dir` and makes their routes live.
    /// Unchanged plugins are kept as they are; a plugin that fails to load keeps its previous
    /// version serving and is reported by [`Runtime::failures`]. In-flight requests finish on
    /// the version they started with.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<PluginInfo>, RuntimeError> {
        let previous = self.registry.load_full();
        let registry = Registry::load_dir(&self.engine, &self.linker, dir, &previous)?;
        let infos = registry.infos();
        self.registry.store(Arc::new(registry));
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(infos)
    }

    /// How many times the plugin folder has been loaded (start-up and every reload).
    pub fn folder_loads(&self) -> u64 {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Plugin folders refused at the last load, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.registry.load().failures.clone()
    }

    /// Watches `dir` and reloads it whenever something in it changes (debounced), on a thread
    /// of its own, so compilation never runs on the request path.
    pub fn watch(self: &Arc<Self>, dir: &Path) -> Result<(), RuntimeError> {
        let watcher = reload::watch(Arc::downgrade(self), dir.to_path_buf())?;
        if let Ok(mut slot) = self.watcher.lock() {
            *slot = Some(watcher);
        }
        Ok(())
    }

    /// Loads one plugin from its `plugin.toml` + `plugin.wasm` folder, adding its routes.
    pub fn load_plugin(&self, dir: &Path) -> Result<PluginInfo, RuntimeError> {
        let plugin = Arc::new(Plugin::load(&self.engine, &self.linker, dir)?);
        let info = plugin.info.clone();
        let mut next = (**self.registry.load()).clone();
        next.insert(plugin)?;
        self.registry.store(Arc::new(next));
        Ok(info)
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.registry.load().infos()
    }

    /// Which plugin serves `method path`.
    pub fn route(&self, method: &str, path: &str) -> RouteMatch {
        self.registry.load().route(method, path)
    }

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
                let Ok(_slot) = runtime.slots.clone().acquire_owned().await else { return };
                let started = Instant::now();
                let call = runtime.run(&plugin, request, tx.clone());
                let outcome = tokio::select! {
                    r = tokio::time::timeout(runtime.limits.timeout, call) => r,
                    _ = tx.closed() => {
                        debug!("client gone; plugin call dropped");
                        return;
                    }
                };
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(output)) => Some(output),
                    Err(_) => Some(Output::Error {
                        status: 504,
                        body: ErrorBody::new("server_error", format!("The request took longer than {} s", runtime.limits.timeout.as_secs()), None, Some("timeout".into())),
                    }),
                };
                debug!(plugin = %plugin.info.id, elapsed_ms = started.elapsed().as_millis() as u64, failed = failure.is_some(), "plugin call done");
                if let Some(output) = failure {
                    let _ = tx.send(output).await;
                }
            }
            .instrument(span),
        );
        rx
    }

    /// One call in a fresh store; `Err` carries the output that reports the failure.
    async fn run(
        &self,
        plugin: &Plugin,
        request: PluginRequest,
        out: mpsc::Sender<Output>,
    ) -> Result<(), Output> {
        let stderr = MemoryOutputPipe::new(GUEST_OUTPUT_BYTES);
        let stdout = MemoryOutputPipe::new(GUEST_OUTPUT_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes as usize)
                .trap_on_grow_failure(true)
                .build(),
            models: self.models.clone(),
            plugin_id: plugin.info.id.as_str().into(),
            out: out.clone(),
            response: host::ResponseState::Nothing,
            cpu_ticks_left: (self.limits.cpu_ms / TICK.as_millis() as u64).max(1),
            resumed_at: Instant::now(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            host::charge_tick(ctx.data_mut(), TICK)?;
            Ok(UpdateDeadline::Yield(1))
        });

        let result = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
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

        for (stream, pipe) in [("stdout", &stdout), ("stderr", &stderr)] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                warn!(plugin = %plugin.info.id, stream, "{}", String::from_utf8_lossy(&bytes).trim_end());
            }
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

fn describe_trap(e: &wasmtime::Error, out_of_cpu: bool) -> String {
    if out_of_cpu {
        return "it used up its CPU budget".into();
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => "it panicked or aborted".into(),
        Some(wasmtime::Trap::Interrupt) => "it used up its CPU budget".into(),
        Some(t) => format!("it trapped ({t})"),
        None if format!("{e:?}").contains("memory") => "it ran out of memory".into(),
        None => "it trapped".into(),
    }
}
