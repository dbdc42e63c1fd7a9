-- Issue 12: fair queues and bounded history. Never edit an applied migration: add a new file.

-- Releases of a work item since it last made progress, and when it may be claimed again
-- (a released seed goes behind the others, with a back-off that grows; after
-- `leases.max_releases` it is 'held' until an operator retries it).
ALTER TABLE work_items ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
ALTER TABLE work_items ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;

-- Identical consecutive events of a seed are one row: how many, and when the last was.
ALTER TABLE seed_events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
ALTER TABLE seed_events ADD COLUMN last_ms INTEGER NOT NULL DEFAULT 0;
