#![doc = include_str!("../README.md")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;
use cinder_core::ModelRegistry;
use tokio::sync::{Semaphore, mpsc};
use tracing::warn;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

mod bindings;
mod blocking;
mod body;
mod cache;
mod call;
mod documents;
mod failure;
mod guest_log;
mod imports;
mod jobs;
mod manifest;
mod net_policy;
mod plugin;
mod quota;
mod reload;
mod routing;
mod state;

pub use body::{BodyFailure, Multipart, MultipartBody, PartHead};
pub use call::{Limits, Output, PluginRequest};
pub use documents::{LOCAL_OWNER, migrate_logs as migrate_document_logs};
use failure::describe_trap;
pub use failure::{CallError, Detail, PluginError, RuntimeError};
pub use jobs::JobSettings;
pub use manifest::Capability;
use plugin::{Plugin, Registry};
pub use plugin::{PluginInfo, RouteMatch};
pub use reload::{MAX_DELAY as RELOAD_MAX_DELAY, settle};
pub use routing::{MatchedRoute, RouteBody};
use state::TICK;
pub use state::{HostState, Settings};

/// How long the smoke test (instantiating a new plugin once before it goes live) may take.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Instances the pool keeps for job steps beyond the call slots' (more job workers than
/// this may find the pool full: their steps fail and are retried).
const JOB_STEP_INSTANCES: u32 = 4;

/// The plugin host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    models: Arc<ModelRegistry>,
    /// Swapped by [`Runtime::set_limits`]; each call reads them once when it starts.
    limits: ArcSwap<Limits>,
    /// What the engine's pool was sized for.
    pool: Limits,
    cache: cache::CompileCache,
    /// The durable state plugins granted `storage` reach (none until [`Runtime::set_store`]).
    store: arc_swap::ArcSwapOption<cinder_store::Store>,
    /// Per plugin id: its settings from the config file.
    settings: ArcSwap<std::collections::HashMap<String, Arc<Settings>>>,
    /// Per plugin id: the closed address ranges it may reach anyway (`net_policy`).
    network: ArcSwap<std::collections::HashMap<String, Arc<[ipnet::IpNet]>>>,
    registry: ArcSwap<Registry>,
    /// Bounds live instances to the pool's size: excess requests wait instead of failing.
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot; bounded by `Limits::max_queued`.
    waiting: std::sync::atomic::AtomicUsize,
    /// How many times the plugin folder has been (re)loaded.
    loads: std::sync::atomic::AtomicU64,
    /// Keeps the plugin-folder watcher alive.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
    /// Itself, for stores that call another plugin (chat calling tools) later on.
    me: std::sync::Weak<Runtime>,
    /// This process's name on the job leases it holds.
    holder: String,
    /// Wakes idle job workers when a call queues a job.
    jobs_wake: Arc<jobs::Wakes>,
    /// Bounds the requests job steps have running at once (`JobSettings::dispatch_concurrency`;
    /// no permits until the workers start).
    dispatch_slots: Arc<Semaphore>,
}

