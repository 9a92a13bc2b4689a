-- A blob written by a step of a background job is pending until the process running the job
-- saves that step's progress (or ends the job): a step cut short by a crash, or by a lost lease,
-- leaves blobs nothing will ever reference; the next process that takes the job removes the ones
-- still pending on it.
ALTER TABLE blobs ADD COLUMN job TEXT;
ALTER TABLE blobs ADD COLUMN job_holder TEXT;
CREATE INDEX blobs_pending ON blobs (job);
