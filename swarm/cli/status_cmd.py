"""``swarm status``: the dashboard, once, live, or as docs/contract.md §8 JSON."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import typer

from swarm import status as dashboard
from swarm.cli.options import DbOption, load_with_db
from swarm.cli.output import console, emit_json
from swarm.models import Event
from swarm.queue import open_queue
from swarm.views import iso

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Events shown under the live dashboard.
RECENT_EVENTS = 6


def status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object; its keys are never renamed or removed."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep the dashboard on screen, refreshed every second."),
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
        from rich.console import Group
        from rich.live import Live
        from rich.text import Text

        # Recent events are followed incrementally: the log is read once, then only what is new.
        events = store.events()
        recent: deque[Event] = deque(events[-RECENT_EVENTS:], maxlen=RECENT_EVENTS)
        last = events[-1].seq if events else 0

        def frame() -> RenderableType:
            nonlocal last
            for event in store.events(since=last):
                recent.append(event)
                last = event.seq
            current = dashboard.take(store, loaded, store.get_swarm(swarm.id), epic=epic)
            lines = [
                Text(f"{iso(e.at)} {e.task_id} {e.from_state or '-'} -> {e.to_state} by {e.actor}: {e.reason}"[:160])
                for e in recent
            ]
            return Group(dashboard.render(current), Text("\nrecent events", style="bold"), *lines)

        # transient=False and a fixed refresh keep the screen steady: rich redraws in place, no flicker.
        with Live(frame(), console=out, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    time.sleep(1.0)
                    live.update(frame())
            except KeyboardInterrupt:
                return


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
