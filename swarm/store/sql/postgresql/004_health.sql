-- swarm schema v4 (mirrors sqlite/004_health.sql): health. Claims of a swarm can be paused (a provider rate
-- limit), restarts are spaced out, and each incident is escalated once.

ALTER TABLE swarms ADD COLUMN paused_until DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE swarms ADD COLUMN pause_reason TEXT;
ALTER TABLE agents ADD COLUMN next_restart_at DOUBLE PRECISION NOT NULL DEFAULT 0;

-- One row per incident (e.g. "agent-1 stalled on S3"); inserting an existing key means "already told".
CREATE TABLE incidents (
    key        TEXT COLLATE "C" PRIMARY KEY,
    swarm_id   TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
