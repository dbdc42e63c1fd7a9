-- A renewal or progress report changes only the lease's end, the progress and the phase. With
-- none of them in an index, PostgreSQL updates the row in place on its page (a heap-only
-- update: no new entry in any index), which is most of what a station's calls write. The
-- sweeper's search for lapsed leases reads the leased items through `work_items_queue`
-- (state first): there are as many as stations holding work.
DROP INDEX work_items_leases;
