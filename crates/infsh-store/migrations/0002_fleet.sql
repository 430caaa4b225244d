-- infsh store, version 2: the fleet. Engines that connect out to an API
-- node, the tasks queued for them, the leases on those tasks and each
-- attempt at running one. Same portable SQL as 0001 (TEXT, BIGINT,
-- INTEGER 0/1, no AUTOINCREMENT/SERIAL, no SQLite-only syntax).

-- Where a task runs: 0 on the API node's own workers (every task before
-- this version), 1 queued for remote engines (claimed by them).
ALTER TABLE tasks ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
-- The engine holding the task's lease, and until when (Unix ms). NULL
-- when not leased.
ALTER TABLE tasks ADD COLUMN leased_by TEXT;
ALTER TABLE tasks ADD COLUMN lease_until_ms BIGINT;
-- How many times the task was claimed (1 on its first run).
ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
-- JSON array of slot names the run is pinned to (`workers: [...]`), or NULL.
ALTER TABLE tasks ADD COLUMN pinned_workers TEXT;
-- A client cancelled a leased task: the engine is told in its next
-- heartbeat or claim answer, and reports the end.
ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- The claim query's index: queued remote tasks, oldest first.
CREATE INDEX tasks_remote_status_seq ON tasks (remote, status, seq);
-- The lease sweeper's index.
CREATE INDEX tasks_lease_until ON tasks (lease_until_ms);

CREATE TABLE engines (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    -- JSON: the slot layout the engine registered.
    slots TEXT NOT NULL,
    -- JSON array of {app, hash, functions}.
    apps TEXT NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0,
    registered_at_ms BIGINT NOT NULL,
    last_heartbeat_ms BIGINT NOT NULL
);

-- One row per claim of a task: who ran it and how it ended.
CREATE TABLE task_attempts (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    engine TEXT NOT NULL,
    claimed_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    -- NULL while running; then 'completed', 'failed', 'cancelled' or
    -- 'lost' (the lease expired).
    outcome TEXT,
    PRIMARY KEY (task_id, attempt)
);
