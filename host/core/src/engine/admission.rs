//! Who runs: the engine admits a submitted sequence only while the running ones stay under
//! [`EngineLimits`] (a count and the KV cache they may grow to). The rest wait, holding no
//! cache, and are admitted fairly: the request (group) with the fewest sequences running goes
//! first, so one request with many choices cannot starve the others; background work (a
//! batch's requests) comes after every live request and holds at most half of the running
//! slots. Past `max_waiting`,
//! `submit` answers busy at once (a 429 at the edge) rather than queueing without end.
//!
//! Liveness comes before the caps: a reader may wait for a waiting sequence while the running
//! ones sit paused, their channels full, until it reads them (a plugin built before WIT 0.1.5
//! reads its choices in turn; a client may do the same). When nothing has moved for
//! [`STALL`], the next waiting sequence is admitted past the caps, one per stall, so such a
//! request finishes instead of holding its slots until the idle timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::request::GenerateRequest;
use crate::engine::sequence::Sequence;
use crate::engine::thread::Submission;
use crate::error::CoreError;
use crate::models::llama::LlamaConfig;

/// How long every running sequence may sit paused before one more is admitted past the caps.
pub(crate) const STALL: Duration = Duration::from_millis(200);

/// Engine-wide bounds, per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Sequences generating at once.
    pub max_running: usize,
    /// KV cache the running sequences may grow to, in bytes: each counts its prompt plus
    /// `max_tokens` (or the rest of the context when the request sets none).
    pub max_kv_bytes: usize,
    /// Sequences waiting to be admitted; past it, new ones are refused as busy.
    pub max_waiting: usize,
    /// What one output grammar may contain.
    pub grammar: crate::GrammarLimits,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_running: 64,
            max_kv_bytes: 16 << 30,
            max_waiting: 1024,
            grammar: crate::GrammarLimits::default(),
        }
    }
}

/// Counts the sequences submitted but not admitted yet, across the handle and the thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    /// Takes a place and hands the submission over with `send` (false: the engine has
    /// stopped), or says why not.
    pub(crate) fn enter(&self, limit: usize, send: impl FnOnce() -> bool) -> Result<(), CoreError> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return Err(CoreError::Busy(format!(
                "{before} sequences are already waiting for this model; retry shortly"
            )));
        }
        if !send() {
            self.leave();
            return Err(CoreError::EngineStopped);
        }
        Ok(())
    }

    pub(crate) fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sequences waiting for admission, in arrival order.
pub(crate) struct Queue {
    waiting: VecDeque<Submission>,
    /// Since when no running sequence has moved (`None` while they move).
    stalled_since: Option<Instant>,
    context_length: usize,
    /// KV cache bytes one position takes: f32 keys and values, every layer and KV head.
    kv_bytes_per_token: usize,
}

impl Queue {
    pub(crate) fn new(c: &LlamaConfig) -> Self {
        Queue {
            waiting: VecDeque::new(),
            stalled_since: None,
            context_length: c.context_length,
            kv_bytes_per_token: c.n_layers * c.n_kv_heads * c.head_dim * 2 * 4,
        }
    }

    /// The KV cache bytes `request` counts against the limit: its prompt and `max_tokens`, or
    /// the whole context when it sets no limit.
    pub(crate) fn reserve(&self, request: &GenerateRequest) -> usize {
        let room = self.context_length.saturating_sub(request.prompt.len());
        let max = request.max_tokens.map_or(room, |m| (m as usize).min(room));
        (request.prompt.len() + max).saturating_mul(self.kv_bytes_per_token)
    }

    pub(crate) fn push(&mut self, s: Submission) {
        self.waiting.push_back(s);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Records whether the last step moved any sequence.
    pub(crate) fn note_progress(&mut self, progressed: bool) {
        if progressed {
            self.stalled_since = None;
        } else if self.stalled_since.is_none() {
            self.stalled_since = Some(Instant::now());
        }
    }

    /// Whether the running sequences have all been paused for [`STALL`]: the next admission
    /// may pass the caps (and the clock starts again).
    fn stalled(&mut self) -> bool {
        let stalled = self.stalled_since.is_some_and(|t| t.elapsed() >= STALL);
        if stalled {
            self.stalled_since = None;
        }
        stalled
    }

    /// Takes the next submission that fits beside `running`, or `None`. Submissions whose
    /// client left are dropped on the way (and leave `counter`).
    pub(crate) fn next(
        &mut self,
        running: &[Sequence],
        limits: &EngineLimits,
        counter: &Waiting,
    ) -> Option<Submission> {
        self.waiting.retain(|s| {
            let gone = s.events.is_closed();
            if gone {
                counter.leave();
            }
            !gone
        });
        let full = running.len() >= limits.max_running;
        let mut per_group: HashMap<u64, usize> = HashMap::new();
        for seq in running {
            *per_group.entry(seq.request.group).or_default() += 1;
        }
        // Background work never takes more than half the slots: live requests find room.
        let background = running.iter().filter(|s| s.request.background).count();
        let background_full = background >= (limits.max_running / 2).max(1);
        // Live before background; then fewest running first; among equals, the oldest.
        let pick = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, s)| !(s.request.background && background_full))
            .min_by_key(|(i, s)| {
                let group = per_group.get(&s.request.group).copied().unwrap_or(0);
                (s.request.background, group, *i)
            })
            .map(|(i, _)| i)?;
        let reserved: usize = running.iter().map(|s| s.reserved).sum();
        let need = self.reserve(&self.waiting[pick].request);
        // One sequence always runs, however large: an idle engine never refuses work.
        let over = !running.is_empty() && reserved.saturating_add(need) > limits.max_kv_bytes;
        if (full || over) && !self.stalled() {
            return None;
        }
        let s = self.waiting.remove(pick)?;
        counter.leave();
        Some(s)
    }
}
