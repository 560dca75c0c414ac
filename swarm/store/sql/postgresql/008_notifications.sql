-- swarm schema v8 (mirrors sqlite/008_notifications.sql): notifications (docs/contract.md §9). An outbox: a
-- monitor queues one row per event and hook (the key names both, so queueing the same event again is a no-op),
-- sends the rows it queued (owner: its host and repository) and marks each sent once the hook took it.

CREATE TABLE notifications (
    key        TEXT COLLATE "C" PRIMARY KEY,
    swarm_id   TEXT COLLATE "C" NOT NULL,
    sink       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    event      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at    DOUBLE PRECISION
);
CREATE INDEX notifications_pending ON notifications (owner, created_at) WHERE sent_at IS NULL;
