-- Background work (batches; later runs, fine-tuning, videos): one row per job. A process
-- works on a job while it holds its lease and renews it as it goes; a job whose lease ran out
-- (its process died) is taken up again by the next process that looks, up to a number of
-- attempts, then failed with the reason.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    -- Taking order: oldest first.
    seq BIGINT NOT NULL,
    -- queued | running | succeeded | failed | cancelled
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- The family's own record of how far the job got (JSON text), saved with each renewal.
    progress TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    lease_holder TEXT,
    -- Seconds since the Unix epoch.
    lease_until BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_taking ON jobs (kind, state, seq);
