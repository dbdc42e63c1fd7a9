-- Audit entries as operations record them, before they join the chain. Recording one only
-- inserts here (no read of the chain's head), so operations on several coordinators at once do
-- not conflict over the log; the chain is extended from these rows in the order of their ids
-- by the workers' leader at every sweep and by every reader of the log before it reads
-- (store/ops/audit.rs, `chain`).
CREATE TABLE audit_pending (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
