"""Rules shared by every backend (kept out of the backends so that neither imports the other's privates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from swarm.errors import BadInput, LeaseLost, SwarmError, UnknownTask
from swarm.graph import topological_order
from swarm.models import Spec, TaskState, check_id


def check_agent(agent_id: str) -> None:
    """BadInput unless ``agent_id`` is a valid id."""
    check_id(agent_id, "agent id", example="agent-1")


#: How stale an agent's last_seen may get from claims alone (heartbeats and updates refresh it too).
AGENT_SEEN_SECONDS = 5.0

#: The agent columns ``update_agent`` may set (a whitelist: column names never come from callers' strings).
AGENT_FIELDS = frozenset(
    {
        "pid",
        "agent_pid",
        "state",
        "task_id",
        "detail",
        "last_output",
        "last_output_at",
        "cost_usd",
        "restarts",
        "next_restart_at",
    }
)


def topological(specs: dict[str, Spec]) -> list[Spec]:
    """Order ``specs`` so that every spec follows its dependencies within the batch, smallest id first among
    equals (``swarm.graph``). BadInput naming every spec a cycle holds back."""
    order, stuck = topological_order({sid: spec.depends_on for sid, spec in specs.items()})
    if stuck:
        raise BadInput(f"dependency cycle among tasks {', '.join(stuck)}", hint="remove one dependency of the cycle")
    return [specs[sid] for sid in order]


def check_task_ids(specs: Sequence[Spec]) -> None:
    """BadInput naming the first spec whose id is not a valid task id."""
    for spec in specs:
        check_id(spec.id, "task id")


def new_specs_in_order(specs: Sequence[Spec], existing: Mapping[str, Any]) -> list[Spec]:
    """The specs of a batch that are not queued yet (``existing`` holds the queued ids), each after its
    dependencies; BadInput for a dependency that is neither queued nor in the batch, or for a cycle."""
    fresh: dict[str, Spec] = {}
    for spec in specs:
        if spec.id not in existing:
            fresh[spec.id] = spec
    for spec in fresh.values():
        for dep in spec.depends_on:
            if dep not in existing and dep not in fresh:
                raise BadInput(
                    f"task {spec.id} depends on {dep}, which is neither queued nor being added",
                    hint="add the dependency first or remove it from depends_on",
                )
    return topological(fresh)


def lease_lost(task_id: str, agent_id: str, token: str, probe: Sequence[Any] | None) -> SwarmError:
    """Why a fenced write was refused, from the task's ``(state, owner, lease_token, attempts)`` (``probe``,
    None when the task does not exist)."""
    if probe is None:
        return UnknownTask(task_id)
    state, owner, current_token, attempts = probe
    if state == TaskState.CLAIMED and current_token == token and owner != agent_id:
        why = f"the lease belongs to {owner}, not {agent_id}"
    elif state == TaskState.CLAIMED and owner == agent_id:
        why = f"the lease token does not match {owner}'s current lease (attempt {attempts})"
    elif state == TaskState.CLAIMED:
        why = f"the task is held by {owner} under a newer lease (attempt {attempts})"
    elif state == TaskState.DONE:
        why = "the task is already done"
    else:
        why = f"the task is {state} now (lease expired, returned or cancelled)"
    return LeaseLost(task_id, why)


def path_from_url(url: str) -> Path:
    """``sqlite:///rel/path.db`` (relative to the cwd) or ``sqlite:////abs/path.db`` -> a path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise BadInput(f"not a SQLite URL: {url!r}", hint="use sqlite:///path/to/swarm.db")
    raw = unquote(parts.path)
    # sqlite:///x -> path "/x" means relative "x"; sqlite:////abs -> "//abs" means "/abs".
    path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
    if not str(path) or str(path) == ".":
        raise BadInput(f"SQLite URL {url!r} names no file", hint="use sqlite:///.swarm/swarm.db")
    return path
