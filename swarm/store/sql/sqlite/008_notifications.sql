-- swarm schema v8: notifications (docs/contract.md §9). An outbox: a monitor queues one row per event and
-- hook (the key names both, so queueing the same event again is a no-op), sends the rows it queued (owner: its
-- host and repository) and marks each sent once the hook took it. A restarted monitor finds what was sent and
-- resends nothing; what was queued and not sent yet it retries.

CREATE TABLE notifications (
    key        TEXT PRIMARY KEY,
    swarm_id   TEXT NOT NULL,
    sink       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    event      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at    REAL
) WITHOUT ROWID;
CREATE INDEX notifications_pending ON notifications (owner, created_at) WHERE sent_at IS NULL;
