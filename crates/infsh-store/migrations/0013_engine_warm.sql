-- infsh store, version 13: what each engine last said it is warm for and
-- how many tasks it runs at once, so that a claim prefers the engine where
-- a task's app is warm, across engines (docs/deploy.md, "Which engine
-- runs a task"). Written by each claim of the engine, read by other
-- engines' claims. Same portable SQL as 0001.
-- JSON array of the apps (and `ns/name@HASH` versions) it has a replica
-- (or a cached package) of, as of its last claim.
ALTER TABLE engines ADD COLUMN warm TEXT NOT NULL DEFAULT '[]';
-- Its last claim's `max` plus the tasks it held then: its free slots are
-- this less the tasks it holds now (so a task's end frees one at once).
ALTER TABLE engines ADD COLUMN capacity BIGINT NOT NULL DEFAULT 0;
-- Counting an engine's held tasks in a claim.
CREATE INDEX tasks_leased_by ON tasks (leased_by) WHERE leased_by IS NOT NULL;
