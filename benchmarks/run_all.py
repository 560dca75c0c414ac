"""Run every benchmark, one after the other, and write ``benchmarks/RESULTS.md``.

Run: ``benchmarks/run_all [--quick] [--only NAME[,NAME]] [--render-only] [--scale-agents N] [--scale-tasks N]
[--output PATH] [--cache PATH]``

Each benchmark script runs as its own process with ``--json`` (never two at once: the figures are timings).
A benchmark that fails (non-zero exit, no JSON, a timeout) is recorded as failed and the next one runs.
The file written holds a header (date, commit, machine, tool versions), one summary table with a row per
figure (swarm's figure, the baseline measured in the same run, their ratio, the goal and whether it is met),
a note naming every goal not met with what limits it, then a short section per benchmark.

Every run's records are also kept in ``benchmarks/.results.json`` (or the file ``--cache`` names); ``--only``
reruns the named benchmarks and takes the others from that file, so RESULTS.md always covers every benchmark
(each with its own date and load). ``pg_bench.py`` is included when the file exists.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import load_average, pg_bin_dir, tool_version
from _common import machine as bench_machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
CACHE = HERE / ".results.json"
CACHE_VERSION = 1
STDERR_TAIL_LINES = 15
# A benchmark stopped early gets this long after SIGINT to clean up (scale_bench tears down 100 agents),
# then this long after SIGTERM.
INT_GRACE_SECONDS = 180.0
TERM_GRACE_SECONDS = 30.0


# -- formatting helpers ------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    """A figure for the table: rounded, with its unit; "n/a" when it could not be measured."""
    number = _num(value)
    if number is None:
        return "n/a" if value is None or isinstance(value, float) else str(value)
    whole = digits == 0 or (abs(number) >= 1000 and digits <= 1)
    return f"{number:,.0f}{unit}" if whole else f"{number:,.{digits}f}{unit}"


def ratio(swarm: Any, baseline: Any, digits: int = 2) -> str:
    """swarm / baseline as ``0.62x``; "n/a" when either is missing or the baseline is zero."""
    a, b = _num(swarm), _num(baseline)
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def get(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``, or None as soon as a step is missing."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return None
            data = data[step]
        else:
            if not isinstance(data, dict) or step not in data:
                return None
            data = data[step]
    return data


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table; ``align`` holds one ``l`` or ``r`` per column (default: first left, rest right)."""
    if not align:
        align = "l" + "r" * (len(header) - 1)
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in cells)
    return lines


# -- what one benchmark reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the summary table."""

    figure: str
    swarm: str
    baseline: str = "-"
    ratio: str = "-"
    goal: str = "-"
    met: bool | None = None
    # Which goal (a key of the benchmark's LIMITS) explains a miss; empty for a figure without a goal.
    key: str = ""


Limit = Callable[[dict[str, Any], "Context"], str]


