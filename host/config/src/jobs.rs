//! `[jobs]`: how this process runs background work (batches; later runs, fine-tuning,
//! videos). Every value is bounded: a job's client controls what is queued, the operator how
//! much of the machine runs it.

use serde::Deserialize;

use crate::ConfigError;

/// `[jobs]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs of each kind (batches, background responses, ...) this process runs at once, so
    /// one family's long job never holds up another's; 0 for a replica that only serves
    /// requests (another replica on the same PostgreSQL runs the jobs).
    pub workers: u32,
    /// How long a job stays this process's without a renewal: after a crash, another process
    /// (or this one, restarted) takes the job up once this much time has passed.
    pub lease_secs: u64,
    /// How often idle workers look for jobs queued by other processes.
    pub poll_secs: u64,
    /// Times a job may be taken up (each crash or restart mid-job counts one) before it is
    /// ended as failed.
    pub max_attempts: u32,
    /// Failed steps in a row before a job is ended as failed.
    pub step_retries: u32,
    /// Requests jobs have running at once (a batch's lines), across the process; live
    /// requests go first in the engine.
    pub dispatch_concurrency: u32,
    /// Scheduling niceness (0 to 19) of the threads that run background work: job steps
    /// (the job plugin's code and the plugin work of the requests it dispatches) and the
    /// inference steps only background requests wait on. Live requests' threads keep 0, so
    /// on a busy machine the kernel gives them the cores first; 0 runs jobs like live work.
    pub nice: u32,
    /// Also run those threads in Linux's `SCHED_IDLE` class (when `nice` > 0): a live
    /// request's thread that wakes takes the core from them at once, instead of waiting up
    /// to a time slice (milliseconds, at each of the request's hand-offs between threads).
    /// Background work still gets every cycle live work leaves.
    pub idle_class: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 1,
            lease_secs: 30,
            poll_secs: 2,
            max_attempts: 3,
            step_retries: 3,
            dispatch_concurrency: 4,
            nice: 10,
            idle_class: true,
        }
    }
}

impl JobsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, min, max) in [
            // The instance pool keeps room for four job steps beside the request slots.
            ("workers", u64::from(self.workers), 0, 4),
            ("lease_secs", self.lease_secs, 2, 3600),
            ("poll_secs", self.poll_secs, 1, 600),
            ("max_attempts", u64::from(self.max_attempts), 1, 100),
            ("step_retries", u64::from(self.step_retries), 0, 100),
            (
                "dispatch_concurrency",
                u64::from(self.dispatch_concurrency),
                1,
                64,
            ),
            ("nice", u64::from(self.nice), 0, 19),
        ] {
            if value < min || value > max {
                return Err(ConfigError::Invalid(format!(
                    "jobs.{key} is {value}; it must be between {min} and {max}"
                )));
            }
        }
        Ok(())
    }
}
