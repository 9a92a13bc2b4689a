//! Jobs: durable rows for work that runs in the background (batches now; runs, fine-tuning
//! and videos later). A process takes a job by writing a lease (its holder id and a deadline)
//! and renews it as it goes, saving the family's progress with each renewal. A process that
//! dies stops renewing: once the lease runs out, the next process that looks takes the job up
//! again with one more attempt, and the family decides from `attempts` and its saved progress
//! whether to resume or fail it. So no job stays `running` forever, on one machine or on
//! replicas sharing PostgreSQL.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job is over (it is never taken again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job to queue.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The job's id: usually the id of the object it works for (`batch_...`).
    pub id: String,
    /// Which family's worker takes it (`batch`).
    pub kind: String,
    pub owner: String,
    /// The family's starting progress record (JSON text).
    pub progress: String,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// No process takes the job before this time (seconds since the Unix epoch); `None`:
    /// at once.
    pub not_before: Option<i64>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub owner: String,
    pub state: JobState,
    /// How many times a process took it (1 on the first run).
    pub attempts: i64,
    pub progress: String,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Not taken before this time.
    pub not_before: Option<i64>,
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; go on (or stop, when a cancel was asked for).
    Held { cancel_requested: bool },
    /// The lease ran out and another process took the job, or it was finished: stop
    /// without writing anything more.
    Lost,
}

const COLUMNS: &str = "id, kind, owner, state, attempts, progress, cancel_requested, error, \
     created_at, updated_at, not_before";
/// Keeps the blobs a job's holder wrote in its steps (they are no longer pending).
const KEEP_BLOBS: &str =
    "UPDATE blobs SET job = NULL, job_holder = NULL WHERE job = ? AND job_holder = ?";
/// Tries when other processes keep taking the job found first.
const TAKE_RETRIES: usize = 16;

fn job(row: &AnyRow) -> Result<Job, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let Some(state) = JobState::parse(&state) else {
        return Err(StoreError::Corrupt {
            id,
            reason: format!("unknown job state `{state}`"),
        });
    };
    let cancel: i64 = row.try_get("cancel_requested")?;
    Ok(Job {
        kind: row.try_get("kind")?,
        owner: row.try_get("owner")?,
        state,
        attempts: row.try_get("attempts")?,
        progress: row.try_get("progress")?,
        cancel_requested: cancel != 0,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        not_before: row.try_get("not_before")?,
        id,
    })
}

