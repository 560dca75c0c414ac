-- Named queries of the SQLite backend. Each block starts with "-- name: <name>".
-- Parameters are named (:name). Every write that follows a claim is fenced by owner AND lease_token.

-- name: expired_leases
SELECT id, owner, attempts, max_attempts
FROM tasks
WHERE state = 'claimed' AND lease_until < :now
ORDER BY lease_until;

-- name: expire_to_ready
UPDATE tasks
SET state = 'ready', owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'claimed' AND lease_until < :now;

-- name: expire_to_dead
UPDATE tasks
SET state = 'dead', lease_token = NULL, lease_until = NULL, updated_at = :now,
    last_error = 'lease expired on the last attempt'
WHERE id = :id AND state = 'claimed' AND lease_until < :now;

-- name: claim
UPDATE tasks
SET state = 'claimed', owner = :agent, lease_token = :token, lease_until = :until,
    heartbeat_at = :now, attempts = attempts + 1, updated_at = :now
WHERE id = (
    SELECT t.id FROM tasks AS t
    WHERE t.state = 'ready' AND t.not_before <= :now
      AND (:swarm IS NULL OR EXISTS (
          SELECT 1 FROM swarm_tasks AS m WHERE m.swarm_id = :swarm AND m.task_id = t.id
      ))
      AND NOT EXISTS (
          SELECT 1 FROM json_each(t.requires) AS r
          WHERE r.value NOT IN (SELECT value FROM json_each(:caps))
      )
    ORDER BY t.priority DESC, t.created_at ASC, t.id ASC
    LIMIT 1
)
RETURNING id, epic, title, body, attempts, lease_until, timeout_seconds,
    -- Space-separated (task ids never hold a space): splitting is cheaper than parsing JSON for 10,000 rows.
    (SELECT group_concat(depends_on, ' ') FROM (SELECT depends_on FROM deps WHERE task_id = tasks.id
                                                ORDER BY depends_on));

-- name: upsert_agent
INSERT INTO agents (id, host, capabilities, created_at, last_seen)
VALUES (:agent, :host, :caps, :now, :now)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, capabilities = excluded.capabilities,
    host = CASE WHEN excluded.host = '' THEN agents.host ELSE excluded.host END
-- Rewriting the row on every claim would cost a page per claim; a few seconds of staleness is fine.
WHERE agents.last_seen < excluded.last_seen - 5 OR agents.capabilities != excluded.capabilities
   OR (excluded.host != '' AND agents.host != excluded.host);

-- name: heartbeat
UPDATE tasks
SET lease_until = max(lease_until, :until), heartbeat_at = :now
WHERE id = :id AND state = 'claimed' AND owner = :agent AND lease_token = :token
RETURNING lease_until;

-- name: set_session
-- The conversation of the attempt in hand (fenced like every write after a claim).
UPDATE tasks SET session_id = :session, session_agent = :agent
WHERE id = :id AND state = 'claimed' AND owner = :agent AND lease_token = :token
RETURNING id;

-- name: complete
UPDATE tasks
SET state = 'done', lease_token = NULL, lease_until = NULL, updated_at = :now,
    commit_sha = :commit, last_error = NULL,
    tokens = CASE WHEN :tokens IS NULL THEN tokens ELSE coalesce(tokens, 0) + :tokens END,
    cost_usd = CASE WHEN :cost IS NULL THEN cost_usd ELSE coalesce(cost_usd, 0) + :cost END
WHERE id = :id AND state = 'claimed' AND owner = :agent AND lease_token = :token
RETURNING id;

-- name: promote_dependents
-- One statement: count the dependency down and promote the dependents it was the last one for.
UPDATE tasks
SET pending = pending - 1,
    state = CASE WHEN state = 'blocked' AND pending <= 1 THEN 'ready' ELSE state END,
    not_before = CASE WHEN state = 'blocked' AND pending <= 1 THEN 0 ELSE not_before END,
    updated_at = :now
WHERE id IN (SELECT task_id FROM deps WHERE depends_on = :id)
RETURNING id, state, pending;

