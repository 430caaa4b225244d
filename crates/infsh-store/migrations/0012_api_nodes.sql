-- infsh store, version 12: API nodes' heartbeats. On a store several API
-- nodes share (PostgreSQL), a node that hosts workers itself (`--apps`)
-- beats here a few times per lease; once a node's beat is older than a
-- lease, another live node hosting the same apps takes its open tasks
-- over (tasks.node becomes the taker's; docs/deploy.md, "API node lost").
-- Unused by SQLite in one process. Same portable SQL as 0001.
CREATE TABLE api_nodes (
    id TEXT PRIMARY KEY,
    last_heartbeat_ms BIGINT NOT NULL
);
