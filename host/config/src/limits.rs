//! `[limits]`: what one request, one plugin call and one model may use, each with a safe
//! default and an upper bound.

use serde::Deserialize;

use crate::ConfigError;

/// `limits.*_secs` and `plugin_cpu_ms` at most a day.
pub(crate) const MAX_SECONDS: u64 = 86_400;
/// wasm32's whole address space.
const MAX_PLUGIN_MEMORY_MIB: u64 = 4096;
/// Instances alive at once (each reserves its memory's address space in the pool).
const MAX_CONCURRENT: u64 = 4096;
const MAX_QUEUED: u64 = 1_000_000;

/// `[limits]`: what one plugin call may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to, in MiB.
    pub plugin_memory_mib: u64,
    /// CPU time a plugin may spend running (not waiting for tokens) per request, in ms.
    pub plugin_cpu_ms: u64,
    /// Wall-clock limit of one request, in seconds (a multipart body's arrival is not
    /// counted: it is bounded by its progress).
    pub request_timeout_secs: u64,
    /// A request that makes no progress (no token, no write taken by the client) for this
    /// long is ended with a 504, in seconds.
    pub idle_timeout_secs: u64,
    /// Plugin instances alive at once; more concurrent requests wait for a slot.
    pub max_concurrent_requests: u32,
    /// Requests allowed to wait for a slot; beyond that the server answers 429 with
    /// `Retry-After` at once instead of queueing without end.
    pub max_queued_requests: u32,
    /// Sequences (choices, prompts) each model generates at once; more wait, holding no
    /// cache, and are admitted fairly between requests.
    pub max_running_sequences: u32,
    /// KV cache, in MiB, each model's running sequences may grow to (each counts its prompt
    /// plus `max_tokens`, or the whole context without one).
    pub max_kv_mib: u64,
    /// Sequences allowed to wait for a model; beyond that requests get a 429.
    pub max_waiting_sequences: u32,
    /// The largest file (an upload, a file part joined, a batch's output) in bytes; a bigger
    /// one is refused with a 413. OpenAI's limit, 512 MiB, by default.
    pub max_file_bytes: u64,
    /// `[limits.grammar]`: what one output grammar may contain.
    pub grammar: GrammarLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plugin_memory_mib: 64,
            plugin_cpu_ms: 10_000,
            request_timeout_secs: 600,
            idle_timeout_secs: 120,
            max_concurrent_requests: 64,
            max_queued_requests: 256,
            max_running_sequences: 64,
            max_kv_mib: 16 << 10,
            max_waiting_sequences: 1024,
            max_file_bytes: 512 << 20,
            grammar: GrammarLimits::default(),
        }
    }
}

/// `[limits.grammar]`: bounds on a grammar (`response_format`, forced tools, a plugin's own
/// constraint) checked before the grammar compiler sees it. Its compiler recurses without a
/// depth guard, on a 64 MiB stack here: 3000 `$ref` hops overflowed 8 MiB, so the upper
/// bounds keep well inside 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrammarLimits {
    /// JSON values in a whole schema.
    pub max_nodes: u64,
    /// Nesting of JSON values.
    pub max_depth: u64,
    /// `$ref` keywords in a schema.
    pub max_refs: u64,
    /// Entries of `$defs` and `definitions` together.
    pub max_definitions: u64,
    /// Properties (and `required` names) of one object schema.
    pub max_properties: u64,
    /// KiB of a regex or Lark grammar's text.
    pub max_text_kib: u64,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        GrammarLimits {
            max_nodes: 50_000,
            max_depth: 64,
            max_refs: 1_000,
            max_definitions: 1_000,
            max_properties: 2_000,
            max_text_kib: 256,
        }
    }
}

impl Limits {
    /// Every value above zero (but `max_queued_requests`) and within its bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = self;
        // Upper bounds: a huge timeout overflows the deadline arithmetic of every request, a
        // huge pool reserves address space for every instance.
        for (key, value, max) in [
            (
                "plugin_memory_mib",
                l.plugin_memory_mib,
                MAX_PLUGIN_MEMORY_MIB,
            ),
            ("plugin_cpu_ms", l.plugin_cpu_ms, MAX_SECONDS * 1000),
            ("request_timeout_secs", l.request_timeout_secs, MAX_SECONDS),
            ("idle_timeout_secs", l.idle_timeout_secs, MAX_SECONDS),
            (
                "max_concurrent_requests",
                u64::from(l.max_concurrent_requests),
                MAX_CONCURRENT,
            ),
            (
                "max_queued_requests",
                u64::from(l.max_queued_requests),
                MAX_QUEUED,
            ),
            (
                "max_running_sequences",
                u64::from(l.max_running_sequences),
                MAX_CONCURRENT,
            ),
            ("max_kv_mib", l.max_kv_mib, 1 << 30),
            ("max_file_bytes", l.max_file_bytes, 1 << 40),
            (
                "max_waiting_sequences",
                u64::from(l.max_waiting_sequences),
                MAX_QUEUED,
            ),
        ] {
            if value == 0 && key != "max_queued_requests" {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} must be greater than zero"
                )));
            }
            if value > max {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} is {value}; at most {max}"
                )));
            }
        }
        let g = &self.grammar;
        for (key, value, max) in [
            ("max_nodes", g.max_nodes, 1_000_000),
            ("max_depth", g.max_depth, 1_024),
            ("max_refs", g.max_refs, 10_000),
            ("max_definitions", g.max_definitions, 10_000),
            ("max_properties", g.max_properties, 50_000),
            ("max_text_kib", g.max_text_kib, 4_096),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::Invalid(format!(
                    "limits.grammar.{key} is {value}; it must be between 1 and {max}"
                )));
            }
        }
        Ok(())
    }
}
