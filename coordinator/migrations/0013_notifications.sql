-- Notifications (the outbox): written in the same transaction as the seed event they tell
-- of, kept until an operator acknowledges them (and after, for the record).
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    seed_id    TEXT NOT NULL REFERENCES seeds (seed_id),
    event_id   INTEGER NOT NULL UNIQUE REFERENCES seed_events (event_id),
    created_ms INTEGER NOT NULL,
    acked_ms   INTEGER,
    acked_by   TEXT,
    ack_reason TEXT
);
-- One delivery per notification and channel: pending until sent (retried with back-off,
-- across restarts), delivered once. A channel sees the notifications made after it was
-- first configured (notify_cursor).
CREATE TABLE deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    channel         TEXT NOT NULL,
    state           TEXT NOT NULL,          -- pending | delivered | stopped
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_ms         INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    delivered_ms    INTEGER,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (state, next_ms);
CREATE TABLE notify_cursor (
    channel  TEXT PRIMARY KEY,
    after_id INTEGER NOT NULL
);
