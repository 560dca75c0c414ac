"""Launch and teardown of swarm against the bare git + tmux commands, plus what an idle worker costs.

Run: ``.venv/bin/python benchmarks/launch_bench.py [--agents 10] [--files 2000] [--repeat 3] [--json]``

Every repetition builds a fresh throwaway repository (``--files`` small files in nested folders, one commit,
and a ``specs/`` backlog for the epic ``BENCH``) and copies it, so both sides start from the same layout:

* **swarm**: the real CLI as a subprocess. ``swarm launch BENCH --agents N --command "sleep 30"`` is timed
  until it returns (worktrees exist, sessions started). The time until every worker reports ``working`` or
  ``idle`` is reported on its own line. Then the workers' pids and states are taken from
  ``swarm status --json`` and each worker process alone (not the ``sleep`` below it) is measured: RSS, and
  CPU percent over 3 s, all workers in the same window. Then ``swarm teardown --now --grace 5`` is timed.
* **raw**: what a shell script would do for the same agents, one after the other: ``git worktree add -b``
  plus ``tmux new-session -d "sleep 600"`` per agent; then ``tmux kill-session`` each,
  ``git worktree remove --force`` each and one ``git worktree prune``.

The backlog gives about half of the agents a task (``sleep 30``) and leaves the others idle: the rest of the
tasks depend on those, so they are blocked until the first ones finish. Idle and working workers are thus
measured in the same run. swarm's launch validates, queues and starts one Python worker per agent, which the
raw side does not do, so the raw side is the floor, not a peer. Note that swarm creates the worktrees in
parallel while the raw side creates them one after the other, as the simplest script would.

Which side goes first alternates between repetitions. Python's bytecode cache is kept warm in a private
folder (an installed swarm has its ``.pyc`` files; ``PYTHONDONTWRITEBYTECODE`` would make every process
compile swarm's sources again). Dirty pages are flushed (``sync``) before each side starts. Timings on a
shared machine are noisy, creating thousands of files most of all (the cost of a checkout can vary tenfold
with what was deleted on the same file system shortly before): look at the per-run figures on stderr.

After each teardown nothing may survive: no tmux session on the benchmark's own socket, no
``.worktrees/*`` directory, no process carrying the swarm's ``SWARM_ID``. Otherwise the script exits with
status 1. It never judges speed by its exit status: benchmarks print figures. Everything runs on a tmux
server of its own (``tmux -L swarm-launch-bench-<pid>``), killed at the end; the user's server is untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from _common import (
    MB,
    WORKTREE_DIR,
    BenchError,
    clean_env,
    cpu_seconds,
    force_cleanup,
    init_repo,
    leftovers,
    machine,
    median,
    run_command,
    swarm_cli,
    warm_bytecode,
)
from _report import Block, Record, Result, Table, emit

from swarm.runtime import procs
from swarm.runtime.tmux import stop_private_server
from swarm.store import open_store

EPIC = "BENCH"
AGENT_COMMAND = "sleep 30"
RAW_COMMAND = "sleep 600"
TEARDOWN_GRACE = "5"

GOAL_LAUNCH_RATIO = 1.0
GOAL_TEARDOWN_RATIO = 1.0
GOAL_WORKER_RSS_MB = 40.0
GOAL_WORKER_CPU_PERCENT = 0.5

# Seconds the CPU of the workers is sampled over, and the pause before it: a worker that has just posted
# its state may still be finishing its first log line.
CPU_INTERVAL = 3.0
SETTLE_SECONDS = 1.0
# The agent command ends after 30 s; the worker then commits and claims the next task. A measurement that
# ends later than this after launch may include that work, so the run is refused rather than reported.
MEASURE_DEADLINE = 25.0
# Generous: ten Python workers starting on two cores take a few seconds; a minute means something is stuck.
START_TIMEOUT = 90.0
RUNNING_STATES = ("working", "idle")
FAILED_STATES = ("dead", "failed", "done", "stopped", "stalled")


@dataclass(frozen=True)
class WorkerSample:
    """One worker process, measured alone (its agent command excluded)."""

    agent: str
    state: str
    rss_mb: float
    cpu_percent: float
    tree_rss_mb: float


@dataclass
class Samples:
    """Every timing and worker figure of the run, across repetitions."""

    swarm_launch: list[float] = field(default_factory=list)
    swarm_teardown: list[float] = field(default_factory=list)
    swarm_ready: list[float] = field(default_factory=list)
    raw_launch: list[float] = field(default_factory=list)
    raw_teardown: list[float] = field(default_factory=list)
    workers: list[WorkerSample] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------------------------


def _timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, what: str) -> float:
    started = time.perf_counter()
    run_command(argv, cwd=cwd, env=env, what=what)
    return time.perf_counter() - started


# -- the repository ------------------------------------------------------------------------------------


def build_repo(root: Path, files: int, agents: int) -> None:
    """A repository with ``files`` small files (three folder levels), the BENCH backlog and one commit.

    The first ``ceil(agents / 2)`` specs are ready; as many more as there are agents depend on all of them,
    so the other agents stay idle (blocked tasks, none ready) until the first ones finish.
    """
    root.mkdir(parents=True)
    for n in range(files):
        path = root / "src" / f"pkg{n % 10}" / f"mod{n // 10 % 10}" / f"file{n:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""File {n}."""\n\nVALUE = {n}\n', encoding="utf-8")
    specs = root / "specs"
    specs.mkdir()
    working = max(1, math.ceil(agents / 2))
    ready_ids = [f"W{n:03d}" for n in range(1, working + 1)]
    for spec_id in ready_ids:
        (specs / f"{spec_id}.md").write_text(
            f"---\nid: {spec_id}\nepic: {EPIC}\ntitle: Work {spec_id}\n---\nKeep the agent busy.\n", encoding="utf-8"
        )
    for n in range(1, agents + 1):
        spec_id = f"B{n:03d}"
        (specs / f"{spec_id}.md").write_text(
            f"---\nid: {spec_id}\nepic: {EPIC}\ntitle: Later {spec_id}\ndepends_on: [{', '.join(ready_ids)}]\n---\n"
            "Blocked until the first tasks are done.\n",
            encoding="utf-8",
        )
    (root / "README.md").write_text("# launch benchmark\n", encoding="utf-8")
    init_repo(root, "launch-bench")


