-- swarm schema v2 (mirrors sqlite/002_runtime.sql): what the runtime needs (agents with sessions and
-- worktrees, swarm membership, stop requests, token usage).

ALTER TABLE swarms ADD COLUMN repo TEXT NOT NULL DEFAULT '';
ALTER TABLE swarms ADD COLUMN settings JSONB NOT NULL DEFAULT '{}';
ALTER TABLE swarms ADD COLUMN stop_mode TEXT;

-- Which tasks a swarm works: its epic's specs plus the undone specs they depend on. A task may belong to
-- several swarms (a shared dependency); claims of a swarm's workers look only at its members.
CREATE TABLE swarm_tasks (
    swarm_id TEXT COLLATE "C" NOT NULL REFERENCES swarms (id),
    task_id  TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (swarm_id, task_id)
);
CREATE INDEX swarm_tasks_task ON swarm_tasks (task_id);
INSERT INTO swarm_tasks (swarm_id, task_id)
SELECT s.id, t.id FROM swarms AS s JOIN tasks AS t ON t.epic = s.epic
ON CONFLICT DO NOTHING;

ALTER TABLE agents ADD COLUMN swarm_id TEXT COLLATE "C";
ALTER TABLE agents ADD COLUMN session TEXT;
ALTER TABLE agents ADD COLUMN branch TEXT;
ALTER TABLE agents ADD COLUMN worktree TEXT;
ALTER TABLE agents ADD COLUMN pid INTEGER;
ALTER TABLE agents ADD COLUMN agent_pid INTEGER;
ALTER TABLE agents ADD COLUMN state TEXT NOT NULL DEFAULT 'starting';
ALTER TABLE agents ADD COLUMN task_id TEXT COLLATE "C";
ALTER TABLE agents ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_output TEXT;
ALTER TABLE agents ADD COLUMN last_output_at DOUBLE PRECISION;
ALTER TABLE agents ADD COLUMN detail TEXT;
CREATE INDEX agents_swarm ON agents (swarm_id);

ALTER TABLE tasks ADD COLUMN tokens BIGINT;
