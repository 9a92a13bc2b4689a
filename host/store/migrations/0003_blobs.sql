-- Blobs (file contents) live in the blob folder; this is their index: whose each is, its size
-- and MD5. A blob is listed here only once its content is whole on disk, so a reader never
-- meets a half-written one.
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    md5 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
