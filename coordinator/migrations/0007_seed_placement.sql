-- Issue 12: the coordinator owns where a seed lands, and a server's seeds and vault are of one
-- repository. Never edit an applied migration: add a new file.

-- The repository each seed holds (its config's id); '' for seeds registered before this.
ALTER TABLE seeds ADD COLUMN repository_id TEXT NOT NULL DEFAULT '';
-- The repository each vault holds (from the seed that made it); '' for older vaults.
ALTER TABLE vaults ADD COLUMN repository_id TEXT NOT NULL DEFAULT '';
-- Looking a seed's import container up (each is unique per storage account, checked on
-- registration in the writer's transaction; older databases may hold shared ones).
CREATE INDEX seeds_by_container ON seeds (storage_account, container);
