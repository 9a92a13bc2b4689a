//! Compiled plugins on disk. Cranelift takes ~0.4 s per plugin on this machine kind; loading a
//! serialized artifact takes under a millisecond, so a restart or a reload of an unchanged file
//! costs nothing. Artifacts are keyed by the wasm's SHA-256 and the engine's compatibility hash
//! (wasmtime version, target, and every setting that changes code), so a new host or a new
//! config never loads code compiled for another.
//!
//! An artifact is native code loaded without verification, so the cache trusts only what this
//! process could have written: the folder is private (0700, owned by this user; otherwise the
//! cache is not used), each file starts with the SHA-256 of the rest (a flipped bit or a
//! truncated file is compiled again, not run), and files are synced before they are renamed
//! into place.

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
        let path = self
            .path(engine, wasm)
            .filter(|p| p.parent().is_some_and(private_dir));
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            // Read into memory rather than `deserialize_file`: a mapped file that someone
            // truncates while the code runs would crash the process with SIGBUS.
            let loaded = std::fs::read(path)
                .map_err(wasmtime::Error::from)
                .and_then(|bytes| checked(&bytes).map(<[u8]>::to_vec))
                .and_then(|bytes| {
                    // SAFETY: the bytes are what `store` below wrote (their checksum matches)
                    // from `Component::serialize` of an engine with the same compatibility
                    // hash (it is in the name), into a folder only this user can write.
                    // wasmtime still checks the header and refuses an artifact from another
                    // engine configuration.
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

/// The artifact inside a cache file whose checksum matches, else an error.
fn checked(file: &[u8]) -> wasmtime::Result<&[u8]> {
    match file.split_at_checked(32) {
        Some((sum, artifact)) if Sha256::digest(artifact).as_slice() == sum => Ok(artifact),
        _ => Err(wasmtime::Error::msg("its checksum does not match")),
    }
}

/// Whether `dir` is a folder only this user can write, made so if it is new or ours. Elsewhere
/// (a shared folder, someone else's) the cache is not used: another user could plant code.
fn private_dir(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if !dir.exists() {
            let made = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
            if let Err(e) = made {
                tracing::warn!(path = %dir.display(), error = %e, "cannot create the compile cache; compiling every time");
                return false;
            }
        }
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return false;
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            tracing::warn!(path = %dir.display(), "the compile cache is not a folder of this user's; compiling every time");
            return false;
        }
        if meta.mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot make the compile cache private; compiling every time");
            return false;
        }
        true
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).is_ok()
    }
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&Sha256::digest(&bytes))?;
    file.write_all(&bytes)?;
    // On disk before the name points at it: a crash leaves the old file or the whole new one.
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}
