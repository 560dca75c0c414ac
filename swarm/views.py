"""The JSON views of swarm's records: one shape per record, shared by the CLI, the MCP server and ``swarm status``.

These shapes are the machine-readable contract of docs/contract.md §8: keys may be added, never renamed or
removed. A key that one command printed is therefore printed by every command that shows the same record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from swarm.models import AgentRecord, Claim, Message, Task, TaskState


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds (``2026-11-23T15:30:00.123Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claim_json(claim: Claim | None) -> dict[str, Any]:
    """docs/contract.md §8: ``{"task": {id, title, prompt, lease_token, lease_until, attempt}}`` or ``{"task": null}``.

    ``epic`` and ``depends_on`` are extra keys.
    """
    if claim is None:
        return {"task": None}
    return {
        "task": {
            "id": claim.task_id,
            "title": claim.title,
            "prompt": claim.prompt,
            "lease_token": claim.lease_token,
            "lease_until": iso(claim.lease_until),
            "attempt": claim.attempt,
            "epic": claim.epic,
            "depends_on": list(claim.depends_on),
        }
    }


def task_json(task: Task, now: float | None = None) -> dict[str, Any]:
    """A task as ``status --json``, ``queue status --json`` and the MCP ``queue_status`` show it
    (docs/contract.md §8 keys first, extra keys after). ``now`` is the moment the retry backoff in
    ``ready_in_s`` is measured from."""
    return {
        "id": task.id,
        "title": task.title,
        "state": task.state.value,
        "owner": task.owner,
        "attempts": task.attempts,
        "depends_on": list(task.depends_on),
        "commit": task.commit,
        "cost_usd": task.cost_usd,
        "epic": task.epic,
        "priority": task.priority,
        "requires": list(task.requires),
        "max_attempts": task.max_attempts,
        "lease_until": iso(task.lease_until),
        "last_error": task.last_error,
        "tokens": task.tokens,
        # A ready task still waiting out its retry backoff: seconds until it may be claimed again.
        "ready_in_s": ready_in(task, time.time() if now is None else now),
    }


def ready_in(task: Task, now: float) -> float | None:
    """Seconds a ready task still waits before it may be claimed (its retry backoff), else None."""
    if task.state != TaskState.READY or task.not_before <= now:
        return None
    return round(task.not_before - now, 1)


def agent_json(agent: AgentRecord, *, state: str, held: Task | None, now: float) -> dict[str, Any]:
    """An agent as ``status --json`` shows it. ``state`` is the recorded state corrected by liveness (the
    caller can see processes; this module cannot); ``held`` is the task the agent holds the lease of, if any."""
    beat = held.heartbeat_at if held and held.heartbeat_at else agent.last_seen
    return {
        "id": agent.id,
        "host": agent.host,
        "session": agent.session,
        "branch": agent.branch,
        "worktree": agent.worktree,
        # docs/contract.md §5: a fleet may mix kinds and models; None: not recorded (an agent of before v10).
        "kind": agent.kind,
        "model": agent.model,
        "state": state,
        "task": agent.task_id,
        "heartbeat_age_s": round(now - beat, 1) if beat else None,
        "lease_left_s": round(held.lease_until - now, 1) if held and held.lease_until else None,
        "pid": agent.pid,
        "restarts": agent.restarts,
        "cost_usd": round(agent.cost_usd, 4),
        "last_output": agent.last_output,
        "detail": agent.detail,
    }


def message_json(message: Message) -> dict[str, Any]:
    """A thread entry (docs/contract.md §8): ``seq, thread, author, to, type, body, reply_to, created_at``."""
    return {
        "seq": message.seq,
        "thread": message.thread,
        "author": message.author,
        "to": message.recipient,
        "type": message.type,
        "body": message.body,
        "reply_to": message.reply_to,
        "created_at": iso(message.created_at),
    }


def question_json(message: Message) -> dict[str, Any]:
    """An open question as ``status --json`` lists it: a thread entry, with its author also under ``from``."""
    return {**message_json(message), "from": message.author}
