"""What the benchmark scripts share, so that a figure means the same in each of them.

* what the figures were measured on (:func:`machine`), nearest-rank percentiles (:func:`percentile`,
  :class:`Stats`) and the load average;
* the start barrier and collection of a group of spawned worker processes (:func:`run_group`), the swarm
  claim+complete loop that queue_bench.py and pg_bench.py time alike, and the message broadcast that
  msg_bench.py and pg_bench.py time alike (:func:`broadcast`);
* for the benchmarks that drive the real CLI: commands, the environment they run in, git, tmux, the CPU of
  a process, and what must be gone after a teardown.

The benchmarks run as scripts (``python benchmarks/queue_bench.py``): this folder is then first on
``sys.path``, so they import this module as ``_common``; the processes they spawn get the same ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from swarm import threads
from swarm.models import LEAD, AgentRecord, Spec
from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions
from swarm.store import RetryPolicy, Store, StoreOptions, open_store

if TYPE_CHECKING:
    from multiprocessing.context import SpawnContext, SpawnProcess
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event, Semaphore

T = TypeVar("T")

MB = 1024 * 1024
# Generous: a process that has not reported by then is stuck, and a hung benchmark helps nobody.
SETUP_TIMEOUT_SECONDS = 300.0
RUN_TIMEOUT_SECONDS = 600.0
COMMAND_TIMEOUT_SECONDS = 180.0
# The thread the broadcast goes to; time for the released waiters to get back into their wait before the
# first entry is sent; a waiter that hears nothing for WAIT_TIMEOUT has missed an entry and stops.
THREAD = "team"
SETTLE_SECONDS = 0.5
WAIT_TIMEOUT_SECONDS = 30.0
WORKTREE_DIR = ".worktrees"


class BenchError(Exception):
    """A step or a correctness check failed: the figures of this run must not be trusted."""


# -- the machine -----------------------------------------------------------------------------------------


def tool_version(argv: Sequence[str], prefix: str = "") -> str:
    """The first line a version command prints, without ``prefix`` (``git version 2.39.5`` -> ``2.39.5``);
    "missing" when it cannot run, fails or prints nothing."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "missing"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].removeprefix(prefix) if lines and done.returncode == 0 else "missing"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def memory_gb() -> float:
    """The machine's memory in GiB, one decimal."""
    return round(psutil.virtual_memory().total / 1024**3, 1)


def pg_bin_dir(tools: Sequence[str]) -> Path | None:
    """The folder of PostgreSQL's server programs holding every one of ``tools``: the newest
    ``/usr/lib/postgresql/*/bin``, else the folder of the first one on PATH; None when there is none."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
        reverse=True,
    )
    for folder in candidates:
        if all((Path(folder) / tool).exists() for tool in tools):
            return Path(folder)
    on_path = shutil.which(tools[0])
    if on_path and all(shutil.which(tool) for tool in tools):
        return Path(on_path).resolve().parent
    return None


def machine(*, sqlite: bool = False, tools: bool = False, memory: bool = False, **extra: Any) -> dict[str, Any]:
    """What the figures were measured on: platform, machine, CPU count and Python, then as asked the SQLite
    library's version, git's and tmux's (``tools``), the memory, then ``extra`` as given (a server's version,
    a load average)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if sqlite:
        info["sqlite"] = sqlite3.sqlite_version
    if memory:
        info["memory_gb"] = memory_gb()
    if tools:
        info["git"] = tool_version(["git", "--version"], "git version ")
        info["tmux"] = tool_version(["tmux", "-V"], "tmux ")
    info.update(extra)
    return info


