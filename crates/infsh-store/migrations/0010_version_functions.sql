-- infsh store, version 10: what a version's build discovered, kept with
-- the version, so that every API node on the store can validate and
-- queue runs of a version another node built (docs/deploy.md, "Versions
-- in a fleet"): a JSON object with the worker's `ready` message
-- (functions, schemas, setup schema), inf.yml's `default_function` and
-- its listing fields. NULL while building, after a failure, and for a
-- version built before this migration. Same portable SQL as 0001.
ALTER TABLE app_versions ADD COLUMN functions TEXT;