fn engine_config(limits: &Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Each call may hold a second instance: the tools plugin it calls through the host;
        // job steps hold one each, outside the call slots.
        let n = limits.max_instances * 2 + JOB_STEP_INSTANCES;
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
    /// `cache_dir` keeps compiled plugins across reloads and restarts (`None`: compile every
    /// time).
    pub fn new(
        models: Arc<ModelRegistry>,
        limits: Limits,
        cache_dir: Option<PathBuf>,
    ) -> Result<Arc<Self>, RuntimeError> {
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
        bindings::embeddings_world::cinder::plugin::embeddings::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::store_world::cinder::plugin::store::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::store_world::cinder::plugin::multipart::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::job_world::cinder::plugin::jobs::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::job_world::cinder::plugin::dispatch::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::agent_world::cinder::plugin::vectors::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::agent_world::cinder::plugin::images::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |s| s)
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
        Ok(Arc::new_cyclic(|me| Runtime {
            engine,
            linker,
            models,
            limits: ArcSwap::from_pointee(limits.clone()),
            pool: limits,
            cache: cache::CompileCache::new(cache_dir),
            store: arc_swap::ArcSwapOption::empty(),
            settings: ArcSwap::from_pointee(Default::default()),
            network: ArcSwap::from_pointee(Default::default()),
            registry: ArcSwap::from_pointee(Registry::default()),
            slots,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            loads: std::sync::atomic::AtomicU64::new(0),
            watcher: std::sync::Mutex::new(None),
            me: me.clone(),
            holder: cinder_store::new_id("proc-"),
            jobs_wake: Arc::default(),
            dispatch_slots: Arc::new(Semaphore::new(0)),
        }))
    }

    /// Loads every plugin folder under `dir` and makes their routes live.
    /// Unchanged plugins are kept as they are; a plugin that fails to load keeps its previous
    /// version serving and is reported by [`Runtime::failures`]. In-flight requests finish on
    /// the version they started with.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<PluginInfo>, RuntimeError> {
        let previous = self.registry.load_full();
        let registry = Registry::load_dir(dir, &previous, |d| self.prepare(d))?;
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
        let me: std::sync::Weak<Runtime> = Arc::downgrade(self);
        let me: std::sync::Weak<dyn reload::Reload> = me;
        let watcher = reload::watch(me, dir.to_path_buf())?;
        if let Ok(mut slot) = self.watcher.lock() {
            *slot = Some(watcher);
        }
        Ok(())
    }

    /// Loads one plugin from its `plugin.toml` + `plugin.wasm` folder, adding its routes.
    pub fn load_plugin(&self, dir: &Path) -> Result<PluginInfo, RuntimeError> {
        let plugin = Arc::new(self.prepare(dir)?);
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

    /// Compiles (or takes from the cache), checks and smoke-tests one plugin folder.
    fn prepare(&self, dir: &Path) -> Result<Plugin, RuntimeError> {
        let plugin = Plugin::load(&self.engine, &self.linker, &self.cache, dir)?;
        self.smoke(&plugin).map_err(|reason| RuntimeError::Plugin {
            path: dir.display().to_string(),
            reason,
        })?;
        Ok(plugin)
    }

    /// Instantiates a plugin once, in a sandbox like a request's, before it may serve: a
    /// component that traps while starting or needs more memory than the cap is refused
    /// here instead of failing every request. Runs on a thread of its own because reloads
    /// come from a plain thread and start-up from inside the server's tokio runtime.
    fn smoke(&self, plugin: &Plugin) -> Result<(), String> {
        let (tx, _rx) = mpsc::channel(1);
        let limits = self.limits.load_full();
        let mut store = self.store(
            plugin,
            &limits,
            tx,
            Arc::new(AtomicU64::new(0)),
            LOCAL_OWNER,
        );
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async {
                        let start = plugin.pre.instance_pre().instantiate_async(&mut store);
                        let instance = match tokio::time::timeout(SMOKE_TIMEOUT, start).await {
                            Ok(Ok(instance)) => instance,
                            Ok(Err(e)) => {
                                return Err(format!(
                                    "it fails to start: {}",
                                    describe_trap(&e, store.data().cpu_ticks_left == 0)
                                ));
                            }
                            Err(_) => {
                                return Err(format!(
                                    "it did not start within {} s",
                                    SMOKE_TIMEOUT.as_secs()
                                ));
                            }
                        };
                        // It started; do its exports have the world's types?
                        plugin
                            .pre
                            .check_exports(&mut store, &instance)
                            .map_err(|e| {
                                format!(
                                    "it does not match the {} world of cinder:plugin@{}: {e:#}",
                                    plugin.pre.world(),
                                    plugin::WIT_SERVED
                                )
                            })
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("the smoke test panicked".into()))
        })
    }

    /// Applies new limits to calls that start from now on. The instance pool's size and slot
    /// memory are fixed when the engine is built: a larger memory cap or more instances than
    /// at start need a restart, so those two are clamped to the start values.
    pub fn set_limits(&self, mut limits: Limits) {
        limits.memory_bytes = limits.memory_bytes.min(self.pool.memory_bytes);
        limits.max_instances = self.pool.max_instances;
        self.limits.store(Arc::new(limits));
    }

    /// Replaces every plugin's settings (plugin id → key → value); calls that start from now
    /// on see the new ones.
    pub fn set_plugin_settings(&self, settings: std::collections::HashMap<String, Settings>) {
        let sorted = settings
            .into_iter()
            .map(|(id, mut kv)| {
                kv.sort();
                (id, Arc::new(kv))
            })
            .collect();
        self.settings.store(Arc::new(sorted));
    }

    /// Replaces every plugin's network grants (plugin id → ranges beyond the public internet
    /// it may reach); calls that start from now on use the new ones.
    pub fn set_network_grants(
        &self,
        grants: impl IntoIterator<Item = (String, Vec<ipnet::IpNet>)>,
    ) {
        let grants = grants
            .into_iter()
            .map(|(id, ranges)| (id, Arc::from(ranges)))
            .collect();
        self.network.store(Arc::new(grants));
    }

    /// Keeps plugins' durable state in `store` from now on (set it before serving).
    pub fn set_store(&self, store: cinder_store::Store) {
        self.store.store(Some(Arc::new(store)));
    }

    /// How many plugins were loaded from the on-disk compile cache instead of compiled.
    pub fn compile_cache_hits(&self) -> u64 {
        self.cache.hits()
    }
}

impl reload::Reload for Runtime {
    fn reload(&self, dir: &Path) -> Result<(Vec<PluginInfo>, usize), RuntimeError> {
        let plugins = self.load_dir(dir)?;
        Ok((plugins, self.failures().len()))
    }
}
