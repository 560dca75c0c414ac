"""Scale: many cheap scripted agents work a big backlog to the end through the real CLI; what swarm's own
processes cost in memory and CPU, and where the time per task goes.

Run: ``.venv/bin/python benchmarks/scale_bench.py [--agents 100] [--tasks 10000] [--json]``
(a quick run: ``--agents 10 --tasks 300``; ``--timeout S`` bounds the run, ``--profile-reps 0`` skips the
step profile)

One throwaway repository (temporary folder) holds ``--files`` small files (default 100) in one commit and a
backlog of ``--tasks`` specs in the epic ``SCALE``; each spec depends on 0-2 specs chosen at random among the
50 before it (seeded), so the graph is wide, and about two tasks in three merge dependency commits made by
other agents. The specs are not committed (``.git/info/exclude``): 100 worktrees each checking out 10,000
spec files would measure the file system (a million files; about 1 ms of system time per file on a small
VM), which ``launch_bench.py --files`` covers; here they are only the backlog launch reads. Then
the real CLI: ``swarm launch SCALE --agents N --command true`` (the cheapest agent: it exits 0 at once, and
the worker still merges the dependencies and commits every task). The script follows the run to the end,
reading the SQLite database read-only, and every 5 s samples swarm's own processes, found by their
environment (``SWARM_ID=<swarm id>``, ``procs.processes_with_env``): the workers, the monitor and the git
commands they run. Agent commands (their environment holds ``SWARM_TASK_ID``) are not swarm's and are left
out. Once the last task is done, the workers and the monitor must exit on their own; then ``swarm teardown``
is timed, and nothing may be left: no process carrying the swarm's id, no session on the benchmark's tmux
server, no worktree.

How the figures are made:

* **memory**: RSS per process (a worker's figure is its peak over the samples; medians and maxima are over
  workers), and the total of swarm's processes at one sample, peak over the samples. RSS counts the shared
  pages of the Python interpreter in every process, so the total PSS (proportional set size, which shares
  them out) is given beside it.
* **CPU**: exact, not sampled. The script makes itself the child subreaper of its descendants, so the tmux
  server that ``swarm launch`` starts (it daemonizes) and any git that detaches (``git gc --auto``) are
  adopted and reaped here; ``wait4`` then returns their CPU time, which holds that of every process they
  reaped in turn: the workers, the monitor, git, the agent commands. While they run, their own CPU plus what
  they reaped so far is read from ``/proc``. Swarm's CPU is all that minus the tmux server's own; the agent
  commands' share is estimated (``/bin/sh -c true`` timed here, times the number of runs) and taken out.
  In steady state (launch returned, every worker running, from 10% to 90% of the tasks done), the workers'
  own Python CPU and their children's (git and the agent) are split per task from the samples, apart for
  the intervals where tasks were ready to claim and those where none was (idle workers waiting on
  dependencies).
* **where the time per task goes**: in the run, from the event log (claim to done per task, done to the
  next claim per agent); and, after the teardown, one step at a time on the finished repository through
  swarm's own code (``Worktree.has_changes``, ``merge``, ``commit_all``, ``update_commit_graph``, the agent command,
  and the store's claim, complete and agent updates on a copy of the database), with a worktree at the
  start of the history and one at its end (the task's commit, and a merge for most tasks: the history grows
  by about 1.4 commits per task). Python start-up is timed too; a worker pays it once, not per task.
* **teardown**: timed; once a second meanwhile, which of the swarm's processes are still running.

The run is CPU-bound on a small machine; the machine is shared, so the load of other processes during the
run is printed. The script exits with status 1 if the run does not finish (a task dead, no task done for
5 minutes, or ``--timeout`` passed), if the workers do not exit on their own, or if anything survives
teardown; never because of speed: benchmarks print figures. Everything runs on a tmux server of its own
(``tmux -L swarm-scale-bench-<pid>``), killed at the end; the user's server is untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import itertools
import math
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psutil
from _common import (
    MB,
    BenchError,
    clean_env,
    force_cleanup,
    init_repo,
    leftovers,
    load_average,
    machine,
    median,
    percentile,
    run_command,
    swarm_cli,
    warm_bytecode,
)
from _report import Block, Cell, Record, Result, Table, emit

from swarm.agents import build_command, load_template
from swarm.models import Spec
from swarm.runtime import procs
from swarm.runtime.git import Worktree, open_repo
from swarm.runtime.tmux import stop_private_server
from swarm.runtime.worker import COMMIT_GRAPH_EVERY
from swarm.store import open_store

EPIC = "SCALE"
AGENT_COMMAND = "true"
DEP_WINDOW = 50
MAX_DEPS = 2
BRANCH_PREFIX = "swarm"  # swarm.branch_prefix's default: agent branches are swarm/SCALE/agent-N
COMMIT_AUTHOR = "swarm <swarm@localhost>"  # swarm.commit_author's default

SAMPLE_SECONDS = 5.0
# Once the last task is done the workers and the monitor exit on their own; sampled this often meanwhile.
END_SAMPLE_SECONDS = 1.0
EXIT_WAIT_SECONDS = 90.0
# No task done for this long means the run is stuck, whatever --timeout says.
STALL_SECONDS = 300.0
COMMAND_TIMEOUT = 1800.0  # launch queues the whole backlog and starts every session; generous
AGENT_CALIBRATION_RUNS = 200

GOAL_WORKER_RSS_MB = 40.0  # as in launch_bench.py
GOAL_MONITOR_CPU_PERCENT = 2.0  # of one core, as in status_bench.py
PR_SET_CHILD_SUBREAPER = 36

T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------------------


def _children_cpu() -> float:
    """CPU seconds of every child this process has reaped so far (and of their reaped descendants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tmux_server_pid(socket_name: str) -> int | None:
    done = subprocess.run(
        ["tmux", "-L", socket_name, "display-message", "-p", "#{pid}"], capture_output=True, text=True, check=False
    )
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else None


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, every process) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _r(value: float, digits: int = 1) -> float:
    return round(value, digits) if math.isfinite(value) else math.nan


# -- the repository ------------------------------------------------------------------------------------


def build_repo(root: Path, tasks: int, files: int, seed: int) -> dict[str, list[str]]:
    """A repository of ``files`` small files in one commit, and the SCALE backlog beside it (ignored through
    ``.git/info/exclude``, so not in the agents' worktrees); returns the dependency graph."""
    rng = random.Random(seed)
    width = max(5, len(str(tasks)))
    ids = [f"S{n:0{width}d}" for n in range(1, tasks + 1)]
    specs = root / "specs"
    specs.mkdir(parents=True)
    graph: dict[str, list[str]] = {}
    for index, spec_id in enumerate(ids):
        window = ids[max(0, index - DEP_WINDOW) : index]
        deps = sorted(rng.sample(window, rng.randint(0, min(MAX_DEPS, len(window)))))
        graph[spec_id] = deps
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        (specs / f"{spec_id}.md").write_text(
            # The agent (`true`) changes nothing on purpose: it measures swarm, not an agent (docs/contract.md §3).
            f"---\nid: {spec_id}\nepic: {EPIC}\ntitle: Task {spec_id}\n{dep_line}allow_empty: true\n---\n"
            f"Scale benchmark task {spec_id}: nothing to change.\n",
            encoding="utf-8",
        )
    for n in range(files):
        path = root / "src" / f"pkg{n % 10}" / f"file{n:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""File {n}."""\n\nVALUE = {n}\n', encoding="utf-8")
    (root / "README.md").write_text("# scale benchmark\n", encoding="utf-8")
    init_repo(root, "scale-bench", exclude=["/specs/"])
    return graph


