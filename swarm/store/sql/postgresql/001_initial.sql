-- swarm schema v1 for PostgreSQL (mirrors sqlite/001_initial.sql). Applied inside one transaction, under
-- a transaction-level advisory lock, by the migrator.
-- Times are epoch seconds in double precision (like SQLite's REAL) so that the clock stays injectable: every
-- time comes from the application as a parameter, never from now().
-- Identifiers sort with the "C" collation, byte order, exactly like SQLite's default, whatever the database's
-- locale: claim order breaks ties by id, and agents list as agent-1, agent-2, agent-10.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE swarms (
    id             TEXT COLLATE "C" PRIMARY KEY,
    epic           TEXT COLLATE "C" NOT NULL UNIQUE,
    max_agents     INTEGER,
    created_at     DOUBLE PRECISION NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    -- SQLite breaks created_at ties by rowid; this is its stand-in.
    created_order  BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE tasks (
    id              TEXT COLLATE "C" PRIMARY KEY,
    epic            TEXT COLLATE "C" NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('blocked', 'ready', 'claimed', 'done', 'dead', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 0,
    requires        TEXT[] NOT NULL DEFAULT '{}',  -- capabilities; claimable when requires <@ offered
    pending         INTEGER NOT NULL DEFAULT 0,    -- dependencies not yet done
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    timeout_seconds INTEGER,
    owner           TEXT,
    lease_token     TEXT,
    lease_until     DOUBLE PRECISION,
    heartbeat_at    DOUBLE PRECISION,
    not_before      DOUBLE PRECISION NOT NULL DEFAULT 0,  -- retry backoff: not claimable before this time
    commit_sha      TEXT,
    cost_usd        DOUBLE PRECISION,
    last_error      TEXT,
    source          TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    CHECK ((state = 'claimed') = (lease_token IS NOT NULL))
);

-- The claim walks this index in claim order and stops at the first eligible, unlocked row.
CREATE INDEX tasks_claimable ON tasks (priority DESC, created_at, id) WHERE state = 'ready';
-- The reaper looks only at live leases.
CREATE INDEX tasks_leases ON tasks (lease_until) WHERE state = 'claimed';
CREATE INDEX tasks_epic ON tasks (epic);

CREATE TABLE deps (
    task_id    TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    depends_on TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX deps_reverse ON deps (depends_on, task_id);

CREATE TABLE agents (
    id           TEXT COLLATE "C" PRIMARY KEY,
    host         TEXT NOT NULL DEFAULT '',
    capabilities TEXT[] NOT NULL DEFAULT '{}',
    created_at   DOUBLE PRECISION NOT NULL,
    last_seen    DOUBLE PRECISION NOT NULL
);

CREATE TABLE events (
    -- Unique and increasing in allocation order. Unlike SQLite (one writer at a time), concurrent writers
    -- may commit out of allocation order, so a reader polling "since N" can see N+2 before N+1 commits.
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id    TEXT COLLATE "C" NOT NULL,
    at         DOUBLE PRECISION NOT NULL,
    actor      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);

-- The event log is append-only: history is evidence, so the database itself refuses to rewrite it.
CREATE FUNCTION swarm_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION swarm_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION swarm_events_append_only();
