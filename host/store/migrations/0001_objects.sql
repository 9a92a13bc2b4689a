-- Objects of every family (files, batches, stored completions, ...), one row each. Portable
-- SQL: the same file runs on SQLite and PostgreSQL (TEXT and BIGINT only; JSON as text).
CREATE TABLE objects (
    collection TEXT NOT NULL,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    -- Creation order across the whole store: listing and cursors go by it.
    seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Bumped by every update: compare-and-set checks it.
    version BIGINT NOT NULL,
    status TEXT,
    -- A JSON object of string values (OpenAI's metadata), also in object_metadata.
    metadata TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (collection, owner, id)
);
CREATE UNIQUE INDEX objects_seq ON objects (seq);
CREATE INDEX objects_listing ON objects (collection, owner, seq);

-- Metadata pairs, for listings filtered by metadata equality.
CREATE TABLE object_metadata (
    collection TEXT NOT NULL,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (collection, owner, id, key)
);
CREATE INDEX object_metadata_value ON object_metadata (collection, owner, key, value);
