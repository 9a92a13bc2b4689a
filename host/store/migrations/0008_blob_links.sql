-- A link to a blob that anyone holding its token may fetch, without an API key, until it
-- expires (an image's `url`). The link owns its blob: when the link expires the sweep removes
-- both.
CREATE TABLE blob_links (
    token TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    owner TEXT NOT NULL,
    content_type TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX blob_links_expiry ON blob_links (expires_at);
