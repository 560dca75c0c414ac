"""Latency of ``swarm status --json`` and CPU of the monitor, with 100 agents and 10,000 tasks.

Run: ``.venv/bin/python benchmarks/status_bench.py [--agents 100] [--tasks 10000] [--runs 10]
[--monitor-seconds 20] [--json] [--profile]``

One throwaway git repository (temporary folder) gets a SQLite queue at ``.swarm/swarm.db`` through swarm's
own store: one swarm, ``--tasks`` tasks with dependencies (queued with ``add_tasks`` in dependency order),
then driven to a realistic mix through the real store operations: about 40% claimed and completed (with
commit, cost and tokens), a few failed for good (``dead``), about 1% of the blocked ones cancelled, one task
claimed by each working agent; the rest ``ready`` or ``blocked``. ``--agents`` agents are registered as
launch registers them (worktree folders inside the repository, session names, this host), half ``working``
and half ``idle``. Each agent's ``pid`` is a real ``sleep`` process started by this script (its own session,
with ``SWARM_ID`` and ``SWARM_AGENT_ID`` set as launch sets them); each working agent also has an
``agent_pid``, another ``sleep``. Every agent has a run file (kind ``command`` running ``sleep``: the monitor
loads its waiting patterns, and a worker it might restart could run nothing else) and a log of about 30 KB.

Measured:

* **status**: the real CLI ``python -m swarm status --json`` (cwd = the repository) ``--runs`` times after one
  warm-up run, p50/p95/max. Beside it, ``python -m swarm --version`` (interpreter plus the CLI's imports,
  no database) and the same steps in-process (``load_config``, open the store and read the swarm,
  ``status.take()``, ``status.to_json()``, ``json.dumps``), so start-up cost and the work itself are seen
  apart. Goal: the CLI's p50 <= 500 ms.
* **monitor**: ``Monitor(repo, swarm_id).look()`` in-process, the first (cold) look and then steady looks
  once the working agents have been quiet long enough for the monitor to read their logs; then the real
  ``python -m swarm.runtime.monitor`` process, whose CPU time is read over ``--monitor-seconds`` at its
  default interval once it is past its first looks. Goal: <= 2% of one core.

``--profile`` also prints, on stderr, cProfile of ``take()`` + ``to_json()`` and of one steady ``look()``.

Python's bytecode cache is kept warm in a private folder (an installed swarm has its ``.pyc`` files). The
monitor runs with a tmux socket of its own (``swarm-status-bench-<pid>``), so a restart it might attempt
could never touch the user's tmux server; that server is killed at the end. Every process the script
started is stopped by its pid, also on failure, and the temporary folder is removed.

Correctness checks (exit status 1): every status output must parse, list every task and agent, agree with
the store's counts and show every agent in the state it was given; the monitor must judge every agent as
recorded (nothing dead, stalled or waiting), restart nothing, and every process started must be gone at the
end. Speed never decides the exit status: benchmarks print figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from _common import (
    MB,
    BenchError,
    clean_env,
    cpu_seconds,
    init_repo,
    load_average,
    machine,
    median,
    percentile,
    run_command,
    swarm_cli,
    warm_bytecode,
)
from _report import Cell, Record, Result, Table, emit

from swarm import status
from swarm.config import LoadedConfig, load_config
from swarm.models import LEAD, AgentRecord, AgentState, Spec, TaskState
from swarm.queue import open_queue
from swarm.runtime import procs
from swarm.runtime.monitor import QUIET_SECONDS, Monitor, Verdict
from swarm.runtime.runfile import AgentRun, write_run_file
from swarm.runtime.sessions import session_name
from swarm.runtime.tmux import stop_private_server
from swarm.store import Store

EPIC = "BENCH"
GOAL_STATUS_MS = 500.0
GOAL_MONITOR_CPU_PERCENT = 2.0

#: Share of the tasks driven through claim + complete (a few of them fail for good instead).
DONE_SHARE = 0.4
#: Share of tasks without dependencies; the others depend on 1 to 3 of the previous DEP_WINDOW tasks.
NO_DEP_SHARE = 0.25
DEP_WINDOW = 400
#: Every FRAGILE_EVERY-th task has one attempt only and fails when claimed: it ends ``dead``.
FRAGILE_EVERY = 97
#: Every CANCEL_EVERY-th blocked task is cancelled.
CANCEL_EVERY = 80
ADD_BATCH = 1000
#: Long enough that no lease expires while the benchmark runs (the monitor reaps expired ones).
LEASE_TTL_SECONDS = 3600.0
#: The stand-in processes outlive any run; they are stopped by pid at the end.
SLEEP_SECONDS = 3600
LOG_LINES = 150
STEADY_LOOKS = 10
#: The monitor process must have looked this many times before the CPU window opens.
MONITOR_WARM_LOOKS = 2
START_TIMEOUT = 60.0


@dataclass
class Fixture:
    """The repository, its swarm, and what every agent was given."""

    repo: Path
    swarm_id: str
    loaded: LoadedConfig
    env: dict[str, str]
    tasks: int
    counts: dict[str, int]
    #: agent id -> the state it was registered in (working or idle)
    states: dict[str, str] = field(default_factory=dict)
    #: agent id -> (pid, agent_pid)
    pids: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    build_seconds: float = 0.0


@dataclass
class Started:
    """Every process this script started, so that each one is stopped by its pid whatever happens."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The benchmark's swarm, once created: a last sweep looks for processes carrying its SWARM_ID.
    swarm_id: str | None = None

    def spawn(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own (as tmux would), remember it, return it."""
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> list[int]:
        """SIGTERM each, wait, SIGKILL what is left; the pids that are still running (should be none)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
        return [p.pid for p in self.procs if p.poll() is None]


# -- helpers ---------------------------------------------------------------------------------------------


def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(median(ms), 2),
        "p95": round(percentile(ms, 95), 2),  # nearest rank: with 10 samples, the largest
        "max": round(max(ms), 2) if ms else math.nan,
    }


