//! Hot reload of the plugin folder: one `notify` watcher, one reload thread. Events are
//! debounced (a deploy writes several files, and a copy lands in pieces), then the whole folder
//! is reloaded through `Runtime::load_dir`, which reuses unchanged plugins and keeps the
//! previous version of a broken one.

use std::path::PathBuf;
use std::sync::Weak;
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tracing::{info, warn};

use crate::{Runtime, RuntimeError};

/// Quiet time after the last event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);

pub(crate) fn watch(
    runtime: Weak<Runtime>,
    dir: PathBuf,
) -> Result<notify::RecommendedWatcher, RuntimeError> {
    let fail = |e: notify::Error| RuntimeError::Plugin {
        path: dir.display().to_string(),
        reason: format!("cannot watch: {e}"),
    };
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the files (as a reload does) raises access events; reacting to those would
        // reload forever.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })
    .map_err(fail)?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(fail)?;
    std::thread::Builder::new()
        .name("plugin-reload".into())
        .spawn(move || {
            // Ends when the watcher (held by the runtime) is dropped and the channel closes.
            while rx.recv().is_ok() {
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                let Some(runtime) = runtime.upgrade() else { return };
                match runtime.load_dir(&dir) {
                    Ok(plugins) => {
                        let loaded: Vec<String> = plugins.iter().map(|p| format!("{}@{}", p.id, p.version)).collect();
                        info!(dir = %dir.display(), plugins = ?loaded, failures = runtime.failures().len(), "plugins reloaded");
                    }
                    Err(e) => warn!(error = %e, "plugin folder reload failed; previous plugins keep serving"),
                }
            }
        })
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
    Ok(watcher)
}