@dataclass(frozen=True)
class Context:
    """What a limit text may mention besides the benchmark's own figures."""

    cpus: int
    load_before: float | None


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how to read its JSON."""

    name: str
    script: str
    title: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    timeout: float
    figures: Callable[[dict[str, Any]], list[Figure]]
    section: Callable[[dict[str, Any]], list[str]]
    limits: dict[str, Limit]


def _met(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


# -- queue -------------------------------------------------------------------------------------------------


def queue_figures(data: dict[str, Any]) -> list[Figure]:
    """One row per process count; the goal sits on the 8-process row."""
    goal = data.get("goal") or {}
    goal_at = 8
    with contextlib.suppress(ValueError, IndexError):
        goal_at = int(str(goal.get("text", "")).rsplit(" at ", 1)[1].split()[0])
    threshold = str(goal.get("text", ">= 0.5x raw")).split(" at ")[0]
    rows: list[Figure] = []
    for r in data.get("results", []):
        n = r.get("processes")
        at_goal = n == goal_at
        rows.append(
            Figure(
                figure=f"claim+complete pairs/s, {n} process{'es' if n != 1 else ''}",
                swarm=fmt(r.get("swarm_pairs_per_s"), 0),
                baseline=f"{fmt(r.get('raw_pairs_per_s'), 0)} (raw SQLite)",
                ratio=ratio(r.get("swarm_pairs_per_s"), r.get("raw_pairs_per_s")),
                goal=threshold if at_goal else "-",
                met=_met(goal.get("met")) if at_goal else None,
                key="ratio" if at_goal else "",
            )
        )
    return rows


def queue_section(data: dict[str, Any]) -> list[str]:
    """The throughput table per process count."""
    rows = [
        [
            str(r.get("processes")),
            str(r.get("tasks")),
            fmt(r.get("swarm_pairs_per_s"), 0),
            fmt(r.get("raw_pairs_per_s"), 0),
            ratio(r.get("swarm_pairs_per_s"), r.get("raw_pairs_per_s")),
        ]
        for r in data.get("results", [])
    ]
    return [
        f"Claim+complete pairs per second through swarm's SQLite store against a one-table raw SQLite queue "
        f"with the same pragmas and busy rule; {data.get('tasks_per_process')} tasks per process, median of "
        f"{data.get('repeat')} runs per side, the two sides interleaved.",
        "",
        *md_table(["processes", "tasks", "swarm pairs/s", "raw pairs/s", "ratio swarm/raw"], rows),
    ]


def _queue_ratio_limit(data: dict[str, Any], ctx: Context) -> str:
    at: dict[str, Any] = next((r for r in data.get("results", []) if r.get("processes") == 8), {})
    value = _num(at.get("ratio"))
    slower = f"{1 / value:.1f}x as long per pair as" if value else "longer per pair than"
    return (
        f"swarm's claim+complete takes {slower} the raw queue. Both sides take SQLite's single write lock "
        "(BEGIN IMMEDIATE) twice per pair, but swarm does more inside it: lease reaping, the agent upsert, the "
        "capability filter, the event log and dependency promotion. With one writer at a time, that work in "
        f"the lock is the ceiling, and 8 processes on {ctx.cpus} CPUs add scheduling waits to it."
    )


# -- launch ------------------------------------------------------------------------------------------------


def launch_figures(data: dict[str, Any]) -> list[Figure]:
    """Launch and teardown against raw git + tmux, the time until workers run, worker RSS and CPU."""
    goals = data.get("goals") or {}
    rows: list[Figure] = []
    agents = data.get("agents")
    for phase in ("launch", "teardown"):
        p = get(data, "phases", phase) or {}
        g = goals.get(phase) or {}
        rows.append(
            Figure(
                figure=f"{phase} of {agents} agents, s",
                swarm=fmt(p.get("swarm_s"), 2),
                baseline=f"{fmt(p.get('raw_s'), 2)} (git worktree + tmux)",
                ratio=ratio(p.get("swarm_s"), p.get("raw_s")),
                goal=str(g.get("text", "-")),
                met=_met(g.get("met")),
                key=phase,
            )
        )
    rows.append(
        Figure(
            figure="workers running after launch returned, s",
            swarm=fmt(get(data, "workers_ready", "swarm_s"), 2),
        )
    )
    for key, what, path, unit in (
        ("worker_rss", "worker RSS, max over workers", ("workers", "all", "rss_mb", "max"), " MB"),
        ("worker_cpu", "worker CPU, max over workers", ("workers", "all", "cpu_percent", "max"), "%"),
    ):
        g = goals.get(key) or {}
        rows.append(
            Figure(
                figure=what,
                swarm=fmt(get(data, *path), 2 if unit == "%" else 1, unit),
                goal=str(g.get("text", "-")),
                met=_met(g.get("met")),
                key=key,
            )
        )
    return rows


def launch_section(data: dict[str, Any]) -> list[str]:
    """Phase table and worker table."""
    phases = [
        [
            phase,
            fmt(p.get("swarm_s"), 2),
            fmt(p.get("raw_s"), 2),
            ratio(p.get("swarm_s"), p.get("raw_s")),
            ", ".join(fmt(v, 2) for v in p.get("swarm_samples", [])),
            ", ".join(fmt(v, 2) for v in p.get("raw_samples", [])),
        ]
        for phase, p in (data.get("phases") or {}).items()
    ]
    workers = [
        [
            group,
            str(w.get("count")),
            fmt(get(w, "rss_mb", "median")),
            fmt(get(w, "rss_mb", "max")),
            fmt(get(w, "cpu_percent", "median"), 2),
            fmt(get(w, "cpu_percent", "max"), 2),
            fmt(get(w, "tree_rss_mb", "median")),
        ]
        for group, w in (data.get("workers") or {}).items()
        if w.get("count")
    ]
    return [
        f"{data.get('agents')} agents on a repository of {data.get('files')} files, median of {data.get('repeat')} "
        'runs. swarm: `swarm launch --command "sleep 30"` until it returns, `swarm teardown --now --grace 5`. '
        "raw: `git worktree add` + `tmux new-session` per agent one after the other, then `kill-session`, "
        "`git worktree remove`, `git worktree prune`.",
        "",
        *md_table(
            ["phase", "swarm s", "raw s", "ratio", "swarm runs", "raw runs"],
            phases,
        ),
        "",
        f"Workers reported running {fmt(get(data, 'workers_ready', 'swarm_s'), 2)} s (median) after launch "
        "returned. Each worker process alone (not its agent command), RSS and CPU over a 3 s window:",
        "",
        *md_table(
            ["workers", "count", "RSS MB median", "RSS MB max", "CPU % median", "CPU % max", "with agent MB"],
            workers,
        ),
    ]


def _launch_limit(data: dict[str, Any], ctx: Context) -> str:
    ready = fmt(get(data, "workers_ready", "swarm_s"), 2)
    return (
        "swarm launch reads and validates the backlog, queues it in SQLite, creates the worktrees and starts one "
        "tmux session per agent, each running a Python worker; the raw side only runs git worktree add and tmux "
        f"new-session. The Python start-ups compete for {ctx.cpus} CPUs (workers running {ready} s after launch "
        "returned)."
    )


def _teardown_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        "swarm teardown --now asks every worker to stop and waits for it (up to the grace), checks each worktree "
        "for uncommitted work before removing it and records the agents' end in the database; the raw side only "
        "kills sessions and removes worktrees."
    )


def _worker_rss_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        f"the largest worker held {fmt(get(data, 'workers', 'all', 'rss_mb', 'max'))} MB: a CPython interpreter "
        "plus the modules a worker imports (store, models with pydantic, git, psutil)."
    )


def _worker_cpu_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        f"the busiest worker used {fmt(get(data, 'workers', 'all', 'cpu_percent', 'max'), 2)}% of a core: its "
        "stop check and lease heartbeat wake it several times a second; on a loaded machine each wake-up costs "
        "more (cache misses, scheduling)."
    )


# -- msg ---------------------------------------------------------------------------------------------------


def msg_figures(data: dict[str, Any]) -> list[Figure]:
    """p99 per waiter count (goal at 50), p50 at 50, the ask round trip and idle CPU."""
    goal = data.get("goal") or {}
    goal_at = 50
    with contextlib.suppress(ValueError, IndexError):
        goal_at = int(str(goal.get("text", "")).split(" with ", 1)[1].split()[0])
    threshold = str(goal.get("text", "p99 <= 100 ms")).split(" on ")[0].replace("p99 ", "")
    rows: list[Figure] = []
    for r in data.get("broadcast", []):
        n = r.get("waiters")
        at_goal = n == goal_at
        if at_goal:
            rows.append(
                Figure(figure=f"send -> wait p50, {n} waiters", swarm=fmt(get(r, "latency", "p50_ms"), 1, " ms"))
            )
        rows.append(
            Figure(
                figure=f"send -> wait p99, {n} waiter{'s' if n != 1 else ''}",
                swarm=fmt(get(r, "latency", "p99_ms"), 1, " ms"),
                goal=threshold if at_goal else "-",
                met=_met(goal.get("met")) if at_goal else None,
                key="p99" if at_goal else "",
            )
        )
    rows.append(Figure(figure="ask -> answer round trip p50", swarm=fmt(get(data, "ask_answer", "p50_ms"), 1, " ms")))
    rows.append(Figure(figure="ask -> answer round trip p99", swarm=fmt(get(data, "ask_answer", "p99_ms"), 1, " ms")))
    idle = data.get("idle") or {}
    waiters = _num(idle.get("waiters"))
    one_core = _num(idle.get("cpu_percent_of_one_core"))
    rows.append(
        Figure(
            figure=f"idle wait CPU per waiter ({idle.get('waiters')} waiting)",
            swarm=fmt(one_core / waiters if one_core is not None and waiters else None, 2, "% of a core"),
        )
    )
    return rows


def msg_section(data: dict[str, Any]) -> list[str]:
    """Broadcast table, round trip and idle cost."""
    rows = [
        [
            str(r.get("waiters")),
            str(get(r, "latency", "count")),
            fmt(get(r, "latency", "p50_ms")),
            fmt(get(r, "latency", "p99_ms")),
            fmt(get(r, "latency", "max_ms")),
            fmt(get(r, "send", "p50_ms")),
            fmt(get(r, "send", "p99_ms")),
            fmt(r.get("waiter_cpu_percent")),
        ]
        for r in data.get("broadcast", [])
    ]
    trip = data.get("ask_answer") or {}
    idle = data.get("idle") or {}
    poll = _num(data.get("poll_seconds"))
    return [
        f"The lead sends {data.get('messages')} entries to a thread, one every {fmt(data.get('interval_ms'), 0)} ms; "
        "each waiter process notes when its `threads.wait` returns each entry. Latency = receive time - send "
        f"stamp; waiters poll every {fmt(poll * 1000 if poll else None, 0)} ms at most when busy. Fresh SQLite "
        "database per row. Load average before the script: "
        f"{get(data, 'machine', 'load_average')}.",
        "",
        *md_table(
            ["waiters", "samples", "p50 ms", "p99 ms", "max ms", "send p50 ms", "send p99 ms", "waiter CPU %"], rows
        ),
        "",
        f"ask -> answer round trip ({trip.get('count')} in a row): p50 {fmt(trip.get('p50_ms'))} ms, "
        f"p99 {fmt(trip.get('p99_ms'))} ms, max {fmt(trip.get('max_ms'))} ms. Idle: {idle.get('waiters')} waiters "
        f"for {idle.get('seconds')} s cost {fmt(idle.get('cpu_percent_of_one_core'), 2)}% of one core in total "
        f"({fmt(idle.get('cpu_percent_of_machine'), 2)}% of the machine).",
    ]


def _msg_p99_limit(data: dict[str, Any], ctx: Context) -> str:
    poll = _num(data.get("poll_seconds"))
    return (
        "every waiter is a process that polls SQLite's change counter "
        f"(every {fmt(poll * 1000 if poll else None, 0)} ms after a change, backing off when idle); with 50 "
        f"waiter processes on {ctx.cpus} CPUs a wake-up waits for a CPU, so the tail is scheduling, not the "
        "database."
    )


# -- status ------------------------------------------------------------------------------------------------


def status_figures(data: dict[str, Any]) -> list[Figure]:
    """status --json p50 (beside the CLI's bare start-up) and the monitor's CPU."""
    goals = data.get("goals") or {}
    s = data.get("status") or {}
    m = data.get("monitor") or {}
    g_status = goals.get("status_cli") or {}
    g_monitor = goals.get("monitor_cpu") or {}
    size = f"{data.get('agents')} agents, {data.get('tasks')} tasks"
    return [
        Figure(
            figure=f"swarm status --json p50 ({size})",
            swarm=fmt(get(s, "cli_ms", "p50"), 0, " ms"),
            baseline=f"{fmt(get(s, 'cli_startup_ms', 'p50'), 0, ' ms')} (swarm --version)",
            ratio=ratio(get(s, "cli_ms", "p50"), get(s, "cli_startup_ms", "p50")),
            goal=str(g_status.get("text", "-")).replace("swarm status --json ", ""),
            met=_met(g_status.get("met")),
            key="status_cli",
        ),
        Figure(
            figure="swarm status --json p95",
            swarm=fmt(get(s, "cli_ms", "p95"), 0, " ms"),
            baseline=f"{fmt(get(s, 'cli_startup_ms', 'p95'), 0, ' ms')} (swarm --version)",
            ratio=ratio(get(s, "cli_ms", "p95"), get(s, "cli_startup_ms", "p95")),
        ),
        Figure(
            figure=f"monitor process CPU ({data.get('agents')} agents)",
            swarm=fmt(m.get("process_cpu_percent"), 2, "% of a core"),
            goal=str(g_monitor.get("text", "-")).replace("monitor ", ""),
            met=_met(g_monitor.get("met")),
            key="monitor_cpu",
        ),
        Figure(figure="Monitor.look() steady p50", swarm=fmt(get(m, "look_steady_ms", "p50"), 1, " ms")),
    ]


def status_section(data: dict[str, Any]) -> list[str]:
    """Status latency table (CLI, start-up, in-process phases) and monitor table."""
    s = data.get("status") or {}

    def row(label: str, st: Any) -> list[str]:
        return [label, fmt(get(st, "p50")), fmt(get(st, "p95")), fmt(get(st, "max"))]

    rows = [
        row("CLI, end to end (subprocess)", s.get("cli_ms")),
        row("CLI start-up alone (swarm --version)", s.get("cli_startup_ms")),
        row("of it, Python alone (python -c pass)", s.get("python_startup_ms")),
    ]
    rows += [row(f"in-process: {name}", st) for name, st in (s.get("in_process_ms") or {}).items()]
    m = data.get("monitor") or {}
    monitor_rows = [
        ["look(), first (cold) ms", fmt(m.get("look_first_ms"))],
        ["look(), steady p50 ms (wall)", fmt(get(m, "look_steady_ms", "p50"))],
        ["look(), steady CPU ms", fmt(m.get("look_steady_cpu_ms"))],
        [
            f"look() CPU % at the {fmt(m.get('interval_s'), 0)} s interval (derived)",
            fmt(m.get("look_cpu_percent_at_interval"), 2),
        ],
        ["monitor process CPU % of one core", fmt(m.get("process_cpu_percent"), 2)],
        [
            "monitor process window s / looks / RSS MB",
            f"{fmt(m.get('process_window_s'), 0)} / {m.get('process_looks')} / {fmt(m.get('process_rss_mb'), 0)}",
        ],
    ]
    counts = ", ".join(f"{n} {state}" for state, n in (data.get("counts") or {}).items())
    return [
        f"{data.get('agents')} agents ({data.get('working_agents')} working, each a live process) and "
        f"{data.get('tasks')} tasks ({counts}); {data.get('runs')} runs after a warm-up; status JSON "
        f"{fmt((_num(s.get('json_bytes')) or 0) / 1024, 0)} KB.",
        "",
        *md_table(["swarm status --json", "p50 ms", "p95 ms", "max ms"], rows),
        "",
        *md_table(["monitor", "value"], monitor_rows),
    ]


def _status_limit(data: dict[str, Any], ctx: Context) -> str:
    s = data.get("status") or {}
    total = get(s, "in_process_ms", "total", "p50")
    return (
        f"of the {fmt(get(s, 'cli_ms', 'p50'), 0)} ms, Python start-up and the CLI's imports take "
        f"{fmt(get(s, 'cli_startup_ms', 'p50'), 0)} ms (swarm --version; the bare interpreter alone "
        f"{fmt(get(s, 'python_startup_ms', 'p50'), 0)} ms) and reading and rendering {data.get('tasks')} tasks "
        f"in-process {fmt(total, 0)} ms."
    )


def _monitor_limit(data: dict[str, Any], ctx: Context) -> str:
    m = data.get("monitor") or {}
    return (
        f"each steady look costs {fmt(m.get('look_steady_cpu_ms'))} ms CPU for {data.get('agents')} agents (the "
        "process table, the agents' logs, the database), once every "
        f"{fmt(m.get('interval_s'), 0)} s."
    )


# -- scale -------------------------------------------------------------------------------------------------


def scale_figures(data: dict[str, Any]) -> list[Figure]:
    """Throughput, memory and CPU of the run, and its four goals."""
    goals = data.get("goals") or {}
    size = f"{data.get('agents')} agents, {data.get('tasks')} tasks"
    th = data.get("throughput") or {}
    mem = data.get("memory") or {}
    cpu = data.get("cpu") or {}
    ph = data.get("phases") or {}

    def goal_row(key: str, figure: str, value: str) -> Figure:
        g = goals.get(key) or {}
        return Figure(figure=figure, swarm=value, goal=str(g.get("text", "-")), met=_met(g.get("met")), key=key)

    return [
        goal_row("finished", f"run to the end ({size})", str(get(goals, "finished", "value") or "n/a")),
        Figure(figure="tasks/s, launch included", swarm=fmt(th.get("tasks_per_s"), 1)),
        Figure(figure="tasks/s, steady (10%-90% done)", swarm=fmt(th.get("steady_tasks_per_s"), 1)),
        Figure(figure="swarm CPU per task (git included)", swarm=fmt(cpu.get("swarm_cpu_ms_per_task"), 0, " ms")),
        Figure(figure="launch, s", swarm=fmt(ph.get("launch_s"), 1)),
        goal_row("worker_rss", "worker RSS, max over workers", fmt(get(mem, "worker_rss_mb", "max"), 1, " MB")),
        Figure(figure="swarm's processes together, peak PSS", swarm=fmt(mem.get("total_pss_mb_at_peak"), 0, " MB")),
        goal_row("monitor_cpu", "monitor CPU", fmt(cpu.get("monitor_percent_of_core"), 2, "% of a core")),
        Figure(figure="teardown, s", swarm=fmt(ph.get("teardown_s"), 1)),
        goal_row("teardown", "left after teardown", str(get(goals, "teardown", "value") or "n/a")),
    ]


def scale_section(data: dict[str, Any]) -> list[str]:
    """Phases, throughput, memory, CPU, and the per-task profile when there is one."""
    ph = data.get("phases") or {}
    th = data.get("throughput") or {}
    mem = data.get("memory") or {}
    cpu = data.get("cpu") or {}
    graph = data.get("graph") or {}
    phases = [
        ["swarm launch returned", fmt(ph.get("launch_s"))],
        ["first task claimed", fmt(ph.get("first_claim_s"))],
        [f"the last of {ph.get('agents_claimed')} agents claimed a task", fmt(ph.get("last_agent_first_claim_s"))],
        ["last task done", fmt(ph.get("last_done_s"))],
        ["workers and monitor exited on their own", fmt(ph.get("workers_exited_s"))],
        ["swarm teardown (its own duration)", fmt(ph.get("teardown_s"))],
    ]
    lines = [
        f"`swarm launch SCALE --agents {data.get('agents')} --command true` on a backlog of {graph.get('tasks')} "
        f"tasks ({graph.get('tasks_with_deps')} with dependencies, {graph.get('edges')} edges), followed to the end; "
        "swarm's processes sampled every 5 s, CPU counted exactly through a child subreaper. Load average before "
        f"the script: {get(data, 'machine', 'load_average_1m')}.",
    ]
    if data.get("problems"):
        lines += ["", "Problems: " + "; ".join(str(p) for p in data["problems"])]
    lines += [
        "",
        *md_table(["phase", "s since launch began"], phases),
        "",
        f"Throughput: {th.get('tasks_done')} tasks, {fmt(th.get('tasks_per_s'), 2)} tasks/s with launch, "
        f"{fmt(th.get('steady_tasks_per_s'), 2)} steady; by tenth of the backlog: "
        + " ".join(fmt(v, 1) for v in th.get("tasks_per_s_by_tenth", []))
        + f". Claim -> done median {fmt(get(th, 'claim_to_done_s', 'median'), 2)} s "
        f"(p90 {fmt(get(th, 'claim_to_done_s', 'p90'), 2)} s); failed attempts: {th.get('failed_attempts')}.",
        "",
        f"Memory: worker RSS median/max {fmt(get(mem, 'worker_rss_mb', 'median'))} / "
        f"{fmt(get(mem, 'worker_rss_mb', 'max'))} MB over {mem.get('workers_seen')} workers; monitor "
        f"{fmt(mem.get('monitor_rss_mb'))} MB; swarm's processes together at the peak RSS "
        f"{fmt(mem.get('total_rss_mb_peak'), 0)} MB, PSS {fmt(mem.get('total_pss_mb_at_peak'), 0)} MB.",
        "",
        f"CPU: swarm {fmt(cpu.get('swarm_cpu_s'), 0)} s over {fmt(cpu.get('window_s'), 0)} s = "
        f"{fmt(cpu.get('swarm_percent_of_machine'), 0)}% of the machine, {fmt(cpu.get('swarm_cpu_ms_per_task'), 0)} ms "
        f"per task (workers' Python {fmt(cpu.get('workers_python_cpu_s'), 0)} s, their git and agent children "
        f"{fmt(cpu.get('workers_children_cpu_s'), 0)} s, monitor {fmt(cpu.get('monitor_cpu_s'))} s); the machine was "
        f"{fmt(cpu.get('machine_busy_percent'), 0)}% busy, other processes "
        f"{fmt(cpu.get('others_percent_of_machine'), 0)}%.",
    ]
    late = get(data, "profile", "per_task_late")
    early = get(data, "profile", "per_task_early")
    if isinstance(late, dict) and isinstance(early, dict):
        rows = [
            [
                name,
                fmt(row.get("calls"), 2),
                fmt(get(early, name, "wall_ms")),
                fmt(row.get("wall_ms")),
                fmt(row.get("child_cpu_ms")),
            ]
            for name, row in late.items()
        ]
        rows.append(
            [
                "sum",
                "",
                fmt(get(data, "profile", "sum_early", "wall_ms")),
                fmt(get(data, "profile", "sum_late", "wall_ms")),
                fmt(get(data, "profile", "sum_late", "child_cpu_ms")),
            ]
        )
        lines += [
            "",
            "Where the time per task goes (each step replayed alone after the run, ms per task, at the start of the "
            f"history ({get(data, 'profile', 'early', 'commits_in_history')} commits) and at its end "
            f"({get(data, 'profile', 'late', 'commits_in_history')} commits)):",
            "",
            *md_table(["step", "calls", "start wall ms", "end wall ms", "end: in git/agent ms"], rows),
        ]
    return lines


def _scale_finished_limit(data: dict[str, Any], ctx: Context) -> str:
    problems = "; ".join(str(p) for p in data.get("problems", [])) or "no problem recorded"
    return f"the run did not finish cleanly: {problems}."


def _scale_teardown_limit(data: dict[str, Any], ctx: Context) -> str:
    return f"teardown left {get(data, 'goals', 'teardown', 'value')}."


def _scale_rss_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        f"the largest worker peaked at {fmt(get(data, 'memory', 'worker_rss_mb', 'max'))} MB while working: the "
        "interpreter and its imports (as in launch) plus what merging, committing and the store allocate."
    )


def _scale_monitor_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        f"the monitor used {fmt(get(data, 'cpu', 'monitor_percent_of_core'), 2)}% of a core looking after "
        f"{data.get('agents')} busy agents whose state and logs change on every look."
    )


# -- pg ----------------------------------------------------------------------------------------------------


def pg_figures(data: dict[str, Any]) -> list[Figure]:
    """Per worker count: swarm-pg against procrastinate (goal at 8) and against swarm-sqlite; wake latency."""
    goals = data.get("goals") or {}
    g_tp = goals.get("throughput") or {}
    g_wake = goals.get("wake") or {}
    goal_at = 8
    with contextlib.suppress(ValueError, IndexError):
        goal_at = int(str(g_tp.get("text", "")).rsplit(" at ", 1)[1].split()[0])
    threshold = str(g_tp.get("text", ">= 1.5x procrastinate")).split(" at ")[0]
    rows: list[Figure] = []
    for r in data.get("results", []):
        n = r.get("workers")
        at_goal = n == goal_at
        workers = f"{n} worker{'s' if n != 1 else ''}"
        pg = r.get("swarm_pg_pairs_per_s")
        rows.append(
            Figure(
                figure=f"claim+complete pairs/s on PostgreSQL, {workers}",
                swarm=fmt(pg, 0),
                baseline=f"{fmt(r.get('procrastinate_pairs_per_s'), 0)} (procrastinate)",
                ratio=ratio(pg, r.get("procrastinate_pairs_per_s")),
                goal=threshold if at_goal else "-",
                met=_met(g_tp.get("met")) if at_goal else None,
                key="throughput" if at_goal else "",
            )
        )
        rows.append(
            Figure(
                figure=f"claim+complete pairs/s on PostgreSQL vs SQLite, {workers}",
                swarm=fmt(pg, 0),
                baseline=f"{fmt(r.get('swarm_sqlite_pairs_per_s'), 0)} (swarm on SQLite)",
                ratio=ratio(pg, r.get("swarm_sqlite_pairs_per_s")),
            )
        )
    wake = data.get("wake") or {}
    waiters = f"{wake.get('waiters')} waiters"
    rows.append(
        Figure(figure=f"wake latency p50 on PostgreSQL, {waiters}", swarm=fmt(get(wake, "latency", "p50_ms"), 1, " ms"))
    )
    rows.append(
        Figure(
            figure=f"wake latency p99 on PostgreSQL, {waiters}",
            swarm=fmt(get(wake, "latency", "p99_ms"), 1, " ms"),
            goal=str(g_wake.get("text", "-")).replace("p99 wake ", ""),
            met=_met(g_wake.get("met")),
            key="wake",
        )
    )
    return rows


def pg_section(data: dict[str, Any]) -> list[str]:
    """The three-contender table and the wake latency."""
    rows = [
        [
            str(r.get("workers")),
            str(r.get("jobs")),
            fmt(r.get("swarm_pg_pairs_per_s"), 0),
            fmt(r.get("swarm_sqlite_pairs_per_s"), 0),
            fmt(r.get("procrastinate_pairs_per_s"), 0),
            ratio(r.get("swarm_pg_pairs_per_s"), r.get("procrastinate_pairs_per_s")),
            ratio(r.get("swarm_pg_pairs_per_s"), r.get("swarm_sqlite_pairs_per_s")),
        ]
        for r in data.get("results", [])
    ]
    info = data.get("machine") or {}
    settings = ", ".join(f"{k}={v}" for k, v in (data.get("server_settings") or {}).items())
    wake = data.get("wake") or {}
    lat = wake.get("latency") or {}
    send = wake.get("send") or {}
    poll = _num(wake.get("poll_seconds"))
    return [
        f"Claim+complete pairs per second (procrastinate: `fetch_job` + `finish_job`), {data.get('jobs_per_worker')} "
        f"per worker, median of {data.get('repeat')} runs, the three contenders interleaved, a fresh database per "
        f"run. One PostgreSQL {info.get('postgresql')} server for the whole run, loopback TCP, "
        f"{settings or 'defaults'} (the same for swarm and procrastinate {info.get('procrastinate')}); SQLite: WAL, "
        "synchronous=NORMAL. Load "
        f"average before the script: {info.get('load_average')}.",
        "",
        *md_table(
            [
                "workers",
                "jobs",
                "swarm-pg pairs/s",
                "swarm-sqlite pairs/s",
                "procrastinate pairs/s",
                "pg/procrastinate",
                "pg/sqlite",
            ],
            rows,
        ),
        "",
        f"Wake latency on PostgreSQL ({wake.get('waiters')} waiters, {wake.get('messages')} entries to all, one every "
        f"{fmt(wake.get('interval_ms'), 0)} ms; NOTIFY on commit, a listener thread per store, waiters checking it "
        f"every {fmt(poll * 1000 if poll else None, 0)} ms): p50 {fmt(lat.get('p50_ms'))} ms, p99 "
        f"{fmt(lat.get('p99_ms'))} ms, max {fmt(lat.get('max_ms'))} ms over {lat.get('count')} samples; the send "
        f"call itself p50 {fmt(send.get('p50_ms'))} ms, p99 {fmt(send.get('p99_ms'))} ms.",
    ]


def _pg_throughput_limit(data: dict[str, Any], ctx: Context) -> str:
    return (
        "swarm's claim and complete each run the full domain path (lease reaping, the agent refresh, the event "
        "log, dependency promotion, NOTIFY on completion) as one server-side function call inside an explicit "
        "transaction: two round trips each (BEGIN with the call, then COMMIT once the transaction id is known, "
        "so a COMMIT lost with its connection can be resolved), where procrastinate's fetch_job and finish_job "
        f"are one autocommit call each. The PostgreSQL server and the worker processes share {ctx.cpus} CPUs."
    )


def _pg_wake_limit(data: dict[str, Any], ctx: Context) -> str:
    poll = _num(get(data, "wake", "poll_seconds"))
    return (
        "a wake-up needs the commit, the NOTIFY delivery to each waiter's listener thread and the waiter's next "
        f"check of it (every {fmt(poll * 1000 if poll else None, 0)} ms, longer when idle); with "
        f"{get(data, 'wake', 'waiters')} waiter processes, the server and the sender on {ctx.cpus} CPUs, the tail "
        "is waiting for a CPU."
    )


# -- any other benchmark (its JSON read generically) --------------------------------------------------------


def _goal_items(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Goals as (key, goal) from either shape the benchmarks use: ``goals: {key: {...}}`` or ``goal: {...}``."""
    found: list[tuple[str, dict[str, Any]]] = []
    goals = data.get("goals")
    if isinstance(goals, dict):
        found += [(str(k), v) for k, v in goals.items() if isinstance(v, dict)]
    elif isinstance(goals, list):
        found += [(str(g.get("key", g.get("text", i))), g) for i, g in enumerate(goals) if isinstance(g, dict)]
    goal = data.get("goal")
    if isinstance(goal, dict):
        found.append(("goal", goal))
    return found


def _goal_value(goal: dict[str, Any]) -> str:
    unit = str(goal.get("unit", ""))
    for key in ("value", "ratio", "p99_ms", "measured"):
        if key in goal:
            value = goal[key]
            if key == "ratio" and _num(value) is not None:
                return f"{fmt(value, 2)}x"
            if key == "p99_ms":
                unit = " ms"
            return fmt(value, 2, unit) if _num(value) is not None else str(value)
    return "see below"


def generic_figures(data: dict[str, Any]) -> list[Figure]:
    """One row per goal the benchmark reports, with the value it names."""
    return [
        Figure(
            figure=str(g.get("figure", key)),
            swarm=_goal_value(g),
            baseline=str(g["baseline"]) if "baseline" in g else "-",
            goal=str(g.get("text", "-")),
            met=_met(g.get("met")),
            key=key,
        )
        for key, g in _goal_items(data)
    ]


def _cell(value: Any) -> str:
    """A JSON scalar for a table cell: integers as they are, other numbers with two decimals."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fmt(value, 2) if _num(value) is not None else str(value)


def _flat_table(rows: list[Any]) -> list[str]:
    """A list of JSON objects as a markdown table (nested objects flattened one level: ``a.b``)."""
    flat: list[dict[str, str]] = []
    for row in rows:
        cells: dict[str, str] = {}
        for k, v in row.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    if not isinstance(v2, dict | list):
                        cells[f"{k}.{k2}"] = _cell(v2)
            elif not isinstance(v, list):
                cells[str(k)] = _cell(v)
        flat.append(cells)
    header: list[str] = []
    for cells in flat:
        header += [k for k in cells if k not in header]
    return md_table(header, [[cells.get(k, "") for k in header] for cells in flat], "l" * len(header))


def generic_section(data: dict[str, Any]) -> list[str]:
    """Every list of objects as a table, every other top-level figure as a line."""
    lines: list[str] = []
    scalars = [
        f"{k}: {v}" for k, v in data.items() if k not in ("machine", "goal", "goals") and not isinstance(v, dict | list)
    ]
    if scalars:
        lines += ["; ".join(scalars) + ".", ""]
    for key, value in data.items():
        if key in ("machine", "goals") or not isinstance(value, list) or not value:
            continue
        if all(isinstance(v, dict) for v in value):
            lines += [f"`{key}`:", "", *_flat_table(value), ""]
    for key, value in data.items():
        if key in ("machine", "goal", "goals") or not isinstance(value, dict):
            continue
        pairs = [(k, v) for k, v in value.items() if not isinstance(v, dict | list)]
        nested = [v for v in value.values() if isinstance(v, dict)]
        if nested and all(isinstance(v, dict) for v in value.values()):
            rows = [{"": k, **v} for k, v in value.items()]
            lines += [f"`{key}`:", "", *_flat_table(rows), ""]
        elif pairs:
            lines += [f"`{key}`: " + ", ".join(f"{k} {_cell(v)}" for k, v in pairs), ""]
    return lines[:-1] if lines and not lines[-1] else lines


# -- the benchmarks ----------------------------------------------------------------------------------------


BENCHES: tuple[Bench, ...] = (
    Bench(
        name="queue",
        script="queue_bench.py",
        title="Queue throughput (queue_bench.py)",
        args=(),
        quick_args=("--tasks-per-process", "200", "--repeat", "1"),
        timeout=3600.0,
        figures=queue_figures,
        section=queue_section,
        limits={"ratio": _queue_ratio_limit},
    ),
    Bench(
        name="launch",
        script="launch_bench.py",
        title="Launch and teardown (launch_bench.py)",
        args=(),
        quick_args=("--repeat", "1"),
        timeout=3600.0,
        figures=launch_figures,
        section=launch_section,
        limits={
            "launch": _launch_limit,
            "teardown": _teardown_limit,
            "worker_rss": _worker_rss_limit,
            "worker_cpu": _worker_cpu_limit,
        },
    ),
    Bench(
        name="msg",
        script="msg_bench.py",
        title="Messages (msg_bench.py)",
        args=(),
        quick_args=("--messages", "100", "--round-trips", "50"),
        timeout=3600.0,
        figures=msg_figures,
        section=msg_section,
        limits={"p99": _msg_p99_limit},
    ),
    Bench(
        name="status",
        script="status_bench.py",
        title="Status and monitor (status_bench.py)",
        args=(),
        quick_args=("--runs", "5", "--monitor-seconds", "10"),
        timeout=3600.0,
        figures=status_figures,
        section=status_section,
        limits={"status_cli": _status_limit, "monitor_cpu": _monitor_limit},
    ),
    Bench(
        name="scale",
        script="scale_bench.py",
        title="Scale (scale_bench.py)",
        args=(),  # sizes come from --scale-agents / --scale-tasks (see main)
        quick_args=(),
        timeout=3600.0,
        figures=scale_figures,
        section=scale_section,
        limits={
            "finished": _scale_finished_limit,
            "teardown": _scale_teardown_limit,
            "worker_rss": _scale_rss_limit,
            "monitor_cpu": _scale_monitor_limit,
        },
    ),
    Bench(
        name="pg",
        script="pg_bench.py",
        title="PostgreSQL (pg_bench.py)",
        args=(),
        quick_args=("--jobs-per-worker", "50", "--repeat", "1"),
        timeout=3600.0,
        figures=pg_figures,
        section=pg_section,
        limits={"throughput": _pg_throughput_limit, "wake": _pg_wake_limit},
    ),
)
KNOWN_SCRIPTS = {b.script for b in BENCHES}
# Full size of scale_bench.py, 100 agents x 10,000 tasks: about 3 minutes of run (plus launch, teardown and the
# step profile) on a 2-CPU machine since merges stopped growing with the history; --quick uses the smaller size.
SCALE_DEFAULT = (100, 10_000)
SCALE_QUICK = (20, 500)


def available() -> list[Bench]:
    """The benchmarks whose script exists (pg_bench.py may not), then any other ``*_bench.py`` in this folder,
    read generically: its goals (``goals: {key: {text, met, ...}}`` or ``goal: {...}``) and its tables."""
    found = [b for b in BENCHES if (HERE / b.script).is_file()]
    for path in sorted(HERE.glob("*_bench.py")):
        if path.name not in KNOWN_SCRIPTS:
            name = path.name.removesuffix("_bench.py")
            found.append(
                Bench(
                    name=name,
                    script=path.name,
                    title=f"{name} ({path.name})",
                    args=(),
                    quick_args=(),
                    timeout=3600.0,
                    figures=generic_figures,
                    section=generic_section,
                    limits={},
                )
            )
    return found


# -- running -----------------------------------------------------------------------------------------------


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _parse_json(stdout: str) -> dict[str, Any] | None:
    """The benchmark's one JSON object: the whole output, or else its last line that parses as an object."""
    with contextlib.suppress(ValueError):
        data = json.loads(stdout)
        if isinstance(data, dict):
            return data
    for line in reversed(stdout.strip().splitlines()):
        if line.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data
    return None


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the benchmark we started, by its id: SIGINT first (a KeyboardInterrupt runs its cleanup: teardown,
    tmux kill-server, stopping what it started), then SIGTERM, then SIGKILL to its process group."""
    for sig, grace in ((signal.SIGINT, INT_GRACE_SECONDS), (signal.SIGTERM, TERM_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the process we started (start_new_session)
    proc.wait()


def run_one(bench: Bench, extra: Sequence[str]) -> dict[str, Any]:
    """Run one benchmark with ``--json``; a record with its data, or with the reason it failed."""
    argv = [sys.executable, str(HERE / bench.script), *extra, "--json"]
    load = load_average()
    started = time.time()
    record: dict[str, Any] = {
        "name": bench.name,
        "script": bench.script,
        "argv": ["benchmarks/" + bench.script, *extra, "--json"],
        "started": dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit(),
        "load_before": load,
        "returncode": None,
        "seconds": None,
        "data": None,
        "error": None,
    }
    print(f"run_all: {bench.name}: {' '.join(record['argv'])} (load average {load[0]})", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a hung benchmark can be stopped with everything it started
    )
    try:
        stdout, stderr = proc.communicate(timeout=bench.timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        stdout, stderr = proc.communicate()
        record["error"] = f"timed out after {bench.timeout:.0f} s and was stopped"
    except BaseException:
        _stop(proc)
        raise
    record["seconds"] = round(time.time() - started, 1)
    record["returncode"] = proc.returncode
    data = _parse_json(stdout)
    record["data"] = _slim(bench.name, data)
    if record["error"] is None and proc.returncode != 0:
        record["error"] = f"exit status {proc.returncode}: {_tail(stderr) or 'no output on stderr'}"
    elif record["error"] is None and data is None:
        record["error"] = f"no JSON object in its output: {_tail(stdout or stderr, 5) or 'no output'}"
    elif record["error"] is not None and stderr.strip():
        record["error"] += f": {_tail(stderr)}"
    state = "ok" if record["error"] is None else "FAILED"
    print(f"run_all: {bench.name}: {state} in {record['seconds']} s", file=sys.stderr, flush=True)
    return record


def _slim(name: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop what RESULTS.md never shows and would only bloat the cache (scale's per-sample series)."""
    if data is not None and name == "scale":
        data = {k: v for k, v in data.items() if k != "samples"}
    return data


# -- the machine -------------------------------------------------------------------------------------------


def _postgres_binary() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin/postgres``, else ``postgres`` on PATH (as tests/pg.py looks)."""
    folder = pg_bin_dir(("postgres",))
    return folder / "postgres" if folder else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """What the benchmarks ran on: platform, CPUs, memory and the versions of what they use."""
    info = bench_machine(sqlite=True, tools=True, memory=True)
    pg = _postgres_binary()
    return {
        "platform": info["platform"],
        "cpus": f"{info['cpu_count']} x {_cpu_model()}",
        "ram": f"{info['memory_gb']:.1f} GB",
        "python": f"{info['python']} ({sys.executable})",
        "sqlite": info["sqlite"],
        "git": info["git"],
        "tmux": info["tmux"],
        "postgresql": tool_version([str(pg), "--version"], "postgres (PostgreSQL) ") if pg else "missing",
    }


def commit() -> str:
    """``git rev-parse --short HEAD``, marked when the working tree has changes (read without taking locks)."""
    head = tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return f"{head} + uncommitted changes" if dirty else head


# -- the cache and the report ------------------------------------------------------------------------------


def load_cache(path: Path = CACHE) -> dict[str, Any]:
    """Records of earlier runs by benchmark name; empty when there is none or it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cache, dict) and cache.get("version") == CACHE_VERSION and isinstance(cache.get("runs"), dict):
            return cache
    return {"version": CACHE_VERSION, "runs": {}}


