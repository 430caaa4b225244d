-- infsh store, version 6: a run's `run_at` (Unix milliseconds). A task
-- with a time still ahead stays QUEUED until then, across a restart:
-- recovery queues it again with the same time. NULL: run at once (every
-- task before this version). Same portable SQL as 0001.
ALTER TABLE tasks ADD COLUMN run_at_ms BIGINT;