# -- swarm -------------------------------------------------------------------------------------------------


def _status(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        run_command(swarm_cli("status", "--json"), cwd=repo, env=env, what="swarm status")
    )
    return data


def _wait_ready(repo: Path, agents: int) -> float:
    """Seconds until every worker reports ``working`` or ``idle``, read from swarm's database every 50 ms.

    Read in-process through swarm's store rather than by running ``swarm status`` in a loop: a CLI process
    per poll would take CPU from the workers that are starting and blur the time measured.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + START_TIMEOUT
    with open_store(f"sqlite:///{repo / '.swarm' / 'swarm.db'}") as store:
        swarm = store.current_swarm()
        if swarm is None:
            raise BenchError("swarm launch returned but recorded no swarm")
        while True:
            found = store.list_agents(swarm.id)
            broken = [a for a in found if a.state in FAILED_STATES or (a.pid is not None and not procs.alive(a.pid))]
            if broken:
                raise BenchError(
                    "worker(s) stopped before they were measured: "
                    + "; ".join(f"{a.id} {a.state} ({a.last_output or 'no output'})" for a in broken)
                )
            if len(found) == agents and all(a.state in RUNNING_STATES and a.pid for a in found):
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                states = ", ".join(f"{a.id}={a.state}" for a in found) or "no agent registered"
                raise BenchError(f"workers not running {START_TIMEOUT:.0f}s after launch: {states}")
            time.sleep(0.05)


def _running_snapshot(repo: Path, env: dict[str, str], agents: int) -> dict[str, Any]:
    """``swarm status --json`` once every worker is running: the pids and states to measure."""
    for _ in range(20):
        snap = _status(repo, env)
        found = snap.get("agents", [])
        if len(found) == agents and all(a["state"] in RUNNING_STATES and a["pid"] for a in found):
            return snap
        time.sleep(0.2)  # a worker between two states (idle -> working); the next read settles it
    states = ", ".join(f"{a['id']}={a['state']}" for a in snap.get("agents", []))
    raise BenchError(f"swarm status does not show every worker running: {states}")


def measure_workers(snap: dict[str, Any]) -> list[WorkerSample]:
    """RSS of each worker process alone, and its CPU over one window shared by all workers.

    ``procs.usage`` and ``procs.cpu_percent`` count the agent command (``sleep``) with the worker and block
    for the window one process at a time, so the worker itself is read here directly, all in one window.
    """
    handles: list[tuple[dict[str, Any], psutil.Process]] = []
    for agent in snap["agents"]:
        try:
            proc = psutil.Process(int(agent["pid"]))
            cmdline = proc.cmdline()
        except psutil.Error as exc:
            raise BenchError(f"{agent['id']}: worker pid {agent['pid']} is gone: {exc}") from exc
        if "worker" not in cmdline and "swarm.runtime.worker" not in cmdline:
            raise BenchError(f"{agent['id']}: pid {agent['pid']} is not a swarm worker: {' '.join(cmdline)}")
        handles.append((agent, proc))
    time.sleep(SETTLE_SECONDS)
    try:
        before = [(cpu_seconds(proc), time.perf_counter()) for _, proc in handles]
        time.sleep(CPU_INTERVAL)  # the measurement window itself
        after = [(cpu_seconds(proc), time.perf_counter()) for _, proc in handles]
        rss = [proc.memory_info().rss for _, proc in handles]
    except psutil.Error as exc:
        raise BenchError(f"a worker ended while it was measured: {exc}") from exc
    samples: list[WorkerSample] = []
    for (agent, proc), (cpu0, t0), (cpu1, t1), worker_rss in zip(handles, before, after, rss, strict=True):
        tree = procs.usage(proc.pid)  # worker plus its agent command, for information
        samples.append(
            WorkerSample(
                agent=str(agent["id"]),
                state=str(agent["state"]),
                rss_mb=worker_rss / MB,
                cpu_percent=100.0 * (cpu1 - cpu0) / (t1 - t0),
                tree_rss_mb=tree.rss_bytes / MB,
            )
        )
    return samples


def run_swarm(repo: Path, socket_name: str, env: dict[str, str], agents: int, samples: Samples) -> None:
    """Launch, wait for the workers, measure them, tear down, verify; the figures go into ``samples``."""
    swarm_id: str | None = None
    clean = False
    try:
        launch_s = _timed(
            swarm_cli("launch", EPIC, "--agents", str(agents), "--command", AGENT_COMMAND),
            cwd=repo,
            env=env,
            what="swarm launch",
        )
        launched = time.monotonic()
        ready_s = _wait_ready(repo, agents)
        snap = _running_snapshot(repo, env, agents)
        swarm_id = str(snap["swarm"]["id"])
        workers = measure_workers(snap)
        if time.monotonic() - launched > MEASURE_DEADLINE:
            raise BenchError(
                f"the workers were measured more than {MEASURE_DEADLINE:.0f}s after launch, when the first "
                f"'{AGENT_COMMAND}' may already have ended; the machine is too busy for this benchmark"
            )
        teardown_s = _timed(
            swarm_cli("teardown", "--now", "--grace", TEARDOWN_GRACE), cwd=repo, env=env, what="swarm teardown"
        )
        _verify_gone(repo, socket_name, swarm_id, "swarm")
        clean = True
    finally:
        if not clean:
            force_cleanup(repo, env, swarm_id, grace=1)
    samples.swarm_launch.append(launch_s)
    samples.swarm_ready.append(ready_s)
    samples.swarm_teardown.append(teardown_s)
    samples.workers.extend(workers)


def _verify_gone(repo: Path, socket_name: str, swarm_id: str | None, side: str) -> None:
    problems = leftovers(repo, socket_name, swarm_id)
    if problems:
        raise BenchError(f"{side} teardown left things behind: " + "; ".join(problems))


# -- raw git + tmux -------------------------------------------------------------------------------------


def run_raw(repo: Path, socket_name: str, agents: int) -> tuple[float, float]:
    """Sequential ``git worktree add`` + ``tmux new-session``, then the reverse. (launch s, teardown s)."""
    names = [f"agent-{n}" for n in range(1, agents + 1)]
    started = time.perf_counter()
    try:
        for name in names:
            run_command(
                ["git", "worktree", "add", "-q", "-b", f"bench/{name}", f"{WORKTREE_DIR}/{name}", "HEAD"],
                cwd=repo,
                what="git worktree add",
            )
            run_command(
                ["tmux", "-L", socket_name, "new-session", "-d", "-s", f"raw-{name}", RAW_COMMAND],
                cwd=repo / WORKTREE_DIR / name,
                what="tmux new-session",
            )
        launch_s = time.perf_counter() - started
        started = time.perf_counter()
        for name in names:
            run_command(
                ["tmux", "-L", socket_name, "kill-session", "-t", f"=raw-{name}"], cwd=repo, what="tmux kill-session"
            )
        for name in names:
            run_command(
                ["git", "worktree", "remove", "--force", f"{WORKTREE_DIR}/{name}"], cwd=repo, what="git worktree rm"
            )
        run_command(["git", "worktree", "prune"], cwd=repo, what="git worktree prune")
        teardown_s = time.perf_counter() - started
    except BenchError:
        for name in names:
            subprocess.run(
                ["tmux", "-L", socket_name, "kill-session", "-t", f"=raw-{name}"], capture_output=True, check=False
            )
        raise
    # The raw side cleans its worktree folder only if git removed every worktree; the empty parent may stay.
    with contextlib.suppress(OSError):
        (repo / WORKTREE_DIR).rmdir()
    _verify_gone(repo, socket_name, None, "raw")
    return launch_s, teardown_s


# -- one full run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What every repetition shares."""

    files: int
    agents: int
    socket_name: str
    env: dict[str, str]


