-- Sequence counters: a create takes the next number under its counter row's lock, so writers on
-- several replicas wait their turn instead of colliding on MAX(seq) + 1, and numbers are handed
-- out in commit order (a listing never skips an object that committed late).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO counters (name, n) SELECT 'objects', COALESCE(MAX(seq), 0) FROM objects;
INSERT INTO counters (name, n) SELECT 'jobs', COALESCE(MAX(seq), 0) FROM jobs;
