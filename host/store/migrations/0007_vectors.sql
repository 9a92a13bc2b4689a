-- Vector indexes (a vector store's chunks): one row per index with its vectors' length and a
-- version bumped by every write (a replica's in-memory copy is stale when it moved), and one
-- row per vector. BYTEA holds the vector as little-endian f32 (SQLite keeps the bytes as
-- given under any declared type).
CREATE TABLE vector_indexes (
    owner TEXT NOT NULL,
    space TEXT NOT NULL,
    idx TEXT NOT NULL,
    dims BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (owner, space, idx)
);

CREATE TABLE vectors (
    owner TEXT NOT NULL,
    space TEXT NOT NULL,
    idx TEXT NOT NULL,
    id TEXT NOT NULL,
    grp TEXT NOT NULL,
    vec BYTEA NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (owner, space, idx, id)
);
CREATE INDEX vectors_group ON vectors (owner, space, idx, grp);
