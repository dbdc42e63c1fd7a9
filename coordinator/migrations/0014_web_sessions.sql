-- The dashboard's ways in without a client certificate: a short-lived, single-use login link
-- that seedctl asks for over mTLS, and the session it opens. Only SHA-256 hashes of the
-- secrets are stored.
CREATE TABLE web_logins (
    token_hash TEXT PRIMARY KEY,
    identity   TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
);
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    identity   TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
