"""The one topological order of swarm: specs, tasks to queue and tasks to merge all go through it."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter


def topological_order(depends_on: Mapping[str, Iterable[str]]) -> tuple[list[str], list[str]]:
    """``(order, stuck)``: every id of ``depends_on`` after the ids it depends on, and the ids a cycle holds back.

    Only dependencies among the keys count (one outside the graph is somebody else's concern). Among the ids
    whose dependencies are all placed, the smallest goes first, so the same graph always gives the same order,
    whatever the order of its keys: queueing, claiming and merging stay reproducible.
    """
    sorter = TopologicalSorter({node: [d for d in deps if d in depends_on] for node, deps in depends_on.items()})
    # On a cycle, get_ready() still hands out every node the cycle does not hold back (documented), so the
    # caller can name all the nodes that cannot be placed, not only the first cycle graphlib found.
    with contextlib.suppress(CycleError):
        sorter.prepare()
    heap = list(sorter.get_ready())
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        node = heapq.heappop(heap)
        order.append(node)
        sorter.done(node)
        for child in sorter.get_ready():
            heapq.heappush(heap, child)
    placed = set(order)
    return order, sorted(node for node in depends_on if node not in placed)