def run_once(setup: Setup, index: int, samples: Samples) -> None:
    """One repetition: a fresh repository, copied for each side. The side that goes first alternates, so
    that whatever the previous side left to the disk and the page cache does not always hit the same one."""
    with tempfile.TemporaryDirectory(prefix="swarm-launch-bench-") as tmp:
        template = Path(tmp) / "template"
        build_repo(template, setup.files, setup.agents)
        swarm_repo = Path(tmp) / "swarm-repo"
        raw_repo = Path(tmp) / "raw-repo"
        shutil.copytree(template, swarm_repo, symlinks=True)
        shutil.copytree(template, raw_repo, symlinks=True)
        shutil.rmtree(template)

        def swarm_side() -> None:
            os.sync()  # what the copies (or the other side) left dirty is written before the clock starts
            run_swarm(swarm_repo, setup.socket_name, setup.env, setup.agents, samples)

        def raw_side() -> None:
            os.sync()
            launch_s, teardown_s = run_raw(raw_repo, setup.socket_name, setup.agents)
            samples.raw_launch.append(launch_s)
            samples.raw_teardown.append(teardown_s)

        for side in (swarm_side, raw_side) if index % 2 == 0 else (raw_side, swarm_side):
            side()


# -- the result ------------------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": median(values), "max": max(values) if values else math.nan}


