//! How far a model's load has got, for loads that take more than a second (a large GGUF, a
//! Hugging Face folder whose tensors are rewritten): a bar on a terminal (`indicatif`, the
//! well-kept crate for it), a log line per tenth otherwise. The default model loads in a
//! fraction of a second and shows nothing but its "model ready" line. The registry reports
//! (0, 1) as a load starts, then its backend's steps (layers, or tensors).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// How long a load runs before its progress is shown.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// What one report showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Nothing,
    Bar,
    /// A log line at this many tenths done.
    Line(usize),
}

/// Progress of the model loads at start-up (one at a time, as the registry loads them).
pub(crate) struct LoadProgress {
    terminal: bool,
    current: Mutex<Option<Current>>,
}

struct Current {
    model: String,
    started: Instant,
    bar: Option<ProgressBar>,
    /// Tenths already logged.
    logged: usize,
}

impl LoadProgress {
    /// A bar when standard error is a terminal, log lines otherwise.
    pub(crate) fn new() -> Self {
        Self::with_terminal(std::io::stderr().is_terminal())
    }

    fn with_terminal(terminal: bool) -> Self {
        LoadProgress {
            terminal,
            current: Mutex::new(None),
        }
    }

    /// Clears a bar left by a load that failed after it appeared.
    pub(crate) fn finish(&self) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = current.take().and_then(|c| c.bar) {
            bar.finish_and_clear();
        }
    }

    /// `model` has done `done` of its `total` loading steps.
    pub(crate) fn report(&self, model: &str, done: usize, total: usize) {
        self.report_at(model, done, total, Instant::now());
    }

    fn report_at(&self, model: &str, done: usize, total: usize, now: Instant) -> Shown {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|c| c.model != model) {
            if let Some(bar) = current.take().and_then(|c| c.bar) {
                bar.finish_and_clear();
            }
            *current = Some(Current {
                model: model.to_owned(),
                started: now,
                bar: None,
                logged: 0,
            });
        }
        let Some(c) = current.as_mut() else {
            return Shown::Nothing;
        };
        let finished = total == 0 || done >= total;
        if now.duration_since(c.started) < QUIET_FOR {
            return Shown::Nothing;
        }
        if self.terminal {
            let bar = c.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(total as u64);
                if let Ok(style) =
                    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}, {elapsed}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("loading {model}"));
                bar
            });
            bar.set_position(done as u64);
            if finished {
                bar.finish_and_clear();
            }
            return Shown::Bar;
        }
        let tenths = (done * 10).checked_div(total).unwrap_or(10);
        if tenths > c.logged {
            c.logged = tenths;
            info!(model, "loading weights: {done}/{total}");
            return Shown::Line(tenths);
        }
        Shown::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_shown_only_after_a_second_and_a_line_per_tenth_off_a_terminal() {
        let p = LoadProgress::with_terminal(false);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A quick load says nothing.
        assert_eq!(p.report_at("quick", 1, 10, at(0)), Shown::Nothing);
        assert_eq!(p.report_at("quick", 10, 10, at(300)), Shown::Nothing);
        // A slow one: nothing for its first second, then a line at each new tenth.
        assert_eq!(p.report_at("slow", 1, 100, at(400)), Shown::Nothing);
        assert_eq!(p.report_at("slow", 30, 100, at(1500)), Shown::Line(3));
        assert_eq!(p.report_at("slow", 31, 100, at(1600)), Shown::Nothing);
        assert_eq!(p.report_at("slow", 45, 100, at(1700)), Shown::Line(4));
        assert_eq!(p.report_at("slow", 100, 100, at(2000)), Shown::Line(10));
    }

    #[test]
    fn on_a_terminal_a_slow_load_gets_a_bar() {
        let p = LoadProgress::with_terminal(true);
        let t0 = Instant::now();
        assert_eq!(p.report_at("m", 1, 4, t0), Shown::Nothing);
        assert_eq!(
            p.report_at("m", 2, 4, t0 + Duration::from_secs(2)),
            Shown::Bar
        );
        assert_eq!(
            p.report_at("m", 4, 4, t0 + Duration::from_secs(3)),
            Shown::Bar
        );
    }
}
