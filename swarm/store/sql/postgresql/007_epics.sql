-- swarm schema v7 (mirrors sqlite/007_epics.sql): a swarm works several epics and ends (docs/contract.md §5).
-- swarms.epic (now the swarm's first epic) is no longer unique.

ALTER TABLE swarms DROP CONSTRAINT IF EXISTS swarms_epic_key;
ALTER TABLE swarms ADD COLUMN ended_at DOUBLE PRECISION;

-- The epics of each swarm, in the order they were added (position 0 is swarms.epic).
CREATE TABLE swarm_epics (
    swarm_id TEXT COLLATE "C" NOT NULL REFERENCES swarms (id),
    epic     TEXT COLLATE "C" NOT NULL,
    added_at DOUBLE PRECISION NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (swarm_id, epic)
);
CREATE INDEX swarm_epics_epic ON swarm_epics (epic);
INSERT INTO swarm_epics (swarm_id, epic, added_at, position) SELECT id, epic, created_at, 0 FROM swarms;