def summary(samples: Samples) -> dict[str, Any]:
    """Medians, ratios and goals; the one source for both the table and the JSON."""
    phases: dict[str, dict[str, Any]] = {}
    for phase, swarm_values, raw_values, target in (
        ("launch", samples.swarm_launch, samples.raw_launch, GOAL_LAUNCH_RATIO),
        ("teardown", samples.swarm_teardown, samples.raw_teardown, GOAL_TEARDOWN_RATIO),
    ):
        swarm_s, raw_s = median(swarm_values), median(raw_values)
        ratio = swarm_s / raw_s if raw_s > 0 else math.inf
        phases[phase] = {
            "swarm_s": round(swarm_s, 3),
            "raw_s": round(raw_s, 3),
            "ratio": round(ratio, 2),
            "swarm_samples": [round(v, 3) for v in swarm_values],
            "raw_samples": [round(v, 3) for v in raw_values],
            "goal": f"<= {target}x raw",
            "met": ratio <= target,
        }
    workers: dict[str, Any] = {}
    for group in ("all", *RUNNING_STATES):
        chosen = [w for w in samples.workers if group in ("all", w.state)]
        workers[group] = {
            "count": len(chosen),
            "rss_mb": {k: round(v, 1) for k, v in _stats([w.rss_mb for w in chosen]).items()},
            "cpu_percent": {k: round(v, 2) for k, v in _stats([w.cpu_percent for w in chosen]).items()},
            "tree_rss_mb": {k: round(v, 1) for k, v in _stats([w.tree_rss_mb for w in chosen]).items()},
        }
    every = workers["all"]
    goals = {
        phase: {"text": row["goal"], "value": row["ratio"], "unit": "x", "met": row["met"]}
        for phase, row in phases.items()
    }
    goals["worker_rss"] = {
        "text": f"every worker < {GOAL_WORKER_RSS_MB:.0f} MB RSS",
        "value": every["rss_mb"]["max"],
        "unit": " MB",
        "met": every["rss_mb"]["max"] < GOAL_WORKER_RSS_MB,
    }
    goals["worker_cpu"] = {
        "text": f"every worker < {GOAL_WORKER_CPU_PERCENT}% CPU",
        "value": every["cpu_percent"]["max"],
        "unit": "%",
        "met": every["cpu_percent"]["max"] < GOAL_WORKER_CPU_PERCENT,
    }
    ready = {
        "text": "seconds from launch returning until every worker reports working or idle",
        "swarm_s": round(median(samples.swarm_ready), 3),
        "samples": [round(v, 3) for v in samples.swarm_ready],
    }
    return {"phases": phases, "workers_ready": ready, "workers": workers, "goals": goals}


