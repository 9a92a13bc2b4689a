//! Hot reload of the config file. The folder holding it is watched (editors save by writing a
//! new file and renaming it over the old one, which a watch on the file itself would lose);
//! events are debounced, the file is parsed and validated again, and what changed is applied
//! or reported as needing a restart. An invalid file changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use cinder_config::Config;
use cinder_runtime::Runtime;
use notify::{RecursiveMode, Watcher};
use tracing::{debug, info, warn};
use tracing_subscriber::EnvFilter;

use crate::routes::Settings;

/// Quiet time after the last event before the file is read again.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Swaps the log filter of the running subscriber.
pub type LogHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Everything a config edit can reach.
pub struct Live {
    pub path: PathBuf,
    /// The configuration in effect: live keys as last applied, restart-only keys as at start.
    pub running: Mutex<Config>,
    pub settings: Arc<ArcSwap<Settings>>,
    pub runtime: Arc<Runtime>,
    pub models: Arc<cinder_core::ModelRegistry>,
    /// `None` when `RUST_LOG` is set: it overrides `server.log`.
    pub log: Option<LogHandle>,
}

/// The runtime limits a config asks for.
pub fn limits(c: &Config) -> cinder_runtime::Limits {
    cinder_runtime::Limits {
        memory_bytes: c.limits.plugin_memory_mib << 20,
        cpu_ms: c.limits.plugin_cpu_ms,
        timeout: Duration::from_secs(c.limits.request_timeout_secs),
        idle_timeout: Duration::from_secs(c.limits.idle_timeout_secs),
        max_instances: c.limits.max_concurrent_requests,
        max_queued: c.limits.max_queued_requests,
        max_file_bytes: c.limits.max_file_bytes,
    }
}

/// alias → model id, from every `[[models]]` entry: the configured aliases of the models that loaded: a model that failed to load (its error
/// is logged) takes its aliases with it, and the others keep theirs.
pub fn aliases(c: &Config, models: &cinder_core::ModelRegistry) -> HashMap<String, String> {
    c.models
        .iter()
        .filter(|m| {
            let loaded = models.is_loaded(&m.id);
            if !loaded && !m.aliases.is_empty() {
                warn!(model = %m.id, aliases = ?m.aliases, "the model is not loaded; its aliases name nothing");
            }
            loaded
        })
        .flat_map(|m| m.aliases.iter().map(|a| (a.clone(), m.id.clone())))
        .collect()
}

/// `[plugins.settings]` as the runtime takes them.
pub fn plugin_settings(c: &Config) -> HashMap<String, cinder_runtime::Settings> {
    c.plugins.settings_as_strings().into_iter().collect()
}

pub fn settings(c: &Config) -> Settings {
    Settings {
        max_body_bytes: c.server.max_body_bytes,
        max_file_bytes: c.limits.max_file_bytes,
        api_keys: c.server.api_keys.clone(),
        cors_origins: c.server.cors_origins.clone(),
        allowed_hosts: c.server.allowed_hosts.clone(),
        body_read_timeout: Duration::from_secs(c.server.body_read_timeout_secs),
        public_url: c.server.public_url.clone(),
    }
}

/// Reads and validates the file, including the log filter (which the config crate cannot
/// check without depending on tracing).
pub fn load(path: &Path) -> Result<Config> {
    let config = Config::load(path)?;
    EnvFilter::try_new(&config.server.log)
        .with_context(|| format!("server.log `{}` is not a valid filter", config.server.log))?;
    Ok(config)
}

impl Live {
    /// Applies the file as it is now.
    pub fn reload(&self) {
        let new = match load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                warn!(path = %self.path.display(), "config rejected, the previous configuration stays live: {e:#}");
                return;
            }
        };
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let changes = running.changes(&new);
        if changes.is_empty() {
            debug!(path = %self.path.display(), "config unchanged");
            return;
        }
        if !changes.restart.is_empty() {
            warn!(path = %self.path.display(), keys = ?changes.restart, "config change needs a restart to take effect; until then the running values stay");
        }
        if changes.live.is_empty() {
            return;
        }
        let mut next = running.clone();
        next.apply_live(&new);
        if changes.live.contains(&"models.aliases")
            && let Err(e) = self.models.set_aliases(aliases(&next, &self.models))
        {
            warn!(error = %e, "aliases not applied");
            // Only aliases can differ here (other model changes need a restart).
            next.models = running.models.clone();
        }
        *running = next;

        self.settings.store(Arc::new(settings(&running)));
        self.runtime.set_limits(limits(&running));
        self.runtime.set_plugin_settings(plugin_settings(&running));
        // Validated with the rest of the file: an error here cannot happen.
        if let Ok(grants) = running.plugins.network_grants() {
            self.runtime.set_network_grants(grants);
        }
        if changes.live.contains(&"server.log") {
            match (&self.log, EnvFilter::try_new(&running.server.log)) {
                (Some(handle), Ok(filter)) => {
                    if let Err(e) = handle.reload(filter) {
                        warn!(error = %e, "could not change the log filter");
                    }
                }
                (None, _) => info!("RUST_LOG is set and overrides server.log"),
                (_, Err(e)) => warn!(error = %e, "invalid log filter"),
            }
        }
        info!(path = %self.path.display(), keys = ?changes.live, "config reloaded");
    }
}

/// Watches the config file; the returned watcher must be kept alive.
pub fn watch(live: Arc<Live>) -> Result<notify::RecommendedWatcher> {
    let file = live
        .path
        .canonicalize()
        .unwrap_or_else(|_| live.path.clone());
    let name = file.file_name().map(ToOwned::to_owned);
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event.paths.iter().any(|p| p.file_name() == name.as_deref());
        if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("config-reload".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // An editor or a tool rewriting the file without pause still gets a reload.
                if !cinder_runtime::settle(&rx, DEBOUNCE, cinder_runtime::RELOAD_MAX_DELAY) {
                    return;
                }
                live.reload();
            }
        })?;
    Ok(watcher)
}
