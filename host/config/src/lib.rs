#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod adapters;
mod images;
mod jobs;
mod limits;
pub use adapters::AdapterConfig;
pub use images::{IMAGE_SCHEDULERS, ImageModelConfig};
pub use jobs::JobsConfig;
use limits::MAX_SECONDS;
pub use limits::{GrammarLimits, Limits};

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
    pub storage: StorageConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// LoRA adapters served as models of their own over a `[[models]]` chat model.
    #[serde(default)]
    pub adapters: Vec<AdapterConfig>,
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
    /// Bearer keys every route but `/health` needs; empty means no key is required.
    pub api_keys: Vec<String>,
    /// Browser origins CORS allows (`https://app.example:3000`, `http://localhost:*` for any
    /// port); `*` allows any. A request from another origin may read nothing and change
    /// nothing. Default: pages served from this machine (loopback origins).
    pub cors_origins: Vec<String>,
    /// Host names, besides loopback ones, a server bound to a loopback address answers for
    /// (a reverse proxy's name); `*` turns the check off. It stops DNS rebinding: a web page
    /// whose name resolves to 127.0.0.1 still sends its own name as `Host`.
    pub allowed_hosts: Vec<String>,
    /// A client must send a request's headers within this many seconds of starting it (or of
    /// the previous response on a kept-alive connection), else the connection is closed.
    pub header_read_timeout_secs: u64,
    /// A client must send the whole request body within this many seconds of its headers,
    /// else it gets a 408: a client sending one byte a second cannot hold a connection.
    pub body_read_timeout_secs: u64,
    /// Client connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: u32,
    /// The URL clients reach this server at (`https://ai.example.com`), for links it hands
    /// out (an image's `url`). Default: `http://` and the request's `Host` header.
    pub public_url: Option<String>,
}

/// The default `server.cors_origins`: pages served from this machine, any port.
pub fn loopback_origins() -> Vec<String> {
    ["http", "https"]
        .iter()
        .flat_map(|scheme| {
            ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .map(move |h| format!("{scheme}://{h}:*"))
        })
        .collect()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 4 << 20,
            log: "info".into(),
            api_keys: Vec::new(),
            cors_origins: loopback_origins(),
            allowed_hosts: Vec::new(),
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
            max_connections: 1024,
            public_url: None,
        }
    }
}

/// `[plugins]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder holding one sub-folder per plugin (`plugin.toml` + `plugin.wasm`);
    /// `--plugins` overrides it.
    pub dir: Option<PathBuf>,
    /// Where compiled plugins are kept between reloads and restarts.
    pub cache_dir: PathBuf,
    /// Per plugin id, settings the plugin reads through the `config` WIT interface.
    pub settings: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// Per plugin id, address ranges beyond the public internet that a plugin granted
    /// `network` may reach (`"192.168.1.0/24"`, `"127.0.0.1"`): loopback, private,
    /// link-local and other special ranges are closed to plugins otherwise.
    pub network: BTreeMap<String, Vec<String>>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            cache_dir: PathBuf::from("~/.cache/cinder/compiled"),
            settings: BTreeMap::new(),
            network: BTreeMap::new(),
        }
    }
}

/// `[storage]`: where durable state lives (stored completions, files, batches, jobs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The embedded database (`cinder.db`, SQLite) and the blob folder (`blobs/`); plugins'
    /// document logs from before the database are migrated from here once.
    pub dir: PathBuf,
    /// `postgres://user:password@host/db`: keep objects and jobs in PostgreSQL instead, so
    /// several Cinder replicas share them (blobs stay under `dir`, which replicas must share).
    pub url: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("~/.local/share/cinder/documents"),
            url: None,
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
    /// The CPU's fast path: weights kept quantized, SIMD kernels.
    Cpu,
    /// burn's CPU backend with every weight dequantized to f32 (slower; a cross-check).
    Flex,
    /// burn-wgpu (any adapter, including a software one such as Mesa lavapipe).
    Wgpu,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients put in `model`.
    pub id: String,
    /// A GGUF file (a chat model) or a sentence-transformers folder (an embedding model); `~`
    /// and paths relative to the config file are resolved.
    pub path: PathBuf,
    #[serde(default)]
    pub backend: Backend,
    /// Threads the CPU path's kernels use (default: every core the machine has).
    #[serde(default)]
    pub threads: Option<usize>,
    /// MiB of KV cache blocks the CPU path keeps for prompts that start like earlier ones
    /// (same system prompt, a multi-turn history), beyond those running requests hold
    /// (default 64; 0 turns prefix reuse off).
    #[serde(default)]
    pub prefix_cache_mib: Option<usize>,
    /// A chat model that also serves `/v1/embeddings`: the mean of its final-normed hidden
    /// states, unit length (a sentence-transformers folder always serves embeddings).
    #[serde(default)]
    pub embeddings: bool,
    /// Let control-token text in user and tool messages (`<|im_start|>system`) act as control
    /// tokens, as a raw template would. Off by default: such text is read as text, so a user
    /// message cannot open a system turn.
    #[serde(default)]
    pub raw_control_tokens: bool,
    /// Other names clients may use for this model (`gpt-4o-mini`); edits apply at once.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// How decode steps multiply on the CPU path.
    #[serde(default)]
    pub decode_activations: Activations,
    /// How every matrix product on the CPU path multiplies, whatever the batch: `q8` re-lays
    /// the weights for integer kernels (AVX-512 VNNI; elsewhere it changes nothing).
    #[serde(default)]
    pub activations: Activations,
    /// `[models.image]`: what an image model (a diffusers folder) makes.
    #[serde(default)]
    pub image: ImageModelConfig,
}

