-- infsh store, version 1: tasks, their logs, stored files.
--
-- Written for both SQLite and PostgreSQL: TEXT for strings and JSON,
-- BIGINT for Unix milliseconds and sequence numbers, INTEGER for small
-- enums and booleans (0/1), DOUBLE PRECISION for seconds. No AUTOINCREMENT,
-- no SERIAL: the store assigns `seq` itself.

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    -- Insertion order, assigned by the store (MAX + 1): listing and
    -- recovery order, and the paging cursor.
    seq BIGINT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    function_name TEXT NOT NULL,
    input TEXT NOT NULL,
    setup TEXT NOT NULL,
    status INTEGER NOT NULL,
    output TEXT,
    error TEXT,
    webhook TEXT,
    session_id TEXT,
    metadata TEXT NOT NULL,
    timeout_secs DOUBLE PRECISION,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX tasks_app_seq ON tasks (app, seq);
CREATE INDEX tasks_status_seq ON tasks (status, seq);

CREATE TABLE task_logs (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    log_type INTEGER NOT NULL,
    content TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT,
    uploaded INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
