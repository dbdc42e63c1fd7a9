-- Issue 18: one-time enrollment tokens (only their SHA-256 is kept) and who enrolled with each.
CREATE TABLE enroll_tokens (
    token_hash TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,   -- the first 12 hex characters of the hash, for lists and the audit log
    role       TEXT NOT NULL,          -- source | copy
    name       TEXT NOT NULL,          -- an exact name, or a prefix followed by '*'
    site       TEXT,
    created_by TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER,
    used_by    TEXT                    -- the identity that enrolled with it
);

-- The identities that enrolled, with the site their token named: a registration from another
-- site is refused.
CREATE TABLE enrolled (
    identity    TEXT PRIMARY KEY,
    site        TEXT,
    token_id    TEXT NOT NULL,
    enrolled_ms INTEGER NOT NULL,
    not_after_ms INTEGER NOT NULL
);
