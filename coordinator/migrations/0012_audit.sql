-- The tamper-evident audit log: every mutating call and every worker decision, each entry
-- carrying the hash of the one before it (see seedship_proto::audit). Appended in the same
-- transaction as what it records; never updated or deleted by the coordinator.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_by_target ON audit_log (target, seq);
