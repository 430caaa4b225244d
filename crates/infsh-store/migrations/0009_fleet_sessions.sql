-- infsh store, version 9: sessions of apps that remote engines host
-- (docs/sessions.md, "In a fleet"). The record and its lease live here so
-- that every API node on the store sees them: which engine holds the
-- session (the one that claimed its first call), the replica there,
-- whether it is active, and until when. Same portable SQL as 0001.
CREATE TABLE fleet_sessions (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    -- The app version the session keeps (NULL: the app's only version).
    app_version TEXT,
    -- The engine holding the lease, NULL until its first call is claimed.
    engine TEXT,
    -- The replica leased to it on that engine (`ns/name#0`), as it reports.
    worker TEXT,
    -- 'active', 'ended' or 'expired'.
    status TEXT NOT NULL,
    -- Why it is over (ended or expired only).
    reason TEXT,
    idle_timeout_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    call_count BIGINT NOT NULL,
    last_call_at_ms BIGINT,
    -- The task that opened it.
    task_id TEXT NOT NULL
);
CREATE INDEX fleet_sessions_status ON fleet_sessions (status);
CREATE INDEX fleet_sessions_engine ON fleet_sessions (engine);
-- A session's calls, for the claim's "one call at a time, in order".
CREATE INDEX tasks_session ON tasks (session_id);
