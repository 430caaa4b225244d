-- infsh store, version 11: which of its engine's workers ran an attempt
-- (`gpu-box-1-gpu-1`: the engine's name, a slot's kind and id), as the
-- engine reports it once the task is dispatched there. A run pinned with
-- `workers` shows here that it ran on the slot it named. NULL: not reported
-- yet, or an engine from before this version. Same portable SQL as 0001.
ALTER TABLE task_attempts ADD COLUMN worker TEXT;
