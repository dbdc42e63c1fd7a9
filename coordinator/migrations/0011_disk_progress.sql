-- Each disk's progress at the copy station holding a seed's work, as it last reported it
-- (replaced whole by every report): the central view of what the station shows.
CREATE TABLE disk_progress (
    work_id            TEXT NOT NULL REFERENCES work_items (work_id),
    position           INTEGER NOT NULL,
    set_size           INTEGER NOT NULL,
    drive_id           TEXT NOT NULL,
    station            TEXT NOT NULL,
    phase              TEXT NOT NULL,
    done_bytes         INTEGER NOT NULL,
    total_bytes        INTEGER NOT NULL,
    rate_bytes_per_sec INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL,
    PRIMARY KEY (work_id, position)
);
-- When the agent's first heartbeat came; NULL while it has registered and never reported.
ALTER TABLE agents ADD COLUMN reported_ms INTEGER;
UPDATE agents SET reported_ms = last_heartbeat_ms WHERE last_heartbeat_ms > registered_ms;
