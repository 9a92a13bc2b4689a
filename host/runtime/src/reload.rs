//! Hot reload of the plugin folder: one `notify` watcher, one reload thread. Events are
//! debounced (a deploy writes several files, and a copy lands in pieces), then the whole folder
//! is reloaded through `Runtime::load_dir`, which reuses unchanged plugins and keeps the
//! previous version of a broken one. Only what a reload reads counts: a plugin folder coming
//! or going, its `plugin.toml`, its `plugin.wasm`. Writes under a plugin's `data/` (which the
//! guest sees live) do not, and no stream of events postpones a reload past [`MAX_DELAY`].

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tracing::{info, warn};

use crate::failure::RuntimeError;
use crate::plugin::PluginInfo;

/// What a reload does: the runtime loads the folder again. A trait, so the watcher does not
/// reach back into the runtime that owns it.
pub(crate) trait Reload: Send + Sync {
    /// Loads `dir` again; the plugins now serving and how many folders were refused.
    fn reload(&self, dir: &Path) -> Result<(Vec<PluginInfo>, usize), RuntimeError>;
}

/// Quiet time after the last event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// The longest a reload waits for quiet after the first event.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// Waits until `rx` has been quiet for `quiet`, or `max` has passed since this call, whichever
/// comes first (a writer that never stops cannot postpone a reload for ever). False when the
/// channel is closed.
pub fn settle(rx: &mpsc::Receiver<()>, quiet: Duration, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match rx.recv_timeout(quiet.min(left)) {
            Ok(()) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => return true,
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Whether a change at `path` can change what a reload of `root` loads.
fn matters(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let parts: Vec<_> = rel.components().collect();
    match parts.as_slice() {
        // The folder itself, or a plugin folder created, removed or renamed.
        [] | [_] => true,
        [_, file] => matches!(
            file.as_os_str().to_str(),
            Some("plugin.toml" | "plugin.wasm")
        ),
        _ => false,
    }
}

pub(crate) fn watch(
    runtime: Weak<dyn Reload>,
    dir: PathBuf,
) -> Result<notify::RecommendedWatcher, RuntimeError> {
    let fail = |e: notify::Error| RuntimeError::Plugin {
        path: dir.display().to_string(),
        reason: format!("cannot watch: {e}"),
    };
    let (tx, rx) = mpsc::channel();
    // notify reports canonical paths on some platforms.
    let root = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let watched = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reading the files (as a reload does) raises access events; reacting to those would
        // reload forever.
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event
            .paths
            .iter()
            .any(|p| matters(&root, p) || matters(&watched, p))
        {
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
                if !settle(&rx, DEBOUNCE, MAX_DELAY) {
                    return;
                }
                let Some(runtime) = runtime.upgrade() else { return };
                match runtime.reload(&dir) {
                    Ok((plugins, failures)) => {
                        let loaded: Vec<String> = plugins.iter().map(|p| format!("{}@{}", p.id, p.version)).collect();
                        info!(dir = %dir.display(), plugins = ?loaded, failures, "plugins reloaded");
                    }
                    Err(e) => warn!(error = %e, "plugin folder reload failed; previous plugins keep serving"),
                }
            }
        })
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_reload_reads_matters() {
        let root = Path::new("/p");
        for yes in [
            "/p",
            "/p/chat",
            "/p/chat/plugin.toml",
            "/p/chat/plugin.wasm",
        ] {
            assert!(matters(root, Path::new(yes)), "{yes}");
        }
        for no in [
            "/p/chat/data/x",
            "/p/chat/data",
            "/p/chat/notes.txt",
            "/q/chat/plugin.toml",
        ] {
            assert!(!matters(root, Path::new(no)), "{no}");
        }
    }

    #[test]
    fn a_steady_stream_of_events_cannot_postpone_for_ever() {
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            for _ in 0..1000 {
                if tx.send(()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let started = Instant::now();
        assert!(settle(
            &rx,
            Duration::from_millis(100),
            Duration::from_millis(300)
        ));
        let waited = started.elapsed();
        // Without the cap it would wait for the writer's 10 s.
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        drop(rx);
        let _ = writer.join();
    }
}
