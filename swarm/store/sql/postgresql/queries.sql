-- Named queries of the PostgreSQL backend. Each block starts with "-- name: <name>".
-- Parameters are psycopg's named placeholders (%(name)s), cast where PostgreSQL could not infer the type.
-- Every time is a parameter (the injectable clock), never now(). Every write that follows a claim is fenced
-- by owner AND lease_token.

-- name: finish_write
-- Last statement of every write transaction. pg_current_xact_id_if_assigned() is NULL when the transaction
-- changed nothing: then nobody is woken and there is no commit to verify. Otherwise the xid lets us ask the
-- server, after a connection lost during COMMIT, whether the transaction committed; and the notification
-- (sent by the server only once the transaction commits) wakes the listeners.
SELECT x::text,
       (SELECT count(*) FROM (SELECT pg_notify('swarm_changes', '') WHERE x IS NOT NULL) AS n)
FROM (SELECT pg_current_xact_id_if_assigned() AS x) AS s;

-- name: finish_quietly
-- finish_write without the notification, for writes that cannot end anybody's wait (heartbeats, agent rows).
SELECT pg_current_xact_id_if_assigned()::text;

-- name: xact_status
SELECT pg_xact_status(%(xid)s::xid8);

-- name: poll_marker
-- The fallback wake-up: the snapshot changes whenever a transaction that wrote anything ends (xmax moves
-- past it or it leaves the in-progress list), and only then, so unlike a sequence bumped before COMMIT it
-- can never announce a change that readers cannot see yet.
SELECT pg_current_snapshot()::text;

-- name: set_lock_timeout
SELECT set_config('lock_timeout', %(ms)s, false);

-- name: migration_lock
SELECT pg_advisory_xact_lock(%(key)s::bigint);

-- name: has_meta
SELECT to_regclass('meta') IS NOT NULL;

-- name: reap
-- Lock the expired leases nobody else is touching (SKIP LOCKED: a concurrent reaper or heartbeat has them),
-- re-check them under the lock, return each to ready or dead and log it (swarm_reap, 005_functions.sql).
-- Two reapers never count one expiry twice.
SELECT task_id, task_owner, task_state FROM swarm_reap(%(now)s::float8);

