-- seedship coordinator schema, version 1. Never edit an applied migration: add a new file.

-- Agents that registered, and when each was last heard from.
CREATE TABLE agents (
    identity          TEXT PRIMARY KEY,      -- full SPIFFE id
    role              TEXT NOT NULL,
    name              TEXT NOT NULL,
    site              TEXT,
    hostname          TEXT NOT NULL,
    version           TEXT NOT NULL,
    registered_ms     INTEGER NOT NULL,
    last_heartbeat_ms INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX agents_by_role ON agents (role, name);

-- One row per registered seed; `state` is the seed lifecycle state.
CREATE TABLE seeds (
    seed_id          TEXT PRIMARY KEY,
    job_name         TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,          -- source agent name
    storage_account  TEXT NOT NULL,
    container        TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    location         TEXT NOT NULL,
    staging_location TEXT NOT NULL,
    manifest_root    TEXT NOT NULL,
    total_bytes      INTEGER NOT NULL,
    file_count       INTEGER NOT NULL,
    target_site      TEXT,
    target_station   TEXT,
    state            TEXT NOT NULL,
    state_reason     TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
);
CREATE INDEX seeds_by_owner ON seeds (owner, created_ms);
CREATE INDEX seeds_by_state ON seeds (state, created_ms);

-- Every transition of every seed: when, who, what and why. Append-only.
CREATE TABLE seed_events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    seed_id    TEXT NOT NULL REFERENCES seeds (seed_id),
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    from_state TEXT,                         -- NULL for the registration itself
    to_state   TEXT NOT NULL,
    event      TEXT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX seed_events_by_seed ON seed_events (seed_id, event_id);

-- The disk-prep work item of each seed and its lease. `generation` only grows.
CREATE TABLE work_items (
    work_id          TEXT PRIMARY KEY,
    seed_id          TEXT NOT NULL UNIQUE REFERENCES seeds (seed_id),
    state            TEXT NOT NULL,          -- queued | leased | done | cancelled
    generation       INTEGER NOT NULL,
    holder           TEXT,
    lease_expires_ms INTEGER NOT NULL,
    progress_bytes   INTEGER NOT NULL,
    total_bytes      INTEGER NOT NULL,
    phase            TEXT NOT NULL,
    target_site      TEXT,
    target_station   TEXT,
    queued_ms        INTEGER NOT NULL
);
CREATE INDEX work_items_queue ON work_items (state, queued_ms);
CREATE INDEX work_items_leases ON work_items (state, lease_expires_ms);

-- Drives reported by copy stations. `sealed_key` is the recovery password sealed under the
-- master key (AES-256-GCM, AAD = seed id and drive id); never the clear text.
CREATE TABLE drives (
    seed_id           TEXT NOT NULL REFERENCES seeds (seed_id),
    drive_id          TEXT NOT NULL,
    position          INTEGER NOT NULL,
    capacity_bytes    INTEGER NOT NULL,
    bytes_written     INTEGER NOT NULL,
    manifest_file     TEXT NOT NULL,
    manifest_hash     TEXT NOT NULL,
    drive_header_hash TEXT NOT NULL,
    sealed_key        BLOB,
    reported_by       TEXT NOT NULL,
    reported_ms       INTEGER NOT NULL,
    PRIMARY KEY (seed_id, drive_id)
);

-- Carrier and tracking number per job. The UNIQUE index is what makes two operators racing
-- for one tracking number end with exactly one winner.
CREATE TABLE shipping (
    seed_id         TEXT PRIMARY KEY REFERENCES seeds (seed_id),
    carrier         TEXT NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    drive_count     INTEGER NOT NULL,
    ship_date       TEXT NOT NULL,
    recorded_by     TEXT NOT NULL,
    recorded_ms     INTEGER NOT NULL
);

-- Answers to mutating requests, so a retry with the same request id gets the same answer.
CREATE TABLE requests (
    caller      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    response    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (caller, request_id)
) WITHOUT ROWID;
CREATE INDEX requests_by_age ON requests (created_ms);