def _progress(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"  {text}", file=sys.stderr, flush=True)


# -- the fixture -----------------------------------------------------------------------------------------


def _specs(total: int, rng: random.Random) -> tuple[list[Spec], set[str]]:
    """``total`` specs in dependency order (every dependency has a smaller id) and the fragile ids."""
    width = max(5, len(str(total)))
    ids = [f"T{i:0{width}d}" for i in range(total)]
    specs: list[Spec] = []
    fragile: set[str] = set()
    paragraph = (
        "Implement the change described below in the module named in the title. Keep the public interface "
        "as it is, add tests next to the existing ones, and run the whole test suite before committing. "
    )
    for i, task_id in enumerate(ids):
        if i == 0 or rng.random() < NO_DEP_SHARE:
            deps: tuple[str, ...] = ()
        else:
            picks = rng.choice((1, 1, 1, 2, 2, 3))
            deps = tuple(sorted({ids[rng.randrange(max(0, i - DEP_WINDOW), i)] for _ in range(picks)}))
        one_try = i % FRAGILE_EVERY == 13
        if one_try:
            fragile.add(task_id)
        specs.append(
            Spec(
                id=task_id,
                epic=EPIC,
                title=f"Task {i}: rework module pkg{i % 37}/mod{i % 11} ({rng.choice(('api', 'cli', 'db', 'ui'))})",
                body=f"# {task_id}\n\n" + paragraph * rng.randint(3, 8) + f"\n\nAcceptance: check {i} passes.\n",
                depends_on=deps,
                priority=1 if rng.random() < 0.05 else 0,
                max_attempts=1 if one_try else None,
                path=Path("specs") / f"{task_id}.md",
            )
        )
    return specs, fragile


def _log_text(agent_id: str, working: bool, rng: random.Random) -> str:
    """About 30 KB of what a worker's log holds: its own lines and the agent's stream-json events."""
    lines = [f"[swarm {agent_id}] claimed a task (attempt 1)"]
    for n in range(LOG_LINES):
        text = f"Step {n}: reading files and running the tests, {rng.randint(1, 400)} passed"
        lines.append(json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}}))
    if not working:
        lines.append(f"[swarm {agent_id}] completed the task; no ready task, waiting")
    return "\n".join(lines) + "\n"


def build_repo(repo: Path, socket_name: str, env: dict[str, str]) -> None:
    """A git repository with one commit and a swarm.toml naming the benchmark's own tmux socket."""
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# status benchmark\n", encoding="utf-8")
    (repo / "swarm.toml").write_text(f'[swarm]\ntmux_socket = "{socket_name}"\n', encoding="utf-8")
    init_repo(repo, "status-bench", env=env)


