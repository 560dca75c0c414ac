"""``swarm status``: one snapshot of a swarm, as the docs/contract.md §8 JSON object and as a dashboard."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.config import LoadedConfig
from swarm.errors import BadInput
from swarm.models import LEAD, STATE_ORDER, AgentRecord, AgentState, Message, Task, TaskState
from swarm.runtime import procs
from swarm.store import Store, SwarmRecord
from swarm.views import agent_json, iso, question_json, task_json
from swarm.words import plural

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Agent states that mean the worker process is expected to be alive.
_LIVE_STATES = {AgentState.STARTING.value, AgentState.WORKING.value, AgentState.IDLE.value}


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, read in one go."""

    swarm: SwarmRecord
    database: str
    counts: dict[str, int]
    tasks: list[Task]
    agents: list[AgentRecord]
    taken_at: float
    questions: list[Message] = field(default_factory=list)
    paused_until: float = 0.0
    pause_reason: str | None = None
    #: What this host's monitor last wrote to ``.swarm/monitor.json`` (None: nothing, or another swarm's).
    monitor: dict[str, Any] | None = None
    #: Tasks by state per epic, the swarm's epics first (then those of dependencies from other epics).
    epics: dict[str, dict[str, int]] = field(default_factory=dict)
    #: ``--epic``: the snapshot's counts and tasks are this epic's only.
    only_epic: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing is ready or claimed: no agent can make more progress."""
        return self.counts["ready"] == 0 and self.counts["claimed"] == 0

    @property
    def succeeded(self) -> bool:
        """Every task of the swarm is done."""
        return self.counts["done"] == sum(self.counts.values())


def select_swarm(store: Store, swarm_id: str | None) -> SwarmRecord:
    """The swarm a command reads: ``--swarm ID`` (BadInput when no swarm has that id), else the repository's
    current one (BadInput when there is none yet)."""
    swarm = store.get_swarm(swarm_id) if swarm_id is not None else store.current_swarm()
    if swarm is None:
        raise BadInput("no swarm in this database yet", hint="start one with 'swarm launch EPIC'")
    return swarm


def during(swarm: SwarmRecord, at: float) -> bool:
    """Whether the time ``at`` falls in the swarm's life, from its start to its end (open: to now). Entries
    of the event log and the threads carry no swarm: ``--swarm`` reads them by this window."""
    return at >= swarm.created_at and (swarm.ended_at is None or at <= swarm.ended_at)


def check_epic(swarm: SwarmRecord, tasks: list[Task], epic: str) -> None:
    """BadInput unless ``epic`` is one of the swarm's epics (or the epic of one of its tasks)."""
    epics = epic_counts(swarm, tasks)
    if epic not in epics:
        raise BadInput(
            f"epic {epic!r} is not in swarm {swarm.id} (it works {', '.join(epics) or 'nothing'})",
            hint="pass one of those to --epic, or --swarm ID for another swarm ('swarm history' lists them)",
        )


def take(store: Store, loaded: LoadedConfig, swarm: SwarmRecord, *, epic: str | None = None) -> Snapshot:
    """Read a snapshot of ``swarm`` (of one of its epics with ``epic``: BadInput when it has no such epic)."""
    paused_until, pause_reason = store.claims_paused(swarm.id)
    tasks = store.list_tasks(swarm_id=swarm.id)
    epics = epic_counts(swarm, tasks)
    if epic is not None:
        check_epic(swarm, tasks, epic)
        tasks = [t for t in tasks if t.epic == epic]
    counts = dict(epics[epic]) if epic is not None else store.counts(swarm_id=swarm.id)
    return Snapshot(
        swarm=swarm,
        database=loaded.database_url(),
        counts=counts,
        tasks=tasks,
        agents=store.list_agents(swarm.id),
        taken_at=time.time(),
        questions=store.unanswered_questions(LEAD),
        paused_until=paused_until,
        pause_reason=pause_reason,
        monitor=read_monitor(loaded.repo, swarm.id),
        epics=epics,
        only_epic=epic,
    )


def restrict(snap: Snapshot, task_ids: Collection[str]) -> Snapshot:
    """The snapshot of only these tasks of its swarm (``launch --wait`` follows the tasks of its own launch):
    ``counts`` and ``tasks`` are theirs, ``finished`` and ``succeeded`` speak of them."""
    wanted = set(task_ids)
    tasks = [t for t in snap.tasks if t.id in wanted]
    counts = {state.value: 0 for state in STATE_ORDER}
    for task in tasks:
        counts[task.state.value] += 1
    return replace(snap, tasks=tasks, counts=counts)


