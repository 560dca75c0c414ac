-- swarm schema v7: a swarm works several epics and ends (docs/contract.md §5). A repository runs one swarm
-- at a time; a launch while it runs adds its epic, teardown ends it, and the next launch starts a new one.
--
-- swarms.epic (now the swarm's first epic) loses its UNIQUE constraint: SQLite cannot drop a constraint, so
-- the table is rebuilt (the documented procedure: the migrator turns foreign keys off before BEGIN, since
-- swarm_tasks references swarms, and runs PRAGMA foreign_key_check before COMMIT). The rowid is kept: it
-- breaks ties between swarms created in the same instant.

CREATE TABLE swarms_v7 (
    id             TEXT PRIMARY KEY,
    epic           TEXT NOT NULL,
    max_agents     INTEGER,
    created_at     REAL NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    repo           TEXT NOT NULL DEFAULT '',
    settings       TEXT NOT NULL DEFAULT '{}',
    stop_mode      TEXT,
    paused_until   REAL NOT NULL DEFAULT 0,
    pause_reason   TEXT,
    ended_at       REAL
);
INSERT INTO swarms_v7 (rowid, id, epic, max_agents, created_at, stop_requested, repo, settings, stop_mode,
                       paused_until, pause_reason)
SELECT rowid, id, epic, max_agents, created_at, stop_requested, repo, settings, stop_mode, paused_until,
       pause_reason
FROM swarms;
DROP TABLE swarms;
ALTER TABLE swarms_v7 RENAME TO swarms;

-- The epics of each swarm, in the order they were added (position 0 is swarms.epic).
CREATE TABLE swarm_epics (
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    epic     TEXT NOT NULL,
    added_at REAL NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (swarm_id, epic)
) WITHOUT ROWID;
CREATE INDEX swarm_epics_epic ON swarm_epics (epic);
INSERT INTO swarm_epics (swarm_id, epic, added_at, position) SELECT id, epic, created_at, 0 FROM swarms;