-- name: fail
-- Back to ready with attempts left (after the backoff), else dead; one statement for both (every SET
-- expression reads the row as it was before the update).
UPDATE tasks
SET state = CASE WHEN attempts < max_attempts THEN 'ready' ELSE 'dead' END,
    owner = CASE WHEN attempts < max_attempts THEN NULL ELSE owner END,
    not_before = CASE WHEN attempts < max_attempts THEN :not_before ELSE not_before END,
    lease_token = NULL, lease_until = NULL, updated_at = :now, last_error = :reason,
    session_id = NULL, session_agent = NULL,
    tokens = CASE WHEN :tokens IS NULL THEN tokens ELSE coalesce(tokens, 0) + :tokens END,
    cost_usd = CASE WHEN :cost IS NULL THEN cost_usd ELSE coalesce(cost_usd, 0) + :cost END
WHERE id = :id AND state = 'claimed' AND owner = :agent AND lease_token = :token
RETURNING state, attempts;

-- name: return_task
UPDATE tasks
SET state = 'ready', owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = :now,
    not_before = 0, attempts = attempts - 1
WHERE id = :id AND state = 'claimed' AND owner = :agent AND lease_token = :token
RETURNING id;

-- name: fence_probe
SELECT state, owner, lease_token, attempts FROM tasks WHERE id = :id;

-- name: insert_event
INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
VALUES (:task, :now, :actor, :from_state, :to_state, :reason);

-- name: insert_task
INSERT INTO tasks (id, epic, title, body, state, priority, requires, pending, attempts, max_attempts,
                   timeout_seconds, source, created_at, updated_at, verify, allow_empty)
VALUES (:id, :epic, :title, :body, 'blocked', :priority, :requires, 0, 0, :max_attempts,
        :timeout_seconds, :source, :now, :now, :verify, :allow_empty);

-- name: insert_dep
INSERT OR IGNORE INTO deps (task_id, depends_on) VALUES (:id, :dep);

-- name: recount_pending
UPDATE tasks
SET pending = (
    SELECT count(*) FROM deps AS d JOIN tasks AS p ON p.id = d.depends_on
    WHERE d.task_id = tasks.id AND p.state != 'done'
)
WHERE id = :id;

-- name: unblock_if_ready
UPDATE tasks SET state = 'ready', updated_at = :now
WHERE id = :id AND state = 'blocked' AND pending = 0
RETURNING id;

-- name: task_state_for_update
-- No FOR UPDATE in SQLite: BEGIN IMMEDIATE already holds the write lock of the whole file.
SELECT state FROM tasks WHERE id = :id;

-- name: cancel
UPDATE tasks
SET state = 'cancelled', lease_token = NULL, lease_until = NULL, updated_at = :now, last_error = :reason
WHERE id = :id AND state IN ('blocked', 'ready', 'claimed', 'dead');

-- name: retry
UPDATE tasks
SET state = CASE WHEN pending = 0 THEN 'ready' ELSE 'blocked' END,
    owner = NULL, attempts = 0, not_before = 0, updated_at = :now, last_error = NULL,
    session_id = NULL, session_agent = NULL
WHERE id = :id AND state IN ('dead', 'cancelled')
RETURNING state;

-- name: select_tasks
SELECT t.id, t.epic, t.title, t.body, t.state, t.priority, t.requires, t.attempts, t.max_attempts,
       t.owner, t.lease_until, t.not_before, t.commit_sha, t.cost_usd, t.last_error,
       t.created_at, t.updated_at, t.timeout_seconds, t.tokens, t.heartbeat_at, t.verify, t.allow_empty,
       t.session_id, t.session_agent,
       (SELECT group_concat(depends_on, ' ') FROM (SELECT depends_on FROM deps WHERE task_id = t.id
                                                   ORDER BY depends_on)) AS deps
FROM tasks AS t
WHERE (:epic IS NULL OR t.epic = :epic) AND (:id IS NULL OR t.id = :id)
  AND (:swarm IS NULL OR EXISTS (SELECT 1 FROM swarm_tasks AS m WHERE m.swarm_id = :swarm AND m.task_id = t.id))
ORDER BY t.created_at, t.id;

-- name: counts
SELECT state, count(*) FROM tasks AS t
WHERE (:epic IS NULL OR t.epic = :epic)
  AND (:swarm IS NULL OR EXISTS (SELECT 1 FROM swarm_tasks AS m WHERE m.swarm_id = :swarm AND m.task_id = t.id))
GROUP BY state;

-- name: select_events
SELECT seq, task_id, at, actor, from_state, to_state, reason
FROM events
WHERE (:task IS NULL OR task_id = :task) AND seq > :since
ORDER BY seq
LIMIT :limit;

-- name: existing_ids
SELECT id, state FROM tasks;