/// The activations of matrix products on the CPU path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activations {
    /// f32, exact against f32 math on the dequantized weights.
    #[default]
    F32,
    /// Rounded to 8 bits per block of 32 and multiplied in integers (as llama.cpp does for
    /// quantized weights): faster, logits off by a little more.
    Q8,
}

impl PluginsConfig {
    /// `network` parsed: plugin id → the ranges it may reach (a bare address is one host).
    pub fn network_grants(&self) -> Result<BTreeMap<String, Vec<ipnet::IpNet>>, ConfigError> {
        self.network
            .iter()
            .map(|(id, ranges)| {
                let parsed = ranges
                    .iter()
                    .map(|r| {
                        r.parse::<ipnet::IpNet>()
                            .or_else(|_| r.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| {
                                ConfigError::Invalid(format!(
                                    "plugins.network.{id}: `{r}` is not an address or a CIDR range"
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Ok((id.clone(), parsed))
            })
            .collect()
    }

    /// Every plugin's settings as strings: TOML strings verbatim, other scalars as written.
    pub fn settings_as_strings(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.settings
            .iter()
            .map(|(id, kv)| {
                let kv = kv
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                (id.clone(), kv)
            })
            .collect()
    }
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
        for a in &mut config.adapters {
            a.path = resolve(base, &a.path);
        }
        if let Some(dir) = &config.plugins.dir {
            config.plugins.dir = Some(resolve(base, dir));
        }
        config.plugins.cache_dir = resolve(base, &config.plugins.cache_dir);
        config.storage.dir = resolve(base, &config.storage.dir);
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
            m.image.validate(&m.id)?;
        }
        let mut names = std::collections::HashSet::new();
        for m in &self.models {
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                if name.is_empty() || !names.insert(name.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "model name `{name}` is empty or used twice (ids and aliases share one namespace)"
                    )));
                }
            }
        }
        for a in &self.adapters {
            if a.id.is_empty() || !names.insert(a.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "adapter id `{}` is empty or names a model, an alias or another adapter",
                    a.id
                )));
            }
            if !self.models.iter().any(|m| m.id == a.base) {
                return Err(ConfigError::Invalid(format!(
                    "adapter `{}`: base `{}` is not a [[models]] id",
                    a.id, a.base
                )));
            }
        }
        self.plugins.network_grants()?;
        for (id, settings) in &self.plugins.settings {
            for (key, value) in settings {
                if matches!(value, toml::Value::Array(_) | toml::Value::Table(_)) {
                    return Err(ConfigError::Invalid(format!(
                        "plugins.settings.{id}.{key}: a setting is a string, number or boolean"
                    )));
                }
            }
        }
        self.limits.validate()?;
        self.jobs.validate()?;
        if let Some(url) = &self.storage.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "storage.url: a PostgreSQL URL (postgres://user:password@host:port/database); leave it out for the embedded SQLite database".into(),
            ));
        }
        let s = &self.server;
        for (key, value, max) in [
            ("header_read_timeout_secs", s.header_read_timeout_secs, 3600),
            (
                "body_read_timeout_secs",
                s.body_read_timeout_secs,
                MAX_SECONDS,
            ),
            ("max_connections", u64::from(s.max_connections), 1 << 20),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::Invalid(format!(
                    "server.{key} is {value}; it must be between 1 and {max}"
                )));
            }
        }
        if let Some(url) = &s.public_url {
            let scheme = url.starts_with("http://") || url.starts_with("https://");
            let clean = url.bytes().all(|b| b.is_ascii_graphic()) && !url.contains(['?', '#']);
            if !scheme || !clean || url.ends_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "server.public_url `{url}`: an http:// or https:// URL without a trailing slash, query or fragment (e.g. \"https://ai.example.com\")"
                )));
            }
        }
        Ok(())
    }

    /// What changed from `self` to `new`, as dotted keys, split by whether a running server
    /// can apply it.
    pub fn changes(&self, new: &Config) -> Changes {
        let mut c = Changes::default();
        let (a, b) = (&self.server, &new.server);
        c.note(a.host != b.host, "server.host", false);
        c.note(a.port != b.port, "server.port", false);
        c.note(
            a.max_body_bytes != b.max_body_bytes,
            "server.max_body_bytes",
            true,
        );
        c.note(a.log != b.log, "server.log", true);
        c.note(a.api_keys != b.api_keys, "server.api_keys", true);
        c.note(
            a.cors_origins != b.cors_origins,
            "server.cors_origins",
            true,
        );
        c.note(
            a.allowed_hosts != b.allowed_hosts,
            "server.allowed_hosts",
            true,
        );
        c.note(a.public_url != b.public_url, "server.public_url", true);
        // The accept loop and each connection's parser are set up when the server starts.
        c.note(
            a.header_read_timeout_secs != b.header_read_timeout_secs,
            "server.header_read_timeout_secs",
            false,
        );
        c.note(
            a.max_connections != b.max_connections,
            "server.max_connections",
            false,
        );
        c.note(
            a.body_read_timeout_secs != b.body_read_timeout_secs,
            "server.body_read_timeout_secs",
            true,
        );
        c.note(self.plugins.dir != new.plugins.dir, "plugins.dir", false);
        c.note(
            self.plugins.cache_dir != new.plugins.cache_dir,
            "plugins.cache_dir",
            false,
        );
        c.note(self.storage.dir != new.storage.dir, "storage.dir", false);
        c.note(self.storage.url != new.storage.url, "storage.url", false);
        // The workers start with the server.
        c.note(self.jobs != new.jobs, "jobs", false);
        c.note(
            self.plugins.settings != new.plugins.settings,
            "plugins.settings",
            true,
        );
        c.note(
            self.plugins.network != new.plugins.network,
            "plugins.network",
            true,
        );
        let (a, b) = (&self.limits, &new.limits);
        // The instance pool is sized from these two when the server starts.
        c.note(
            a.plugin_memory_mib != b.plugin_memory_mib,
            "limits.plugin_memory_mib",
            false,
        );
        c.note(
            a.max_concurrent_requests != b.max_concurrent_requests,
            "limits.max_concurrent_requests",
            false,
        );
        c.note(
            a.plugin_cpu_ms != b.plugin_cpu_ms,
            "limits.plugin_cpu_ms",
            true,
        );
        c.note(
            a.request_timeout_secs != b.request_timeout_secs,
            "limits.request_timeout_secs",
            true,
        );
        c.note(
            a.max_queued_requests != b.max_queued_requests,
            "limits.max_queued_requests",
            true,
        );
        c.note(
            a.idle_timeout_secs != b.idle_timeout_secs,
            "limits.idle_timeout_secs",
            true,
        );
        c.note(
            a.max_file_bytes != b.max_file_bytes,
            "limits.max_file_bytes",
            true,
        );
        // Each model's engine thread takes them when it starts.
        c.note(
            a.max_running_sequences != b.max_running_sequences,
            "limits.max_running_sequences",
            false,
        );
        c.note(a.max_kv_mib != b.max_kv_mib, "limits.max_kv_mib", false);
        c.note(
            a.max_waiting_sequences != b.max_waiting_sequences,
            "limits.max_waiting_sequences",
            false,
        );
        // Each model's grammar compiler takes them when the model loads.
        c.note(a.grammar != b.grammar, "limits.grammar", false);
        // Aliases apply live; loading and unloading models while serving is not built yet.
        let without_aliases = |models: &[ModelConfig]| -> Vec<ModelConfig> {
            models
                .iter()
                .map(|m| ModelConfig {
                    aliases: Vec::new(),
                    ..m.clone()
                })
                .collect()
        };
        let same_models = without_aliases(&self.models) == without_aliases(&new.models);
        c.note(!same_models, "models", false);
        c.note(self.adapters != new.adapters, "adapters", false);
        c.note(
            same_models && self.models != new.models,
            "models.aliases",
            true,
        );
        c
    }
}