def build_fixture(repo: Path, agents: int, tasks: int, env: dict[str, str], started: Started, quiet: bool) -> Fixture:
    """The queue, the agents and their stand-in processes; see the module docstring."""
    clock = time.perf_counter()
    rng = random.Random(20240611)
    build_repo(repo, env["SWARM_TMUX_SOCKET"], env)
    repo = repo.resolve()
    loaded = load_config(repo, env=env)
    host = socket.gethostname()
    agent_ids = [f"agent-{n}" for n in range(1, agents + 1)]
    working_ids = set(agent_ids[: math.ceil(agents / 2)])
    with open_queue(loaded, create=True) as store:
        swarm = store.ensure_swarm(
            EPIC, max_agents=agents, repo=str(repo), settings={"tmux_socket": env["SWARM_TMUX_SOCKET"]}
        )
        started.swarm_id = swarm.id
        specs, fragile = _specs(tasks, rng)
        for start in range(0, len(specs), ADD_BATCH):
            store.add_tasks(specs[start : start + ADD_BATCH], swarm_id=swarm.id)
        _progress(quiet, f"queued {tasks} tasks ({time.perf_counter() - clock:.1f}s)")
        for agent_id in agent_ids:
            worktree = repo / ".worktrees" / agent_id
            worktree.mkdir(parents=True)
            store.register_agent(
                AgentRecord(
                    id=agent_id,
                    swarm_id=swarm.id,
                    host=host,
                    session=session_name(repo, agent_id),
                    branch=f"swarm/{EPIC}/{agent_id}",
                    worktree=str(worktree),
                    state=AgentState.STARTING.value,
                )
            )
        _drive(store, swarm.id, agent_ids, fragile, round(tasks * DONE_SHARE), host, rng)
        _progress(quiet, f"drove the queue to its mix ({time.perf_counter() - clock:.1f}s)")
        fixture = Fixture(repo=repo, swarm_id=swarm.id, loaded=loaded, env=env, tasks=tasks, counts={})
        _start_agents(store, fixture, agent_ids, working_ids, started, host, rng)
        lead_thread_questions(store, agent_ids)
        fixture.counts = store.counts(swarm_id=swarm.id)
    fixture.build_seconds = time.perf_counter() - clock
    _progress(quiet, f"fixture ready: {fixture.counts} ({fixture.build_seconds:.1f}s)")
    return fixture


def _drive(
    store: Store, swarm_id: str, agent_ids: list[str], fragile: set[str], steps: int, host: str, rng: random.Random
) -> None:
    """Claim and complete ``steps`` tasks (the fragile ones fail for good), then cancel some blocked ones."""
    for step in range(steps):
        agent = agent_ids[step % len(agent_ids)]
        got = store.claim(agent, ttl_seconds=LEASE_TTL_SECONDS, host=host, swarm_id=swarm_id)
        if got is None:
            break
        cost = round(rng.uniform(0.05, 1.5), 4)
        tokens = rng.randrange(5_000, 200_000)
        if got.task_id in fragile:
            store.fail(got.task_id, agent, got.lease_token, "tests failed: 3 errors", cost_usd=cost, tokens=tokens)
        else:
            store.complete(
                got.task_id, agent, got.lease_token, commit=secrets.token_hex(20), cost_usd=cost, tokens=tokens
            )
    blocked = [t.id for t in store.list_tasks(swarm_id=swarm_id) if t.state == TaskState.BLOCKED]
    for task_id in blocked[::CANCEL_EVERY]:
        store.cancel(task_id, reason="out of scope for this epic")


