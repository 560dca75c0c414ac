"""Following a swarm to its end: the live dashboard (or progress lines off a terminal) until the epic is finished.

Used by ``swarm launch --wait`` and by ``swarm demo``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from swarm import status as dashboard
from swarm.config import LoadedConfig
from swarm.console import console
from swarm.errors import SwarmError
from swarm.queue import open_queue
from swarm.runtime import procs
from swarm.store import Store, SwarmRecord
from swarm.words import all_of, plural, plural_of

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

#: After the last task finishes, how long idle workers get to notice and exit before the final picture.
SETTLE_SECONDS = 5.0


class _Display:
    """The live dashboard on a terminal; elsewhere (a pipe, a log) one progress line per change."""

    def __init__(self, out: Console, snap: dashboard.Snapshot) -> None:
        from rich.live import Live

        self.out = out
        self.live: Live | None = (
            Live(dashboard.render(snap), console=out, refresh_per_second=4, transient=False)
            if out.is_terminal
            else None
        )
        self._last_line = ""

    def __enter__(self) -> _Display:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live:
            self.live.stop()

    def show(self, snap: dashboard.Snapshot) -> None:
        """Redraw the dashboard, or print the counts if they changed since the last line."""
        if self.live:
            self.redraw(snap)
            return
        line = "progress: " + ", ".join(f"{n} {s}" for s, n in snap.counts.items() if n)
        if line != self._last_line:
            self.out.print(line)
            self._last_line = line

    def redraw(self, snap: dashboard.Snapshot) -> None:
        """Redraw the live dashboard (off a terminal: nothing, the final picture is printed at the end)."""
        if self.live:
            self.live.update(dashboard.render(snap))

    def final(self, snap: dashboard.Snapshot) -> None:
        """The last picture: off a terminal the dashboard is printed once, at the end."""
        if not self.live:
            self.out.print(dashboard.render(snap))


def follow(
    swarm: SwarmRecord,
    loaded: LoadedConfig,
    *,
    timeout: float | None,
    tasks: Collection[str] | None = None,
    what: str | None = None,
) -> dashboard.Snapshot:
    """Block until the swarm is finished (with ``tasks``: until those of its tasks are); raise unless every
    one is done. Live display on a terminal. ``what`` names them in the last line (default: the first epic)."""
    out = console()
    deadline = None if timeout is None else time.monotonic() + timeout
    with open_queue(loaded) as store:
        display = _Display(out, _take(store, loaded, swarm.id, tasks))
        with display:
            while True:
                snap = _take(store, loaded, swarm.id, tasks)
                display.show(snap)
                if snap.finished:
                    # Idle workers exit only once the whole swarm is finished: then they get a moment to.
                    if dashboard.take(store, loaded, snap.swarm).finished:
                        snap = _settle(store, loaded, snap, tasks)
                    display.redraw(snap)
                    break
                _check_progress(snap, deadline, timeout)
                _wait_for_change(store)
    display.final(snap)
    _check_outcome(snap)
    out.print(
        f"{all_of(snap.counts['done'], 'task')} of {what or swarm.epic} {plural_of('is', snap.counts['done'])} done"
    )
    return snap


def _take(store: Store, loaded: LoadedConfig, swarm_id: str, tasks: Collection[str] | None) -> dashboard.Snapshot:
    snap = dashboard.take(store, loaded, store.get_swarm(swarm_id))
    return snap if tasks is None else dashboard.restrict(snap, tasks)


def _settle(
    store: Store, loaded: LoadedConfig, snap: dashboard.Snapshot, tasks: Collection[str] | None
) -> dashboard.Snapshot:
    """Give idle workers a moment to notice the end and exit, so that the last picture is the final one."""
    settle = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < settle and any(
        a.pid and procs.alive(a.pid) and a.state in ("idle", "working") for a in snap.agents
    ):
        time.sleep(0.1)
        snap = _take(store, loaded, snap.swarm.id, tasks)
    return snap


def _check_progress(snap: dashboard.Snapshot, deadline: float | None, timeout: float | None) -> None:
    """Raise if the swarm can no longer finish (every worker gone) or the wait ran out of time."""
    workers = [a.pid for a in snap.agents if a.pid]
    if snap.agents and not any(procs.alive(pid) for pid in workers):
        raise SwarmError(
            "every worker has stopped before the epic finished",
            hint="see 'swarm logs agent-1', then 'swarm launch' again to resume",
        )
    if deadline is not None and time.monotonic() > deadline:
        raise SwarmError(
            f"timed out after {timeout or 0:.0f}s with {snap.counts['done']} of "
            f"{plural(sum(snap.counts.values()), 'task')} done",
            hint="the swarm keeps running: 'swarm status' to watch, 'swarm teardown' to stop",
        )


def _wait_for_change(store: Store) -> None:
    """Sleep until the next commit anywhere in the database, or one second at most."""
    marker = store.change_marker()
    for _ in range(10):
        time.sleep(0.1)
        if store.change_marker() != marker:
            return


def _check_outcome(snap: dashboard.Snapshot) -> None:
    """Raise unless every task of the finished swarm is done."""
    if not snap.succeeded:
        raise SwarmError(
            f"the epic finished with {snap.counts['dead']} dead, {snap.counts['blocked']} blocked and "
            f"{plural(snap.counts['cancelled'], 'cancelled task')}",
            hint="see 'swarm status' for the reasons, 'swarm queue retry TASK' to try again",
        )
