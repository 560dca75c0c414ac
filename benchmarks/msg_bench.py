"""Thread messaging latency of swarm on SQLite: broadcast wake-ups, ask/answer round trips, idle polling cost.

Run: ``.venv/bin/python benchmarks/msg_bench.py [--waiters 1,10,50] [--messages 200] [--interval-ms 30]
[--round-trips 100] [--idle-waiters 50] [--idle-seconds 3] [--json]``

Everything goes through :mod:`swarm.threads` on ``open_store("sqlite:///...")``; each measurement gets a fresh
database file in one temporary directory, deleted at the end. Three measurements:

* **broadcast**: for every waiter count, that many processes (``agent-1`` .. ``agent-N``, registered agents of
  swarm ``E``) loop ``threads.wait(store, WaitSpec(identity, thread="team"))`` and note ``time.time()`` as each
  entry comes back. The parent process, as ``lead``, sends ``--messages`` entries to all at a steady pace
  (one every ``--interval-ms``), each carrying its own ``time.time()`` send stamp, so the waiters are waiting,
  not catching up. Latency = receive time - send stamp (one machine, one clock), send call included.
* **ask/answer**: one process (``agent-1``) loops ``threads.ask(..., to="lead")``; another (``lead``) loops
  ``threads.wait`` and answers each question with ``threads.reply``. The figure is the whole ``ask`` call.
* **idle**: ``--idle-waiters`` processes each sit in one ``threads.wait`` for ``--idle-seconds`` while nothing
  is sent. Each measures its own CPU time (``time.process_time``, user + system) across that wait only, so
  process start-up is not counted. The sum is given as a percentage of one core.

Every process is spawned, opens the database and makes its first wait (which places its cursor at the end
of the thread, as a real agent's first ``msg wait`` does), then waits at a start barrier; all are released
at once. Checks: every waiter received every entry exactly once, in sequence order, with no gaps; every
question got its own answer; an idle wait returned nothing. Otherwise the script exits with status 1. It
never judges speed by its exit status: benchmarks print figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from swarm import threads
from swarm.models import LEAD, AgentRecord
from swarm.store import Store, open_store

if TYPE_CHECKING:
    from multiprocessing.context import SpawnContext, SpawnProcess
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event, Semaphore

T = TypeVar("T")

EPIC = "E"
THREAD = "team"
ASKER = "agent-1"
GOAL_WAITERS = 50
GOAL_P99_MS = 100.0
# Time for the released waiters to get back into their wait before the first entry is sent.
SETTLE_SECONDS = 0.5
# A waiter that hears nothing for this long has missed an entry; it stops and the check reports the gap.
WAIT_TIMEOUT_SECONDS = 30.0
# Generous: a process that has not reported by then is stuck, and a hung benchmark helps nobody.
SETUP_TIMEOUT_SECONDS = 180.0
RUN_TIMEOUT_SECONDS = 600.0
# The 1-minute load average when the script started (the report prints after the load it caused itself).
LOAD_BEFORE = round(os.getloadavg()[0], 2)


class BenchError(Exception):
    """A correctness check failed: the figures of this run must not be trusted."""


@dataclass
class Report:
    """What one child process sends back."""

    name: str
    # broadcast waiter: (seq, body, time.time() at return); lead of ask/answer: (seq, body, 0.0)
    received: list[tuple[int, str, float]] = field(default_factory=list)
    # asker: seconds per round trip
    samples: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None


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
        ordered = sorted(seconds)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(ordered), _rank(ordered, 50) * 1000, _rank(ordered, 99) * 1000, ordered[-1] * 1000)


def _rank(ordered: Sequence[float], pct: float) -> float:
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class BroadcastRow:
    """One line of the broadcast table."""

    waiters: int
    messages: int
    latency: Stats
    send: Stats
    waiter_cpu_percent: float  # summed over the waiters, percent of one core


@dataclass(frozen=True)
class RoundTrip:
    """The ask/answer figures."""

    latency: Stats


@dataclass(frozen=True)
class Idle:
    """The idle-wait figures."""

    waiters: int
    seconds: float
    cpu_percent: float  # summed over the waiters, percent of one core

    @property
    def machine_percent(self) -> float:
        """The same as a share of the whole machine."""
        return self.cpu_percent / (os.cpu_count() or 1)


# -- child processes (module level so that the spawn start method can import them) -----------------------


def _url(db_path: str) -> str:
    # An absolute path gives sqlite:////tmp/..., the four-slash form swarm reads as absolute.
    return f"sqlite:///{db_path}"


def _child(
    body: Callable[[Store, Report, Semaphore, Event], None],
    db_path: str,
    name: str,
    ready: Semaphore,
    go: Event,
    results: Queue[Report],
) -> None:
    """Open the store, run ``body``, and always report (an error is reported, not raised)."""
    report = Report(name=name)
    try:
        store = open_store(_url(db_path))
        try:
            body(store, report, ready, go)
        finally:
            store.close()
    except BaseException:
        # The parent turns it into a failed correctness check and exit status 1.
        report.error = traceback.format_exc()
    results.put(report)


def _prime_and_start(store: Store, identity: str, ready: Semaphore, go: Event) -> None:
    """Make the first wait (places the cursor at the thread's end), then pass the start barrier."""
    threads.wait(store, threads.WaitSpec(identity=identity, thread=THREAD), timeout=0)
    ready.release()
    if not go.wait(SETUP_TIMEOUT_SECONDS):
        raise TimeoutError("the parent never released the processes")


def broadcast_waiter(
    db_path: str, identity: str, expected: int, ready: Semaphore, go: Event, results: Queue[Report]
) -> None:
    """Wait for ``expected`` entries, noting the time each wait returns."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        _prime_and_start(store, identity, ready, go)
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

    _child(body, db_path, identity, ready, go, results)


def idle_waiter(
    db_path: str, identity: str, seconds: float, ready: Semaphore, go: Event, results: Queue[Report]
) -> None:
    """Sit in one wait that nothing ends; measure the CPU time it costs."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        _prime_and_start(store, identity, ready, go)
        cpu, wall = time.process_time(), time.perf_counter()
        msg = threads.wait(store, threads.WaitSpec(identity=identity, thread=THREAD), timeout=seconds)
        report.cpu_seconds = time.process_time() - cpu
        report.wall_seconds = time.perf_counter() - wall
        if msg is not None:
            raise BenchError(f"an idle wait returned entry {msg.seq}")

    _child(body, db_path, identity, ready, go, results)


def answering_lead(db_path: str, rounds: int, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Wait as ``lead`` and answer each question."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        _prime_and_start(store, LEAD, ready, go)
        spec = threads.WaitSpec(identity=LEAD, thread=THREAD)
        while len(report.received) < rounds:
            msg = threads.wait(store, spec, timeout=WAIT_TIMEOUT_SECONDS)
            if msg is None:
                break
            report.received.append((msg.seq, msg.body, 0.0))
            threads.reply(store, LEAD, msg.seq, f"answer to {msg.body}", thread=THREAD)

    _child(body, db_path, LEAD, ready, go, results)


def asking_agent(db_path: str, rounds: int, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Ask ``rounds`` questions one after the other, timing each ``ask``; check every answer."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        ready.release()  # asks need no cursor: an answer is found by its reply_to
        if not go.wait(SETUP_TIMEOUT_SECONDS):
            raise TimeoutError("the parent never released the processes")
        for i in range(rounds):
            text = f"question {i}"
            started = time.perf_counter()
            question, answer = threads.ask(store, ASKER, text, to=LEAD, thread=THREAD, timeout=WAIT_TIMEOUT_SECONDS)
            report.samples.append(time.perf_counter() - started)
            if answer is None:
                raise BenchError(f"no answer to {text!r} (entry {question.seq})")
            if answer.reply_to != question.seq or answer.author != LEAD or answer.body != f"answer to {text}":
                raise BenchError(f"entry {question.seq} got a wrong answer: {answer}")

    _child(body, db_path, ASKER, ready, go, results)


# -- running a group of processes -----------------------------------------------------------------------


def _prepare(db_path: str, agents: int) -> None:
    """A fresh database with swarm ``E`` and agents ``agent-1`` .. ``agent-<agents>`` (known recipients)."""
    with open_store(_url(db_path)) as store:
        swarm = store.ensure_swarm(EPIC)
        for n in range(1, agents + 1):
            store.register_agent(AgentRecord(id=f"agent-{n}", swarm_id=swarm.id))


def _drain(results: Queue[Report]) -> list[Report]:
    """Reports already sent (used to explain a failure, so it never blocks long)."""
    found: list[Report] = []
    with contextlib.suppress(queue.Empty):
        while True:
            found.append(results.get(timeout=0.2))
    return found


def _failure(what: str, reports: Sequence[Report]) -> BenchError:
    """A BenchError that names the failed processes, each distinct traceback printed once."""
    by_error: dict[str, list[str]] = {}
    for r in reports:
        if r.error:
            by_error.setdefault(r.error, []).append(r.name)
    lines = [what] + [f"{', '.join(names)}:\n{error.rstrip()}" for error, names in by_error.items()]
    return BenchError("\n".join(lines))


def run_group(
    targets: Sequence[tuple[str, Callable[..., None], tuple[Any, ...]]], during: Callable[[], T]
) -> tuple[T, list[Report]]:
    """Spawn ``targets`` (name, function, leading args), release them together, run ``during`` in this process,
    then collect one report from each. Any child error fails the run."""
    ctx: SpawnContext = multiprocessing.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    results: Queue[Report] = ctx.Queue()
    procs: list[SpawnProcess] = [
        ctx.Process(target=fn, args=(*args, ready, go, results), name=f"msg-bench-{name}") for name, fn, args in targets
    ]
    for proc in procs:
        proc.start()
    reports: list[Report] = []
    finished = False
    try:
        # Wait in short slices so that a child dying before it is ready fails the run at once.
        deadline = time.monotonic() + SETUP_TIMEOUT_SECONDS
        waiting = len(procs)
        while waiting:
            if ready.acquire(timeout=0.2):
                waiting -= 1
            elif any(p.exitcode is not None for p in procs) or time.monotonic() > deadline:
                raise _failure("a process stopped before the start", _drain(results))
        go.set()
        outcome = during()
        # Collect before joining: a child blocks on exit until its queued report has been read.
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while len(reports) < len(procs):
            try:
                reports.append(results.get(timeout=0.2))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                    raise _failure(f"only {len(reports)} of {len(procs)} processes reported", reports) from None
        finished = True
    finally:
        for proc in procs:
            proc.join(timeout=10 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if any(r.error for r in reports):
        raise _failure(f"{sum(1 for r in reports if r.error)} process(es) failed", reports)
    return outcome, reports


# -- the three measurements ------------------------------------------------------------------------------


def measure_broadcast(tmp: Path, waiters: int, messages: int, interval: float) -> BroadcastRow:
    """``waiters`` processes wait while ``lead`` (this process) sends ``messages`` entries to all."""
    db_path = str(tmp / f"broadcast-{waiters}.db")
    _prepare(db_path, waiters)
    sent: list[tuple[int, int]] = []  # (seq, index)
    send_seconds: list[float] = []

    def send_all() -> None:
        with open_store(_url(db_path)) as store:
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

    targets = [(f"agent-{n}", broadcast_waiter, (db_path, f"agent-{n}", messages)) for n in range(1, waiters + 1)]
    _, reports = run_group(targets, send_all)
    sent_seqs = [seq for seq, _ in sent]
    if sent_seqs != list(range(sent_seqs[0], sent_seqs[0] + messages)):
        raise BenchError(f"{waiters} waiters: the sent entries got gapped or unordered sequence numbers")
    index_of = dict(sent)
    latencies: list[float] = []
    for r in reports:
        seqs = [seq for seq, _, _ in r.received]
        if seqs != sent_seqs:
            got = set(seqs)
            missing = [s for s in sent_seqs if s not in got]
            twice = sorted({s for s in seqs if seqs.count(s) > 1})
            raise BenchError(
                f"{waiters} waiters: {r.name} received {len(seqs)} of {messages} entries: "
                f"{len(missing)} missing (e.g. {missing[:3]}), duplicates {twice[:3]}, "
                f"in order: {seqs == sorted(seqs)}"
            )
        for seq, body, received_at in r.received:
            data = json.loads(body)
            if data["i"] != index_of[seq]:
                raise BenchError(f"{r.name}: entry {seq} carries the body of entry {data['i']}")
            latencies.append(received_at - float(data["sent_at"]))
    cpu = sum(r.cpu_seconds / r.wall_seconds for r in reports if r.wall_seconds > 0) * 100
    return BroadcastRow(waiters, messages, Stats.of(latencies), Stats.of(send_seconds), cpu)


def measure_round_trips(tmp: Path, rounds: int) -> RoundTrip:
    """``agent-1`` asks, ``lead`` answers, ``rounds`` times in a row."""
    db_path = str(tmp / "ask.db")
    _prepare(db_path, 1)
    targets = [(LEAD, answering_lead, (db_path, rounds)), (ASKER, asking_agent, (db_path, rounds))]
    _, reports = run_group(targets, lambda: None)
    lead = next(r for r in reports if r.name == LEAD)
    asker = next(r for r in reports if r.name == ASKER)
    bodies = [body for _, body, _ in lead.received]
    if bodies != [f"question {i}" for i in range(rounds)] or len(asker.samples) != rounds:
        raise BenchError(f"ask/answer: lead saw {len(bodies)} questions, agent timed {len(asker.samples)} asks")
    return RoundTrip(Stats.of(asker.samples))


def measure_idle(tmp: Path, waiters: int, seconds: float) -> Idle:
    """``waiters`` processes wait ``seconds`` with nothing sent; their summed CPU time over wall time."""
    db_path = str(tmp / "idle.db")
    _prepare(db_path, waiters)
    targets = [(f"agent-{n}", idle_waiter, (db_path, f"agent-{n}", seconds)) for n in range(1, waiters + 1)]
    _, reports = run_group(targets, lambda: None)
    cpu = sum(r.cpu_seconds / r.wall_seconds for r in reports if r.wall_seconds > 0) * 100
    return Idle(waiters, seconds, cpu)


# -- reporting --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        # Latency tails are sensitive to other work on the machine; this says how busy it was.
        "load_average": LOAD_BEFORE,
    }


def goal(rows: Sequence[BroadcastRow]) -> dict[str, Any]:
    """The target: p99 send -> wait-return latency within 100 ms with 50 waiters."""
    at = next((r for r in rows if r.waiters == GOAL_WAITERS), None)
    return {
        "text": f"p99 <= {GOAL_P99_MS:.0f} ms on SQLite with {GOAL_WAITERS} waiters",
        "p99_ms": None if at is None else round(at.latency.p99_ms, 2),
        "met": None if at is None else at.latency.p99_ms <= GOAL_P99_MS,
    }


def render_table(
    rows: Sequence[BroadcastRow], trip: RoundTrip, idle: Idle, interval: float, args: argparse.Namespace
) -> str:
    """The plain-text report."""
    info = machine()
    lines = [
        f"machine: {info['platform']} ({info['machine']}), {info['cpu_count']} CPUs, "
        f"Python {info['python']}, SQLite {info['sqlite']}, load average {info['load_average']} before the run",
        f"send -> wait-return latency: {args.messages} entries to all, one every {interval * 1000:.0f} ms, "
        f"fresh database per row, WAL, waiters poll every {threads.POLL_SECONDS * 1000:.0f} ms",
        "",
        f"{'waiters':>7} | {'samples':>7} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | "
        f"{'send p50 ms':>11} | {'send p99 ms':>11} | {'waiter CPU %':>12}",
        f"{'-' * 7}-+-{'-' * 7}-+-{'-' * 7}-+-{'-' * 7}-+-{'-' * 7}-+-{'-' * 11}-+-{'-' * 11}-+-{'-' * 12}",
    ]
    lines.extend(
        f"{r.waiters:>7} | {r.latency.count:>7} | {r.latency.p50_ms:>7.1f} | {r.latency.p99_ms:>7.1f} | "
        f"{r.latency.max_ms:>7.1f} | {r.send.p50_ms:>11.1f} | {r.send.p99_ms:>11.1f} | {r.waiter_cpu_percent:>12.1f}"
        for r in rows
    )
    t = trip.latency
    lines += [
        "(waiter CPU %: summed over the waiter processes while they ran, percent of one core)",
        "",
        f"ask -> answer round trip ({t.count} in a row, {ASKER} asks, {LEAD} waits and replies): "
        f"p50 {t.p50_ms:.1f} ms, p99 {t.p99_ms:.1f} ms, max {t.max_ms:.1f} ms",
        f"idle waiting: {idle.waiters} waiters for {idle.seconds:g} s, nothing sent: CPU {idle.cpu_percent:.1f}% of "
        f"one core in total ({idle.cpu_percent / idle.waiters:.2f}% per waiter, {idle.machine_percent:.1f}% of "
        "the machine)",
    ]
    target = goal(rows)
    at = next((r for r in rows if r.waiters == GOAL_WAITERS), None)
    verdict = (
        "not measured" if at is None else f"{'met' if target['met'] else 'NOT met'} (p99 {at.latency.p99_ms:.1f} ms)"
    )
    lines += ["", f"goal: {target['text']}: {verdict}"]
    return "\n".join(lines)


def render_json(
    rows: Sequence[BroadcastRow], trip: RoundTrip, idle: Idle, interval: float, args: argparse.Namespace
) -> str:
    """The same figures as one JSON object."""

    def stats(s: Stats) -> dict[str, Any]:
        return {
            "count": s.count,
            "p50_ms": round(s.p50_ms, 2),
            "p99_ms": round(s.p99_ms, 2),
            "max_ms": round(s.max_ms, 2),
        }

    return json.dumps(
        {
            "machine": machine(),
            "poll_seconds": threads.POLL_SECONDS,
            "messages": args.messages,
            "interval_ms": interval * 1000,
            "broadcast": [
                {
                    "waiters": r.waiters,
                    "latency": stats(r.latency),
                    "send": stats(r.send),
                    "waiter_cpu_percent": round(r.waiter_cpu_percent, 1),
                }
                for r in rows
            ],
            "ask_answer": stats(trip.latency),
            "idle": {
                "waiters": idle.waiters,
                "seconds": idle.seconds,
                "cpu_percent_of_one_core": round(idle.cpu_percent, 2),
                "cpu_percent_of_machine": round(idle.machine_percent, 2),
            },
            "goal": goal(rows),
        }
    )


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("waiter counts must be positive")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--waiters", type=_counts, default=[1, 10, 50], metavar="LIST", help="waiter counts (default 1,10,50)"
    )
    parser.add_argument("--messages", type=int, default=200, metavar="N", help="entries sent per row (default 200)")
    parser.add_argument(
        "--interval-ms", type=float, default=30.0, metavar="MS", help="pause between two sends (default 30)"
    )
    parser.add_argument("--round-trips", type=int, default=100, metavar="N", help="asks in a row (default 100)")
    parser.add_argument("--idle-waiters", type=int, default=50, metavar="N", help="idle waiters (default 50)")
    parser.add_argument(
        "--idle-seconds", type=float, default=3.0, metavar="S", help="length of the idle wait (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.round_trips < 1 or args.idle_waiters < 1:
        parser.error("--messages, --round-trips and --idle-waiters must be positive")
    if args.interval_ms < 0 or args.idle_seconds <= 0:
        parser.error("--interval-ms must not be negative and --idle-seconds must be positive")
    interval = args.interval_ms / 1000

    def progress(text: str) -> None:
        if not args.json:
            print(f"  {text}", file=sys.stderr, flush=True)

    rows: list[BroadcastRow] = []
    try:
        with tempfile.TemporaryDirectory(prefix="swarm-msg-bench-") as tmp_dir:
            tmp = Path(tmp_dir)
            for n in args.waiters:
                row = measure_broadcast(tmp, n, args.messages, interval)
                rows.append(row)
                progress(f"{n} waiter(s): p50 {row.latency.p50_ms:.1f} ms, p99 {row.latency.p99_ms:.1f} ms")
            trip = measure_round_trips(tmp, args.round_trips)
            progress(f"ask/answer: p50 {trip.latency.p50_ms:.1f} ms, p99 {trip.latency.p99_ms:.1f} ms")
            idle = measure_idle(tmp, args.idle_waiters, args.idle_seconds)
            progress(f"idle: {idle.cpu_percent:.1f}% of one core for {idle.waiters} waiters")
    except BenchError as exc:
        print(f"benchmark FAILED a correctness check: {exc}", file=sys.stderr)
        return 1
    print((render_json if args.json else render_table)(rows, trip, idle, interval, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
