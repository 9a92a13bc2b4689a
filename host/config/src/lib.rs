//! Cinder's configuration: one TOML file (`cinder.example.toml` documents every key).
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; `--host` overrides it.
    pub host: String,
    /// Port to bind; `--port` overrides it (0 picks a free port).
    pub port: u16,
    /// Largest accepted request body in bytes; larger bodies get a 413.
    pub max_body_bytes: usize,
    /// `tracing` filter, e.g. `info` or `cinder=debug,info`; `RUST_LOG` overrides it.
    pub log: String,
    /// Bearer keys accepted on `/v1/*`; empty means no key is required.
    pub api_keys: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 4 << 20,
            log: "info".into(),
            api_keys: Vec::new(),
        }
    }
}

/// `[plugins]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder holding one sub-folder per plugin (`plugin.toml` + `plugin.wasm`);
    /// `--plugins` overrides it.
    pub dir: Option<PathBuf>,
}

/// `[limits]`: what one plugin call may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to, in MiB.
    pub plugin_memory_mib: u64,
    /// CPU time a plugin may spend running (not waiting for tokens) per request, in ms.
    pub plugin_cpu_ms: u64,
    /// Wall-clock limit of one request, in seconds.
    pub request_timeout_secs: u64,
    /// Plugin instances alive at once; more concurrent requests wait for a slot.
    pub max_concurrent_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plugin_memory_mib: 64,
            plugin_cpu_ms: 10_000,
            request_timeout_secs: 600,
            max_concurrent_requests: 64,
        }
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A GPU through wgpu when one is present, else the CPU.
    #[default]
    Auto,
    /// burn's CPU backend.
    Cpu,
    /// burn-wgpu (any adapter, including a software one such as Mesa lavapipe).
    Wgpu,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients put in `model`.
    pub id: String,
    /// A GGUF file; `~` and paths relative to the config file are resolved.
    pub path: PathBuf,
    #[serde(default)]
    pub backend: Backend,
}

impl Config {
    /// Reads and validates a config file; relative model paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for m in &mut config.models {
            m.path = resolve(base, &m.path);
        }
        if let Some(dir) = &config.plugins.dir {
            config.plugins.dir = Some(resolve(base, dir));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if m.id.is_empty() || !seen.insert(m.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "model id `{}` is empty or used twice",
                    m.id
                )));
            }
        }
        if self.limits.plugin_memory_mib == 0 || self.limits.max_concurrent_requests == 0 {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Expands a leading `~` and makes a relative path relative to `base`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cinder.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.models[0].id, "smollm2-135m-instruct");
        assert!(c.models[0].path.is_absolute());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[server]\nprot = 1\n").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let c: Config =
            toml::from_str("[[models]]\nid='a'\npath='x'\n[[models]]\nid='a'\npath='y'\n").unwrap();
        assert!(c.validate().is_err());
    }
}