def _start_agents(
    store: Store,
    fixture: Fixture,
    agent_ids: list[str],
    working_ids: set[str],
    started: Started,
    host: str,
    rng: random.Random,
) -> None:
    """A sleeping stand-in per worker (and per working agent's command), the claims, run files and logs."""
    now = time.time()
    logs = fixture.repo / ".swarm" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cfg = fixture.loaded.config
    for agent_id in agent_ids:
        marked = {**fixture.env, "SWARM_ID": fixture.swarm_id, "SWARM_AGENT_ID": agent_id}
        worker = started.spawn(["sleep", str(SLEEP_SECONDS)], env=marked)
        got = None
        if agent_id in working_ids:
            got = store.claim(agent_id, ttl_seconds=LEASE_TTL_SECONDS, host=host, swarm_id=fixture.swarm_id)
        if got is not None:
            agent = started.spawn(["sleep", str(SLEEP_SECONDS)], env=marked)
            store.update_agent(
                agent_id,
                pid=worker.pid,
                agent_pid=agent.pid,
                state=AgentState.WORKING.value,
                task_id=got.task_id,
                last_output=f"Step 149: reading files and running the tests, {rng.randint(1, 400)} passed",
                last_output_at=now - rng.uniform(0, 20),
                cost_usd=round(rng.uniform(0.5, 20), 4),
            )
            fixture.states[agent_id] = AgentState.WORKING.value
            fixture.pids[agent_id] = (worker.pid, agent.pid)
        else:
            store.update_agent(
                agent_id,
                pid=worker.pid,
                agent_pid=None,
                state=AgentState.IDLE.value,
                task_id=None,
                last_output=f"[swarm {agent_id}] completed the task; no ready task, waiting",
                last_output_at=now - rng.uniform(0, 60),
                cost_usd=round(rng.uniform(0.5, 20), 4),
            )
            fixture.states[agent_id] = AgentState.IDLE.value
            fixture.pids[agent_id] = (worker.pid, None)
        worktree = fixture.repo / ".worktrees" / agent_id
        write_run_file(
            AgentRun(
                swarm_id=fixture.swarm_id,
                epic=EPIC,
                agent_id=agent_id,
                host=host,
                repo=str(fixture.repo),
                worktree=str(worktree),
                branch=f"swarm/{EPIC}/{agent_id}",
                session=session_name(fixture.repo, agent_id),
                database_url=fixture.loaded.database_url(),
                # The command kind has waiting patterns too, so the monitor reads the logs as it would for
                # claude; and a worker it might restart (only if a check is about to fail) runs nothing but sleep.
                kind="command",
                command=f"sleep {SLEEP_SECONDS}",
                model=cfg.agent.model,
                permission_mode=cfg.agent.permission_mode,
                lease_ttl_seconds=LEASE_TTL_SECONDS,
                heartbeat_seconds=cfg.queue.heartbeat_seconds,
                task_timeout_seconds=float(cfg.swarm.task_timeout_seconds),
                commit_author=cfg.swarm.commit_author,
                tmux_socket=fixture.env["SWARM_TMUX_SOCKET"],
                token=secrets.token_urlsafe(24),
            )
        )
        (logs / f"{agent_id}.log").write_text(_log_text(agent_id, got is not None, rng), encoding="utf-8")


def lead_thread_questions(store: Store, agent_ids: list[str]) -> None:
    """Three questions to the lead, one of them answered: status lists the two open ones."""
    asked = [
        store.append_message(
            "team", agent_ids[n % len(agent_ids)], "question", f"Question {n}: keep the old API?", recipient=LEAD
        )
        for n in range(3)
    ]
    store.append_message("team", LEAD, "answer", "Yes, keep it.", recipient=asked[0].author, reply_to=asked[0].seq)


def _check_alive(fixture: Fixture) -> None:
    gone = [
        f"{agent}:{pid}"
        for agent, pair in fixture.pids.items()
        for pid in pair
        if pid is not None and not procs.alive(pid)
    ]
    if gone:
        raise BenchError(f"stand-in processes ended early: {', '.join(gone[:10])}")


# -- status ----------------------------------------------------------------------------------------------


def _check_status(fixture: Fixture, data: dict[str, Any], source: str) -> None:
    """The output lists every task and agent, agrees with the store's counts, shows the given states."""
    problems: list[str] = []
    if data.get("counts") != fixture.counts:
        problems.append(f"counts {data.get('counts')} != the store's {fixture.counts}")
    if len(data.get("tasks", [])) != fixture.tasks:
        problems.append(f"{len(data.get('tasks', []))} tasks listed, {fixture.tasks} queued")
    shown = {a["id"]: a for a in data.get("agents", [])}
    if set(shown) != set(fixture.states):
        problems.append(f"{len(shown)} agents listed, {len(fixture.states)} registered")
    wrong = [f"{a}={shown[a]['state']}" for a, s in fixture.states.items() if a in shown and shown[a]["state"] != s]
    if wrong:
        problems.append(f"agents not in their given state: {', '.join(wrong[:5])}")
    if data.get("swarm", {}).get("id") != fixture.swarm_id:
        problems.append(f"swarm {data.get('swarm', {}).get('id')} != {fixture.swarm_id}")
    if problems:
        raise BenchError(f"{source}: " + "; ".join(problems))


@dataclass
class CliSamples:
    """Seconds per run of ``swarm status --json``, of ``swarm --version`` and of a bare interpreter."""

    status: list[float] = field(default_factory=list)
    version: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    json_bytes: int = 0