-- name: open_swarm_of_epic
-- The open swarm that works the epic (the latest, should there be several from before schema v7).
SELECT s.id FROM swarms AS s JOIN swarm_epics AS e ON e.swarm_id = s.id
WHERE e.epic = :epic AND s.ended_at IS NULL
ORDER BY s.created_at DESC, s.rowid DESC LIMIT 1;

-- name: latest_swarm
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       (SELECT group_concat(epic, ' ') FROM (SELECT epic FROM swarm_epics AS e WHERE e.swarm_id = s.id
                                              ORDER BY e.position)) AS epics
FROM swarms AS s
ORDER BY s.created_at DESC, s.rowid DESC LIMIT 1;

-- name: swarm_by_id
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       (SELECT group_concat(epic, ' ') FROM (SELECT epic FROM swarm_epics AS e WHERE e.swarm_id = s.id
                                              ORDER BY e.position)) AS epics
FROM swarms AS s
WHERE s.id = :id;

-- name: list_swarms
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       (SELECT group_concat(epic, ' ') FROM (SELECT epic FROM swarm_epics AS e WHERE e.swarm_id = s.id
                                              ORDER BY e.position)) AS epics
FROM swarms AS s
ORDER BY s.created_at, s.rowid;

-- name: lock_swarms
-- Nothing to do: BEGIN IMMEDIATE already serialises every writer.
SELECT 1;

-- name: insert_swarm
INSERT INTO swarms (id, epic, max_agents, created_at) VALUES (:id, :epic, :max_agents, :now);

-- name: add_swarm_epic
-- Does nothing when the swarm works the epic already; a new one goes after the others.
INSERT INTO swarm_epics (swarm_id, epic, added_at, position)
SELECT :id, :epic, :now, coalesce(max(position) + 1, 0) FROM swarm_epics WHERE swarm_id = :id
ON CONFLICT (swarm_id, epic) DO NOTHING;

-- name: end_swarm
UPDATE swarms SET ended_at = coalesce(ended_at, :now) WHERE id = :id;

-- name: update_swarm
UPDATE swarms
SET max_agents = coalesce(:max_agents, max_agents), repo = coalesce(:repo, repo),
    settings = coalesce(:settings, settings), stop_mode = NULL
WHERE id = :id;

-- name: request_stop
UPDATE swarms SET stop_mode = :mode WHERE id = :id;

-- name: add_member
INSERT OR IGNORE INTO swarm_tasks (swarm_id, task_id) VALUES (:swarm, :id);

-- name: register_agent
INSERT INTO agents (id, swarm_id, host, session, branch, worktree, capabilities, created_at, last_seen, state,
                    kind, model)
VALUES (:id, :swarm_id, :host, :session, :branch, :worktree, :caps, :now, :now, :state, :kind, :model)
ON CONFLICT (id) DO UPDATE SET
    swarm_id = excluded.swarm_id, host = excluded.host, session = excluded.session,
    branch = excluded.branch, worktree = excluded.worktree, capabilities = excluded.capabilities,
    last_seen = excluded.last_seen, kind = coalesce(excluded.kind, agents.kind),
    model = coalesce(excluded.model, agents.model);

-- name: select_agents
SELECT id, swarm_id, host, session, branch, worktree, capabilities, pid, agent_pid, state, task_id,
       restarts, cost_usd, last_seen, last_output, last_output_at, detail, created_at, next_restart_at, kind,
       model
FROM agents
WHERE (:swarm IS NULL OR swarm_id = :swarm)
ORDER BY length(id), id;

-- name: claims_of_agent
SELECT id FROM tasks WHERE state = 'claimed' AND owner = :agent;

-- name: admin_return
UPDATE tasks
SET state = 'ready', owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = :now,
    not_before = 0, attempts = max(attempts - 1, 0)
WHERE id = :id AND state = 'claimed';

-- name: has_meta
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta';

-- name: get_meta
SELECT value FROM meta WHERE key = :key;

-- name: set_meta
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: next_seq
-- Creates the thread on first use; the write lock of BEGIN IMMEDIATE orders appenders: sequence numbers
-- follow commit order.
INSERT INTO threads (name, last_seq, created_at) VALUES (:thread, 1, :now)
ON CONFLICT (name) DO UPDATE SET last_seq = threads.last_seq + 1
RETURNING last_seq;

-- name: thread_tail
SELECT last_seq FROM threads WHERE name = :thread;