def _limits(figures: dict[str, Any]) -> dict[str, str]:
    """What limits each goal, should it be missed."""
    cpus = os.cpu_count() or 1
    every = figures["workers"]["all"]
    return {
        "launch": "swarm launch reads and validates the backlog, queues it in SQLite, creates the worktrees and "
        "starts one tmux session per agent, each running a Python worker; the raw side only runs git worktree add "
        f"and tmux new-session. The Python start-ups compete for {cpus} CPUs (workers running "
        f"{figures['workers_ready']['swarm_s']:.2f} s after launch returned).",
        "teardown": "swarm teardown --now asks every worker to stop and waits for it (up to the grace), checks each "
        "worktree for uncommitted work before removing it and records the agents' end in the database; the raw "
        "side only kills sessions and removes worktrees.",
        "worker_rss": f"the largest worker held {every['rss_mb']['max']:.1f} MB: a CPython interpreter plus the "
        "modules a worker imports (store, models with pydantic, git, psutil).",
        "worker_cpu": f"the busiest worker used {every['cpu_percent']['max']:.2f}% of a core: its stop check and "
        "lease heartbeat wake it several times a second; on a loaded machine each wake-up costs more (cache "
        "misses, scheduling).",
    }


def result(figures: dict[str, Any], args: argparse.Namespace) -> Result:
    """The figures: launch and teardown against raw git + tmux, the time until the workers run, their cost."""
    goals, limits, every = figures["goals"], _limits(figures), figures["workers"]["all"]
    records = [
        Record(
            f"{phase} of {args.agents} agents, s",
            p["swarm_s"],
            digits=2,
            baseline=p["raw_s"],
            baseline_of="git worktree + tmux",
            goal=goals[phase]["text"],
            met=goals[phase]["met"],
            limit=limits[phase],
        )
        for phase, p in figures["phases"].items()
    ]
    records += [
        Record("workers running after launch returned, s", figures["workers_ready"]["swarm_s"], digits=2),
        Record("worker RSS, max over workers", every["rss_mb"]["max"], " MB", 1, **_goal(goals, limits, "worker_rss")),
        Record(
            "worker CPU, max over workers", every["cpu_percent"]["max"], "%", 2, **_goal(goals, limits, "worker_cpu")
        ),
    ]
    phases = Table(
        ["phase", "swarm s", "raw s", "ratio", "swarm runs", "raw runs"],
        [
            [k, p["swarm_s"], p["raw_s"], p["ratio"], p["swarm_samples"], p["raw_samples"]]
            for k, p in figures["phases"].items()
        ],
        digits=[0, 2, 2, 2, 2, 2],
        units=["", "", "", "x"],
    )
    workers = Table(
        ["workers", "count", "RSS MB median", "RSS MB max", "CPU % median", "CPU % max", "with agent MB"],
        [
            [
                group,
                w["count"],
                w["rss_mb"]["median"],
                w["rss_mb"]["max"],
                w["cpu_percent"]["median"],
                w["cpu_percent"]["max"],
                w["tree_rss_mb"]["median"],
            ]
            for group, w in figures["workers"].items()
            if w["count"]
        ],
        digits=[0, 0, 1, 1, 2, 2, 1],
    )
    section: list[Block] = [
        f"{args.agents} agents on a repository of {args.files} files, median of {args.repeat} runs. swarm: "
        f'`swarm launch --command "{AGENT_COMMAND}"` until it returns, `swarm teardown --now --grace '
        f"{TEARDOWN_GRACE}`. raw: `git worktree add` + `tmux new-session` per agent one after the other, then "
        "`kill-session`, `git worktree remove`, `git worktree prune`; Python's bytecode cache warm.",
        phases,
        f"Each worker process alone (not its agent command), RSS and CPU over a {CPU_INTERVAL:g} s window:",
        workers,
    ]
    params = {"agents": args.agents, "files": args.files, "repeat": args.repeat}
    return Result("launch", "Launch and teardown (launch_bench.py)", machine(tools=True), params, records, section)


