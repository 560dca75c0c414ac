"""Rules shared by every backend (kept out of the backends so that neither imports the other's privates)."""

from __future__ import annotations

import heapq

from swarm.errors import BadInput
from swarm.models import Spec, is_valid_id


def check_agent(agent_id: str) -> None:
    """BadInput unless ``agent_id`` is a valid id."""
    if not is_valid_id(agent_id):
        raise BadInput(
            f"invalid agent id {agent_id!r}",
            hint="agent ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, e.g. agent-1",
        )


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
    """Order ``specs`` so that every spec follows its dependencies within the batch (Kahn, ties by id)."""

    waiting = {sid: {d for d in s.depends_on if d in specs} for sid, s in specs.items()}
    dependents: dict[str, list[str]] = {}
    for sid, deps in waiting.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(sid)
    heap = [sid for sid, deps in waiting.items() if not deps]
    heapq.heapify(heap)
    ordered: list[Spec] = []
    while heap:
        sid = heapq.heappop(heap)
        ordered.append(specs[sid])
        for child in dependents.get(sid, ()):
            waiting[child].discard(sid)
            if not waiting[child]:
                heapq.heappush(heap, child)
    if len(ordered) != len(specs):
        stuck = sorted(sid for sid, deps in waiting.items() if deps)
        raise BadInput(f"dependency cycle among tasks {', '.join(stuck)}", hint="remove one dependency of the cycle")
    return ordered
