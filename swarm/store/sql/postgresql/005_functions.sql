-- swarm schema v5 (sqlite/005_functions.sql is empty on purpose): the hot operations as server-side
-- functions. A claim (reap + claim + log) and a completion (complete + promote dependents + log) each cost
-- one statement instead of four, so BEGIN, the call and COMMIT are the whole transaction: three round trips
-- where there were five, and one parse-bind-execute on the server. Each function ends the way every write
-- transaction ends (finish_write in queries.sql): it returns its transaction id, NULL when it wrote nothing,
-- and only then sends the wake-up notification.
--
-- Semantics are those of the statements they replace. In particular each statement inside a plpgsql
-- function takes its own snapshot at READ COMMITTED, so the promotion still starts after the completion holds
-- the completed row (see promote_dependents in queries.sql for why that matters).

-- Take back expired leases (see "reap" in queries.sql, which now calls this).
CREATE FUNCTION swarm_reap(p_now DOUBLE PRECISION)
RETURNS TABLE (task_id TEXT, task_owner TEXT, task_state TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH expired AS MATERIALIZED (
        SELECT t.id, t.owner, t.attempts, t.max_attempts, t.lease_until
        FROM tasks AS t
        WHERE t.state = 'claimed' AND t.lease_until < p_now
        ORDER BY t.lease_until, t.id
        FOR UPDATE SKIP LOCKED
    ), changed AS (
        UPDATE tasks AS t
        SET state = CASE WHEN e.attempts >= e.max_attempts THEN 'dead' ELSE 'ready' END,
            owner = CASE WHEN e.attempts >= e.max_attempts THEN t.owner END,
            lease_token = NULL, lease_until = NULL, updated_at = p_now,
            last_error = CASE WHEN e.attempts >= e.max_attempts THEN 'lease expired on the last attempt'
                              ELSE t.last_error END
        FROM expired AS e
        WHERE t.id = e.id AND t.state = 'claimed' AND t.lease_until < p_now
        RETURNING t.id, e.owner, t.state, e.attempts, e.max_attempts, e.lease_until
    ), logged AS (
        INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
        SELECT c.id, p_now, 'reaper', 'claimed', c.state,
               CASE WHEN c.state = 'dead'
                    THEN 'lease of ' || coalesce(c.owner, 'None') || ' expired on attempt ' || c.attempts
                         || ' of ' || c.max_attempts
                    ELSE 'lease of ' || coalesce(c.owner, 'None') || ' expired (attempt ' || c.attempts
                         || ' of ' || c.max_attempts || ')' END
        FROM changed AS c
        ORDER BY c.lease_until, c.id
    )
    SELECT c.id, c.owner, c.state FROM changed AS c ORDER BY c.lease_until, c.id;
END;
$$;

-- Reap, refresh the agent row when asked, claim the next eligible task, log it; one row whatever happens
-- (task_id NULL when nothing was claimable).
CREATE FUNCTION swarm_claim(
    p_agent TEXT, p_token TEXT, p_until DOUBLE PRECISION, p_now DOUBLE PRECISION, p_caps TEXT[], p_swarm TEXT,
    p_host TEXT, p_seen BOOLEAN
)
RETURNS TABLE (
    reaped TEXT[], task_id TEXT, task_epic TEXT, task_title TEXT, task_body TEXT, task_attempts INTEGER,
    task_lease_until DOUBLE PRECISION, task_timeout INTEGER, task_deps TEXT[], xid TEXT
)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT coalesce(array_agg(r.task_id || ' ' || coalesce(r.task_owner, '') || ' ' || r.task_state), '{}')
    INTO reaped FROM swarm_reap(p_now) AS r;
    IF p_seen THEN
        INSERT INTO agents (id, host, capabilities, created_at, last_seen)
        VALUES (p_agent, p_host, p_caps, p_now, p_now)
        ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, capabilities = excluded.capabilities,
            host = CASE WHEN excluded.host = '' THEN agents.host ELSE excluded.host END
        WHERE agents.last_seen < excluded.last_seen - 5 OR agents.capabilities IS DISTINCT FROM excluded.capabilities
           OR (excluded.host != '' AND agents.host != excluded.host);
    END IF;
    WITH picked AS MATERIALIZED (
        SELECT t.id FROM tasks AS t
        WHERE t.state = 'ready' AND t.not_before <= p_now
          AND t.requires <@ p_caps
          AND (p_swarm IS NULL OR EXISTS (
              SELECT 1 FROM swarm_tasks AS m WHERE m.swarm_id = p_swarm AND m.task_id = t.id
          ))
        ORDER BY t.priority DESC, t.created_at ASC, t.id ASC
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE tasks AS t
        SET state = 'claimed', owner = p_agent, lease_token = p_token, lease_until = p_until,
            heartbeat_at = p_now, attempts = t.attempts + 1, updated_at = p_now
        FROM picked
        WHERE t.id = picked.id
        RETURNING t.id, t.epic, t.title, t.body, t.attempts, t.lease_until, t.timeout_seconds
    ), logged AS (
        INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
        SELECT c.id, p_now, p_agent, 'ready', 'claimed', 'attempt ' || c.attempts FROM claimed AS c
    )
    SELECT c.id, c.epic, c.title, c.body, c.attempts, c.lease_until, c.timeout_seconds,
           ARRAY(SELECT d.depends_on FROM deps AS d WHERE d.task_id = c.id ORDER BY d.depends_on)
    INTO task_id, task_epic, task_title, task_body, task_attempts, task_lease_until, task_timeout, task_deps
    FROM claimed AS c;
    xid := pg_current_xact_id_if_assigned()::text;
    -- A claim ends nobody's wait, and every notifying COMMIT takes the server's one notification-queue
    -- lock: only a claim that reaped (tasks back to ready) notifies. Waiters see the others by polling.
    IF xid IS NOT NULL AND cardinality(reaped) > 0 THEN
        PERFORM pg_notify('swarm_changes', '');
    END IF;
    RETURN NEXT;
END;
$$;

-- Complete (fenced by owner and lease token), log it, and only then promote the dependents it was the last
-- dependency of (a second statement: a later snapshot). done is false when the fence refused: nothing written.
CREATE FUNCTION swarm_complete(
    p_id TEXT, p_agent TEXT, p_token TEXT, p_now DOUBLE PRECISION, p_commit TEXT, p_cost DOUBLE PRECISION,
    p_tokens BIGINT, p_reason TEXT, p_promote_reason TEXT
)
RETURNS TABLE (done BOOLEAN, promoted TEXT[], xid TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks AS t
    SET state = 'done', lease_token = NULL, lease_until = NULL, updated_at = p_now,
        commit_sha = p_commit, last_error = NULL,
        tokens = CASE WHEN p_tokens IS NULL THEN t.tokens ELSE coalesce(t.tokens, 0) + p_tokens END,
        cost_usd = CASE WHEN p_cost IS NULL THEN t.cost_usd ELSE coalesce(t.cost_usd, 0) + p_cost END
    WHERE t.id = p_id AND t.state = 'claimed' AND t.owner = p_agent AND t.lease_token = p_token;
    done := FOUND;
    promoted := '{}';
    IF done THEN
        INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
        VALUES (p_id, p_now, p_agent, 'claimed', 'done', p_reason);
        WITH targets AS MATERIALIZED (
            SELECT t.id FROM tasks AS t
            WHERE t.id IN (SELECT d.task_id FROM deps AS d WHERE d.depends_on = p_id)
            ORDER BY t.id
            FOR UPDATE
        ), counted AS (
            UPDATE tasks AS t
            SET pending = t.pending - 1,
                state = CASE WHEN t.state = 'blocked' AND t.pending <= 1 THEN 'ready' ELSE t.state END,
                not_before = CASE WHEN t.state = 'blocked' AND t.pending <= 1 THEN 0 ELSE t.not_before END,
                updated_at = p_now
            FROM targets
            WHERE t.id = targets.id
            RETURNING t.id, t.state, t.pending
        ), ready AS (
            SELECT c.id FROM counted AS c WHERE c.state = 'ready' AND c.pending <= 0
        ), logged AS (
            INSERT INTO events (task_id, at, actor, from_state, to_state, reason)
            SELECT r.id, p_now, p_agent, 'blocked', 'ready', p_promote_reason FROM ready AS r ORDER BY r.id
        )
        SELECT coalesce(array_agg(r.id ORDER BY r.id), '{}') INTO promoted FROM ready AS r;
    END IF;
    xid := pg_current_xact_id_if_assigned()::text;
    IF xid IS NOT NULL THEN
        PERFORM pg_notify('swarm_changes', '');
    END IF;
    RETURN NEXT;
END;
$$;
