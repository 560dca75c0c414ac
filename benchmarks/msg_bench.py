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
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    THREAD,
    WAIT_TIMEOUT_SECONDS,
    BenchError,
    Report,
    Stats,
    broadcast,
    count_list,
    load_average,
    machine,
    prime_and_start,
    register_agents,
    run_group,
    sqlite_url,
    start_barrier,
    store_child,
)
from _report import Record, Result, Table, emit

from swarm import threads
from swarm.models import LEAD
from swarm.store import Store

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event, Semaphore

EPIC = "E"
ASKER = "agent-1"
GOAL_WAITERS = 50
GOAL_P99_MS = 100.0
# The 1-minute load average when the script started (the report prints after the load it caused itself).
LOAD_BEFORE = load_average()[0]


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
# (the broadcast waiters are :func:`_common.broadcast_waiter`; each child reports through
# :func:`_common.store_child`)


def idle_waiter(
    db_path: str, identity: str, seconds: float, ready: Semaphore, go: Event, results: Queue[Report]
) -> None:
    """Sit in one wait that nothing ends; measure the CPU time it costs."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        prime_and_start(store, identity, ready, go)
        cpu, wall = time.process_time(), time.perf_counter()
        msg = threads.wait(store, threads.WaitSpec(identity=identity, thread=THREAD), timeout=seconds)
        report.cpu_seconds = time.process_time() - cpu
        report.wall_seconds = time.perf_counter() - wall
        if msg is not None:
            raise BenchError(f"an idle wait returned entry {msg.seq}")

    store_child(body, sqlite_url(db_path), identity, ready, go, results)


def answering_lead(db_path: str, rounds: int, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Wait as ``lead`` and answer each question."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        prime_and_start(store, LEAD, ready, go)
        spec = threads.WaitSpec(identity=LEAD, thread=THREAD)
        while len(report.received) < rounds:
            msg = threads.wait(store, spec, timeout=WAIT_TIMEOUT_SECONDS)
            if msg is None:
                break
            report.received.append((msg.seq, msg.body, 0.0))
            threads.reply(store, LEAD, msg.seq, f"answer to {msg.body}", thread=THREAD)

    store_child(body, sqlite_url(db_path), LEAD, ready, go, results)


def asking_agent(db_path: str, rounds: int, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Ask ``rounds`` questions one after the other, timing each ``ask``; check every answer."""

    def body(store: Store, report: Report, ready: Semaphore, go: Event) -> None:
        start_barrier(ready, go)  # asks need no cursor: an answer is found by its reply_to
        for i in range(rounds):
            text = f"question {i}"
            started = time.perf_counter()
            question, answer = threads.ask(store, ASKER, text, to=LEAD, thread=THREAD, timeout=WAIT_TIMEOUT_SECONDS)
            report.samples.append(time.perf_counter() - started)
            if answer is None:
                raise BenchError(f"no answer to {text!r} (entry {question.seq})")
            if answer.reply_to != question.seq or answer.author != LEAD or answer.body != f"answer to {text}":
                raise BenchError(f"entry {question.seq} got a wrong answer: {answer}")

    store_child(body, sqlite_url(db_path), ASKER, ready, go, results)


# -- the three measurements ------------------------------------------------------------------------------


def measure_broadcast(tmp: Path, waiters: int, messages: int, interval: float) -> BroadcastRow:
    """``waiters`` processes wait while ``lead`` (this process) sends ``messages`` entries to all."""
    db_path = str(tmp / f"broadcast-{waiters}.db")
    register_agents(sqlite_url(db_path), EPIC, waiters)
    latencies, send_seconds, reports = broadcast(
        f"{waiters} waiters", sqlite_url(db_path), waiters, messages, interval, prefix="msg-bench"
    )
    cpu = sum(r.cpu_seconds / r.wall_seconds for r in reports if r.wall_seconds > 0) * 100
    return BroadcastRow(waiters, messages, Stats.of(latencies), Stats.of(send_seconds), cpu)


def measure_round_trips(tmp: Path, rounds: int) -> RoundTrip:
    """``agent-1`` asks, ``lead`` answers, ``rounds`` times in a row."""
    db_path = str(tmp / "ask.db")
    register_agents(sqlite_url(db_path), EPIC, 1)
    targets = [(LEAD, answering_lead, (db_path, rounds)), (ASKER, asking_agent, (db_path, rounds))]
    _, reports, _ = run_group("ask/answer", targets, lambda: None, prefix="msg-bench")
    lead = next(r for r in reports if r.name == LEAD)
    asker = next(r for r in reports if r.name == ASKER)
    bodies = [body for _, body, _ in lead.received]
    if bodies != [f"question {i}" for i in range(rounds)] or len(asker.samples) != rounds:
        raise BenchError(f"ask/answer: lead saw {len(bodies)} questions, agent timed {len(asker.samples)} asks")
    return RoundTrip(Stats.of(asker.samples))