def save_cache(cache: dict[str, Any], path: Path = CACHE) -> None:
    """Write the cache atomically (a half-written file would lose every earlier record)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _verdict(met: bool | None, goal: str) -> str:
    if met is None:
        return "-" if goal == "-" else "n/a"
    return "met" if met else "**NOT met**"


def _figures(bench: Bench, record: dict[str, Any]) -> list[Figure]:
    data = record.get("data")
    if not isinstance(data, dict):
        return []
    try:
        return bench.figures(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a JSON shape this script does not know
        return [Figure(figure=f"(could not read its JSON: {exc!r})", swarm="n/a")]


def render(
    benches: Sequence[Bench], records: dict[str, dict[str, Any]], info: dict[str, str], quick: bool, now: str
) -> str:
    """The whole RESULTS.md: ``records`` (by benchmark name) in the order of ``benches``."""
    cpus = os.cpu_count() or 1
    order = [b for b in benches if b.name in records]
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/run_all`"
        + (" --quick (smaller sizes than the goals name)" if quick else "")
        + f" on {now}; commit `{commit()}`. Every benchmark ran alone, one after the other, with `--json`; "
        "each baseline was measured in the same run as the figure beside it. Rerun a subset with "
        "`benchmarks/run_all --only NAME[,NAME]`: the other sections then come from their last run "
        "(`benchmarks/.results.json`), each with its own date below.",
        "",
        "## Machine",
        "",
        *md_table(["", ""], [[k, v] for k, v in info.items()], "ll"),
        "",
        *md_table(
            ["benchmark", "started", "duration", "load average before (1/5/15 min)", "commit", "outcome", "command"],
            [
                [
                    b.name,
                    str(records[b.name].get("started")),
                    fmt(records[b.name].get("seconds"), 0, " s"),
                    " / ".join(str(x) for x in records[b.name].get("load_before") or []),
                    f"`{records[b.name].get('commit')}`",
                    "ok" if not records[b.name].get("error") else "**FAILED**",
                    "`" + " ".join(records[b.name].get("argv") or []) + "`",
                ]
                for b in order
            ],
            "lllllll",
        ),
        "",
    ]
    loads = [x for b in order if (x := _num(get(records[b.name], "load_before", 0))) is not None]
    if loads and max(loads) > cpus:
        lines += [
            f"The machine was shared while these ran: the 1-minute load average reached {max(loads):.1f} on {cpus} "
            "CPUs before a benchmark started (other work running tests). Timings, latency tails and CPU shares "
            "are worse than on an idle machine, and ratios against a baseline measured in the same run suffer too: "
            "Linux shares the CPUs between runnable processes, so a side or a row with more processes gets a "
            "larger share of the machine than one with fewer.",
            "",
        ]
    summary: list[list[str]] = []
    misses: list[str] = []
    for bench in order:
        record = records[bench.name]
        figures = _figures(bench, record)
        if record.get("error"):
            summary.append([bench.name, "**benchmark failed** (see its section)", "-", "-", "-", "-", "**FAILED**"])
            misses.append(f"- **{bench.name}** did not complete: {str(record['error']).splitlines()[0]}")
        for f in figures:
            summary.append([bench.name, f.figure, f.swarm, f.baseline, f.ratio, f.goal, _verdict(f.met, f.goal)])
            if f.met is False:
                misses.append(_miss_text(bench, record, f, cpus))
    lines += [
        "## Summary",
        "",
        *md_table(["benchmark", "figure", "swarm", "baseline", "ratio", "goal", "met"], summary, "llrrrll"),
        "",
        "## Note: goals not met",
        "",
    ]
    lines += misses or ["Every goal measured in this run is met."]
    for bench in order:
        record = records[bench.name]
        lines += ["", f"## {bench.title}", ""]
        if record.get("error"):
            lines += ["**Failed:**", "", "```", str(record["error"]), "```", ""]
        data = record.get("data")
        if isinstance(data, dict):
            try:
                lines += bench.section(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                lines += [f"(could not render its JSON: {exc!r})"]
    return "\n".join(lines).rstrip() + "\n"


def _miss_text(bench: Bench, record: dict[str, Any], figure: Figure, cpus: int) -> str:
    data = record.get("data") or {}
    load = _num(get(record, "load_before", 0))
    limit = bench.limits.get(figure.key)
    try:
        why = limit(data, Context(cpus, load)) if limit else "no analysis recorded for this goal; see its section."
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        why = f"(the explanation could not be built: {exc!r})"
    text = f"- **{bench.name}: {figure.figure}** is {figure.swarm} against the goal {figure.goal}. Limited by: {why}"
    if load is not None and load > 2 * cpus:
        text += (
            f" The load average was {load:.1f} on {cpus} CPUs when it started: its processes got a small share of "
            "the CPUs, so part of this miss may be the machine's; rerun it alone on a quiet machine "
            f"(`benchmarks/run_all --only {bench.name}`)."
        )
    elif load is not None and load > cpus:
        text += f" The load average was {load:.1f} on {cpus} CPUs when it started."
    return text


# -- main --------------------------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = [b.name for b in available()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(known)}")
    return names


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, write RESULTS.md; 1 if a benchmark failed (its goals are then unknown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes for the slow benchmarks")
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(b.name for b in available())}); keep the others' last results",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing: rewrite RESULTS.md from benchmarks/.results.json"
    )
    parser.add_argument("--scale-agents", type=int, metavar="N", help="agents for scale_bench.py")
    parser.add_argument("--scale-tasks", type=int, metavar="N", help="tasks for scale_bench.py")
    parser.add_argument(
        "--output", type=Path, default=RESULTS_MD, help="where to write (default benchmarks/RESULTS.md)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=CACHE,
        help="where the records of the runs are kept (default benchmarks/.results.json)",
    )
    args = parser.parse_args(argv)
    present = available()
    wanted = [] if args.render_only else [b for b in present if args.only is None or b.name in args.only]
    agents, tasks = SCALE_QUICK if args.quick else SCALE_DEFAULT
    agents = args.scale_agents or agents
    tasks = args.scale_tasks or tasks

    # SIGTERM stops the running benchmark the same way as Ctrl-C: through its own cleanup, then RESULTS.md.
    signal.signal(signal.SIGTERM, _interrupt)
    cache = load_cache(args.cache)
    runs: dict[str, dict[str, Any]] = cache["runs"]
    interrupted = False
    for bench in wanted:
        extra = list(bench.quick_args if args.quick else bench.args)
        if bench.name == "scale":
            extra += ["--agents", str(agents), "--tasks", str(tasks), "--timeout", str(int(bench.timeout - 300))]
        try:
            runs[bench.name] = {**run_one(bench, extra), "quick": args.quick}
        except KeyboardInterrupt:
            print(f"run_all: interrupted during {bench.name}; writing what has run", file=sys.stderr)
            interrupted = True
            break
        save_cache(cache, args.cache)  # after every benchmark: an interrupted run keeps what it measured
    present_names = {b.name for b in present}
    records = {name: rec for name, rec in runs.items() if name in present_names}
    quick = any(rec.get("quick") for rec in records.values())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.output.write_text(render(present, records, machine(), quick, now), encoding="utf-8")
    print(f"run_all: wrote {args.output}", flush=True)
    if interrupted:
        return 130
    return 1 if any(runs[b.name].get("error") for b in wanted) else 0


if __name__ == "__main__":
    sys.exit(main())