-- name: insert_message
INSERT INTO messages (thread, seq, author, recipient, type, body, reply_to, created_at)
VALUES (:thread, :seq, :author, :recipient, :type, :body, :reply_to, :created_at);

-- name: message_exists
SELECT 1 FROM messages WHERE thread = :thread AND seq = :seq;

-- name: get_message
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages WHERE thread = :thread AND seq = :seq;

-- name: list_messages
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages
WHERE thread = :thread AND seq > :since
ORDER BY seq
LIMIT :limit;

-- name: next_for
-- The next entry this identity did not write that is addressed to it or to all.
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages
WHERE thread = :thread AND seq > :after AND author != :identity
  AND (recipient IS NULL OR recipient = :identity)
  AND (:from_author IS NULL OR author = :from_author)
  AND (:reply_to IS NULL OR reply_to = :reply_to)
  AND (:type IS NULL OR type = :type)
ORDER BY seq
LIMIT 1;

-- name: unanswered
SELECT q.thread, q.seq, q.author, q.recipient, q.type, q.body, q.reply_to, q.created_at
FROM messages AS q
WHERE q.type = 'question' AND q.recipient = :recipient
  AND NOT EXISTS (SELECT 1 FROM messages AS a
                  WHERE a.thread = q.thread AND a.reply_to = q.seq AND a.type = 'answer')
ORDER BY q.created_at, q.seq;

-- name: get_cursor
SELECT seq FROM cursors WHERE identity = :identity AND thread = :thread;

-- name: set_cursor
INSERT INTO cursors (identity, thread, seq) VALUES (:identity, :thread, :seq)
ON CONFLICT (identity, thread) DO UPDATE SET seq = max(cursors.seq, excluded.seq);

-- name: set_agent_token
UPDATE agents SET token_hash = :hash WHERE id = :id;

-- name: agent_token
SELECT token_hash FROM agents WHERE id = :id;

-- name: agent_ids
SELECT id FROM agents;

-- name: pause_claims
UPDATE swarms SET paused_until = max(paused_until, :until), pause_reason = :reason WHERE id = :id;

-- name: swarm_pause
SELECT paused_until, pause_reason FROM swarms WHERE id = :id;

-- name: record_incident
INSERT INTO incidents (key, swarm_id, created_at) VALUES (:key, :swarm, :now) ON CONFLICT (key) DO NOTHING;

-- name: queue_notification
INSERT INTO notifications (key, swarm_id, sink, owner, event, payload, created_at)
VALUES (:key, :swarm, :sink, :owner, :event, :payload, :now) ON CONFLICT (key) DO NOTHING;

-- name: pending_notifications
SELECT key, swarm_id, sink, event, payload, created_at, owner FROM notifications
WHERE sent_at IS NULL AND owner = :owner ORDER BY created_at, key LIMIT :limit;

-- name: mark_notified
UPDATE notifications SET sent_at = :now WHERE key = :key AND sent_at IS NULL;

-- name: withdraw_member
DELETE FROM swarm_tasks WHERE swarm_id = :swarm AND task_id = :id;

-- name: withdrawable_task
-- A task a failed launch queued can go while nobody claimed it and no task added since depends on it.
SELECT t.state FROM tasks AS t
WHERE t.id = :id AND t.state IN ('ready', 'blocked')
  AND NOT EXISTS (SELECT 1 FROM deps AS d WHERE d.depends_on = t.id AND d.task_id NOT IN (SELECT value FROM json_each(:ids)));

-- name: withdraw_deps
DELETE FROM deps WHERE task_id = :id;

-- name: withdraw_task
DELETE FROM tasks WHERE id = :id;

-- name: withdraw_swarm_epic
DELETE FROM swarm_epics WHERE swarm_id = :id AND epic = :epic;

-- name: restore_swarm
UPDATE swarms SET max_agents = :max_agents, repo = :repo, settings = :settings, stop_mode = :stop_mode
WHERE id = :id;

-- name: withdraw_swarm_members
DELETE FROM swarm_tasks WHERE swarm_id = :id;

-- name: withdraw_swarm_epics
DELETE FROM swarm_epics WHERE swarm_id = :id;

-- name: withdraw_swarm_incidents
DELETE FROM incidents WHERE swarm_id = :id;

-- name: withdraw_swarm
DELETE FROM swarms WHERE id = :id;

-- name: withdraw_agent
DELETE FROM agents WHERE id = :id AND swarm_id = :swarm;