# -- swarm's processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One live process carrying the swarm's id."""

    pid: int
    ppid: int
    created: float
    kind: str  # worker, monitor, git, agent, other
    rss: int
    pss: int
    cpu_self: float
    cpu_children: float
    command: str


def _kind(environ: dict[str, str], cmdline: list[str], name: str) -> str:
    if "SWARM_TASK_ID" in environ:
        return "agent"  # the agent command (and anything below it): not swarm's own
    joined = " ".join(cmdline)
    if "swarm.runtime.worker" in joined or " worker --run-file" in joined:
        return "worker"
    if "swarm.runtime.monitor" in joined or joined.endswith(" monitor"):
        return "monitor"
    if name.startswith("git") or (cmdline and Path(cmdline[0]).name == "git"):
        return "git"
    return "other"


def swarm_processes(swarm_id: str) -> list[Proc]:
    """Every live process whose environment holds ``SWARM_ID=<swarm_id>``, classified and measured."""
    found: list[Proc] = []
    for pid in procs.processes_with_env("SWARM_ID", swarm_id):
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                environ = proc.environ()
                cmdline = proc.cmdline()
                name = proc.name()
                ppid = proc.ppid()
                created = proc.create_time()
                times = proc.cpu_times()
                memory = proc.memory_full_info()
        except (psutil.Error, OSError):
            continue  # ended meanwhile (git commands live for milliseconds)
        found.append(
            Proc(
                pid=pid,
                ppid=ppid,
                created=created,
                kind=_kind(environ, cmdline, name),
                rss=memory.rss,
                pss=memory.pss,
                cpu_self=times.user + times.system,
                cpu_children=times.children_user + times.children_system,
                command=" ".join(cmdline)[:160],
            )
        )
    return found


@dataclass
class Track:
    """One process over the samples it was seen in."""

    kind: str
    detached: bool
    command: str
    first_t: float
    first_self: float
    first_total: float
    last_t: float = 0.0
    cpu_self: float = 0.0
    cpu_children: float = 0.0
    peak_rss: int = 0
    samples: int = 0


@dataclass(frozen=True)
class Sample:
    """The swarm at one moment; ``t`` in seconds since launch began."""

    t: float
    done: int
    claimed: int
    ready: int
    blocked: int
    dead: int
    workers: int
    monitors: int
    git: int
    agents: int
    other: int
    rss_mb: float
    pss_mb: float
    workers_rss_mb: float
    monitor_rss_mb: float
    cpu_s: float  # cumulative CPU of swarm's processes, agent commands included
    workers_self_s: float  # cumulative own CPU of the live workers
    workers_children_s: float  # cumulative CPU of what the live workers reaped (git, agent commands)
    monitor_s: float  # cumulative CPU of the live monitor, its children included
    machine_busy_s: float  # cumulative busy CPU of the whole machine since the run began
    tmux_rss_mb: float
    tmux_cpu_s: float  # the tmux server's own CPU (not its children)


