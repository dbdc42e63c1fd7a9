-- What the import verification found, per file of each seed (replaced by each verification).
CREATE TABLE verify_results (
    seed_id    TEXT NOT NULL REFERENCES seeds (seed_id),
    path       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    status     TEXT NOT NULL,      -- verified | missing | corrupted
    detail     TEXT NOT NULL,
    checked_ms INTEGER NOT NULL,
    PRIMARY KEY (seed_id, path)
);

-- Files the source agent is asked to upload again, as the seed manifest has them, and what
-- became of each.
CREATE TABLE repairs (
    seed_id      TEXT NOT NULL REFERENCES seeds (seed_id),
    path         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    md5          TEXT NOT NULL,
    state        TEXT NOT NULL,    -- requested | uploaded | lost
    detail       TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (seed_id, path)
);
CREATE INDEX repairs_by_state ON repairs (state, seed_id);
