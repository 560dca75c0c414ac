"""Rendering helpers shared by the command modules: JSON to stdout, human text through rich."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from swarm.models import Claim, Message, Task

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    """A console on stdout; plain text (no colour codes) when stdout is not a terminal."""
    # Imported here: rich costs tens of milliseconds at start-up, and the commands agents call most
    # (`swarm msg`, `swarm queue ... --json`) never print through it.
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, sort_keys=False) + "\n")
    sys.stdout.flush()


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds (``2026-11-23T15:30:00.123Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claim_json(claim: Claim | None) -> dict[str, Any]:
    """DESIGN 8: ``{"task": {id, title, prompt, lease_token, lease_until, attempt}}`` or ``{"task": null}``.

    ``epic`` and ``depends_on`` are extra keys (keys may be added, never renamed or removed).
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


def task_json(task: Task) -> dict[str, Any]:
    """A task as it appears in ``status --json`` (DESIGN 8 keys first, extra keys after)."""
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
    }


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def message_json(message: Message) -> dict[str, Any]:
    """A thread entry (DESIGN 8): ``seq, thread, author, to, type, body, reply_to, created_at``."""
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
