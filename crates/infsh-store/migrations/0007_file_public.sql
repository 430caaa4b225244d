-- infsh store, version 7: a stored file's `public` flag (issue 15). A file
-- is private unless registered `public: true`: its bytes need a key or the
-- expiring signature the API puts in its URL. 0: private (every file
-- before this version). Same portable SQL as 0001 (an INTEGER, like
-- `uploaded`). The file's team is 0004's `team` column.
ALTER TABLE files ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
