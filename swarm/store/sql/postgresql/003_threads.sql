-- swarm schema v3 (mirrors sqlite/003_threads.sql): identities (agent tokens, stored hashed) and threads
-- (durable, append-only message logs).

ALTER TABLE agents ADD COLUMN token_hash TEXT;

-- One row per thread; last_seq is bumped under this row's lock inside the appending transaction, so
-- sequence numbers follow commit order and readers never see a gap (a bigserial would not: its values are
-- handed out before commit, in no particular commit order).
CREATE TABLE threads (
    name       TEXT COLLATE "C" PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE messages (
    thread     TEXT COLLATE "C" NOT NULL REFERENCES threads (name),
    seq        BIGINT NOT NULL,
    author     TEXT NOT NULL,
    recipient  TEXT,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    reply_to   BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (thread, seq)
);
CREATE INDEX messages_reply ON messages (thread, reply_to) WHERE reply_to IS NOT NULL;
-- unanswered_questions() looks for questions by recipient.
CREATE INDEX messages_questions ON messages (recipient, created_at) WHERE type = 'question';

CREATE FUNCTION swarm_messages_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'threads are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER messages_no_update BEFORE UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION swarm_messages_append_only();
CREATE TRIGGER messages_no_truncate BEFORE TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION swarm_messages_append_only();

-- Where each identity's `msg wait` left off in each thread, so nothing sent between two waits is missed.
CREATE TABLE cursors (
    identity TEXT COLLATE "C" NOT NULL,
    thread   TEXT COLLATE "C" NOT NULL,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (identity, thread)
);
