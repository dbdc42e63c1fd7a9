-- The queue in the exact order a claim reads it (state, then queued_ms, then work_id), so the
-- scan of a page is an index range read with no sort, whatever the planner's estimate of the
-- queue's length (store/ops/writes.rs, `claim_candidates`).
DROP INDEX work_items_queue;
CREATE INDEX work_items_queue ON work_items (state, queued_ms, work_id);
