-- swarm schema v3: identities (agent tokens, stored hashed) and threads (durable, append-only message logs).

ALTER TABLE agents ADD COLUMN token_hash TEXT;

-- One row per thread; last_seq is bumped inside the appending transaction, so sequence numbers follow
-- commit order and readers never see a gap.
CREATE TABLE threads (
    name       TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);

CREATE TABLE messages (
    thread     TEXT NOT NULL REFERENCES threads (name),
    seq        INTEGER NOT NULL,
    author     TEXT NOT NULL,
    recipient  TEXT,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    reply_to   INTEGER,
    created_at REAL NOT NULL,
    PRIMARY KEY (thread, seq)
) WITHOUT ROWID;
CREATE INDEX messages_reply ON messages (thread, reply_to) WHERE reply_to IS NOT NULL;

CREATE TRIGGER messages_no_update BEFORE UPDATE ON messages
BEGIN
    SELECT RAISE(ABORT, 'threads are append-only');
END;
CREATE TRIGGER messages_no_delete BEFORE DELETE ON messages
BEGIN
    SELECT RAISE(ABORT, 'threads are append-only');
END;

-- Where each identity's `msg wait` left off in each thread, so nothing sent between two waits is missed.
CREATE TABLE cursors (
    identity TEXT NOT NULL,
    thread   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (identity, thread)
) WITHOUT ROWID;
