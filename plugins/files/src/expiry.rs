//! Expiry on time. A file created with `expires_after`, and every upload (which has an hour to
//! be completed), queue a job due when they expire; its one step removes what has expired: a
//! file with its content, a pending upload's parts. Without it, an expired file nobody lists
//! again, or an upload abandoned half-way, would keep its bytes on disk for ever. Reads and
//! listings still skip and remove what expired in the seconds before the job workers look.

use cinder_sdk::files::{COLLECTION, expired, read};
use cinder_sdk::host::JobHost;
use cinder_sdk::{Error, Job, Outcome};
use serde::{Deserialize, Serialize};

use crate::uploads;

/// The job kind (`jobs = ["expire"]` in plugin.toml).
pub const JOB_KIND: &str = "expire";

/// What a job is due to expire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "expire", content = "id", rename_all = "snake_case")]
pub enum Due {
    File(String),
    Upload(String),
}

impl Due {
    fn id(&self) -> &str {
        match self {
            Due::File(id) | Due::Upload(id) => id,
        }
    }
}

/// Queues the job that expires `due` at `at` (seconds since the Unix epoch).
pub fn schedule(host: &dyn JobHost, due: &Due, at: i64) -> Result<(), Error> {
    enqueue(host, due, at, format!("expire-{}", due.id()))
}

fn enqueue(host: &dyn JobHost, due: &Due, at: i64, job_id: String) -> Result<(), Error> {
    let progress = serde_json::to_string(due)
        .map_err(|e| Error::Internal(format!("queueing an expiry: {e}")))?;
    host.enqueue_job_at(JOB_KIND, &job_id, &progress, at)
}

/// A job run before `due` expires (the host takes a job by the same clock the step reads, so
/// only a clock stepped back in between does this) leaves one due at `at` in its place; there
/// is one per expiry time, so a second early run finds it queued already and leaves the rest
/// to the reads' own expiry check.
fn again(host: &dyn JobHost, due: &Due, at: i64) -> Result<(), Error> {
    match enqueue(host, due, at, format!("expire-{}-at-{at}", due.id())) {
        Err(Error::InvalidRequest(d)) if d.param.as_deref() == Some("id") => Ok(()),
        other => other,
    }
}

/// The job's one step: whatever has expired by now goes; what is gone already, or was
/// completed or cancelled in time, is left as it is.
pub fn step(job: Job, host: &dyn JobHost) -> Result<Outcome, Error> {
    if job.ending.is_some() {
        // The host gave up on it: the reads' own expiry check still removes it when met.
        return Ok(Outcome::Done);
    }
    let due: Due = serde_json::from_str(&job.progress)
        .map_err(|e| Error::Internal(format!("an expiry job's record is unreadable: {e}")))?;
    let early = match &due {
        Due::File(id) => match host.get_object(COLLECTION, id)? {
            Some(object) => {
                let file = read(&object)?;
                if expired(host, &object, &file)? {
                    None
                } else {
                    file.expires_at
                }
            }
            None => None,
        },
        Due::Upload(id) => match uploads::expire(host, id) {
            Ok(at) => at,
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
    };
    if let Some(at) = early {
        again(host, &due, at)?;
    }
    Ok(Outcome::Done)
}
