-- Analytics ingest keys: write-only keys for servers and web pages that
-- send events without a user token. Only the SHA-256 of a key is kept;
-- its first characters stay for display.
CREATE TABLE admin.ingest_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix     text NOT NULL CHECK (length(prefix) BETWEEN 8 AND 20),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- The admin who made it. No foreign key: a key outlives its author.
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX ingest_keys_created_idx ON admin.ingest_keys (created_at, id);
