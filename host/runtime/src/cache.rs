//! Compiled plugins on disk. Cranelift takes ~0.4 s per plugin on this machine kind; loading a
//! serialized artifact takes under a millisecond, so a restart or a reload of an unchanged file
//! costs nothing. Artifacts are keyed by the wasm's SHA-256 and the engine's compatibility hash
//! (wasmtime version, target, and every setting that changes code), so a new host or a new
//! config never loads code compiled for another.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled artifacts live, and how often they were reused.
pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
}

impl CompileCache {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        CompileCache {
            dir,
            hits: AtomicU64::new(0),
        }
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn path(&self, engine: &Engine, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let content: String = Sha256::digest(wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(dir.join(format!("{content}-{:016x}.cwasm", h.finish())))
    }

    /// The compiled component for `wasm`: from the cache when this host wrote it there before,
    /// else compiled now and stored (a failure to store is logged, never fatal).
    pub(crate) fn component(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path(engine, wasm);
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            // Read into memory rather than `deserialize_file`: a mapped file that someone
            // truncates while the code runs would crash the process with SIGBUS.
            let loaded = std::fs::read(path)
                .map_err(wasmtime::Error::from)
                .and_then(|bytes| {
                    // SAFETY: the file is only ever written by `store` below, from
                    // `Component::serialize` of an engine with the same compatibility hash (it is
                    // in the name), to a temporary name renamed into place, so it is never partial.
                    // wasmtime still checks the header and refuses an artifact from another engine
                    // configuration.
                    unsafe { Component::deserialize(engine, &bytes) }
                });
            match loaded {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(path = %path.display(), "compiled plugin loaded from the cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cached artifact unusable; compiling again")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = path
            && let Err(e) = store(&component, &path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled plugin");
        }
        Ok(component)
    }
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