def epic_counts(swarm: SwarmRecord, tasks: list[Task]) -> dict[str, dict[str, int]]:
    """Tasks by state for each epic: the swarm's epics in the order added, then any other epic its tasks are
    of (dependencies queued from other epics); every state is present."""
    order = [*swarm.epics, *sorted({t.epic for t in tasks} - set(swarm.epics))]
    found: dict[str, dict[str, int]] = {e: {s.value: 0 for s in STATE_ORDER} for e in order}
    for task in tasks:
        found[task.epic][task.state.value] += 1
    return found


def history(store: Store) -> list[dict[str, Any]]:
    """``swarm history --json``: every swarm of the database, oldest first, with its tasks' counts and cost."""
    rows: list[dict[str, Any]] = []
    for swarm in store.list_swarms():
        tasks = store.list_tasks(swarm_id=swarm.id)
        counts = {s.value: 0 for s in STATE_ORDER}
        for task in tasks:
            counts[task.state.value] += 1
        rows.append(
            {
                "id": swarm.id,
                "epics": list(swarm.epics),
                "started_at": iso(swarm.created_at),
                "ended_at": iso(swarm.ended_at),
                "counts": counts,
                "cost_usd": round(sum(t.cost_usd or 0.0 for t in tasks), 6),
            }
        )
    return rows


def render_history(rows: list[dict[str, Any]]) -> RenderableType:
    """``swarm history``: two lines per swarm (its id and epics, then its times and counts), so that nothing is
    squeezed out on a narrow terminal or in a file (rich renders 80 columns when not on a terminal)."""
    from rich.text import Text

    lines: list[str] = []
    for row in rows:
        counts = row["counts"]
        still = counts["blocked"] + counts["ready"] + counts["claimed"]
        started = (row["started_at"] or "-")[:19].replace("T", " ")
        ended = (row["ended_at"] or "")[:19].replace("T", " ")
        if ended[:10] == started[:10]:
            ended = ended[11:]  # the same day: the time says it
        cost = f"${row['cost_usd']:.2f}" if row["cost_usd"] else "no cost recorded"
        lines.append(f"{row['id']}  {', '.join(row['epics'])}")
        lines.append(
            f"    {started} -> {ended or 'running'}; {counts['done']} done, {counts['dead']} dead, "
            f"{counts['cancelled']} cancelled, {still} open; {cost}"
        )
    return Text("\n".join(lines))


