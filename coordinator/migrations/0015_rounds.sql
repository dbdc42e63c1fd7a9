-- Issue 17: after a partial loss, a new offline round for exactly the files that are lost.
-- A round is a seed of its own (its own disks, import job and deadlines) into its parent's
-- import container; `parent_seed` names the seed it repairs.
ALTER TABLE seeds ADD COLUMN parent_seed TEXT REFERENCES seeds (seed_id);
CREATE INDEX seeds_by_parent ON seeds (parent_seed);

-- The files a round carries, as the parent's verified seed manifest has them.
CREATE TABLE round_files (
    seed_id TEXT NOT NULL REFERENCES seeds (seed_id),
    path    TEXT NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (seed_id, path)
);

-- A repair row may now also be `reshipped` (on a round; `round_seed` names it) besides
-- requested | uploaded | lost.
ALTER TABLE repairs ADD COLUMN round_seed TEXT;
