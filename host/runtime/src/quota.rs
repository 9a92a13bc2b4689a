//! What one call may hold of the host's resources beyond its own memory and CPU: open
//! generations (each pins KV cache in the engine), log volume through the `log` import, and
//! bytes written to document storage. A plugin that passes a cap gets an error it can report,
//! never the host's memory, disk or log.

/// Generations a call may have open at once. Far above what a request can ask for (chat caps
/// `n` × prompts at `max_sequences_per_request`, 128 by default); it bounds a plugin that
/// starts generations in a loop.
pub(crate) const MAX_OPEN_GENERATIONS: u32 = 1024;
/// Bytes a call may log through the `log` import; the rest is counted and reported once. The
/// same budget as stdout and stderr.
pub(crate) const MAX_LOG_BYTES: usize = 1 << 20;
/// Longest message logged as is; a longer one is cut.
pub(crate) const MAX_LOG_MESSAGE: usize = 8 << 10;
/// Bytes a call may write to document storage (one value is at most 4 MiB).
pub(crate) const MAX_STORED_BYTES: u64 = 64 << 20;

/// One call's use so far.
#[derive(Debug, Default)]
pub(crate) struct Quota {
    pub(crate) open_generations: u32,
    pub(crate) log_bytes: usize,
    pub(crate) log_dropped: usize,
    pub(crate) stored_bytes: u64,
}

impl Quota {
    /// A message to log, cut to size, or `None` once the call's log budget is spent.
    pub(crate) fn log<'m>(&mut self, message: &'m str) -> Option<&'m str> {
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let cut = &message[..end];
        if self.log_bytes + cut.len() > MAX_LOG_BYTES {
            self.log_dropped += message.len();
            return None;
        }
        self.log_bytes += cut.len();
        Some(cut)
    }

    /// Counts `bytes` about to be stored; `Err` names the cap when they would pass it.
    pub(crate) fn store(&mut self, bytes: usize) -> Result<(), String> {
        let next = self.stored_bytes.saturating_add(bytes as u64);
        if next > MAX_STORED_BYTES {
            return Err(format!(
                "a request may store at most {MAX_STORED_BYTES} bytes of documents"
            ));
        }
        self.stored_bytes = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_cuts_and_then_drops() {
        let mut q = Quota::default();
        let long = "é".repeat(MAX_LOG_MESSAGE);
        let cut = q.log(&long).unwrap();
        assert!(cut.len() <= MAX_LOG_MESSAGE && cut.len() >= MAX_LOG_MESSAGE - 1);
        while q.log(&long).is_some() {}
        assert!(q.log_bytes <= MAX_LOG_BYTES);
        assert!(q.log_dropped > 0);
    }

    #[test]
    fn storage_budget_refuses_past_the_cap() {
        let mut q = Quota::default();
        q.store(MAX_STORED_BYTES as usize).unwrap();
        assert!(q.store(1).unwrap_err().contains("at most"));
    }
}
