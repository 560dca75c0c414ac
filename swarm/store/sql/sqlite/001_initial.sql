-- swarm schema v1 for SQLite. Applied inside one BEGIN IMMEDIATE transaction by the migrator.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE swarms (
    id             TEXT PRIMARY KEY,
    epic           TEXT NOT NULL UNIQUE,
    max_agents     INTEGER,
    created_at     REAL NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    epic            TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('blocked', 'ready', 'claimed', 'done', 'dead', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 0,
    requires        TEXT NOT NULL DEFAULT '[]',   -- JSON array of capabilities
    pending         INTEGER NOT NULL DEFAULT 0,    -- dependencies not yet done
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    timeout_seconds INTEGER,
    owner           TEXT,
    lease_token     TEXT,
    lease_until     REAL,
    heartbeat_at    REAL,
    not_before      REAL NOT NULL DEFAULT 0,       -- retry backoff: not claimable before this time
    commit_sha      TEXT,
    cost_usd        REAL,
    last_error      TEXT,
    source          TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    CHECK ((state = 'claimed') = (lease_token IS NOT NULL))
);

-- The claim walks this index in claim order and stops at the first eligible row.
CREATE INDEX tasks_claimable ON tasks (priority DESC, created_at, id) WHERE state = 'ready';
-- The reaper looks only at live leases.
CREATE INDEX tasks_leases ON tasks (lease_until) WHERE state = 'claimed';
-- Epic never changes, so this index costs nothing on the hot state changes.
CREATE INDEX tasks_epic ON tasks (epic);

CREATE TABLE deps (
    task_id    TEXT NOT NULL REFERENCES tasks (id),
    depends_on TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX deps_reverse ON deps (depends_on, task_id);

CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL DEFAULT '',
    capabilities TEXT NOT NULL DEFAULT '[]',
    created_at   REAL NOT NULL,
    last_seen    REAL NOT NULL
);

CREATE TABLE events (
    -- No AUTOINCREMENT: it would write sqlite_sequence on every transaction. Rows are never deleted
    -- (the triggers below), so rowids still only grow.
    seq        INTEGER PRIMARY KEY,
    task_id    TEXT NOT NULL,
    at         REAL NOT NULL,
    actor      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
-- (no index on task_id: every state change would pay for it; per-task history is read rarely)

-- The event log is append-only: history is evidence, so the database itself refuses to rewrite it.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
