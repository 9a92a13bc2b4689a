//! The plugin's settings (`[plugins.settings.batches]`), each bounded.

use cinder_sdk::host::Config;

fn number(host: &dyn Config, key: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    host.setting(key)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| range.contains(v))
        .unwrap_or(default)
}

/// `max_input_bytes`: the largest input file (OpenAI's limit, 200 MB, by default).
pub fn max_input_bytes(host: &dyn Config) -> u64 {
    number(host, "max_input_bytes", 200_000_000, 1..=1 << 40)
}

/// `max_requests`: requests one batch may hold (OpenAI's 50,000 by default).
pub fn max_requests(host: &dyn Config) -> u64 {
    number(host, "max_requests", 50_000, 1..=1_000_000)
}

/// `requests_per_step`: requests one step sends (the host runs a few at a time); a step is
/// also what a crash may lose and redo.
pub fn requests_per_step(host: &dyn Config) -> u64 {
    number(host, "requests_per_step", 16, 1..=256)
}