class Launch:
    """``swarm launch`` running in the background: the run is sampled while it starts the agents."""

    def __init__(self, argv: list[str], repo: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.cpu0 = _children_cpu()
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.seconds = math.nan
        self.cpu = math.nan

    def check(self) -> bool:
        """Whether launch has returned (BenchError if it failed); notes its duration and CPU when it does."""
        if self.proc.poll() is None:
            return False
        if math.isnan(self.seconds):
            self.seconds = time.monotonic() - self.started
            self.cpu = _children_cpu() - self.cpu0  # it is reaped now; its reaped children count too
            if self.proc.returncode != 0:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise BenchError(f"swarm launch: exit {self.proc.returncode}: {' | '.join(tail) or 'no output'}")
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def become_subreaper() -> None:
    """Make this process the child subreaper of everything below it (Linux ``PR_SET_CHILD_SUBREAPER``).

    The tmux server that ``swarm launch`` starts daemonizes, and ``git gc --auto`` detaches: without this they
    would be adopted by init, and their CPU time (the server's includes every worker's once it has reaped them)
    would be lost. Adopted here, they are reaped with ``wait4``, which returns exactly that CPU time.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if not sys.platform.startswith("linux") or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError("this benchmark needs Linux (prctl PR_SET_CHILD_SUBREAPER) to account for CPU exactly")


def reap_adopted(skip: set[int]) -> float:
    """Reap the children of this process that have exited (but not ``skip``: subprocess waits for those);
    the CPU seconds they and everything they reaped used."""
    cpu = 0.0
    for child in psutil.Process().children():
        try:
            if child.pid in skip or child.status() != psutil.STATUS_ZOMBIE:
                continue
            pid, _, usage = os.wait4(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
        if pid:
            cpu += usage.ru_utime + usage.ru_stime
    return cpu


class Follower:
    """Follows one swarm: task counts from the database (read-only), processes from the process table.

    CPU of everything below this process (the launch command excepted) is exact: processes it adopted and
    reaped (the tmux server, detached git) by their ``wait4`` figures, which hold everything they reaped in
    turn; live ones by their own CPU plus what they reaped so far.
    """

    def __init__(self, db: Path, swarm_id: str, socket_name: str, launch: Launch, machine0: float) -> None:
        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        self.swarm_id = swarm_id
        self.socket_name = socket_name
        self.launch = launch
        self.started = launch.started
        self.tmux_pid: int | None = None
        self.tmux_self = 0.0  # the tmux server's own CPU, as last seen
        self.tmux_rss = 0
        self.reaped_cpu = 0.0  # CPU of adopted processes reaped here
        self.machine0 = machine0
        self.tracks: dict[tuple[int, float], Track] = {}
        self.samples: list[Sample] = []
        self.own_cpu = 0.0  # CPU this script spent sampling

    def close(self) -> None:
        self.conn.close()

    def counts(self) -> Counter[str]:
        rows = self.conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        return Counter({str(state): int(n) for state, n in rows})

    def _launch_tree(self) -> set[int]:
        pids = {self.launch.proc.pid}
        with contextlib.suppress(psutil.Error):
            pids |= {c.pid for c in psutil.Process(self.launch.proc.pid).children(recursive=True)}
        return pids

    def reap(self) -> None:
        """Reap adopted children that have exited; add their CPU (and what they reaped)."""
        self.reaped_cpu += reap_adopted(skip={self.launch.proc.pid})

    def tree_cpu(self) -> float:
        """CPU of everything below this process (launch excepted) so far: reaped plus live."""
        skip = self._launch_tree()
        live = 0.0
        for proc in psutil.Process().children(recursive=True):
            if proc.pid in skip:
                continue
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                live += times.user + times.system + times.children_user + times.children_system
        return self.reaped_cpu + live

    def _tmux(self) -> None:
        if self.tmux_pid is None:
            # launch starts the server with the first session; it is found once it exists
            self.tmux_pid = _tmux_server_pid(self.socket_name)
        if self.tmux_pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.tmux_pid)
                with proc.oneshot():
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        times = proc.cpu_times()
                        self.tmux_self = times.user + times.system
                        self.tmux_rss = proc.memory_info().rss

    def sample(self) -> Sample:
        cpu0 = _own_cpu()
        self._tmux()
        self.reap()
        # the clock, the machine and the CPU of the tree are read together; the process table takes a while
        t = time.monotonic() - self.started
        machine_busy = _machine_busy() - self.machine0
        cpu = self.tree_cpu() - self.tmux_self
        counts = self.counts()
        live = swarm_processes(self.swarm_id)
        me = os.getpid()
        for proc in live:
            key = (proc.pid, proc.created)
            track = self.tracks.get(key)
            if track is None:
                track = Track(
                    kind=proc.kind,
                    # adopted here: it left its parent (git gc --auto detaches)
                    detached=proc.ppid == me,
                    command=proc.command,
                    first_t=t,
                    first_self=proc.cpu_self,
                    first_total=proc.cpu_self + proc.cpu_children,
                )
                self.tracks[key] = track
            track.last_t = t
            track.cpu_self = proc.cpu_self
            track.cpu_children = proc.cpu_children
            track.peak_rss = max(track.peak_rss, proc.rss)
            track.samples += 1
        kinds = Counter(p.kind for p in live)
        own = [p for p in live if p.kind != "agent"]
        sample = Sample(
            t=t,
            done=counts["done"],
            claimed=counts["claimed"],
            ready=counts["ready"],
            blocked=counts["blocked"],
            dead=counts["dead"] + counts["cancelled"],
            workers=kinds["worker"],
            monitors=kinds["monitor"],
            git=kinds["git"],
            agents=kinds["agent"],
            other=kinds["other"],
            rss_mb=sum(p.rss for p in own) / MB,
            pss_mb=sum(p.pss for p in own) / MB,
            workers_rss_mb=sum(p.rss for p in own if p.kind == "worker") / MB,
            monitor_rss_mb=sum(p.rss for p in own if p.kind == "monitor") / MB,
            cpu_s=cpu,
            workers_self_s=sum(p.cpu_self for p in own if p.kind == "worker"),
            workers_children_s=sum(p.cpu_children for p in own if p.kind == "worker"),
            monitor_s=sum(p.cpu_self + p.cpu_children for p in own if p.kind == "monitor"),
            machine_busy_s=machine_busy,
            tmux_rss_mb=self.tmux_rss / MB,
            tmux_cpu_s=self.tmux_self,
        )
        self.samples.append(sample)
        self.own_cpu += _own_cpu() - cpu0
        return sample


# -- the run ---------------------------------------------------------------------------------------------


@dataclass
class RunFigures:
    """What the run measured (phases in seconds since launch began)."""

    launch_s: float = math.nan
    launch_cpu_s: float = math.nan
    exited_s: float = math.nan
    teardown_s: float = math.nan
    teardown_cpu_s: float = math.nan
    teardown_saw: dict[str, int] = field(default_factory=dict)  # swarm's processes running during teardown
    finished: bool = False
    exited_on_their_own: bool = False
    problems: list[str] = field(default_factory=list)
    left_after_teardown: list[str] = field(default_factory=list)
    swarm_id: str = ""
    started_wall: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    observer_cpu_s: float = 0.0


def _swarm_id(db: Path) -> str | None:
    """The SCALE swarm's id once launch has queued it."""
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT id FROM swarms WHERE epic = ?", (EPIC,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # the schema is being created
    return str(row[0]) if row else None


def _wait(seconds: float, launch: Launch) -> None:
    """Sleep, noting the moment launch returns to within 0.1 s."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        launch.check()
        time.sleep(min(0.1, left))


def _progress(s: Sample, previous: Sample | None, total: int) -> str:
    rate = (s.done - previous.done) / (s.t - previous.t) if previous and s.t > previous.t else math.nan
    cpu = 100.0 * (s.cpu_s - previous.cpu_s) / (s.t - previous.t) if previous and s.t > previous.t else math.nan
    return (
        f"  {s.t:7.0f}s  done {s.done:>6}/{total} ({rate:5.1f}/s)  claimed {s.claimed:>4} ready {s.ready:>5}  "
        f"workers {s.workers:>3} git {s.git:>3}  swarm RSS {s.rss_mb:6.0f} MB (PSS {s.pss_mb:5.0f})  "
        f"swarm CPU {cpu:4.0f}% of a core"
    )


def follow(follower: Follower, launch: Launch, figures: RunFigures, total: int, timeout: float, progress: bool) -> None:
    """Sample until every task is done (or the run is stuck), then until the workers and the monitor exit."""
    last_done = -1
    last_change = time.monotonic()
    previous: Sample | None = None
    while True:
        tick = time.monotonic()
        s = follower.sample()
        if progress:
            print(_progress(s, previous, total), file=sys.stderr, flush=True)
        previous = s
        if s.done != last_done or not launch.check():  # a launch still starting agents counts as progress
            last_done, last_change = s.done, time.monotonic()
        if s.done == total and launch.check():
            figures.finished = True
            break
        if s.dead:
            figures.problems.append(f"{s.dead} task(s) dead or cancelled: the run cannot finish")
            break
        if time.monotonic() - last_change > STALL_SECONDS:
            figures.problems.append(f"no task done for {STALL_SECONDS:.0f}s ({s.done} of {total} done)")
            break
        if s.t > timeout:
            figures.problems.append(f"not finished after --timeout {timeout:.0f}s ({s.done} of {total} done)")
            break
        _wait(SAMPLE_SECONDS - (time.monotonic() - tick), launch)
    if not figures.finished:
        return
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while time.monotonic() < deadline:
        s = follower.sample()
        if s.workers == 0 and s.monitors == 0:
            figures.exited_on_their_own = True
            figures.exited_s = s.t
            break
        _wait(END_SAMPLE_SECONDS, launch)
    # The tmux server exits with its last session; once it is reaped, its figure holds every worker's.
    deadline = time.monotonic() + 10.0
    while figures.exited_on_their_own and _tmux_server_pid(follower.socket_name) is not None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    follower.sample()
    if not figures.exited_on_their_own:
        s = follower.samples[-1]
        figures.problems.append(
            f"{s.workers} worker(s) and {s.monitors} monitor(s) still running {EXIT_WAIT_SECONDS:.0f}s after the "
            "last task was done"
        )


def _verify_gone(repo: Path, socket_name: str, swarm_id: str) -> list[str]:
    """What survived the teardown; git must not list a linked worktree either."""
    problems = leftovers(repo, socket_name, swarm_id)
    listed = run_command(["git", "worktree", "list", "--porcelain"], cwd=repo, what="git worktree list")
    if listed.count("worktree ") > 1:
        problems.append(f"git still lists {listed.count('worktree ') - 1} linked worktree(s)")
    return problems


def teardown(repo: Path, env: dict[str, str], swarm_id: str, figures: RunFigures) -> list[str]:
    """``swarm teardown``, timed; meanwhile, once a second, which of the swarm's processes are running (a slow
    teardown is usually waiting for one). Returns its failure, if it failed."""
    log = repo.parent / "teardown.log"
    cpu0 = _children_cpu()
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(swarm_cli("teardown"), cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen: Counter[str] = Counter()
    try:
        while proc.poll() is None:
            if time.perf_counter() - started > COMMAND_TIMEOUT:
                proc.kill()
                proc.wait()
                return [f"swarm teardown: timed out after {COMMAND_TIMEOUT:.0f}s"]
            for pid in procs.processes_with_env("SWARM_ID", swarm_id):
                with contextlib.suppress(psutil.Error):
                    seen[" ".join(psutil.Process(pid).cmdline()[:3])[:60]] += 1
            time.sleep(1.0)
    finally:
        figures.teardown_s, figures.teardown_cpu_s = time.perf_counter() - started, _children_cpu() - cpu0
        figures.teardown_saw = dict(seen.most_common(5))
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return [f"swarm teardown: exit {proc.returncode}: {' | '.join(tail) or 'no output'}"]
    return []


def run_scale(
    repo: Path, socket_name: str, env: dict[str, str], agents: int, total: int, timeout: float, *, progress: bool
) -> RunFigures:
    """Launch, follow to the end (sampling from the moment the swarm exists), tear down, verify."""
    figures = RunFigures()
    db = repo / ".swarm" / "swarm.db"
    swarm_id: str | None = None
    clean = False
    machine0 = _machine_busy()
    figures.started_wall = time.time()
    launch = Launch(
        swarm_cli("launch", EPIC, "--agents", str(agents), "--command", AGENT_COMMAND),
        repo,
        env,
        repo.parent / "launch.log",
    )
    try:
        while (swarm_id := _swarm_id(db)) is None:
            if launch.check():
                raise BenchError("swarm launch returned but recorded no swarm")
            if time.monotonic() - launch.started > COMMAND_TIMEOUT:
                raise BenchError(f"swarm launch recorded no swarm within {COMMAND_TIMEOUT:.0f}s")
            time.sleep(0.1)
        figures.swarm_id = swarm_id
        follower = Follower(db, swarm_id, socket_name, launch, machine0)
        try:
            follow(follower, launch, figures, total, timeout, progress)
        finally:
            follower.close()
        figures.launch_s, figures.launch_cpu_s = launch.seconds, launch.cpu
        figures.samples = follower.samples
        figures.tracks = list(follower.tracks.values())
        figures.observer_cpu_s = follower.own_cpu
        if progress:
            print(f"  swarm launch had returned after {launch.seconds:.1f}s; tearing down", file=sys.stderr, flush=True)
        failed = teardown(repo, env, swarm_id, figures)
        figures.left_after_teardown = failed + _verify_gone(repo, socket_name, swarm_id)
        clean = not figures.left_after_teardown
    finally:
        launch.stop()
        if not clean:
            force_cleanup(repo, env, swarm_id, grace=5, timeout=600)
    return figures


# -- the event log ---------------------------------------------------------------------------------------


def analyse_events(db: Path, started_wall: float, agents: int) -> dict[str, Any]:
    """Per task claim -> done, per agent done -> next claim, attempts not ending done, throughput along the run."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT task_id, at, actor, from_state, to_state, reason FROM events ORDER BY seq"
        ).fetchall()
        with_deps = conn.execute("SELECT count(DISTINCT task_id), count(*) FROM deps").fetchone()
        n_tasks = int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
    finally:
        conn.close()
    claimed_at: dict[str, tuple[float, str]] = {}
    service: list[float] = []
    gaps: list[float] = []
    last_done: dict[str, float] = {}
    first_claim: dict[str, float] = {}
    done_times: list[float] = []
    failures: Counter[str] = Counter()
    claims = 0
    for task_id, at, actor, from_state, to_state, reason in rows:
        if from_state == "ready" and to_state == "claimed":
            claims += 1
            claimed_at[task_id] = (at, actor)
            first_claim.setdefault(actor, at)
            if actor in last_done:
                gaps.append(at - last_done.pop(actor))
        elif from_state == "claimed":
            if to_state == "done":
                done_times.append(at - started_wall)
                last_done[actor] = at
                if task_id in claimed_at:
                    service.append(at - claimed_at.pop(task_id)[0])
            else:
                failures[f"{to_state}: {str(reason)[:100]}"] += 1
                claimed_at.pop(task_id, None)
    done_times.sort()
    n = len(done_times)
    steady = math.nan
    if n >= 20:
        lo, hi = done_times[n // 10], done_times[(9 * n) // 10]
        steady = ((9 * n) // 10 - n // 10) / (hi - lo) if hi > lo else math.nan
    tenths: list[float] = []
    previous = 0.0
    for k in range(1, 11):
        index = min(n - 1, math.ceil(k * n / 10) - 1)
        if n == 0 or index < 0:
            break
        span = done_times[index] - previous
        count = index + 1 - (math.ceil((k - 1) * n / 10) if k > 1 else 0)
        tenths.append(count / span if span > 0 else math.nan)
        previous = done_times[index]
    all_claimed = sorted(first_claim.values())
    return {
        "tasks": n_tasks,
        "tasks_with_deps": int(with_deps[0]),
        "dependency_edges": int(with_deps[1]),
        "done": n,
        "claims": claims,
        "first_claim_s": (all_claimed[0] - started_wall) if all_claimed else math.nan,
        "agents_claimed": len(all_claimed),
        "last_agent_first_claim_s": (all_claimed[-1] - started_wall) if all_claimed else math.nan,
        "last_done_s": done_times[-1] if done_times else math.nan,
        "steady_tasks_per_s": steady,
        "tasks_per_s_by_tenth": tenths,
        "claim_to_done_s": {"median": median(service), "p90": percentile(service, 90), "max": max(service or [0])},
        "done_to_next_claim_s": {"median": median(gaps), "p90": percentile(gaps, 90), "max": max(gaps or [0])},
        "failed_attempts": dict(failures.most_common(5)),
        "failed_attempt_count": sum(failures.values()),
    }


# -- the agent command's own cost ------------------------------------------------------------------------


def agent_command_cost(cwd: Path) -> float:
    """CPU seconds of one run of the agent command as the worker starts it (``/bin/sh -c true``)."""
    command = build_command(
        load_template("command"),
        model="",
        permission_mode="",
        prompt_file=cwd / "prompt.md",
        worktree=cwd,
        task_id="CALIBRATE",
        command=AGENT_COMMAND,
    )
    cpu0 = _children_cpu()
    for _ in range(AGENT_CALIBRATION_RUNS):
        subprocess.run(command.argv, cwd=cwd, input=b"prompt", stdout=subprocess.PIPE, check=False)
    return (_children_cpu() - cpu0) / AGENT_CALIBRATION_RUNS


# -- the step profile ------------------------------------------------------------------------------------


@dataclass
class StepTimes:
    """Wall and CPU seconds of the calls of one step (this process and its reaped children)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    child_cpu: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` once, timed; its result."""
        own0, children0 = _own_cpu(), _children_cpu()
        started = time.perf_counter()
        result = fn()
        self.wall.append(time.perf_counter() - started)
        children = _children_cpu() - children0
        self.cpu.append(_own_cpu() - own0 + children)
        self.child_cpu.append(children)
        return result

    def figures(self) -> dict[str, float]:
        """Means in ms: wall, CPU, and the part of the CPU spent in child processes (git, the agent)."""
        return {
            "wall_ms": _r(1000 * statistics.fmean(self.wall), 2) if self.wall else math.nan,
            "cpu_ms": _r(1000 * statistics.fmean(self.cpu), 2) if self.cpu else math.nan,
            "child_cpu_ms": _r(1000 * statistics.fmean(self.child_cpu), 2) if self.child_cpu else math.nan,
        }


def _task_rows(db: Path) -> list[tuple[str, str, list[str]]]:
    """(task, commit, commits of its dependencies) of every done task, in the order they were done."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        commits = dict(conn.execute("SELECT id, commit_sha FROM tasks WHERE state = 'done'").fetchall())
        deps: dict[str, list[str]] = defaultdict(list)
        for task_id, dep in conn.execute("SELECT task_id, depends_on FROM deps ORDER BY depends_on"):
            deps[task_id].append(dep)
        order = [r[0] for r in conn.execute("SELECT task_id FROM events WHERE to_state = 'done' ORDER BY seq")]
    finally:
        conn.close()
    return [(t, commits[t], [commits[d] for d in deps.get(t, []) if commits.get(d)]) for t in order if commits.get(t)]


def profile_git(
    repo: Path, tmp: Path, label: str, base: str, tasks: list[tuple[str, str, list[str]]]
) -> dict[str, Any]:
    """Replay what a worker does with git for each task, through swarm's own Worktree, one call at a time."""
    git_repo = open_repo(repo)
    path = tmp / f"profile-{label}"
    git_repo.add_worktree(path, f"scale-bench/profile-{label}", base)
    worktree: Worktree = git_repo.worktree(path)
    command = build_command(
        load_template("command"),
        model="",
        permission_mode="",
        prompt_file=tmp / "prompt.md",
        worktree=path,
        task_id="PROFILE",
        command=AGENT_COMMAND,
    )
    steps = {name: StepTimes() for name in ("status", "merge", "agent", "commit", "commit_graph")}
    merged = skipped = 0
    for task_id, _, dep_commits in tasks:
        steps["status"].add(worktree.has_changes)
        # As the worker: the status just taken stands for the merge's (known_clean); on one host no
        # has_commit per dependency.
        result = steps["merge"].add(
            functools.partial(worktree.merge, dep_commits, f"Merge dependencies of {task_id}", known_clean=True)
        )
        if not result.ok:
            raise BenchError(f"profile merge of {task_id} failed: {result.detail}")
        merged += len(result.merged)
        skipped += len(dep_commits) - len(result.merged)
        steps["agent"].add(
            functools.partial(
                subprocess.run, command.argv, cwd=path, input=b"prompt", stdout=subprocess.PIPE, check=False
            )
        )
        steps["commit"].add(functools.partial(worktree.commit_all, f"{task_id}: profile", COMMIT_AUTHOR))
        steps["commit_graph"].add(worktree.update_commit_graph)
    history = int(run_command(["git", "rev-list", "--count", "HEAD"], cwd=path, what="count commits").strip())
    git_repo.remove_worktree(path, force=True)
    return {
        "commits_in_history": history,
        "merges_made": merged,
        "merges_skipped": skipped,
        "steps": {name: times.figures() for name, times in steps.items()},
    }


def profile_store(db: Path, tmp: Path, swarm_id: str, reps: int) -> dict[str, Any]:
    """The store calls a worker makes per task, on a copy of the finished run's database."""
    copy = tmp / "profile.db"
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    steps = {name: StepTimes() for name in ("claim", "update_agent", "complete", "reads")}
    with open_store(f"sqlite:///{copy}") as store:
        agent = store.list_agents(swarm_id)[0].id
        specs = [
            Spec(id=f"PROFILE{n:04d}", epic=EPIC, title=f"Profile {n}", body="Nothing to change.") for n in range(reps)
        ]
        store.add_tasks(specs, swarm_id=swarm_id)
        host = socket.gethostname()

        def reads() -> None:
            # stop_mode() twice (the database changes all the time in a run) and claims_paused() once per task
            for _ in range(2):
                store.change_marker()
                store.next_message_for("team", agent, after=0, type_="shutdown_request")
                store.get_swarm(swarm_id)
            store.claims_paused(swarm_id)

        for _ in range(reps):
            steps["reads"].add(reads)
            claim = steps["claim"].add(
                functools.partial(store.claim, agent, (), ttl_seconds=300, host=host, swarm_id=swarm_id)
            )
            if claim is None:
                raise BenchError("profile: the copy of the database gave no task to claim")
            steps["update_agent"].add(
                functools.partial(store.update_agent, agent, state="working", task_id=claim.task_id)
            )
            steps["complete"].add(
                functools.partial(store.complete, claim.task_id, agent, claim.lease_token, commit="0" * 40)
            )
    return {name: times.figures() for name, times in steps.items()}


def profile_python(env: dict[str, str], tmp: Path, reps: int) -> dict[str, Any]:
    """Python start-up, bare and with the worker's imports (once per worker, not per task)."""
    steps = {"python -c pass": StepTimes(), "python -m swarm.runtime.worker --help": StepTimes()}
    argvs = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m swarm.runtime.worker --help": [sys.executable, "-m", "swarm.runtime.worker", "--help"],
    }
    for _ in range(reps):
        for name, argv in argvs.items():
            steps[name].add(functools.partial(run_command, argv, cwd=tmp, env=env, what=" ".join(argv[1:])))
    return {name: times.figures() for name, times in steps.items()}


def profile_steps(repo: Path, tmp: Path, env: dict[str, str], swarm_id: str, reps: int) -> dict[str, Any]:
    """Each step of a task, one call at a time, at the start of the history and at its end."""
    db = repo / ".swarm" / "swarm.db"
    rows = _task_rows(db)
    with_deps = [row for row in rows if row[2]]
    if not with_deps:
        raise BenchError("profile: no done task with dependencies to replay")
    initial = run_command(
        ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=repo, what="find the initial commit"
    ).split()[0]
    agent_branch = f"{BRANCH_PREFIX}/{EPIC}/agent-1"
    # Early: the first tasks with dependencies, merged into a branch at the initial commit (a short history).
    # Late: the last ones, merged into agent-1's branch as the run left it (the whole run's history).
    early = profile_git(repo, tmp, "early", initial, with_deps[:reps])
    late = profile_git(repo, tmp, "late", agent_branch, with_deps[-reps:])
    run_command(
        ["git", "branch", "-D", "scale-bench/profile-early", "scale-bench/profile-late"], cwd=repo, what="branch -D"
    )
    return {
        "reps": reps,
        "deps_per_task": sum(len(r[2]) for r in rows) / len(rows),
        "tasks_with_deps": len(with_deps) / len(rows),
        "early": early,
        "late": late,
        "store": profile_store(db, tmp, swarm_id, reps),
        "python": profile_python(env, tmp, min(reps, 5)),
    }


def per_task_budget(profile: dict[str, Any], phase: str) -> dict[str, dict[str, float]]:
    """The profiled steps weighted by how often a worker makes them per task (ms per task)."""
    git_steps = profile[phase]["steps"]
    store = profile["store"]
    calls = {
        "git status (has_changes)": (git_steps["status"], 1.0),
        "merge the dependencies (Worktree.merge)": (git_steps["merge"], profile["tasks_with_deps"]),
        "agent command (/bin/sh -c true)": (git_steps["agent"], 1.0),
        "commit (Worktree.commit_all)": (git_steps["commit"], 1.0),
        f"commit-graph write (every {COMMIT_GRAPH_EVERY} tasks)": (git_steps["commit_graph"], 1 / COMMIT_GRAPH_EVERY),
        "store: claim": (store["claim"], 1.0),
        "store: complete": (store["complete"], 1.0),
        "store: agent updates (x5)": (store["update_agent"], 5.0),
        "store: reads (stop checks, pause)": (store["reads"], 1.0),
    }
    return {
        name: {
            "calls": _r(n, 2),
            "wall_ms": _r(step["wall_ms"] * n, 2),
            "cpu_ms": _r(step["cpu_ms"] * n, 2),
            "child_cpu_ms": _r(step["child_cpu_ms"] * n, 2),
        }
        for name, (step, n) in calls.items()
    }


def _per_task(a: Sample, b: Sample) -> dict[str, Any]:
    """CPU per task (ms) and rates between two samples."""
    done = b.done - a.done
    span = b.t - a.t
    ncpu = os.cpu_count() or 1
    per = 1000.0 / done if done else math.nan
    return {
        "seconds": _r(span),
        "tasks": done,
        "tasks_per_s": _r(done / span, 2) if span > 0 else math.nan,
        "swarm_ms": _r(per * (b.cpu_s - a.cpu_s)),
        "workers_python_ms": _r(per * (b.workers_self_s - a.workers_self_s)),
        "workers_children_ms": _r(per * (b.workers_children_s - a.workers_children_s)),
        "monitor_ms": _r(per * (b.monitor_s - a.monitor_s), 2),
        "swarm_percent_of_machine": _r(100.0 * (b.cpu_s - a.cpu_s) / (span * ncpu)) if span > 0 else math.nan,
        "machine_busy_percent": _r(100.0 * (b.machine_busy_s - a.machine_busy_s) / (span * ncpu))
        if span > 0
        else math.nan,
    }


def steady_split(samples: Sequence[Sample], total: int, agents: int, launch_s: float) -> dict[str, Any]:
    """CPU per task once launch has returned and while every worker runs (none starting or exiting), between
    the samples at 10% and at 90% of the tasks done: one-time costs (Python start-up, launch) stay out.

    The same samples, interval by interval, split by whether the queue had ready tasks at both ends or none
    (every claimable task taken, idle workers waiting for dependencies to finish).
    """
    running = [s for s in samples if s.t >= launch_s and s.workers == agents]
    inside = [s for s in running if 0.1 * total <= s.done <= 0.9 * total]
    if len(inside) < 2 or inside[-1].done <= inside[0].done:
        return {}
    figures = {"from_s": _r(inside[0].t), "to_s": _r(inside[-1].t), **_per_task(inside[0], inside[-1])}
    groups: dict[str, list[tuple[Sample, Sample]]] = {"ready": [], "starved": []}
    running_ids = {id(s) for s in running}
    for a, b in itertools.pairwise(samples):
        if id(a) in running_ids and id(b) in running_ids:
            if a.ready and b.ready:
                groups["ready"].append((a, b))
            elif not a.ready and not b.ready:
                groups["starved"].append((a, b))
    for name, pairs in groups.items():
        if not pairs:
            continue
        seconds = sum(b.t - a.t for a, b in pairs)
        done = sum(b.done - a.done for a, b in pairs)
        python = sum(b.workers_self_s - a.workers_self_s for a, b in pairs)
        children = sum(b.workers_children_s - a.workers_children_s for a, b in pairs)
        idle = statistics.fmean(max(0, a.workers - a.claimed) for a, _ in pairs)
        figures[name] = {
            "seconds": _r(seconds),
            "tasks_per_s": _r(done / seconds, 2) if seconds > 0 else math.nan,
            "workers_python_ms": _r(1000 * python / done) if done else math.nan,
            "workers_children_ms": _r(1000 * children / done) if done else math.nan,
            "workers_python_percent_of_machine": _r(100 * python / (seconds * (os.cpu_count() or 1))),
            "idle_workers": _r(idle),
        }
    return figures


# -- the result ------------------------------------------------------------------------------------------


def summary(
    figures: RunFigures,
    events: dict[str, Any],
    agent_cpu_each: float,
    profile: dict[str, Any] | None,
    total: int,
    agents: int,
) -> dict[str, Any]:
    """Every figure and goal; the one source for both the table and the JSON."""
    result: dict[str, Any] = {
        "finished": figures.finished,
        "problems": figures.problems + figures.left_after_teardown,
        "phases": _phases(figures, events),
        "throughput": _throughput(events),
        "memory": _memory(figures),
        "cpu": _cpu(figures, events, agent_cpu_each),
        "steady": steady_split(figures.samples, total, agents, figures.launch_s),
        "graph": {"tasks": total, "tasks_with_deps": events["tasks_with_deps"], "edges": events["dependency_edges"]},
    }
    if profile is not None:
        result["profile"] = _profile(profile)
    result["goals"] = _goals(figures, result, total, events["done"])
    return result


def _phases(figures: RunFigures, events: dict[str, Any]) -> dict[str, Any]:
    """How long each phase of the run took, launch to teardown."""
    return {
        "launch_s": _r(figures.launch_s, 2),
        "launch_cpu_s": _r(figures.launch_cpu_s, 2),
        "first_claim_s": _r(events["first_claim_s"], 2),
        "agents_claimed": events["agents_claimed"],
        "last_agent_first_claim_s": _r(events["last_agent_first_claim_s"], 2),
        "last_done_s": _r(events["last_done_s"], 2),
        "workers_exited_s": _r(figures.exited_s, 2),
        "teardown_s": _r(figures.teardown_s, 2),
        "teardown_cpu_s": _r(figures.teardown_cpu_s, 2),
        "teardown_saw": figures.teardown_saw,
    }


def _throughput(events: dict[str, Any]) -> dict[str, Any]:
    """Tasks per second, claim-to-done and done-to-next-claim times, failed attempts."""
    done = events["done"]
    wall = events["last_done_s"]
    return {
        "tasks_done": done,
        "tasks_per_s": _r(done / wall, 2) if wall and wall > 0 else math.nan,
        "steady_tasks_per_s": _r(events["steady_tasks_per_s"], 2),
        "tasks_per_s_by_tenth": [_r(v, 2) for v in events["tasks_per_s_by_tenth"]],
        "claim_to_done_s": {k: _r(v, 3) for k, v in events["claim_to_done_s"].items()},
        "done_to_next_claim_s": {k: _r(v, 3) for k, v in events["done_to_next_claim_s"].items()},
        "failed_attempts": events["failed_attempt_count"],
        "failed_attempt_reasons": events["failed_attempts"],
    }


def _memory(figures: RunFigures) -> dict[str, Any]:
    """Peak memory of the workers, the monitor, the tmux server and all of the swarm."""
    samples = figures.samples
    workers = [t for t in figures.tracks if t.kind == "worker"]
    monitors = [t for t in figures.tracks if t.kind == "monitor"]
    peak = max(samples, key=lambda s: s.rss_mb) if samples else None
    worker_peaks = [t.peak_rss / MB for t in workers]
    return {
        "worker_rss_mb": {"median": _r(median(worker_peaks)), "max": _r(max(worker_peaks or [math.nan]))},
        "workers_seen": len(workers),
        "monitor_rss_mb": _r(max((t.peak_rss / MB for t in monitors), default=math.nan)),
        "total_rss_mb_peak": _r(peak.rss_mb) if peak else math.nan,
        "total_pss_mb_at_peak": _r(peak.pss_mb) if peak else math.nan,
        "workers_rss_mb_at_peak": _r(peak.workers_rss_mb) if peak else math.nan,
        "peak_at_s": _r(peak.t) if peak else math.nan,
        "tmux_server_rss_mb_peak": _r(max((s.tmux_rss_mb for s in samples), default=math.nan)),
    }


def _cpu(figures: RunFigures, events: dict[str, Any], agent_cpu_each: float) -> dict[str, Any]:
    """CPU spent by the swarm's own processes, apart from the agents' commands (estimated) and others."""
    ncpu = os.cpu_count() or 1
    samples = figures.samples
    end_s = figures.exited_s if math.isfinite(figures.exited_s) else (samples[-1].t if samples else math.nan)
    last = samples[-1] if samples else None
    workers = [t for t in figures.tracks if t.kind == "worker"]
    monitors = [t for t in figures.tracks if t.kind == "monitor"]
    detached = [t for t in figures.tracks if t.detached]
    cpu_total = last.cpu_s if last else math.nan
    agent_cpu = agent_cpu_each * events["claims"]
    swarm_cpu = cpu_total - agent_cpu
    worker_self = sum(t.cpu_self for t in workers)
    worker_children = sum(t.cpu_children for t in workers)
    monitor_cpu = sum(t.cpu_self + t.cpu_children for t in monitors)
    monitor_rate = [
        100.0 * (t.cpu_self + t.cpu_children - t.first_total) / (t.last_t - t.first_t)
        for t in monitors
        if t.last_t - t.first_t > 0
    ]
    worker_rate = [
        100.0 * (t.cpu_self - t.first_self) / (t.last_t - t.first_t) for t in workers if t.last_t > t.first_t
    ]
    done = events["done"]
    machine_busy = last.machine_busy_s if last else math.nan
    return {
        "swarm_cpu_s": _r(swarm_cpu, 1),
        "swarm_percent_of_machine": _r(100.0 * swarm_cpu / (end_s * ncpu), 1) if end_s else math.nan,
        "swarm_cpu_ms_per_task": _r(1000 * swarm_cpu / done, 1) if done else math.nan,
        "workers_python_cpu_s": _r(worker_self, 1),
        "workers_children_cpu_s": _r(worker_children, 1),
        "workers_python_percent_of_core_median": _r(median(worker_rate), 2),
        "monitor_cpu_s": _r(monitor_cpu, 1),
        "monitor_percent_of_core": _r(median(monitor_rate), 2),
        "detached_git_cpu_s": _r(sum(t.cpu_self + t.cpu_children for t in detached), 1),
        "detached_git_processes": len(detached),
        "detached_git_commands": sorted({t.command for t in detached})[:5],
        "agent_commands_cpu_s_estimated": _r(agent_cpu, 1),
        "agent_command_cpu_ms_each": _r(1000 * agent_cpu_each, 2),
        "after_last_sample_cpu_s": _r(cpu_total - worker_self - worker_children - monitor_cpu, 1),
        "tmux_server_cpu_s": _r(last.tmux_cpu_s, 1) if last else math.nan,
        # the machine's figure runs to the last sample, a little after the swarm's processes ended
        "machine_busy_percent": _r(100.0 * machine_busy / (last.t * ncpu), 1) if last and last.t else math.nan,
        "others_percent_of_machine": _r(100.0 * (machine_busy - cpu_total) / (last.t * ncpu), 1)
        if last and last.t
        else math.nan,
        "observer_cpu_s": _r(figures.observer_cpu_s, 1),
        "window_s": _r(end_s, 1),
    }


def _profile(profile: dict[str, Any]) -> dict[str, Any]:
    """The workers' step profile with its per-task budgets early and late in the run."""
    early = per_task_budget(profile, "early")
    late = per_task_budget(profile, "late")
    return {
        **profile,
        "per_task_early": early,
        "per_task_late": late,
        "sum_early": {k: _r(sum(v[k] for v in early.values()), 1) for k in ("wall_ms", "cpu_ms", "child_cpu_ms")},
        "sum_late": {k: _r(sum(v[k] for v in late.values()), 1) for k in ("wall_ms", "cpu_ms", "child_cpu_ms")},
    }


def _goals(figures: RunFigures, result: dict[str, Any], total: int, done: int) -> dict[str, Any]:
    """The run's four goals, each with its text, its value and whether it was met."""
    worker_max = result["memory"]["worker_rss_mb"]["max"]
    monitor_pct = result["cpu"]["monitor_percent_of_core"]
    return {
        "finished": {
            "text": f"all {total} tasks done and the workers exit on their own",
            "value": f"{done} done",
            "met": figures.finished and figures.exited_on_their_own,
        },
        "teardown": {
            "text": "nothing left after teardown (processes, sessions, worktrees)",
            "value": "; ".join(figures.left_after_teardown) or "clean",
            "met": not figures.left_after_teardown,
        },
        "worker_rss": {
            "text": f"every worker < {GOAL_WORKER_RSS_MB:.0f} MB RSS",
            "value": f"{worker_max} MB" if math.isfinite(worker_max) else "no sample saw a worker",
            "met": worker_max < GOAL_WORKER_RSS_MB if math.isfinite(worker_max) else None,
        },
        "monitor_cpu": {
            "text": f"monitor < {GOAL_MONITOR_CPU_PERCENT}% of one core",
            "value": f"{monitor_pct}%" if math.isfinite(monitor_pct) else "no sample saw the monitor",
            "met": monitor_pct < GOAL_MONITOR_CPU_PERCENT if math.isfinite(monitor_pct) else None,
        },
    }


def _summary_records(f: dict[str, Any], args: argparse.Namespace) -> list[Record]:
    """The summary's figures of the run, its four goals among them."""
    th, mem, cpu, ph, goals = f["throughput"], f["memory"], f["cpu"], f["phases"], f["goals"]
    problems = "; ".join(str(p) for p in f["problems"]) or "no problem recorded"

    def goal(key: str, limit: str) -> dict[str, Any]:
        return {"goal": goals[key]["text"], "met": goals[key]["met"], "limit": limit}

    return [
        Record(
            f"run to the end ({args.agents} agents, {args.tasks} tasks)",
            goals["finished"]["value"],
            **goal("finished", f"the run did not finish cleanly: {problems}."),
        ),
        Record("tasks/s, launch included", th["tasks_per_s"]),
        Record("tasks/s, steady (10%-90% done)", th["steady_tasks_per_s"]),
        Record("swarm CPU per task (git included)", cpu["swarm_cpu_ms_per_task"], " ms", 0),
        Record("launch, s", ph["launch_s"]),
        Record(
            "worker RSS, max over workers",
            mem["worker_rss_mb"]["max"],
            " MB",
            **goal(
                "worker_rss",
                f"the largest worker peaked at {mem['worker_rss_mb']['max']} MB while working: the "
                "interpreter and its imports (as in launch) plus what merging, committing and the store allocate.",
            ),
        ),
        Record("swarm's processes together, peak PSS", mem["total_pss_mb_at_peak"], " MB", 0),
        Record(
            "monitor CPU",
            cpu["monitor_percent_of_core"],
            "% of a core",
            2,
            **goal(
                "monitor_cpu",
                f"the monitor used {cpu['monitor_percent_of_core']}% of a core looking after "
                f"{args.agents} busy agents whose state and logs change on every look.",
            ),
        ),
        Record("teardown, s", ph["teardown_s"]),
        Record(
            "left after teardown",
            goals["teardown"]["value"],
            **goal("teardown", f"teardown left {goals['teardown']['value']}."),
        ),
    ]


#: The section's other figures: (label, where in the summary, unit, digits).
DETAILS: tuple[tuple[str, tuple[str, ...], str, int], ...] = (
    ("tasks done", ("throughput", "tasks_done"), "", 0),
    ("tasks/s by tenth of the backlog", ("throughput", "tasks_per_s_by_tenth"), "", 1),
    ("claim -> done per task, median", ("throughput", "claim_to_done_s", "median"), " s", 2),
    ("claim -> done per task, p90", ("throughput", "claim_to_done_s", "p90"), " s", 2),
    ("done -> next claim per agent, median", ("throughput", "done_to_next_claim_s", "median"), " s", 2),
    ("attempts that did not end done (failed, expired or returned)", ("throughput", "failed_attempts"), "", 0),
    ("worker RSS, median over workers (each worker's peak)", ("memory", "worker_rss_mb", "median"), " MB", 1),
    ("workers seen", ("memory", "workers_seen"), "", 0),
    ("monitor RSS", ("memory", "monitor_rss_mb"), " MB", 1),
    ("swarm's processes together, peak RSS", ("memory", "total_rss_mb_peak"), " MB", 0),
    ("tmux server RSS, peak (not counted)", ("memory", "tmux_server_rss_mb_peak"), " MB", 1),
    ("swarm CPU", ("cpu", "swarm_cpu_s"), " s", 0),
    ("over (workers and monitor exited)", ("cpu", "window_s"), " s", 0),
    ("swarm CPU, of the machine", ("cpu", "swarm_percent_of_machine"), "%", 0),
    ("workers' own Python CPU", ("cpu", "workers_python_cpu_s"), " s", 0),
    ("workers' git and agent children CPU", ("cpu", "workers_children_cpu_s"), " s", 0),
    ("monitor CPU, in total", ("cpu", "monitor_cpu_s"), " s", 1),
    ("detached git CPU", ("cpu", "detached_git_cpu_s"), " s", 1),
    ("agent commands' CPU left out (estimated)", ("cpu", "agent_commands_cpu_s_estimated"), " s", 1),
    ("tmux server CPU (not counted)", ("cpu", "tmux_server_cpu_s"), " s", 1),
    ("the machine busy", ("cpu", "machine_busy_percent"), "%", 0),
    ("other processes, of the machine", ("cpu", "others_percent_of_machine"), "%", 0),
    ("launch CPU", ("phases", "launch_cpu_s"), " s", 1),
    ("teardown CPU", ("phases", "teardown_cpu_s"), " s", 1),
    ("steady state: tasks/s", ("steady", "tasks_per_s"), "", 1),
    ("steady state: swarm CPU per task", ("steady", "swarm_ms"), " ms", 0),
    ("steady state: workers' Python per task", ("steady", "workers_python_ms"), " ms", 0),
    ("steady state: git and agent per task", ("steady", "workers_children_ms"), " ms", 0),
    ("steady state: monitor per task", ("steady", "monitor_ms"), " ms", 1),
    ("steady, ready tasks waiting: workers' Python per task", ("steady", "ready", "workers_python_ms"), " ms", 0),
    ("steady, no ready task: workers' Python per task", ("steady", "starved", "workers_python_ms"), " ms", 0),
)


def _at(data: Any, path: Sequence[str]) -> Cell:
    for step in path:
        data = data.get(step) if isinstance(data, dict) else None
    return data if isinstance(data, int | float | str | list) else None


def _profile_table(profile: dict[str, Any]) -> Table:
    early, late = profile["per_task_early"], profile["per_task_late"]
    rows: list[list[Cell]] = [
        [name, row["calls"], early[name]["wall_ms"], row["wall_ms"], row["child_cpu_ms"]] for name, row in late.items()
    ]
    rows.append(
        [
            "sum",
            "",
            profile["sum_early"]["wall_ms"],
            profile["sum_late"]["wall_ms"],
            profile["sum_late"]["child_cpu_ms"],
        ]
    )
    return Table(["step", "calls", "start wall ms", "end wall ms", "end: in git/agent ms"], rows, [0, 2, 1, 1, 1])


def result(f: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> Result:
    """The figures of the run, its phases, and where the time per task goes when it was profiled."""
    ph, graph = f["phases"], f["graph"]
    section: list[Block] = [
        f"`swarm launch {EPIC} --agents {args.agents} --command {AGENT_COMMAND}` on a backlog of {graph['tasks']} "
        f"tasks ({graph['tasks_with_deps']} with dependencies, {graph['edges']} edges), followed to the end; "
        f"swarm's processes sampled every {SAMPLE_SECONDS:g} s, CPU counted exactly through a child subreaper. "
        f"Load average before the script: {info['load_average_1m']}.",
    ]
    if f["problems"]:
        section.append("Problems: " + "; ".join(str(p) for p in f["problems"]))
    phases = [
        ["swarm launch returned", ph["launch_s"]],
        ["first task claimed", ph["first_claim_s"]],
        [f"the last of {ph['agents_claimed']} agents claimed a task", ph["last_agent_first_claim_s"]],
        ["last task done", ph["last_done_s"]],
        ["workers and monitor exited on their own", ph["workers_exited_s"]],
        ["swarm teardown (its own duration)", ph["teardown_s"]],
    ]
    section.append(Table(["phase", "s since launch began"], phases))
    profile = f.get("profile")
    if profile:
        section += [
            "Where the time per task goes (each step replayed alone after the run, ms per task, at the start of the "
            f"history ({profile['early']['commits_in_history']} commits) and at its end "
            f"({profile['late']['commits_in_history']} commits)):",
            _profile_table(profile),
        ]
    details = [Record(label, _at(f, path), unit, digits, summary=False) for label, path, unit, digits in DETAILS]
    params = {"agents": args.agents, "tasks": args.tasks, "seed": args.seed, "finished": f["finished"], "graph": graph}
    if profile:
        params["commits_in_history"] = {k: profile[k]["commits_in_history"] for k in ("early", "late")}
    return Result("scale", "Scale (scale_bench.py)", info, params, [*_summary_records(f, args), *details], section)


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP: unwind, so that the swarm is torn down and its worktrees removed on the way out
    (a killed benchmark would leave a hundred workers running). Further signals wait for that cleanup."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise BenchError(f"terminated by {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, and return 1 if the run did not finish or something survived teardown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=100, metavar="N", help="agents (default 100)")
    parser.add_argument("--tasks", type=int, default=10_000, metavar="N", help="tasks in the backlog (default 10000)")
    parser.add_argument(
        "--files", type=int, default=100, metavar="N", help="files in the repository besides the backlog (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the dependency graph (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, metavar="S", help="give up if not finished after S s (default 3600)"
    )
    parser.add_argument(
        "--profile-reps", type=int, default=20, metavar="R", help="tasks replayed per profiled step (0: no profile)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.tasks < 1 or args.timeout <= 0 or args.profile_reps < 0 or args.files < 0:
        parser.error("--agents, --tasks and --timeout must be positive, --profile-reps and --files not negative")
    for tool in ("git", "tmux"):
        if shutil.which(tool) is None:
            print(f"benchmark needs {tool} on PATH", file=sys.stderr)
            return 1
    info = machine(memory=True, tools=True, load_average_1m=load_average()[0])
    progress = not args.json
    try:
        become_subreaper()
    except BenchError as exc:
        print(f"benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminated)
    socket_name = f"swarm-scale-bench-{os.getpid()}"
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="swarm-scale-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = clean_env(socket_name, tmp / "pycache")
        repo = tmp / "scale"
        try:
            warm_bytecode(env, ("swarm.cli.main", "swarm.runtime.worker", "swarm.runtime.monitor", "swarm.launcher"))
            started = time.perf_counter()
            build_repo(repo, args.tasks, args.files, args.seed)
            if progress:
                print(
                    f"  built the repository with {args.tasks} specs in {time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
            figures = run_scale(repo, socket_name, env, args.agents, args.tasks, args.timeout, progress=progress)
            events = analyse_events(repo / ".swarm" / "swarm.db", figures.started_wall, args.agents)
            agent_cpu_each = agent_command_cost(tmp)
            if args.profile_reps and figures.finished:
                if progress:
                    print("  profiling the steps of a task", file=sys.stderr, flush=True)
                profile = profile_steps(repo, tmp, env, figures.swarm_id, args.profile_reps)
        except BenchError as exc:
            print(f"benchmark FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            stop_private_server(socket_name)
            reap_adopted(skip=set())
    measured = summary(figures, events, agent_cpu_each, profile, args.tasks, args.agents)
    emit(result(measured, args, info), args.json)
    return 0 if all(goal["met"] for key, goal in measured["goals"].items() if key in ("finished", "teardown")) else 1


if __name__ == "__main__":
    sys.exit(main())
