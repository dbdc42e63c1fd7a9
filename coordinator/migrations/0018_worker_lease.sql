-- Issue 19: which coordinator runs the background workers (the Azure worker, the sweeper, the
-- verifier, the vaulter, the notifier). One row per lease; the generation is its fencing
-- token, one higher at every change of holder, so a coordinator that was paused past its
-- expiry finds it changed and does nothing more.
CREATE TABLE worker_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    taken_ms    INTEGER NOT NULL
);
