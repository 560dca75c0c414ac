-- swarm schema v9: the agent CLI's conversation of a task's latest attempt (docs/contract.md §3): its session id
-- and the agent that had it (a CLI keeps its conversations per machine, user and working folder, so only that
-- agent can resume it). A failed attempt clears it: the next one starts afresh; an interrupted one keeps it.

ALTER TABLE tasks ADD COLUMN session_id TEXT;
ALTER TABLE tasks ADD COLUMN session_agent TEXT;
