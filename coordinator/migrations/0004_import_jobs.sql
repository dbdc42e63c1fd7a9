-- The Azure import job of each seed. The row is written (phase 'intent') before the PUT, with
-- the job name as the idempotency key, so a crash between the two converges on restart: the
-- Azure worker GETs the job first and adopts it, or PUTs it. Never a second job.
CREATE TABLE import_jobs (
    seed_id              TEXT PRIMARY KEY REFERENCES seeds (seed_id),
    job_name             TEXT NOT NULL UNIQUE,
    subscription_id      TEXT NOT NULL,
    resource_group       TEXT NOT NULL,
    location             TEXT NOT NULL,
    storage_account_id   TEXT NOT NULL,
    phase                TEXT NOT NULL,           -- intent | created | refused | gone
    azure_state          TEXT NOT NULL DEFAULT '', -- as Azure last said it, unknown strings too
    percent_complete     INTEGER,
    intent_ms            INTEGER NOT NULL,
    created_ms           INTEGER,                 -- Azure confirmed the job: the 14-day clock starts
    shipped_ms           INTEGER,                 -- Azure took the delivery package: the second clock
    shipping_address     TEXT NOT NULL DEFAULT '[]', -- JSON array of lines (the datacenter's address)
    last_polled_ms       INTEGER,
    unavailable_since_ms INTEGER,                 -- Azure has not answered since then
    last_error           TEXT NOT NULL DEFAULT '',
    warned_step          INTEGER NOT NULL DEFAULT 0, -- last deadline step announced (10, 12, 13, 14)
    warned_kind          TEXT NOT NULL DEFAULT ''    -- which clock warned_step belongs to
);
CREATE INDEX import_jobs_by_phase ON import_jobs (phase);

-- Every drive of every job as Azure last reported it.
CREATE TABLE job_drives (
    seed_id          TEXT NOT NULL REFERENCES seeds (seed_id),
    drive_id         TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT '',
    copy_status      TEXT NOT NULL DEFAULT '',
    percent_complete INTEGER,
    bytes_succeeded  INTEGER,
    error_log_uri    TEXT NOT NULL DEFAULT '',
    verbose_log_uri  TEXT NOT NULL DEFAULT '',
    manifest_uri     TEXT NOT NULL DEFAULT '',
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (seed_id, drive_id)
);

-- A shipping record is reserved (the tracking number taken, so of two operators exactly one
-- wins) before Azure is told, and confirmed once Azure took the delivery package.
ALTER TABLE shipping ADD COLUMN confirmed_ms INTEGER;
UPDATE shipping SET confirmed_ms = recorded_ms;