impl Store {
    /// Queues a job; it is taken after every job of its kind queued before it (and due).
    pub async fn enqueue(&self, new: NewJob) -> Result<Job, StoreError> {
        for (field, text) in [
            ("id", &new.id),
            ("kind", &new.kind),
            ("owner", &new.owner),
            ("progress", &new.progress),
        ] {
            if text.contains('\0') {
                return Err(StoreError::NulCharacter(field));
            }
        }
        let q = self.sql(
            "INSERT INTO jobs (id, kind, owner, seq, state, attempts, progress, cancel_requested, \
             lease_holder, lease_until, error, created_at, updated_at, not_before) \
             VALUES (?, ?, ?, ?, 'queued', 0, ?, 0, NULL, NULL, NULL, ?, ?, ?)",
        );
        let mut tx = self.pool.begin().await?;
        let seq = self.next_seq(&mut tx, "jobs").await?;
        let inserted = sqlx::query(q.clone())
            .bind(&new.id)
            .bind(&new.kind)
            .bind(&new.owner)
            .bind(seq)
            .bind(&new.progress)
            .bind(new.now)
            .bind(new.now)
            .bind(new.not_before)
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => tx.commit().await?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Duplicate(new.id));
            }
            Err(e) => return Err(e.into()),
        }
        self.job(&new.id).await?.ok_or(StoreError::NotFound {
            collection: "jobs".into(),
            id: new.id,
        })
    }

    /// The job `id`.
    pub async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let q = self.sql(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?"));
        let row = sqlx::query(q.clone())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job).transpose()
    }

    /// Takes the oldest job of one of `kinds` that is queued (and due by `now`) or whose
    /// lease ran out before `now`, for `holder` until `now + lease_secs`; one more attempt is
    /// counted. None when there is nothing to do.
    pub async fn take_job(
        &self,
        kinds: &[&str],
        holder: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<Option<Job>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let marks = vec!["?"; kinds.len()].join(", ");
        let find = self.sql(&format!(
            "SELECT id FROM jobs WHERE kind IN ({marks}) AND ((state = 'queued' AND \
             (not_before IS NULL OR not_before <= ?)) OR \
             (state = 'running' AND lease_until < ?)) ORDER BY seq LIMIT 1"
        ));
        let take = self.sql(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_holder = ?, \
             lease_until = ?, updated_at = ? WHERE id = ? AND (state = 'queued' OR \
             (state = 'running' AND lease_until < ?))",
        );
        for _ in 0..TAKE_RETRIES {
            let mut query = sqlx::query(find.clone());
            for k in kinds {
                query = query.bind(*k);
            }
            let Some(row) = query.bind(now).bind(now).fetch_optional(&self.pool).await? else {
                return Ok(None);
            };
            let id: String = row.try_get("id")?;
            let taken = sqlx::query(take.clone())
                .bind(holder)
                .bind(now + lease_secs)
                .bind(now)
                .bind(&id)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
            // Zero: another process took it between the two statements; look again.
            if taken == 1 {
                return self.job(&id).await;
            }
        }
        Ok(None)
    }

    /// Extends `holder`'s lease on the job to `now + lease_secs` and saves its progress.
    pub async fn renew_job(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<Renewal, StoreError> {
        self.renew(id, holder, progress, now + lease_secs, now, false)
            .await
    }

    /// Saves a finished step's progress with a lease renewal, and keeps the blobs that step
    /// wrote (no longer pending on the job), in one transaction: either both or neither.
    pub async fn commit_step(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<Renewal, StoreError> {
        self.renew(id, holder, progress, now + lease_secs, now, true)
            .await
    }

    async fn renew(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        until: i64,
        now: i64,
        keep_blobs: bool,
    ) -> Result<Renewal, StoreError> {
        let q = self.sql(
            "UPDATE jobs SET progress = ?, lease_until = ?, updated_at = ? \
             WHERE id = ? AND lease_holder = ? AND state = 'running'",
        );
        let keep = self.sql(KEEP_BLOBS);
        let mut tx = self.pool.begin().await?;
        let renewed = sqlx::query(q.clone())
            .bind(progress)
            .bind(until)
            .bind(now)
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if renewed == 0 {
            return Ok(Renewal::Lost);
        }
        if keep_blobs {
            sqlx::query(keep.clone())
                .bind(id)
                .bind(holder)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(match self.job(id).await? {
            Some(j) => Renewal::Held {
                cancel_requested: j.cancel_requested,
            },
            None => Renewal::Lost,
        })
    }

    /// Ends `holder`'s job in `state`, a final one (with the reason, when it failed); false if
    /// the lease was lost first.
    pub async fn finish_job(
        &self,
        id: &str,
        holder: &str,
        state: JobState,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        if !state.is_final() {
            return Err(StoreError::NotFinal(state.as_str()));
        }
        let q = self.sql(
            "UPDATE jobs SET state = ?, error = ?, lease_holder = NULL, lease_until = NULL, \
             updated_at = ? WHERE id = ? AND lease_holder = ? AND state = 'running'",
        );
        // The last step's blobs are kept with the end of the job.
        let keep = self.sql(KEEP_BLOBS);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(q.clone())
            .bind(state.as_str())
            .bind(error.map(str::to_owned))
            .bind(now)
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done == 1 {
            sqlx::query(keep.clone())
                .bind(id)
                .bind(holder)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Asks the job to stop: the process running it sees the flag at its next renewal, and a
    /// queued job sees it when taken. False if the job is already over.
    pub async fn cancel_job(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let q = self.sql(
            "UPDATE jobs SET cancel_requested = 1, updated_at = ? \
             WHERE id = ? AND state IN ('queued', 'running')",
        );
        let n = sqlx::query(q.clone())
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}