def _goal(goals: dict[str, Any], limits: dict[str, str], key: str) -> dict[str, Any]:
    return {"goal": goals[key]["text"], "met": goals[key]["met"], "limit": limits[key]}


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a step failed or something survived teardown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=10, metavar="N", help="agents per launch (default 10)")
    parser.add_argument("--files", type=int, default=2000, metavar="N", help="files in the repository (default 2000)")
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="R", help="runs per side; medians reported (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.files < 0 or args.repeat < 1:
        parser.error("--agents and --repeat must be positive, --files not negative")
    for tool in ("git", "tmux"):
        if shutil.which(tool) is None:
            print(f"benchmark needs {tool} on PATH", file=sys.stderr)
            return 1
    socket_name = f"swarm-launch-bench-{os.getpid()}"
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="swarm-launch-bench-pyc-") as pycache:
        setup = Setup(args.files, args.agents, socket_name, clean_env(socket_name, Path(pycache)))
        try:
            warm_bytecode(setup.env, ("swarm.cli.main", "swarm.runtime.worker", "swarm.launcher", "swarm.status"))
            for n in range(args.repeat):
                run_once(setup, n, samples)
                if not args.json:
                    print(
                        f"  run {n + 1}: swarm launch {samples.swarm_launch[-1]:.2f}s "
                        f"(workers running {samples.swarm_ready[-1]:.2f}s later), "
                        f"teardown {samples.swarm_teardown[-1]:.2f}s | raw launch {samples.raw_launch[-1]:.2f}s, "
                        f"teardown {samples.raw_teardown[-1]:.2f}s",
                        file=sys.stderr,
                        flush=True,
                    )
        except BenchError as exc:
            print(f"benchmark FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            stop_private_server(socket_name)
    emit(result(summary(samples), args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
