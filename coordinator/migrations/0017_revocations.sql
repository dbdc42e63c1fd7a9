-- Issue 18: revoked identities. Every call of a revoked identity is refused; it cannot enroll
-- again under that name.
CREATE TABLE revocations (
    identity   TEXT PRIMARY KEY,
    revoked_by TEXT NOT NULL,
    reason     TEXT NOT NULL,
    revoked_ms INTEGER NOT NULL
);