# -- figures ---------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median; NaN when there is nothing to take it of."""
    return statistics.median(values) if values else math.nan


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` from 0 to 100): a value that was measured, never an interpolation;
    NaN when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Stats:
    """Percentiles of a list of latencies, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        """Nearest-rank percentiles of ``seconds``."""
        if not seconds:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(seconds), percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000, max(seconds) * 1000)


def count_list(what: str) -> Callable[[str], list[int]]:
    """An argparse type: a comma-separated list of positive integers (``what`` names them in the error)."""

    def parse(text: str) -> list[int]:
        try:
            counts = [int(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
        if not counts or min(counts) < 1:
            raise argparse.ArgumentTypeError(f"{what} counts must be positive")
        return counts

    return parse


# -- a group of spawned processes ------------------------------------------------------------------------


@dataclass
class Report:
    """What one child process sends back; each benchmark fills the fields it needs."""

    name: str
    claimed: list[str] = field(default_factory=list)  # task / job ids, in claim order
    received: list[tuple[int, str, float]] = field(default_factory=list)  # (seq, body, time.time() at return)
    samples: list[float] = field(default_factory=list)  # seconds per timed call
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker_id: int | None = None  # procrastinate's worker row
    error: str | None = None


#: (name, function, leading arguments): the function is called with them and then (ready, go, results).
Target = tuple[str, Callable[..., None], tuple[Any, ...]]


def start_barrier(ready: Semaphore, go: Event) -> None:
    """In a child: tell the parent it is ready (the semaphore), then wait for the starting gun (the event),
    which the parent fires after reading the clock, so no child starts before the timed span."""
    ready.release()
    if not go.wait(SETUP_TIMEOUT_SECONDS):
        raise TimeoutError("the parent never released the processes")


def _drain(results: Queue[Report]) -> list[Report]:
    """Reports already sent (used to explain a failure, so it never blocks long)."""
    found: list[Report] = []
    with contextlib.suppress(queue.Empty):
        while True:
            found.append(results.get(timeout=0.2))
    return found


def _failure(what: str, reports: Sequence[Report]) -> BenchError:
    """A BenchError that names the failed processes, each distinct traceback printed once (processes usually
    fail for one shared reason; sixteen copies of one traceback would bury it)."""
    by_error: dict[str, list[str]] = {}
    for r in reports:
        if r.error:
            by_error.setdefault(r.error, []).append(r.name)
    lines = [what] + [f"{', '.join(names)}:\n{error.rstrip()}" for error, names in by_error.items()]
    return BenchError("\n".join(lines))


def run_group(
    label: str, targets: Sequence[Target], during: Callable[[], T], *, prefix: str
) -> tuple[T, list[Report], float]:
    """Spawn ``targets``, release them together once every one has passed :func:`start_barrier`, run
    ``during`` here, then collect one report from each. Returns ``during``'s result, the reports, and the
    seconds from the release until the last report. Any child error fails the run (BenchError)."""
    ctx: SpawnContext = multiprocessing.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    results: Queue[Report] = ctx.Queue()
    started_procs: list[SpawnProcess] = [
        ctx.Process(target=fn, args=(*args, ready, go, results), name=f"{prefix}-{name}") for name, fn, args in targets
    ]
    for proc in started_procs:
        proc.start()
    reports: list[Report] = []
    finished = False
    try:
        # Wait in short slices so that a child dying before it is ready (an import error, a database that
        # will not open) fails the run at once instead of after the setup timeout.
        deadline = time.monotonic() + SETUP_TIMEOUT_SECONDS
        waiting = len(started_procs)
        while waiting:
            if ready.acquire(timeout=0.2):
                waiting -= 1
            elif any(p.exitcode is not None for p in started_procs):
                stopped = ", ".join(f"{p.name} (exit {p.exitcode})" for p in started_procs if p.exitcode is not None)
                raise _failure(f"{label}: stopped before the start: {stopped}", _drain(results))
            elif time.monotonic() > deadline:
                raise _failure(
                    f"{label}: {waiting} of {len(started_procs)} processes not ready after "
                    f"{SETUP_TIMEOUT_SECONDS:.0f}s (load average {os.getloadavg()[0]:.1f})",
                    _drain(results),
                )
        started = time.perf_counter()
        go.set()
        outcome = during()
        # Collect before joining: a child blocks on exit until its queued report has been read. A child that
        # catches its error still reports; only a hard crash (nonzero exit) is silent.
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while len(reports) < len(started_procs):
            try:
                reports.append(results.get(timeout=0.2))
            except queue.Empty:
                crashed = ", ".join(
                    f"{p.name} (exit {p.exitcode})" for p in started_procs if p.exitcode not in (None, 0)
                )
                if crashed or time.monotonic() > deadline:
                    raise _failure(
                        f"{label}: only {len(reports)} of {len(started_procs)} processes reported"
                        + (f"; crashed: {crashed}" if crashed else f" within {RUN_TIMEOUT_SECONDS:.0f}s"),
                        reports,
                    ) from None
        elapsed = time.perf_counter() - started
        finished = True
    finally:
        for proc in started_procs:
            proc.join(timeout=10 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if any(r.error for r in reports):
        raise _failure(f"{label}: {sum(1 for r in reports if r.error)} process(es) failed", reports)
    return outcome, reports, elapsed


# -- swarm's queue: claim+complete ----------------------------------------------------------------------


def sqlite_url(path: str | Path) -> str:
    """swarm's URL of a SQLite file; an absolute path gives sqlite:////tmp/..., the form read as absolute."""
    return f"sqlite:///{path}"


def task_ids(total: int) -> list[str]:
    """The ids of the benchmark's tasks, in claim order."""
    return [f"bench-{i:06d}" for i in range(total)]


def queue_tasks(url: str, epic: str, ids: Sequence[str]) -> None:
    """Queue every task as ready (one ``add_tasks`` batch), before any worker starts."""
    with open_store(url) as store:
        store.add_tasks([Spec(id=i, epic=epic, title=i, body="benchmark task") for i in ids])


def store_child(
    body: Callable[[Store, Report, Semaphore, Event], None],
    url: str,
    name: str,
    ready: Semaphore,
    go: Event,
    results: Queue[Report],
    options: StoreOptions | None = None,
) -> None:
    """In a child: open the store, run ``body``, and always report; an error is reported, not raised (the
    parent turns it into a failed check and exit status 1)."""
    report = Report(name=name)
    try:
        store = open_store(url, options)
        try:
            body(store, report, ready, go)
        finally:
            store.close()
    except BaseException:
        report.error = traceback.format_exc()
    results.put(report)


def swarm_worker(url: str, name: str, ttl_seconds: float, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Open the store, wait for the common start, then ``claim`` and ``complete`` until the queue is empty."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        start_barrier(ready, go)
        while True:
            got = store.claim(name, ttl_seconds=ttl_seconds)
            if got is None:
                break
            report.claimed.append(got.task_id)
            store.complete(got.task_id, name, got.lease_token, commit=f"sha-{got.task_id}")

    # No retry backoff: nothing fails here, and it keeps the options equal to the multi-process tests.
    store_child(body, url, name, ready, go, results, StoreOptions(retry=RetryPolicy(0, 0)))


def check_claims(label: str, ids: Sequence[str], reports: Sequence[Report]) -> dict[str, str]:
    """Every id claimed exactly once by the workers' own account; returns id -> the claiming worker."""
    claims = Counter(task for r in reports for task in r.claimed)
    twice = sorted(task for task, n in claims.items() if n > 1)
    missing = sorted(set(ids) - claims.keys())
    strange = sorted(claims.keys() - set(ids))
    if twice or missing or strange:
        raise BenchError(
            f"{label}: {len(twice)} claimed more than once (e.g. {twice[:3]}), "
            f"{len(missing)} never claimed (e.g. {missing[:3]}), {len(strange)} unknown (e.g. {strange[:3]})"
        )
    return {task: r.name for r in reports for task in r.claimed}


def check_done(label: str, ids: Sequence[str], reports: Sequence[Report], rows: Sequence[Sequence[Any]]) -> None:
    """The workers' claims (:func:`check_claims`) and the database's rows ``(id, state, attempts, owner)``
    agree: every task done, claimed once, by the worker that says it claimed it."""
    claimer = check_claims(label, ids, reports)
    bad = [row for row in rows if row[1] != "done" or row[2] != 1 or row[3] != claimer.get(row[0])]
    if len(rows) != len(ids) or bad:
        raise BenchError(
            f"{label}: the database disagrees: {len(rows)} rows for {len(ids)} tasks, "
            f"{len(bad)} not done exactly once by their claimer (e.g. {bad[:3]})"
        )


def swarm_task_rows(url: str, epic: str) -> list[tuple[str, str, int, str | None]]:
    """``(id, state, attempts, owner)`` of every task of ``epic``, as swarm's store reads them."""
    with open_store(url) as store:
        return [(t.id, t.state.value, t.attempts, t.owner) for t in store.list_tasks(epic)]


# -- swarm's threads: one lead broadcasting to many waiters ---------------------------------------------


def register_agents(url: str, epic: str, agents: int) -> None:
    """A swarm for ``epic`` with agents ``agent-1`` .. ``agent-<agents>`` (known recipients)."""
    with open_store(url) as store:
        swarm = store.ensure_swarm(epic)
        for n in range(1, agents + 1):
            store.register_agent(AgentRecord(id=f"agent-{n}", swarm_id=swarm.id))


def prime_and_start(store: Store, identity: str, ready: Semaphore, go: Event) -> None:
    """Make the first wait (it places the cursor at the thread's end, as a real agent's first ``msg wait``
    does), then pass the start barrier."""
    threads.wait(store, threads.WaitSpec(identity=identity, thread=THREAD), timeout=0)
    start_barrier(ready, go)


def broadcast_waiter(
    url: str, identity: str, expected: int, ready: Semaphore, go: Event, results: Queue[Report]
) -> None:
    """Wait for ``expected`` entries, noting the time each wait returns, and the CPU and wall time it took."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        prime_and_start(store, identity, ready, go)
        spec = threads.WaitSpec(identity=identity, thread=THREAD)
        cpu, wall = time.process_time(), time.perf_counter()
        while len(report.received) < expected:
            msg = threads.wait(store, spec, timeout=WAIT_TIMEOUT_SECONDS)
            now = time.time()
            if msg is None:
                break  # the parent's check names what is missing
            report.received.append((msg.seq, msg.body, now))
        report.cpu_seconds = time.process_time() - cpu
        report.wall_seconds = time.perf_counter() - wall

    store_child(body, url, identity, ready, go, results)


def broadcast(
    label: str, url: str, waiters: int, messages: int, interval: float, *, prefix: str
) -> tuple[list[float], list[float], list[Report]]:
    """``waiters`` processes (``agent-1`` .. ``agent-N``, registered beforehand) wait while this process, as
    ``lead``, sends ``messages`` entries to all, one every ``interval`` seconds, each carrying its own
    ``time.time()`` send stamp. Every waiter must receive every entry exactly once, in order.

    Returns the latencies (wait return - send stamp, the send call included: one machine, one clock), the
    seconds of each send call, and the waiters' reports."""
    sent: list[tuple[int, int]] = []  # (seq, index)
    send_seconds: list[float] = []

    def send_all() -> None:
        with open_store(url) as store:
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            for i in range(messages):
                # A fixed schedule, not a fixed gap: a slow send does not push the later ones back.
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                stamp = time.time()
                msg = threads.send(store, LEAD, json.dumps({"i": i, "sent_at": stamp}), thread=THREAD)
                send_seconds.append(time.time() - stamp)
                sent.append((msg.seq, i))

    targets = [(f"agent-{n}", broadcast_waiter, (url, f"agent-{n}", messages)) for n in range(1, waiters + 1)]
    _, reports, _ = run_group(label, targets, send_all, prefix=prefix)
    sent_seqs = [seq for seq, _ in sent]
    if sent_seqs != list(range(sent_seqs[0], sent_seqs[0] + messages)):
        raise BenchError(f"{label}: the sent entries got gapped or unordered sequence numbers")
    index_of = dict(sent)
    latencies: list[float] = []
    for r in reports:
        seqs = [seq for seq, _, _ in r.received]
        if seqs != sent_seqs:
            got = set(seqs)
            missing = [s for s in sent_seqs if s not in got]
            twice = sorted({s for s in seqs if seqs.count(s) > 1})
            raise BenchError(
                f"{label}: {r.name} received {len(seqs)} of {messages} entries: {len(missing)} missing "
                f"(e.g. {missing[:3]}), duplicates {twice[:3]}, in order: {seqs == sorted(seqs)}"
            )
        for seq, body, received_at in r.received:
            data = json.loads(body)
            if data["i"] != index_of[seq]:
                raise BenchError(f"{label}: {r.name}: entry {seq} carries the body of entry {data['i']}")
            latencies.append(received_at - float(data["sent_at"]))
    return latencies, send_seconds, reports


# -- commands, git, tmux --------------------------------------------------------------------------------


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    what: str,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
) -> str:
    """Run a command; BenchError with the tail of its output if it fails. Returns stdout."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{what}: exit {done.returncode}: {' | '.join(tail) or 'no output'}")
    return done.stdout


def swarm_cli(*args: str) -> list[str]:
    """The argv of the real ``swarm`` command, run by this interpreter."""
    return [sys.executable, "-m", "swarm", *args]


def clean_env(socket_name: str, pycache: Path) -> dict[str, str]:
    """The caller's environment without any swarm setting or tmux client of its own, with a tmux socket of
    the benchmark's own.

    Python's bytecode cache goes to a private folder (never next to swarm's sources) and is always written:
    an installed swarm has its ``.pyc`` files, so compiling swarm's modules in every process (as
    ``PYTHONDONTWRITEBYTECODE`` would make it) is not part of what is measured. A tmux server started with
    this environment passes the same cache on to the processes in its panes.
    """
    drop = ("TMUX", "TMUX_PANE", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_") and k not in drop}
    env["SWARM_TMUX_SOCKET"] = socket_name
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def warm_bytecode(env: dict[str, str], modules: Sequence[str]) -> None:
    """Compile ``modules`` into the private bytecode cache of ``env`` once, before anything is timed."""
    run_command(
        [sys.executable, "-c", "import " + ", ".join(modules)],
        cwd=Path(tempfile.gettempdir()),
        env=env,
        what="warm up the bytecode cache",
    )


def init_repo(root: Path, who: str, *, env: dict[str, str] | None = None, exclude: Sequence[str] = ()) -> None:
    """``git init`` the files under ``root`` (branch main) and commit them all as ``who``; the ``exclude``
    patterns go to ``.git/info/exclude`` first (ignored, never committed)."""
    run_command(["git", "init", "-q", "-b", "main"], cwd=root, env=env, what="git init")
    if exclude:
        with (root / ".git" / "info" / "exclude").open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{pattern}\n" for pattern in exclude))
    run_command(["git", "add", "-A"], cwd=root, env=env, what="git add")
    identity = ("-c", f"user.name={who}", "-c", f"user.email={who}@example.invalid")
    run_command(["git", *identity, "commit", "-q", "-m", "initial"], cwd=root, env=env, what="git commit")


def leftover_worktrees(repo: Path) -> list[str]:
    """The folders left under the repository's worktree folder."""
    base = repo / WORKTREE_DIR
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def leftovers(repo: Path, socket_name: str, swarm_id: str | None) -> list[str]:
    """What survived a teardown: tmux sessions, worktree folders, processes carrying the swarm's id."""
    problems: list[str] = []
    sessions = private_sessions(socket_name)
    if sessions:
        problems.append(f"tmux sessions left: {', '.join(sessions)}")
    worktrees = leftover_worktrees(repo)
    if worktrees:
        problems.append(f"worktree dirs left: {', '.join(worktrees[:10])}{' ...' if len(worktrees) > 10 else ''}")
    survivors = procs.processes_with_env("SWARM_ID", swarm_id) if swarm_id else []
    if survivors:
        described = []
        for pid in survivors[:10]:
            with contextlib.suppress(psutil.Error):
                described.append(f"{pid} ({' '.join(psutil.Process(pid).cmdline())[:80]})")
        problems.append(f"processes with SWARM_ID={swarm_id} alive: {', '.join(described) or survivors}")
    return problems


def force_cleanup(
    repo: Path, env: dict[str, str], swarm_id: str | None, *, grace: float, timeout: float = COMMAND_TIMEOUT_SECONDS
) -> None:
    """After a failure: ``swarm teardown --now``, then stop what this run started by its SWARM_ID (never by
    name)."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            swarm_cli("teardown", "--now", "--grace", f"{grace:g}"),
            cwd=repo,
            env=env,
            capture_output=True,
            check=False,
            timeout=timeout,
        )
    if swarm_id:
        procs.stop_processes(procs.processes_with_env("SWARM_ID", swarm_id), grace=2.0)


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time the process (all its threads, not its children) has used so far.

    Read from ``/proc/<pid>/task/*/schedstat`` where it exists: nanoseconds on the CPU, where psutil's
    ``cpu_times`` counts clock ticks (10 ms; over a 3 s window a tick is 0.33% CPU, too coarse for a goal of
    0.5%). Elsewhere psutil's figure is used.
    """
    tasks = Path(f"/proc/{proc.pid}/task")
    if tasks.is_dir():
        total_ns = 0
        for task in tasks.iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that ended meanwhile
                total_ns += int((task / "schedstat").read_text().split()[0])
        if total_ns:
            return total_ns / 1e9
    times = proc.cpu_times()
    return float(times.user + times.system)
