-- A job may be queued for later (a file's expiry, an upload's end): no process takes it
-- before `not_before` (seconds since the Unix epoch; NULL: at once).
ALTER TABLE jobs ADD COLUMN not_before BIGINT;
CREATE INDEX jobs_due ON jobs (kind, state, not_before);
