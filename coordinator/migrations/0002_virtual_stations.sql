-- Azure's rule: a seed from a virtual machine is prepared on a separate physical station.
-- Agents say how they run; operators may allow an exception per seed (recorded in history).
ALTER TABLE agents ADD COLUMN virtualization TEXT NOT NULL DEFAULT '';
ALTER TABLE seeds ADD COLUMN allow_virtual_station INTEGER NOT NULL DEFAULT 0;