-- name: claim
-- Reap, refresh the agent row if asked, pick the first eligible ready task in claim order that no other
-- transaction has locked (a concurrent claimer's pick is skipped, not waited for), take it, log it; returns
-- the transaction id and notifies when it wrote anything (swarm_claim, 005_functions.sql).
SELECT reaped, task_id, task_epic, task_title, task_body, task_attempts, task_lease_until, task_timeout,
       task_deps, xid
FROM swarm_claim(%(agent)s::text, %(token)s::text, %(until)s::float8, %(now)s::float8, %(caps)s::text[],
                 %(swarm)s::text, %(host)s::text, %(refresh)s::boolean);

-- name: heartbeat
UPDATE tasks
SET lease_until = GREATEST(lease_until, %(until)s), heartbeat_at = %(now)s
WHERE id = %(id)s AND state = 'claimed' AND owner = %(agent)s AND lease_token = %(token)s
RETURNING lease_until;

-- name: set_session
-- The conversation of the attempt in hand (fenced like every write after a claim).
UPDATE tasks SET session_id = %(session)s, session_agent = %(agent)s
WHERE id = %(id)s AND state = 'claimed' AND owner = %(agent)s AND lease_token = %(token)s
RETURNING id;

-- name: complete
-- Mark the task done (fenced), log it, then promote the dependents it was the last dependency of, in a later
-- snapshot (swarm_complete, 005_functions.sql). done is false when the fence refused: nothing was written.
SELECT done, promoted, xid
FROM swarm_complete(%(id)s::text, %(agent)s::text, %(token)s::text, %(now)s::float8, %(commit)s::text,
                    %(cost)s::float8, %(tokens)s::bigint, %(reason)s::text, %(promote_reason)s::text);

-- name: fail
-- Back to ready with attempts left (after the backoff), else dead; one statement for both.
UPDATE tasks
SET state = CASE WHEN attempts < max_attempts THEN 'ready' ELSE 'dead' END,
    owner = CASE WHEN attempts < max_attempts THEN NULL ELSE owner END,
    not_before = CASE WHEN attempts < max_attempts THEN %(not_before)s ELSE not_before END,
    lease_token = NULL, lease_until = NULL, updated_at = %(now)s, last_error = %(reason)s,
    session_id = NULL, session_agent = NULL,
    tokens = CASE WHEN %(tokens)s::bigint IS NULL THEN tokens ELSE coalesce(tokens, 0) + %(tokens)s::bigint END,
    cost_usd = CASE WHEN %(cost)s::float8 IS NULL THEN cost_usd
                    ELSE coalesce(cost_usd, 0) + %(cost)s::float8 END
WHERE id = %(id)s AND state = 'claimed' AND owner = %(agent)s AND lease_token = %(token)s
RETURNING state, attempts;

-- name: return_task
UPDATE tasks
SET state = 'ready', owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = %(now)s,
    not_before = 0, attempts = attempts - 1
WHERE id = %(id)s AND state = 'claimed' AND owner = %(agent)s AND lease_token = %(token)s
RETURNING id;

-- name: fence_probe
SELECT state, owner, lease_token, attempts FROM tasks WHERE id = %(id)s;

-- name: insert_event
INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
VALUES (%(task)s, %(now)s, %(actor)s, %(from_state)s, %(to_state)s, %(reason)s);

-- name: add_tasks_lock
-- add_tasks reads which ids exist, then inserts the others: two concurrent adders of one spec would both
-- insert it. Serializing additions (rare, short) keeps the read-then-insert correct.
SELECT pg_advisory_xact_lock(%(key)s::bigint);

-- name: lock_dependencies
-- Held to COMMIT: a concurrent completion of one of these must wait for the new dependents to be committed
-- (and then promotes them), or commit first (and then the recount below sees it done). See
-- promote_dependents.
SELECT id FROM tasks WHERE id = ANY(%(ids)s::text[]) AND state != 'done' ORDER BY id FOR SHARE;

-- name: existing_ids
SELECT id, state FROM tasks WHERE id = ANY(%(ids)s::text[]);

-- name: insert_task
INSERT INTO tasks (id, epic, title, body, state, priority, requires, pending, attempts, max_attempts,
                   timeout_seconds, source, created_at, updated_at, verify, allow_empty)
VALUES (%(id)s, %(epic)s, %(title)s, %(body)s, 'blocked', %(priority)s, %(requires)s::text[], 0, 0,
        %(max_attempts)s, %(timeout_seconds)s, %(source)s, %(now)s, %(now)s, %(verify)s, %(allow_empty)s);

-- name: analyze_tasks
ANALYZE tasks, deps, swarm_tasks;

-- name: insert_dep
INSERT INTO deps (task_id, depends_on) VALUES (%(id)s, %(dep)s) ON CONFLICT DO NOTHING;

-- name: recount_pending_many
UPDATE tasks AS t
SET pending = (
    SELECT count(*) FROM deps AS d JOIN tasks AS p ON p.id = d.depends_on
    WHERE d.task_id = t.id AND p.state != 'done'
)
WHERE t.id = ANY(%(ids)s::text[]);

-- name: unblock_many
UPDATE tasks SET state = 'ready', updated_at = %(now)s
WHERE id = ANY(%(ids)s::text[]) AND state = 'blocked' AND pending = 0
RETURNING id;

-- name: recount_pending
UPDATE tasks AS t
SET pending = (
    SELECT count(*) FROM deps AS d JOIN tasks AS p ON p.id = d.depends_on
    WHERE d.task_id = t.id AND p.state != 'done'
)
WHERE t.id = %(id)s;

-- name: task_state_for_update
SELECT state FROM tasks WHERE id = %(id)s FOR UPDATE;

-- name: cancel
UPDATE tasks
SET state = 'cancelled', lease_token = NULL, lease_until = NULL, updated_at = %(now)s, last_error = %(reason)s
WHERE id = %(id)s AND state IN ('blocked', 'ready', 'claimed', 'dead');

-- name: retry
UPDATE tasks
SET state = CASE WHEN pending = 0 THEN 'ready' ELSE 'blocked' END,
    owner = NULL, attempts = 0, not_before = 0, updated_at = %(now)s, last_error = NULL,
    session_id = NULL, session_agent = NULL
WHERE id = %(id)s AND state IN ('dead', 'cancelled')
RETURNING state;

-- name: select_tasks
SELECT t.id, t.epic, t.title, t.body, t.state, t.priority, t.requires, t.attempts, t.max_attempts,
       t.owner, t.lease_until, t.not_before, t.commit_sha, t.cost_usd, t.last_error,
       t.created_at, t.updated_at, t.timeout_seconds, t.tokens, t.heartbeat_at, t.verify, t.allow_empty,
       t.session_id, t.session_agent,
       ARRAY(SELECT d.depends_on FROM deps AS d WHERE d.task_id = t.id ORDER BY d.depends_on) AS deps
FROM tasks AS t
WHERE (%(epic)s::text IS NULL OR t.epic = %(epic)s::text) AND (%(id)s::text IS NULL OR t.id = %(id)s::text)
  AND (%(swarm)s::text IS NULL OR EXISTS (SELECT 1 FROM swarm_tasks AS m
                                          WHERE m.swarm_id = %(swarm)s::text AND m.task_id = t.id))
ORDER BY t.created_at, t.id;

-- name: counts
SELECT state, count(*) FROM tasks AS t
WHERE (%(epic)s::text IS NULL OR t.epic = %(epic)s::text)
  AND (%(swarm)s::text IS NULL OR EXISTS (SELECT 1 FROM swarm_tasks AS m
                                          WHERE m.swarm_id = %(swarm)s::text AND m.task_id = t.id))
GROUP BY state;

-- name: select_events
SELECT seq, task_id, at, actor, from_state, to_state, reason
FROM events
WHERE (%(task)s::text IS NULL OR task_id = %(task)s::text) AND seq > %(since)s
ORDER BY seq
LIMIT %(limit)s;

-- name: open_swarm_of_epic
-- The open swarm that works the epic (the latest, should there be several from before schema v7).
SELECT s.id FROM swarms AS s JOIN swarm_epics AS e ON e.swarm_id = s.id
WHERE e.epic = %(epic)s AND s.ended_at IS NULL
ORDER BY s.created_at DESC, s.created_order DESC LIMIT 1;

-- name: latest_swarm
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       array(SELECT e.epic FROM swarm_epics AS e WHERE e.swarm_id = s.id ORDER BY e.position) AS epics
FROM swarms AS s
ORDER BY s.created_at DESC, s.created_order DESC LIMIT 1;

-- name: swarm_by_id
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       array(SELECT e.epic FROM swarm_epics AS e WHERE e.swarm_id = s.id ORDER BY e.position) AS epics
FROM swarms AS s
WHERE s.id = %(id)s;

-- name: list_swarms
SELECT s.id, s.epic, s.max_agents, s.created_at, s.stop_mode, s.repo, s.settings, s.ended_at,
       array(SELECT e.epic FROM swarm_epics AS e WHERE e.swarm_id = s.id ORDER BY e.position) AS epics
FROM swarms AS s
ORDER BY s.created_at, s.created_order;

-- name: lock_swarms
-- Two processes launching at once: the second waits here until the first commits, then finds its swarm.
SELECT pg_advisory_xact_lock(%(key)s::bigint);

-- name: insert_swarm
INSERT INTO swarms (id, epic, max_agents, created_at) VALUES (%(id)s, %(epic)s, %(max_agents)s, %(now)s);

-- name: add_swarm_epic
-- Does nothing when the swarm works the epic already; a new one goes after the others.
INSERT INTO swarm_epics (swarm_id, epic, added_at, position)
SELECT %(id)s, %(epic)s, %(now)s::float8, coalesce(max(position) + 1, 0) FROM swarm_epics WHERE swarm_id = %(id)s
ON CONFLICT (swarm_id, epic) DO NOTHING;

-- name: end_swarm
UPDATE swarms SET ended_at = coalesce(ended_at, %(now)s::float8) WHERE id = %(id)s;

-- name: update_swarm
UPDATE swarms
SET max_agents = coalesce(%(max_agents)s::integer, max_agents), repo = coalesce(%(repo)s::text, repo),
    settings = coalesce(%(settings)s::jsonb, settings), stop_mode = NULL
WHERE id = %(id)s;

-- name: request_stop
UPDATE swarms SET stop_mode = %(mode)s WHERE id = %(id)s;

-- name: add_member
INSERT INTO swarm_tasks (swarm_id, task_id) VALUES (%(swarm)s, %(id)s) ON CONFLICT DO NOTHING;

-- name: register_agent
INSERT INTO agents (id, swarm_id, host, session, branch, worktree, capabilities, created_at, last_seen, state,
                    kind, model)
VALUES (%(id)s, %(swarm_id)s, %(host)s, %(session)s, %(branch)s, %(worktree)s, %(caps)s::text[], %(now)s,
        %(now)s, %(state)s, %(kind)s, %(model)s)
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
WHERE (%(swarm)s::text IS NULL OR swarm_id = %(swarm)s::text)
ORDER BY length(id), id;

-- name: admin_return
-- Teardown has no tokens: return every task these agents hold, without spending an attempt.
WITH held AS MATERIALIZED (
    SELECT id, owner FROM tasks
    WHERE state = 'claimed' AND owner = ANY(%(agents)s::text[])
    ORDER BY id
    FOR UPDATE
), returned AS (
    UPDATE tasks AS t
    SET state = 'ready', owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = %(now)s,
        not_before = 0, attempts = GREATEST(t.attempts - 1, 0)
    FROM held
    WHERE t.id = held.id AND t.state = 'claimed'
    RETURNING t.id, held.owner
), logged AS (
    INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
    SELECT id, %(now)s, %(actor)s, 'claimed', 'ready', %(reason)s || ' (was held by ' || owner || ')'
    FROM returned
    ORDER BY id
)
SELECT id, owner FROM returned ORDER BY id;

-- name: get_meta
SELECT value FROM meta WHERE key = %(key)s;

-- name: set_meta
INSERT INTO meta (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: next_seq
-- Creates the thread on first use; the row lock taken here is held until COMMIT, so the next appender of
-- this thread waits for this one: sequence numbers follow commit order.
INSERT INTO threads (name, last_seq, created_at) VALUES (%(thread)s, 1, %(now)s)
ON CONFLICT (name) DO UPDATE SET last_seq = threads.last_seq + 1
RETURNING last_seq;

-- name: thread_tail
SELECT last_seq FROM threads WHERE name = %(thread)s;

-- name: insert_message
INSERT INTO messages (thread, seq, author, recipient, type, body, reply_to, created_at)
VALUES (%(thread)s, %(seq)s, %(author)s, %(recipient)s, %(type)s, %(body)s, %(reply_to)s, %(created_at)s);

-- name: message_exists
SELECT 1 FROM messages WHERE thread = %(thread)s AND seq = %(seq)s;

-- name: get_message
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages WHERE thread = %(thread)s AND seq = %(seq)s;

-- name: list_messages
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages
WHERE thread = %(thread)s AND seq > %(since)s
ORDER BY seq
LIMIT %(limit)s;

-- name: next_for
-- The next entry this identity did not write that is addressed to it or to all.
SELECT thread, seq, author, recipient, type, body, reply_to, created_at
FROM messages
WHERE thread = %(thread)s AND seq > %(after)s AND author != %(identity)s
  AND (recipient IS NULL OR recipient = %(identity)s)
  AND (%(from_author)s::text IS NULL OR author = %(from_author)s::text)
  AND (%(reply_to)s::bigint IS NULL OR reply_to = %(reply_to)s::bigint)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
ORDER BY seq
LIMIT 1;

-- name: unanswered
SELECT q.thread, q.seq, q.author, q.recipient, q.type, q.body, q.reply_to, q.created_at
FROM messages AS q
WHERE q.type = 'question' AND q.recipient = %(recipient)s
  AND NOT EXISTS (SELECT 1 FROM messages AS a
                  WHERE a.thread = q.thread AND a.reply_to = q.seq AND a.type = 'answer')
ORDER BY q.created_at, q.seq;

-- name: get_cursor
SELECT seq FROM cursors WHERE identity = %(identity)s AND thread = %(thread)s;

-- name: set_cursor
INSERT INTO cursors (identity, thread, seq) VALUES (%(identity)s, %(thread)s, %(seq)s)
ON CONFLICT (identity, thread) DO UPDATE SET seq = GREATEST(cursors.seq, excluded.seq)
WHERE excluded.seq > cursors.seq;

-- name: set_agent_token
UPDATE agents SET token_hash = %(hash)s WHERE id = %(id)s;

-- name: agent_token
SELECT token_hash FROM agents WHERE id = %(id)s;

-- name: agent_ids
SELECT id FROM agents;

-- name: pause_claims
UPDATE swarms SET paused_until = GREATEST(paused_until, %(until)s::float8), pause_reason = %(reason)s
WHERE id = %(id)s;

-- name: swarm_pause
SELECT paused_until, pause_reason FROM swarms WHERE id = %(id)s;

-- name: record_incident
INSERT INTO incidents (key, swarm_id, created_at) VALUES (%(key)s, %(swarm)s, %(now)s) ON CONFLICT (key) DO NOTHING;

-- name: queue_notification
INSERT INTO notifications (key, swarm_id, sink, owner, event, payload, created_at)
VALUES (%(key)s, %(swarm)s, %(sink)s, %(owner)s, %(event)s, %(payload)s, %(now)s) ON CONFLICT (key) DO NOTHING;

-- name: pending_notifications
SELECT key, swarm_id, sink, event, payload, created_at, owner FROM notifications
WHERE sent_at IS NULL AND owner = %(owner)s ORDER BY created_at, key LIMIT %(limit)s;

-- name: mark_notified
UPDATE notifications SET sent_at = %(now)s WHERE key = %(key)s AND sent_at IS NULL;

-- name: withdraw_member
DELETE FROM swarm_tasks WHERE swarm_id = %(swarm)s AND task_id = %(id)s;

-- name: withdrawable_task
-- A task a failed launch queued can go while nobody claimed it and no task added since depends on it.
SELECT t.state FROM tasks AS t
WHERE t.id = %(id)s AND t.state IN ('ready', 'blocked')
  AND NOT EXISTS (SELECT 1 FROM deps AS d WHERE d.depends_on = t.id AND NOT d.task_id = ANY(%(ids)s::text[]))
FOR UPDATE;

-- name: withdraw_deps
DELETE FROM deps WHERE task_id = %(id)s;

-- name: withdraw_task
DELETE FROM tasks WHERE id = %(id)s;

-- name: withdraw_swarm_epic
DELETE FROM swarm_epics WHERE swarm_id = %(id)s AND epic = %(epic)s;

-- name: restore_swarm
UPDATE swarms SET max_agents = %(max_agents)s::integer, repo = %(repo)s::text, settings = %(settings)s::jsonb,
    stop_mode = %(stop_mode)s::text
WHERE id = %(id)s;

-- name: withdraw_swarm_members
DELETE FROM swarm_tasks WHERE swarm_id = %(id)s;

-- name: withdraw_swarm_epics
DELETE FROM swarm_epics WHERE swarm_id = %(id)s;

-- name: withdraw_swarm_incidents
DELETE FROM incidents WHERE swarm_id = %(id)s;

-- name: withdraw_swarm
DELETE FROM swarms WHERE id = %(id)s;

-- name: withdraw_agent
DELETE FROM agents WHERE id = %(id)s AND swarm_id = %(swarm)s;
