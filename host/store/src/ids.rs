//! Ids the store makes: a family's prefix and 24 characters from a per-process random stream
//! (std's `RandomState` is seeded by the OS). Ids are never built from client input, so one
//! can safely name a blob file.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `prefix` followed by 24 random lowercase letters and digits (`file-3k9...`).
pub fn new_id(prefix: &str) -> String {
    let state = std::hash::RandomState::new();
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for round in 0..2u64 {
        let mut h = state.build_hasher();
        h.write_u64(nanos);
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u64(round);
        let mut bits = h.finish();
        for _ in 0..12 {
            out.push(ALPHABET[(bits % 36) as usize] as char);
            bits /= 36;
        }
    }
    out
}

/// Whether `id` could have come from [`new_id`]: letters, digits, `-` and `_` only, so it
/// is safe as a file name.
pub fn is_store_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_safe() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id("file-")).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 29 && is_store_id(i)));
        for bad in ["", "../x", "a/b", "a b", ".."] {
            assert!(!is_store_id(bad), "{bad}");
        }
    }
}
