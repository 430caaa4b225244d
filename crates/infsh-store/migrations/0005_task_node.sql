-- infsh store, version 5: which API node a task belongs to. On a
-- PostgreSQL database shared by several API nodes, a node's start-up
-- recovery (fail what was running, re-queue what was waiting) must only
-- touch the tasks of its own workers, never another live node's. NULL:
-- written by a store that names no node (SQLite in one process, every task
-- before this version): every node's recovery takes those, as before.
-- Same portable SQL as 0001.
ALTER TABLE tasks ADD COLUMN node TEXT;