def read_monitor(repo: Path, swarm_id: str) -> dict[str, Any] | None:
    """The monitor's last report (``.swarm/monitor.json``, written after every look), if it is this swarm's."""
    try:
        data = json.loads((repo / ".swarm" / "monitor.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("swarm_id", swarm_id) != swarm_id:
        return None  # an earlier swarm's monitor (reports before swarm_id was written are taken as ours)
    return data


def monitor_json(snap: Snapshot) -> dict[str, Any]:
    """The monitor's health: alive (by its pid), age of its last look, workers it restarted, how to restart it."""
    report = snap.monitor or {}
    pid = report.get("pid") if isinstance(report.get("pid"), int) else None
    at = report.get("at") if isinstance(report.get("at"), (int, float)) else None
    alive = bool(pid) and procs.alive(int(pid or 0))
    hint = None
    if not alive and not snap.finished:
        hint = (
            f"the monitor is not running: nothing restarts dead workers; 'swarm launch {snap.swarm.epic}' restarts it"
        )
    return {
        "alive": alive,
        "pid": pid,
        "looks": int(report.get("looks") or 0),
        "last_look_age_s": round(snap.taken_at - at, 1) if at else None,
        "restarts": sum(a.restarts for a in snap.agents),
        "hint": hint,
    }


#: An agent of another machine whose row has not moved for this long is shown as unreachable.
REMOTE_SILENCE_SECONDS = 120.0


def agent_state(agent: AgentRecord, now: float | None = None) -> str:
    """The recorded state, corrected by liveness: a 'working' agent whose worker is gone is dead. Agents of
    other machines are judged by their heartbeats (their processes cannot be seen from here)."""
    if agent.state not in _LIVE_STATES:
        return agent.state
    if agent.host and agent.host != socket.gethostname():
        seen = agent.last_seen or 0.0
        return "unreachable" if (now or time.time()) - seen > REMOTE_SILENCE_SECONDS else agent.state
    if agent.pid is not None and not procs.alive(agent.pid):
        return AgentState.DEAD.value
    return agent.state


def to_json(snap: Snapshot) -> dict[str, Any]:
    """docs/contract.md §8: keys may be added, never renamed or removed."""
    now = snap.taken_at
    return {
        "swarm": _swarm_json(snap),
        "counts": snap.counts,
        "tasks": [task_json(t, now) for t in snap.tasks],
        "agents": _agents_json(snap),
        "questions": [question_json(q) for q in snap.questions],
        "monitor": monitor_json(snap),
        "epics": snap.epics if snap.only_epic is None else {snap.only_epic: snap.epics[snap.only_epic]},
    }


def _swarm_json(snap: Snapshot) -> dict[str, Any]:
    """The swarm itself: ids, where it lives, whether it was told to stop or its claims are paused."""
    paused = snap.paused_until > snap.taken_at
    return {
        "id": snap.swarm.id,
        "epic": snap.swarm.epic,
        "database": snap.database,
        "repo": snap.swarm.repo,
        "stop_requested": snap.swarm.stop_requested,
        "claims_paused_until": snap.paused_until if paused else None,
        "pause_reason": snap.pause_reason if paused else None,
        "finished": snap.finished,
        "epics": list(snap.swarm.epics),
        "ended_at": iso(snap.swarm.ended_at),
    }


def _agents_json(snap: Snapshot) -> list[dict[str, Any]]:
    """Every agent, with its state corrected by liveness and the lease of the task it holds (if it still does)."""
    now = snap.taken_at
    by_id = {t.id: t for t in snap.tasks}
    shown: list[dict[str, Any]] = []
    for a in snap.agents:
        task = by_id.get(a.task_id or "")
        held = task if task and task.state == TaskState.CLAIMED and task.owner == a.id else None
        shown.append(agent_json(a, state=agent_state(a, now), held=held, now=now))
    return shown


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


def _monitor_line(monitor: dict[str, Any], snap: Snapshot) -> RenderableType:
    from rich.text import Text

    restarts = f", {plural(monitor['restarts'], 'restart')}" if monitor["restarts"] else ""
    look = f", last look {_age(monitor['last_look_age_s'])} ago" if monitor["last_look_age_s"] is not None else ""
    if monitor["alive"]:
        return Text(f"monitor: running (pid {monitor['pid']}){look}{restarts}", style="dim")
    if snap.finished:
        return Text(f"monitor: stopped{look}{restarts}", style="dim")
    return Text(
        f"monitor: not running{look}{restarts}; dead workers are not restarted: "
        f"'swarm launch {snap.swarm.epic}' restarts it (it resumes)",
        style="yellow",
    )


def render(snap: Snapshot) -> RenderableType:
    """The dashboard: totals with a progress bar, then one row per agent, then the tasks."""
    # rich is imported here: `swarm status --json` (scripts, agents, the benchmark) never draws.
    from rich.console import Group
    from rich.text import Text

    data = to_json(snap)
    parts: list[RenderableType] = [*_totals(snap), _monitor_line(data["monitor"], snap), Text("")]
    if snap.agents:
        parts += [_agents_table(data["agents"]), Text("")]
    parts.append(_tasks_table(snap, data["tasks"]))
    if snap.questions:
        parts.append(Text("\nopen questions to the lead (answer with: swarm msg reply SEQ TEXT)", style="bold yellow"))
        parts.extend(Text(f"  #{q.seq} {q.author}: {q.body[:200]}") for q in snap.questions)
    return Group(*parts)


def _totals(snap: Snapshot) -> list[RenderableType]:
    """The head line (swarm, epic, done of total, cost, stop and pause), the progress bar, the counts by state."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total = sum(snap.counts.values()) or 1
    done = snap.counts["done"]
    cost = sum(a.cost_usd for a in snap.agents)
    head = Text.assemble(
        ("swarm ", "bold"),
        (snap.swarm.id, "bold cyan"),
        f"  {_epics_label(snap)}  ",
        (f"{done}/{total} done", "bold green" if done == total else "bold"),
        f"  cost ${cost:.2f}" if cost else "",
        ("  (stop requested)", "yellow") if snap.swarm.stop_requested else "",
        (f"  (claims paused {snap.paused_until - snap.taken_at:.0f}s: {snap.pause_reason})", "yellow")
        if snap.paused_until > snap.taken_at
        else "",
    )
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=total, completed=done, width=50), Text(f"{100 * done // total}%"))
    counts = Text("  ".join(f"{snap.counts[s.value]} {s.value}" for s in STATE_ORDER), style="dim")
    return [head, bar, counts, *_epic_lines(snap)]


def _epics_label(snap: Snapshot) -> str:
    epics = snap.swarm.epics or (snap.swarm.epic,)
    label = f"epic {epics[0]}" if len(epics) == 1 else f"epics {', '.join(epics)}"
    ended = f" (ended {iso(snap.swarm.ended_at)})" if snap.swarm.ended_at is not None else ""
    return (f"{label}, showing {snap.only_epic}" if snap.only_epic else label) + ended


def _epic_lines(snap: Snapshot) -> list[RenderableType]:
    """One line per epic: done of total, a small bar, the states that are not zero."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    shown = {snap.only_epic: snap.epics[snap.only_epic]} if snap.only_epic else snap.epics
    if len(snap.epics) < 2 and not snap.only_epic:
        return []  # the totals above are the one epic's
    grid = Table.grid(padding=(0, 1))
    for epic, counts in shown.items():
        total = sum(counts.values())
        rest = ", ".join(f"{n} {state}" for state, n in counts.items() if n and state != "done")
        grid.add_row(
            Text(epic, style="bold"),
            ProgressBar(total=total or 1, completed=counts["done"], width=20),
            Text(f"{counts['done']}/{total} done" + (f"  ({rest})" if rest else "")),
        )
    return [grid]


def _kind_text(a: dict[str, Any]) -> str:
    """``kind:model`` (``kind`` when the agent runs its CLI's default model; ``-`` when not recorded)."""
    if not a.get("kind"):
        return "-"
    return f"{a['kind']}:{a['model']}" if a.get("model") else str(a["kind"])


def _agent_row(a: dict[str, Any]) -> tuple[str, ...]:
    """One agent of ``status --json`` as the dashboard's cells."""
    return (
        a["id"],
        a["state"],
        _kind_text(a),
        a["task"] or "-",
        _age(a["heartbeat_age_s"]),
        _age(a["lease_left_s"]),
        f"${a['cost_usd']:.2f}" if a["cost_usd"] else "-",
        # A paused or dead agent's reason matters more than its last line of output.
        (a["detail"] if a["state"] in ("paused", "dead") and a["detail"] else a["last_output"] or "").strip(),
    )


def _agents_table(agents_json: list[dict[str, Any]]) -> RenderableType:
    """One row per agent; every column but the last is as wide as its widest cell."""
    from rich.table import Table
    from rich.text import Text

    agents = Table(box=None, header_style="bold", pad_edge=False, expand=False, collapse_padding=True)
    rows = [_agent_row(a) for a in agents_json]
    headers = ("agent", "state", "kind", "task", "heartbeat", "lease left", "cost", "last output")
    for index, column in enumerate(headers):
        if column == "last output":
            # The only column that gives way on a narrow terminal; ids and states are never cut.
            agents.add_column(column, no_wrap=True, overflow="ellipsis", ratio=1, min_width=10, max_width=60)
        else:
            width = max([len(column), *(len(row[index]) for row in rows)])
            agents.add_column(column, no_wrap=True, min_width=width)
    for row in rows:
        style = {"dead": "red", "working": "green", "idle": "dim", "done": "cyan", "paused": "yellow"}.get(row[1], "")
        # The last column is the agent's own text (or a reason quoting it): never read as rich markup.
        # The model is the user's own text too (swarm.toml): never markup either.
        agents.add_row(row[0], Text(row[1], style=style), Text(row[2]), *row[3:-1], Text(row[-1]))
    return agents


def _tasks_table(snap: Snapshot, tasks_json: list[dict[str, Any]]) -> RenderableType:
    """One row per task: its state (or how long its retry backoff still runs), owner, tries, commit, title."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    tasks = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("task", "state", "owner", "tries", "commit", "title"):
        tasks.add_column(column, no_wrap=True, overflow="ellipsis", ratio=1 if column == "title" else None)
    colours = {"done": "green", "claimed": "yellow", "dead": "red", "cancelled": "dim", "blocked": "dim"}
    for t, shown in zip(snap.tasks, tasks_json, strict=True):
        wait = shown["ready_in_s"]
        state = f"ready in {_age(wait)}" if wait is not None else t.state.value
        tasks.add_row(
            t.id,
            Text(state, style=colours.get(t.state.value, "")),
            t.owner or "-",
            str(t.attempts),
            (t.commit or "")[:10] or "-",
            # The title and the reason come from outside (a spec, an agent's output): escaped, or rich would take
            # "[verify failed (exit 1): ...]" for a markup tag and print nothing of it.
            escape(t.title if not t.last_error or t.state == TaskState.DONE else f"{t.title} [{t.last_error[:80]}]"),
        )
    return tasks
