"""Plain domain values shared by the backlog, the store and the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from swarm.errors import BadInput

#: docs/contract.md §2: a spec id, also used for task ids added by hand.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_valid_id(value: str) -> bool:
    """True when ``value`` is a legal spec / task / epic id."""
    return ID_PATTERN.fullmatch(value) is not None


def check_id(value: str, what: str, example: str = "") -> str:
    """``value`` when it is a legal id, else :class:`BadInput` naming ``what`` it was meant to be (``"task id"``,
    ``"capability"``...) and the pattern, with ``example`` as a hint of a good one."""
    if not is_valid_id(value):
        hint = f"{what}s match {ID_PATTERN.pattern}" + (f", e.g. {example}" if example else "")
        raise BadInput(f"invalid {what} {value!r}", hint=hint)
    return value


class TaskState(StrEnum):
    """docs/contract.md §3 task states."""

    BLOCKED = "blocked"
    READY = "ready"
    CLAIMED = "claimed"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"


#: The order in which states are listed in counts and dashboards.
STATE_ORDER: tuple[TaskState, ...] = (
    TaskState.BLOCKED,
    TaskState.READY,
    TaskState.CLAIMED,
    TaskState.DONE,
    TaskState.DEAD,
    TaskState.CANCELLED,
)


@dataclass(frozen=True)
class Spec:
    """One validated spec file (docs/contract.md §2), or a task added by hand (then ``path`` is None)."""

    id: str
    epic: str
    title: str
    body: str
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    requires: tuple[str, ...] = ()
    max_attempts: int | None = None
    timeout_seconds: int | None = None
    path: Path | None = None
    #: docs/contract.md §3: the command that must pass for the task to be done; None: ``[swarm] verify``,
    #: empty: no verify.
    verify: str | None = None
    #: Done although the agent changed nothing.
    allow_empty: bool = False


@dataclass(frozen=True)
class Claim:
    """What a successful claim hands to the agent: the task, and the lease that fences every later write."""

    task_id: str
    title: str
    prompt: str
    lease_token: str
    lease_until: float
    attempt: int
    epic: str = ""
    depends_on: tuple[str, ...] = ()
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class Task:
    """A task row as read back from the queue."""

    id: str
    epic: str
    title: str
    body: str
    state: TaskState
    priority: int
    depends_on: tuple[str, ...]
    requires: tuple[str, ...]
    attempts: int
    max_attempts: int
    owner: str | None
    lease_until: float | None
    not_before: float
    commit: str | None
    cost_usd: float | None
    last_error: str | None
    created_at: float
    updated_at: float
    timeout_seconds: int | None = None
    tokens: int | None = None
    heartbeat_at: float | None = None
    #: The spec's ``verify`` (None: the configuration's) and ``allow_empty`` (docs/contract.md §2).
    verify: str | None = None
    allow_empty: bool = False
    #: The agent CLI's conversation of the latest attempt and the agent that had it (docs/contract.md §3): kept
    #: when the attempt was interrupted, cleared when it failed.
    session_id: str | None = None
    session_agent: str | None = None


@dataclass(frozen=True)
class Event:
    """One row of the append-only event log: who moved which task from what to what, and why."""

    seq: int
    task_id: str
    at: float
    actor: str
    from_state: str | None
    to_state: str
    reason: str


class AgentState(StrEnum):
    """What an agent is doing, as the worker reports it (the monitor may refine it from liveness)."""

    STARTING = "starting"
    WORKING = "working"
    IDLE = "idle"
    WAITING = "waiting-for-input"
    STALLED = "stalled"
    DEAD = "dead"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    #: Stopped claiming after a fault of the machine, not of the agent (disk full, read-only database, a
    #: refused commit); ``detail`` says why. ``swarm launch`` resumes it; the monitor leaves it alone.
    PAUSED = "paused"


@dataclass(frozen=True)
class AgentRecord:
    """One agent slot as the database knows it."""

    id: str
    swarm_id: str | None = None
    host: str = ""
    session: str | None = None
    branch: str | None = None
    worktree: str | None = None
    capabilities: tuple[str, ...] = ()
    pid: int | None = None
    agent_pid: int | None = None
    state: str = AgentState.STARTING.value
    task_id: str | None = None
    restarts: int = 0
    cost_usd: float = 0.0
    last_seen: float | None = None
    last_output: str | None = None
    last_output_at: float | None = None
    detail: str | None = None
    created_at: float | None = None
    next_restart_at: float = 0.0
    #: The agent kind and model it runs (docs/contract.md §5: a fleet may mix them); None: not recorded.
    kind: str | None = None
    model: str | None = None


#: Message types of docs/contract.md §7; ``signal.*`` is open-ended.
MESSAGE_TYPES: tuple[str, ...] = (
    "chat",
    "question",
    "answer",
    "shutdown_request",
    "shutdown_response",
    "escalation",
)
#: The lead's author name.
LEAD = "lead"


@dataclass(frozen=True)
class Message:
    """One entry of a thread."""

    thread: str
    seq: int
    author: str
    recipient: str | None
    type: str
    body: str
    reply_to: int | None
    created_at: float