def measure_idle(tmp: Path, waiters: int, seconds: float) -> Idle:
    """``waiters`` processes wait ``seconds`` with nothing sent; their summed CPU time over wall time."""
    db_path = str(tmp / "idle.db")
    register_agents(sqlite_url(db_path), EPIC, waiters)
    targets = [(f"agent-{n}", idle_waiter, (db_path, f"agent-{n}", seconds)) for n in range(1, waiters + 1)]
    _, reports, _ = run_group("idle", targets, lambda: None, prefix="msg-bench")
    cpu = sum(r.cpu_seconds / r.wall_seconds for r in reports if r.wall_seconds > 0) * 100
    return Idle(waiters, seconds, cpu)


# -- the result --------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    # Latency tails are sensitive to other work on the machine; the load average says how busy it was.
    return machine(sqlite=True, load_average=LOAD_BEFORE)


def _broadcast_records(rows: Sequence[BroadcastRow]) -> list[Record]:
    """p99 per waiter count, the goal at 50 waiters (with the p50 there too)."""
    cpus = os.cpu_count() or 1
    records = []
    for r in rows:
        at_goal = r.waiters == GOAL_WAITERS
        waiters = f"{r.waiters} waiter{'s' if r.waiters != 1 else ''}"
        if at_goal:
            records.append(Record(f"send -> wait p50, {waiters}", r.latency.p50_ms, " ms"))
        records.append(
            Record(
                f"send -> wait p99, {waiters}",
                r.latency.p99_ms,
                " ms",
                goal=f"<= {GOAL_P99_MS:.0f} ms" if at_goal else "",
                met=r.latency.p99_ms <= GOAL_P99_MS if at_goal else None,
                limit="every waiter is a process that polls SQLite's change counter (every "
                f"{threads.POLL_SECONDS * 1000:.0f} ms after a change, backing off when idle); with {r.waiters} "
                f"waiter processes on {cpus} CPUs a wake-up waits for a CPU, so the tail is scheduling, not the "
                "database."
                if at_goal
                else "",
            )
        )
    return records


def result(rows: Sequence[BroadcastRow], trip: RoundTrip, idle: Idle, interval: float, messages: int) -> Result:
    """The figures: broadcast latency per waiter count, the ask round trip, the idle cost."""
    t = trip.latency
    records = [
        *_broadcast_records(rows),
        Record("ask -> answer round trip p50", t.p50_ms, " ms"),
        Record("ask -> answer round trip p99", t.p99_ms, " ms"),
        Record(f"idle wait CPU per waiter ({idle.waiters} waiting)", idle.cpu_percent / idle.waiters, "% of a core", 2),
        Record(f"ask -> answer round trips in a row ({ASKER} asks, {LEAD} answers)", t.count, summary=False),
        Record("ask -> answer round trip max", t.max_ms, " ms", summary=False),
        Record(
            f"idle: {idle.waiters} waiters for {idle.seconds:g} s, CPU of one core in total",
            idle.cpu_percent,
            "%",
            2,
            summary=False,
        ),
        Record("idle: the same, of the machine", idle.machine_percent, "%", 2, summary=False),
    ]
    table = Table(
        ["waiters", "samples", "p50 ms", "p99 ms", "max ms", "send p50 ms", "send p99 ms", "waiter CPU %"],
        [
            [
                r.waiters,
                r.latency.count,
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.max_ms,
                r.send.p50_ms,
                r.send.p99_ms,
                r.waiter_cpu_percent,
            ]
            for r in rows
        ],
    )
    intro = (
        f"The lead sends {messages} entries to a thread, one every {interval * 1000:.0f} ms; each waiter process "
        "notes when its `threads.wait` returns each entry. Latency = receive time - send stamp; waiters poll every "
        f"{threads.POLL_SECONDS * 1000:.0f} ms at most when busy. Fresh SQLite database per row. Load average "
        f"before the script: {LOAD_BEFORE}. Waiter CPU %: summed over the waiter processes, percent of one core."
    )
    params = {
        "messages": messages,
        "interval_ms": interval * 1000,
        "poll_seconds": threads.POLL_SECONDS,
        "waiters": [r.waiters for r in rows],
        "idle_waiters": idle.waiters,
        "idle_seconds": idle.seconds,
    }
    return Result("msg", "Messages (msg_bench.py)", _machine(), params, records, [intro, table])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--waiters",
        type=count_list("waiter"),
        default=[1, 10, 50],
        metavar="LIST",
        help="waiter counts (default 1,10,50)",
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
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
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
    emit(result(rows, trip, idle, interval, args.messages), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
