-- Each protected server's vault: a repository (the seedship format) in a blob container,
-- seeded from its offline seed.
CREATE TABLE vaults (
    server     TEXT PRIMARY KEY,        -- the source agent's name
    account    TEXT NOT NULL,
    container  TEXT NOT NULL,
    seed_id    TEXT NOT NULL REFERENCES seeds (seed_id),
    created_ms INTEGER NOT NULL,
    UNIQUE (account, container)
);

-- The recovery points (snapshots) of each vault.
CREATE TABLE recovery_points (
    server        TEXT NOT NULL REFERENCES vaults (server),
    snapshot_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,        -- seed | incremental
    seed_id       TEXT,
    manifest_root TEXT NOT NULL DEFAULT '',
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (server, snapshot_id)
);
