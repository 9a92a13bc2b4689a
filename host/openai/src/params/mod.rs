//! OpenAI's request rules, written once: every range, count and conflict between fields that
//! OpenAI documents for a request, checked into typed values in OpenAI's own terms. A mistake
//! is an [`Invalid`] naming the parameter at fault, as OpenAI names it (`top_p`,
//! `messages[2].role`, `response_format.json_schema.schema`).
//!
//! Plugins reach these through the SDK (`cinder_sdk::openai::params`) and turn the checked
//! values into the WIT's calls; what the engine refuses on its own (a prompt longer than the
//! model's context) comes back from the host in WIT's terms and is renamed by the plugin.
//! Limits that are Cinder's (sequences per request, prompt tokens per request) are plugin
//! settings and live in the plugins, not here.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::chat::{StopSequences, StreamOptions};

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod filters;
pub mod fine_tuning;
pub mod images;
pub mod list;
pub mod responses;
pub mod videos;

/// A request that breaks one of OpenAI's rules: a 400 `invalid_request_error` naming `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong, for a person.
    pub message: String,
    /// The parameter at fault, as the request named it.
    pub param: Option<String>,
    /// OpenAI's machine-readable code, where it has one.
    pub code: Option<String>,
}

impl Invalid {
    /// A 400 naming `param`.
    pub fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{} (param {p})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Invalid {}

/// What a check returns.
pub type Checked<T> = Result<T, Invalid>;

/// A body parsed into `T`, with the paths of the fields `T` does not know (callers log them:
/// newer SDKs send fields a server may not know yet, and those are never refused).
pub fn parse_body<T: DeserializeOwned>(body: &str) -> Checked<(T, Vec<String>)> {
    crate::ErrorBody::parse_json(body).map_err(|b| Invalid {
        message: b.error.message,
        param: b.error.param,
        code: b.error.code,
    })
}

/// OpenAI's upper bound for `n`.
pub const MAX_N: u32 = 128;
/// OpenAI's bound for the number of stop sequences.
pub const MAX_STOP: usize = 4;
/// Bytes in one stop sequence (the engine matches stop strings after every token).
pub const MAX_STOP_BYTES: usize = 1024;

/// Absent, or within `[min, max]`.
pub fn check_range(param: &str, value: Option<f32>, min: f32, max: f32) -> Checked<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(Invalid::new(
            format!("{param} must be between {min} and {max}, got {v}"),
            param,
        )),
        _ => Ok(()),
    }
}

/// Absent, or at least 1.
pub fn at_least_one(param: &str, value: Option<u32>) -> Checked<()> {
    if value == Some(0) {
        return Err(Invalid::new(format!("{param} must be at least 1"), param));
    }
    Ok(())
}

/// `n` within OpenAI's bounds (default 1).
pub fn n(n: Option<u32>) -> Checked<u32> {
    let n = n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(Invalid::new(
            format!("n must be between 1 and {MAX_N}"),
            "n",
        ));
    }
    Ok(n)
}

/// `stop`: at most [`MAX_STOP`] strings of at most [`MAX_STOP_BYTES`] bytes. An empty string
/// is allowed and stops nothing (OpenAI answers as if it were absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stop(Vec<String>);

impl Stop {
    /// Checks `stop` as the request gave it.
    pub fn check(stop: Option<StopSequences>) -> Checked<Stop> {
        let stop = stop.map(StopSequences::into_vec).unwrap_or_default();
        if stop.len() > MAX_STOP {
            return Err(Invalid::new(
                format!("stop takes at most {MAX_STOP} sequences"),
                "stop",
            ));
        }
        if let Some(long) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(Invalid::new(
                format!(
                    "a stop sequence is at most {MAX_STOP_BYTES} bytes, got {}",
                    long.len()
                ),
                "stop",
            ));
        }
        Ok(Stop(stop))
    }

    /// The strings that stop a generation (empty ones dropped: they stop nothing).
    pub fn into_strings(self) -> Vec<String> {
        self.0.into_iter().filter(|s| !s.is_empty()).collect()
    }
}

/// `stream_options.include_usage`; `stream_options` without `stream` is refused.
pub fn include_usage(options: Option<&StreamOptions>, stream: bool) -> Checked<bool> {
    if options.is_some() && !stream {
        return Err(Invalid::new(
            "stream_options is only allowed when stream is true",
            "stream_options",
        ));
    }
    Ok(options.is_some_and(|o| o.include_usage))
}

/// The sampling fields chat and legacy completions share, as the request gave them.
#[derive(Debug, Clone, Default)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
}

/// Sampling parameters with every range checked and OpenAI's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 to 2 (default 1); 0 is greedy.
    pub temperature: f32,
    /// Above 0, at most 1 (default 1).
    pub top_p: f32,
    /// OpenAI takes any 64-bit integer; its bits are the seed.
    pub seed: Option<u64>,
    /// -2 to 2 (default 0).
    pub presence_penalty: f32,
    /// -2 to 2 (default 0).
    pub frequency_penalty: f32,
    /// Token id → bias in -100 to 100, in token order.
    pub logit_bias: Vec<(u32, f32)>,
}

impl SamplingFields {
    /// Checks every range.
    pub fn check(self) -> Checked<Sampling> {
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        if self.top_p == Some(0.0) {
            return Err(Invalid::new("top_p must be greater than 0", "top_p"));
        }
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let mut logit_bias = Vec::new();
        for (k, v) in self.logit_bias.unwrap_or_default() {
            let token = k.parse::<u32>().map_err(|_| {
                Invalid::new(
                    format!("logit_bias key `{k}` is not a token id"),
                    "logit_bias",
                )
            })?;
            check_range("logit_bias", Some(v), -100.0, 100.0)?;
            logit_bias.push((token, v));
        }
        Ok(Sampling {
            temperature: self.temperature.unwrap_or(1.0),
            top_p: self.top_p.unwrap_or(1.0),
            seed: self.seed.map(|s| s as u64),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias,
        })
    }
}

/// OpenAI's rules for `metadata`: up to 16 string pairs, keys ≤ 64 and values ≤ 512 chars.
/// `None` (or JSON null) when absent.
pub fn metadata(metadata: Option<Value>) -> Checked<Option<Value>> {
    let Some(metadata) = metadata.filter(|m| !m.is_null()) else {
        return Ok(None);
    };
    let bad = |why: &str| Invalid::new(format!("Invalid metadata: {why}"), "metadata");
    let map = metadata
        .as_object()
        .ok_or_else(|| bad("expected an object of strings"))?;
    if map.len() > 16 {
        return Err(bad("at most 16 keys"));
    }
    for (k, v) in map {
        let v = v
            .as_str()
            .ok_or_else(|| bad(&format!("the value of `{k}` is not a string")))?;
        if k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(bad("keys are at most 64 and values at most 512 characters"));
        }
    }
    Ok(Some(metadata))
}

/// The tiers OpenAI accepts.
pub const SERVICE_TIERS: [&str; 5] = ["auto", "default", "flex", "scale", "priority"];

/// `service_tier`, one of [`SERVICE_TIERS`].
pub fn service_tier(tier: Option<String>) -> Checked<Option<String>> {
    match tier {
        Some(t) if !SERVICE_TIERS.contains(&t.as_str()) => Err(Invalid::new(
            format!(
                "Invalid service_tier `{t}`: expected one of {}",
                SERVICE_TIERS.join(", ")
            ),
            "service_tier",
        )),
        t => Ok(t),
    }
}

#[cfg(test)]
mod tests;