def measure_cli(fixture: Fixture, runs: int) -> CliSamples:
    """The three commands in turn, ``runs`` times after one warm-up round; every status output checked."""
    samples = CliSamples()
    size = 0
    for n in range(runs + 1):
        started = time.perf_counter()
        out = run_command(swarm_cli("status", "--json"), cwd=fixture.repo, env=fixture.env, what="swarm status --json")
        elapsed = time.perf_counter() - started
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise BenchError(f"swarm status --json printed no JSON: {out[:200]!r}") from exc
        _check_status(fixture, data, "swarm status --json")
        size = len(out.encode())
        started = time.perf_counter()
        run_command(swarm_cli("--version"), cwd=fixture.repo, env=fixture.env, what="swarm --version")
        version_elapsed = time.perf_counter() - started
        started = time.perf_counter()
        run_command([sys.executable, "-c", "pass"], cwd=fixture.repo, env=fixture.env, what="python -c pass")
        bare_elapsed = time.perf_counter() - started
        if n:  # the first round only warms the caches
            samples.status.append(elapsed)
            samples.version.append(version_elapsed)
            samples.bare.append(bare_elapsed)
    samples.json_bytes = size
    return samples


def _status_once(fixture: Fixture, phases: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """What ``swarm status --json`` does after its imports, phase by phase (timed into ``phases``)."""
    marks = [time.perf_counter()]
    loaded = load_config(fixture.repo, env=fixture.env)
    marks.append(time.perf_counter())
    with open_queue(loaded) as store:
        swarm = store.current_swarm()
        if swarm is None:
            raise BenchError("the store has no current swarm")
        marks.append(time.perf_counter())
        snap = status.take(store, loaded, swarm)
        marks.append(time.perf_counter())
        data = status.to_json(snap)
        marks.append(time.perf_counter())
        json.dumps(data, sort_keys=False)
        marks.append(time.perf_counter())
    if phases is not None:
        for name, begin, end in zip(IN_PROCESS_PHASES, marks[:-1], marks[1:], strict=True):
            phases.setdefault(name, []).append(end - begin)
        phases.setdefault("total", []).append(marks[-1] - marks[0])
    return data


IN_PROCESS_PHASES = ("load_config", "open store + current_swarm", "status.take()", "status.to_json()", "json.dumps")


def measure_in_process(fixture: Fixture, runs: int) -> dict[str, list[float]]:
    """Each phase of status, in this process, ``runs`` times after one warm-up; checked like the CLI."""
    _check_status(fixture, _status_once(fixture), "status.to_json()")
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        _status_once(fixture, phases)
    return phases


# -- monitor ---------------------------------------------------------------------------------------------


def _check_verdicts(fixture: Fixture, verdicts: dict[str, str], source: str) -> None:
    if set(verdicts) != set(fixture.states):
        raise BenchError(f"{source}: judged {len(verdicts)} agents, {len(fixture.states)} registered")
    wrong = [f"{a}={verdicts[a]}" for a, s in fixture.states.items() if verdicts[a] != s]
    if wrong:
        raise BenchError(f"{source}: agents judged otherwise than recorded: {', '.join(wrong[:5])}")


def _check_untouched(fixture: Fixture, source: str) -> None:
    """No agent was restarted, marked or given other processes by the monitor."""
    with open_queue(fixture.loaded) as store:
        found = store.list_agents(fixture.swarm_id)
    changed = [
        a.id
        for a in found
        if a.restarts or a.state != fixture.states.get(a.id) or (a.pid, a.agent_pid) != fixture.pids.get(a.id)
    ]
    if changed:
        raise BenchError(f"{source}: the monitor changed agents {', '.join(changed[:5])}")


@dataclass
class LookFigures:
    """The in-process monitor: one cold look, then steady looks (wall and CPU seconds each)."""

    first_s: float
    wall_s: list[float]
    cpu_s: list[float]


def measure_looks(fixture: Fixture) -> LookFigures:
    """``Monitor.look()`` in this process: the first look, then STEADY_LOOKS once agents are quiet."""
    monitor = Monitor(fixture.repo, fixture.swarm_id, loaded=fixture.loaded)
    try:
        started = time.perf_counter()
        verdicts = monitor.look()
        first = time.perf_counter() - started
        _check_verdicts(fixture, {v.agent: v.state for v in verdicts}, "Monitor.look()")
        # Past QUIET_SECONDS without CPU or output, the monitor reads every working agent's log tail.
        time.sleep(QUIET_SECONDS + 0.5)
        monitor.look()  # the first quiet look loads each agent's waiting patterns once: not steady yet
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(STEADY_LOOKS):
            w0, c0 = time.perf_counter(), time.process_time()
            verdicts = monitor.look()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        _check_verdicts(fixture, {v.agent: v.state for v in verdicts}, "Monitor.look()")
    finally:
        monitor.store.close()
    _check_untouched(fixture, "Monitor.look()")
    return LookFigures(first_s=first, wall_s=wall, cpu_s=cpu)


@dataclass
class MonitorProcess:
    """The real monitor process over the measurement window."""

    interval_s: float
    window_s: float
    cpu_percent: float
    looks: int
    rss_mb: float


def _monitor_report(repo: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads((repo / ".swarm" / "monitor.json").read_text(encoding="utf-8"))
        return data
    return None


def _wait_looks(repo: Path, proc: subprocess.Popen[bytes], looks: int, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        report = _monitor_report(repo)
        if report and report.get("pid") == proc.pid and int(report.get("looks", 0)) >= looks:
            return report
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"the monitor exited with {proc.returncode}: {' | '.join(tail) or 'no output'}")
        if time.monotonic() > deadline:
            raise BenchError(f"the monitor did not look {looks} times within {START_TIMEOUT:.0f}s")
        time.sleep(0.1)


def measure_monitor_process(fixture: Fixture, seconds: float, started: Started, scratch: Path) -> MonitorProcess:
    """CPU of ``python -m swarm.runtime.monitor`` over ``seconds`` once warm; stopped by its pid after."""
    env = {**fixture.env, "SWARM_ID": fixture.swarm_id, "SWARM_AGENT_ID": "monitor", "PYTHONUNBUFFERED": "1"}
    log = scratch / "monitor.log"
    argv = [sys.executable, "-m", "swarm.runtime.monitor", "--repo", str(fixture.repo), "--swarm-id", fixture.swarm_id]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=fixture.repo, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    started.procs.append(proc)
    first = _wait_looks(fixture.repo, proc, 1, log)
    # Steady state: past its first looks and past QUIET_SECONDS, so it reads the working agents' logs too.
    time.sleep(QUIET_SECONDS + 0.5)
    # One more look after that: the first quiet look loads each agent's waiting patterns, a one-off cost.
    now = _monitor_report(fixture.repo) or first
    before = _wait_looks(fixture.repo, proc, max(MONITOR_WARM_LOOKS, int(now["looks"]) + 1), log)
    handle = psutil.Process(proc.pid)
    cpu0, t0 = cpu_seconds(handle), time.perf_counter()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(handle), time.perf_counter()
    rss = handle.memory_info().rss
    after = _monitor_report(fixture.repo) or {}
    if proc.poll() is not None:
        raise BenchError(f"the monitor exited with {proc.returncode} during the measurement")
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    verdicts = {agent: str(v.get("state")) for agent, v in after.get("agents", {}).items()}
    _check_verdicts(fixture, verdicts, "the monitor process")
    _check_untouched(fixture, "the monitor process")
    return MonitorProcess(
        interval_s=fixture.loaded.config.swarm.monitor_interval_seconds,
        window_s=t1 - t0,
        cpu_percent=100.0 * (cpu1 - cpu0) / (t1 - t0),
        looks=int(after.get("looks", 0)) - int(before.get("looks", 0)),
        rss_mb=rss / MB,
    )


# -- profiles --------------------------------------------------------------------------------------------


def _profile(fn: Callable[[], object], title: str, limit: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(limit)
    return f"== profile: {title} (sorted by own time) ==\n{buffer.getvalue()}"


def profiles(fixture: Fixture) -> str:
    """cProfile of status's take()+to_json() and of one steady Monitor.look()."""
    loaded = load_config(fixture.repo, env=fixture.env)
    parts: list[str] = []
    with open_queue(loaded) as store:
        swarm = store.current_swarm()
        if swarm is None:
            raise BenchError("the store has no current swarm")
        parts.append(
            _profile(lambda: status.to_json(status.take(store, loaded, swarm)), "status.take() + status.to_json()")
        )
    monitor = Monitor(fixture.repo, fixture.swarm_id, loaded=fixture.loaded)
    try:
        monitor.look()
        time.sleep(QUIET_SECONDS + 0.5)
        monitor.look()  # the first quiet look loads each agent's waiting patterns once; the next is steady
        holder: list[list[Verdict]] = []
        parts.append(_profile(lambda: holder.append(monitor.look()), "Monitor.look(), steady"))
    finally:
        monitor.store.close()
    return "\n".join(parts)


# -- the result -------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    """What the figures were measured on (the process count matters: psutil walks the whole table)."""
    return machine(sqlite=True, processes=len(psutil.pids()), load_average=load_average())


@dataclass
class Results:
    """Every figure of the run."""

    fixture: Fixture
    runs: int
    cli: CliSamples
    in_process: dict[str, list[float]]
    looks: LookFigures
    monitor: MonitorProcess


def summary(r: Results, info: dict[str, Any]) -> dict[str, Any]:
    """The one source of both the table and the JSON."""
    cli = _stats_ms(r.cli.status)
    steady_cpu_ms = statistics.median(r.looks.cpu_s) * 1000
    interval = r.monitor.interval_s
    working = sum(1 for s in r.fixture.states.values() if s == AgentState.WORKING.value)
    return {
        "machine": info,
        "agents": len(r.fixture.states),
        "working_agents": working,
        "tasks": r.fixture.tasks,
        "counts": r.fixture.counts,
        "runs": r.runs,
        "fixture_build_s": round(r.fixture.build_seconds, 2),
        "status": {
            "cli_ms": cli,
            "cli_samples_ms": [round(s * 1000, 2) for s in r.cli.status],
            "cli_startup_ms": _stats_ms(r.cli.version),
            "python_startup_ms": _stats_ms(r.cli.bare),
            "json_bytes": r.cli.json_bytes,
            "in_process_ms": {name: _stats_ms(values) for name, values in r.in_process.items()},
        },
        "monitor": {
            "interval_s": interval,
            "look_first_ms": round(r.looks.first_s * 1000, 2),
            "look_steady_ms": _stats_ms(r.looks.wall_s),
            "look_steady_cpu_ms": round(steady_cpu_ms, 2),
            "look_cpu_percent_at_interval": round(steady_cpu_ms / 1000 / interval * 100, 2),
            "process_cpu_percent": round(r.monitor.cpu_percent, 2),
            "process_window_s": round(r.monitor.window_s, 1),
            "process_looks": r.monitor.looks,
            "process_rss_mb": round(r.monitor.rss_mb, 1),
        },
        "goals": {
            "status_cli": {
                "text": f"swarm status --json p50 <= {GOAL_STATUS_MS:.0f} ms",
                "value": cli["p50"],
                "unit": " ms",
                "met": cli["p50"] <= GOAL_STATUS_MS,
            },
            "monitor_cpu": {
                "text": f"monitor <= {GOAL_MONITOR_CPU_PERCENT}% of one core at its {interval:g} s interval",
                "value": round(r.monitor.cpu_percent, 2),
                "unit": "%",
                "met": r.monitor.cpu_percent <= GOAL_MONITOR_CPU_PERCENT,
            },
        },
    }


def result(figures: dict[str, Any]) -> Result:
    """The figures: status --json beside the CLI's bare start-up, its phases in-process, the monitor's cost."""
    st, m, goals = figures["status"], figures["monitor"], figures["goals"]
    cli, startup, total = st["cli_ms"], st["cli_startup_ms"], st["in_process_ms"]["total"]
    records = [
        Record(
            f"swarm status --json p50 ({figures['agents']} agents, {figures['tasks']} tasks)",
            cli["p50"],
            " ms",
            0,
            baseline=startup["p50"],
            baseline_of="swarm --version",
            goal=f"p50 <= {GOAL_STATUS_MS:.0f} ms",
            met=goals["status_cli"]["met"],
            limit=f"of the {cli['p50']:.0f} ms, Python start-up and the CLI's imports take {startup['p50']:.0f} ms "
            f"(swarm --version; the bare interpreter alone {st['python_startup_ms']['p50']:.0f} ms) and reading and "
            f"rendering {figures['tasks']} tasks in-process {total['p50']:.0f} ms.",
        ),
        Record("swarm status --json p95", cli["p95"], " ms", 0, baseline=startup["p95"], baseline_of="swarm --version"),
        Record(
            f"monitor process CPU ({figures['agents']} agents)",
            m["process_cpu_percent"],
            "% of a core",
            2,
            goal=goals["monitor_cpu"]["text"].removeprefix("monitor "),
            met=goals["monitor_cpu"]["met"],
            limit=f"each steady look costs {m['look_steady_cpu_ms']:.1f} ms CPU for {figures['agents']} agents (the "
            f"process table, the agents' logs, the database), once every {m['interval_s']:g} s.",
        ),
        Record("Monitor.look() steady p50", m["look_steady_ms"]["p50"], " ms"),
        Record("status JSON", st["json_bytes"] / 1024, " KB", 0, summary=False),
        Record("look(), first (cold)", m["look_first_ms"], " ms", summary=False),
        Record("look(), steady CPU", m["look_steady_cpu_ms"], " ms", summary=False),
        Record(
            f"look() CPU at the {m['interval_s']:g} s interval (derived)",
            m["look_cpu_percent_at_interval"],
            "% of a core",
            2,
            summary=False,
        ),
        Record("monitor process window", m["process_window_s"], " s", 0, summary=False),
        Record("monitor process looks in the window", m["process_looks"], summary=False),
        Record("monitor process RSS", m["process_rss_mb"], " MB", 0, summary=False),
    ]
    rows: list[list[Cell]] = [
        ["CLI, end to end (subprocess)", *_p(cli)],
        ["CLI start-up alone (swarm --version)", *_p(startup)],
        ["of it, Python alone (python -c pass)", *_p(st["python_startup_ms"])],
        *[[f"in-process: {name}", *_p(phase)] for name, phase in st["in_process_ms"].items()],
    ]
    counts = ", ".join(f"{n} {state}" for state, n in figures["counts"].items())
    intro = (
        f"{figures['agents']} agents ({figures['working_agents']} working, each a live process) and "
        f"{figures['tasks']} tasks ({counts}); {figures['runs']} runs after a warm-up; Python's bytecode cache warm."
    )
    table = Table(["swarm status --json", "p50 ms", "p95 ms", "max ms"], rows)
    params = {k: figures[k] for k in ("agents", "working_agents", "tasks", "runs", "counts")}
    return Result("status", "Status and monitor (status_bench.py)", figures["machine"], params, records, [intro, table])


def _p(stats: dict[str, float]) -> list[Cell]:
    return [stats["p50"], stats["p95"], stats["max"]]


# -- main ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, scratch: Path, env: dict[str, str], started: Started) -> tuple[Results, str]:
    """Build, measure, check; the results and the profiles text (empty unless asked for)."""
    quiet = bool(args.json)
    warm_bytecode(env, ("swarm.cli.main", "swarm.runtime.monitor"))
    fixture = build_fixture(scratch / "repo", args.agents, args.tasks, env, started, quiet)
    _check_alive(fixture)
    cli = measure_cli(fixture, args.runs)
    _progress(quiet, f"swarm status --json: p50 {statistics.median(cli.status) * 1000:.0f} ms")
    in_process = measure_in_process(fixture, args.runs)
    looks = measure_looks(fixture)
    _progress(
        quiet,
        f"Monitor.look(): first {looks.first_s * 1000:.0f} ms, steady {statistics.median(looks.wall_s) * 1000:.0f} ms",
    )
    _progress(quiet, f"measuring the monitor process for {args.monitor_seconds:g}s")
    monitor = measure_monitor_process(fixture, args.monitor_seconds, started, scratch)
    _check_alive(fixture)
    text = profiles(fixture) if args.profile else ""
    return Results(fixture, args.runs, cli, in_process, looks, monitor), text


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a step or a correctness check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=100, metavar="N", help="registered agents (default 100)")
    parser.add_argument("--tasks", type=int, default=10_000, metavar="N", help="queued tasks (default 10000)")
    parser.add_argument("--runs", type=int, default=10, metavar="R", help="timed status runs (default 10)")
    parser.add_argument(
        "--monitor-seconds",
        type=float,
        default=20.0,
        metavar="S",
        help="CPU window of the monitor process (default 20)",
    )
    parser.add_argument("--profile", action="store_true", help="also print cProfile of take()/to_json() and look()")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.tasks < 1 or args.runs < 1 or args.monitor_seconds <= 0:
        parser.error("--agents, --tasks, --runs and --monitor-seconds must be positive")
    socket_name = f"swarm-status-bench-{os.getpid()}"
    # SIGTERM ends the run through the same cleanup as an error: the stand-ins would otherwise live on.
    signal.signal(signal.SIGTERM, _terminated)
    started = Started()
    failure: str | None = None
    figures: dict[str, Any] = {}
    text = ""
    with tempfile.TemporaryDirectory(prefix="swarm-status-bench-") as tmp:
        scratch = Path(tmp)
        env = clean_env(socket_name, scratch / "pycache")
        try:
            results, text = run(args, scratch, env, started)
            figures = summary(results, _machine())
        except BenchError as exc:
            failure = str(exc)
        finally:
            left = started.stop()
            stop_private_server(socket_name)
        if left:
            failure = (failure + "; " if failure else "") + f"processes still running after the stop: {left}"
        if started.swarm_id:
            # Anything else carrying this run's own SWARM_ID (a worker the monitor restarted) is ours too.
            survivors = procs.processes_with_env("SWARM_ID", started.swarm_id)
            if survivors:
                procs.stop_processes(survivors, grace=2.0)
                failure = (failure + "; " if failure else "") + f"processes of this run left: {survivors}"
    if failure:
        print(f"benchmark FAILED: {failure}", file=sys.stderr)
        return 1
    if text:
        print(text, file=sys.stderr)
    emit(result(figures), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
