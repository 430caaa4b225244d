-- infsh store, version 3: deletion and retention (issue 15).
--
-- `GET /files` pages stored files newest first by (created_at_ms, id);
-- the retention sweep finds ended tasks by their last update (a terminal
-- task is never updated again, so `updated_at_ms` is its end time).

CREATE INDEX files_created_id ON files (created_at_ms, id);
CREATE INDEX tasks_status_updated ON tasks (status, updated_at_ms);