impl Config {
    /// Takes every key a running server applies live from `new` (the `live` keys of
    /// [`Config::changes`]); restart-only keys keep their values.
    pub fn apply_live(&mut self, new: &Config) {
        let (s, n) = (&mut self.server, &new.server);
        s.max_body_bytes = n.max_body_bytes;
        s.log = n.log.clone();
        s.api_keys = n.api_keys.clone();
        s.cors_origins = n.cors_origins.clone();
        self.plugins.settings = new.plugins.settings.clone();
        self.plugins.network = new.plugins.network.clone();
        let (l, n) = (&mut self.limits, &new.limits);
        l.plugin_cpu_ms = n.plugin_cpu_ms;
        l.request_timeout_secs = n.request_timeout_secs;
        l.idle_timeout_secs = n.idle_timeout_secs;
        l.max_queued_requests = n.max_queued_requests;
        l.max_file_bytes = n.max_file_bytes;
        if self.changes(new).live.contains(&"models.aliases") {
            for (m, n) in self.models.iter_mut().zip(&new.models) {
                m.aliases = n.aliases.clone();
            }
        }
    }
}

/// The result of [`Config::changes`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys applied without a restart.
    pub live: Vec<&'static str>,
    /// Keys that only take effect after a restart.
    pub restart: Vec<&'static str>,
}

impl Changes {
    fn note(&mut self, changed: bool, key: &'static str, live: bool) {
        if changed {
            if live {
                self.live.push(key);
            } else {
                self.restart.push(key);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
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
mod tests;
