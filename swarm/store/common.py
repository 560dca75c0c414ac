"""Rules shared by every backend (kept out of the backends so that neither imports the other's privates)."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

from swarm.errors import BadInput, LeaseLost, SwarmError, UnknownTask
from swarm.models import Spec, TaskState, is_valid_id


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
    """Order ``specs`` so that every spec follows its dependencies within the batch; among the specs whose
    dependencies are all placed, the smallest id goes first. BadInput naming every spec a cycle holds back."""
    sorter = TopologicalSorter({sid: [d for d in s.depends_on if d in specs] for sid, s in specs.items()})
    # On a cycle, get_ready() still hands out every spec the cycle does not hold back (documented), so the
    # error below can name all the specs that cannot be queued, not only the cycle found first.
    with contextlib.suppress(CycleError):
        sorter.prepare()
    # A heap picks among the ready specs by id: the same batch always queues (and so claims) the same way,
    # whatever its order.
    heap = list(sorter.get_ready())
    heapq.heapify(heap)
    ordered: list[Spec] = []
    while heap:
        sid = heapq.heappop(heap)
        ordered.append(specs[sid])
        sorter.done(sid)
        for child in sorter.get_ready():
            heapq.heappush(heap, child)
    if len(ordered) != len(specs):
        placed = {s.id for s in ordered}
        stuck = sorted(sid for sid in specs if sid not in placed)
        raise BadInput(f"dependency cycle among tasks {', '.join(stuck)}", hint="remove one dependency of the cycle")
    return ordered


def check_task_ids(specs: Sequence[Spec]) -> None:
    """BadInput naming the first spec whose id is not a valid task id."""
    for spec in specs:
        if not is_valid_id(spec.id):
            raise BadInput(f"invalid task id {spec.id!r}", hint="ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
