-- Drives are reported "preparing" (key escrowed before any data is written under it), then
-- "prepared" once sealed and read back, or "bad" with the reason (EIO, a pulled disk).
ALTER TABLE drives ADD COLUMN status TEXT NOT NULL DEFAULT 'prepared';
ALTER TABLE drives ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
