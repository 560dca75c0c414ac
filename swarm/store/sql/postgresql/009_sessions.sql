-- swarm schema v9 (mirrors sqlite/009_sessions.sql): the agent CLI's conversation of a task's latest attempt
-- (docs/contract.md §3): its session id and the agent that had it. A failed attempt clears it; an interrupted one
-- keeps it.

ALTER TABLE tasks ADD COLUMN session_id TEXT;
ALTER TABLE tasks ADD COLUMN session_agent TEXT;
