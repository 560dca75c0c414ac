"""``swarm status``: the dashboard, once, live, or as docs/contract.md §8 JSON."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from swarm import status as dashboard
from swarm.cli.options import DbOption, load_with_db
from swarm.cli.output import console, emit_json
from swarm.errors import BadInput
from swarm.models import Event
from swarm.queue import open_queue
from swarm.views import iso

if TYPE_CHECKING:
    from rich.console import RenderableType

    from swarm.config import LoadedConfig
    from swarm.store import Store, SwarmRecord

#: Events shown under the live dashboard.
RECENT_EVENTS = 6


def status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object; its keys are never renamed or removed."),
    watch: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="Keep the dashboard on screen, following the current swarm (off a terminal: a line per change).",
    ),
    epic: str | None = typer.Option(None, "--epic", "-e", help="Only this epic's tasks and counts."),
    swarm_id: str | None = typer.Option(
        None, "--swarm", help="Show this swarm (an id from 'swarm history') instead of the current one."
    ),
    db: DbOption = None,
) -> None:
    """Show the swarm: tasks by state (per epic), each agent's health, task, heartbeat, lease and cost."""
    loaded = load_with_db(db)
    with open_queue(loaded) as store:
        swarm = dashboard.select_swarm(store, swarm_id)
        snap = dashboard.take(store, loaded, swarm, epic=epic)
        if as_json:
            emit_json(dashboard.to_json(snap))
            return
        out = console()
        if not watch:
            out.print(dashboard.render(snap))
            return
        _watch(store, loaded, swarm, epic=epic, follow=swarm_id is None)


def _watch(store: Store, loaded: LoadedConfig, swarm: SwarmRecord, *, epic: str | None, follow: bool) -> None:
    """``--watch``: the dashboard kept on screen (off a terminal: a plain line per change). Without ``--swarm``
    it follows the repository's current swarm, and says so when a new one starts. Ctrl-C ends it."""
    out = console()
    watcher = _Watcher(store, loaded, swarm, epic=epic, follow=follow, say=lambda text: out.print(text, markup=False))
    try:
        if not out.is_terminal:
            while True:
                line = watcher.line()
                if line is not None:
                    out.print(line, markup=False, soft_wrap=True)
                    out.file.flush()  # a file or a pipe: each line as it happens, not when a buffer fills
                watcher.wait()
        from rich.live import Live

        # transient=False and a fixed refresh keep the screen steady: rich redraws in place, no flicker.
        with Live(watcher.frame(), console=out, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(1.0)
                live.update(watcher.frame())
    except KeyboardInterrupt:
        return


class _Watcher:
    """What ``status --watch`` shows next: the followed swarm's snapshot (switching to a new current swarm),
    the live frame with recent events, or the plain line when it changed."""

    def __init__(
        self,
        store: Store,
        loaded: LoadedConfig,
        swarm: SwarmRecord,
        *,
        epic: str | None,
        follow: bool,
        say: Callable[[str], None],
    ) -> None:
        self.store, self.loaded, self.swarm, self.epic, self.follow, self.say = store, loaded, swarm, epic, follow, say
        # Recent events are followed incrementally: the log is read once, then only what is new.
        events = store.events()
        self.recent: deque[Event] = deque(events[-RECENT_EVENTS:], maxlen=RECENT_EVENTS)
        self.last_event = events[-1].seq if events else 0
        self.last_line: str | None = None
        self.marker = store.change_marker()

    def snapshot(self) -> dashboard.Snapshot:
        """The followed swarm now; a new current swarm is followed from here on, with a line saying so."""
        if self.follow:
            current = self.store.current_swarm()
            if current is not None and current.id != self.swarm.id:
                self.say(
                    f"now following swarm {current.id} ({', '.join(current.epics)}), started "
                    f"{iso(current.created_at)}; swarm {self.swarm.id} is no longer the current one"
                )
                self.swarm = current
        swarm = self.store.get_swarm(self.swarm.id)
        try:
            return dashboard.take(self.store, self.loaded, swarm, epic=self.epic)
        except BadInput:  # a swarm followed to that does not work the epic: all of it, rather than nothing
            return dashboard.take(self.store, self.loaded, swarm)

    def line(self) -> str | None:
        """The plain line of the snapshot, or None when it is the line printed last."""
        line = _plain_line(self.snapshot())
        if line == self.last_line:
            return None
        self.last_line = line
        return line

    def wait(self) -> None:
        """Until the next commit in the database, or a second at most (a new swarm, a dead worker)."""
        self.marker = self.store.wait_for_change(self.marker, 1.0)

    def frame(self) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        for event in self.store.events(since=self.last_event):
            self.recent.append(event)
            self.last_event = event.seq
        current = self.snapshot()
        lines = [
            Text(f"{iso(e.at)} {e.task_id} {e.from_state or '-'} -> {e.to_state} by {e.actor}: {e.reason}"[:160])
            for e in self.recent
        ]
        return Group(dashboard.render(current), Text("\nrecent events", style="bold"), *lines)


def _plain_line(snap: dashboard.Snapshot) -> str:
    """``swarm <id> <epics>: <counts>; <agent> <state> [<task>], ...[; ended]``: what ``--watch`` prints
    off a terminal, once per change."""
    swarm = snap.swarm
    epics = ",".join(swarm.epics or (swarm.epic,)) + (f" (showing {snap.only_epic})" if snap.only_epic else "")
    counts = ", ".join(f"{n} {state}" for state, n in snap.counts.items() if n) or "no tasks"
    agents = ", ".join(f"{a.id} {a.state}" + (f" {a.task_id}" if a.task_id else "") for a in snap.agents)
    return (
        f"swarm {swarm.id} {epics}: {counts}" + (f"; {agents}" if agents else "") + ("; ended" if swarm.ended else "")
    )


def history_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object; its keys are never renamed or removed."),
    db: DbOption = None,
) -> None:
    """List the repository's swarms, oldest first: id, epics, start, end, tasks done/dead/cancelled, cost."""
    loaded = load_with_db(db)
    with open_queue(loaded) as store:
        rows = dashboard.history(store)
    if as_json:
        emit_json({"swarms": rows})
        return
    if not rows:
        console().print("no swarm in this database yet; start one with 'swarm launch EPIC'")
        return
    console().print(dashboard.render_history(rows))


def register(app: typer.Typer) -> None:
    """Attach ``swarm status`` and ``swarm history``."""
    app.command("status")(status_cmd)
    app.command("history")(history_cmd)
