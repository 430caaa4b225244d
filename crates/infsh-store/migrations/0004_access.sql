-- infsh store, version 4: access. The webhook outbox, API keys created at
-- run time, and the team of each task and file. Same portable SQL as 0001.

-- The webhook outbox. One row per task that ended with a `webhook`: the
-- body as signed and sent, how many attempts were made, the last error,
-- and when the next attempt is due. A restart (or a crash) mid-retry finds
-- the row and carries on. No foreign key to tasks: deleting a task must
-- not wait on its webhook.
CREATE TABLE webhook_deliveries (
    task_id TEXT PRIMARY KEY,
    -- Standard Webhooks' `webhook-id`: the same on every attempt, so a
    -- receiver can drop a duplicate.
    message_id TEXT NOT NULL,
    url TEXT NOT NULL,
    -- JSON text, byte for byte what is signed and POSTed.
    body TEXT NOT NULL,
    -- pending, delivered or failed (gave up).
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    -- Unix ms. While an attempt is in flight, the end of its claim: a node
    -- that dies mid-attempt leaves a row another node retries after that.
    next_attempt_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- The outbox loop's query: pending rows by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);

-- Keys created at run time (`infsh keys create`, `POST /apikeys`): only a
-- digest of each key is kept (hex SHA-256), so the store never holds one
-- that works. Every API node sharing the store sees them.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    -- JSON array of scope names (`apps:execute`, ...).
    scopes TEXT NOT NULL,
    team TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- NULL: never expires.
    expires_at_ms BIGINT,
    -- NULL: not revoked.
    revoked_at_ms BIGINT
);

-- The team a task or file belongs to (the team of the key that made it;
-- NULL: made by an admin key, or before this version).
ALTER TABLE tasks ADD COLUMN team TEXT;
ALTER TABLE files ADD COLUMN team TEXT;
