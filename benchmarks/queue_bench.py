"""Claim+complete throughput of swarm's SQLite store against a hand-written SQLite queue, in one run.

Run: ``.venv/bin/python benchmarks/queue_bench.py [--tasks-per-process N] [--processes 1,4,8,16]
[--repeat R] [--json]``

For every process count it measures two things on the same machine, one right after the other:

* **swarm**: each process opens ``open_store("sqlite:///...")`` and loops ``claim`` then ``complete``
  until the queue is empty. This is the full domain path: reaper, agent upsert, capability filter, event log,
  dependency promotion.
* **raw**: the smallest queue that offers the same guarantee (an atomic claim fenced by a lease token), on a
  one-table schema with the same pragmas, the same busy timeout and the same "retry the whole transaction
  while busy" rule. It is the floor: what one ``BEGIN IMMEDIATE`` write per step costs on this disk.

The ratio swarm/raw is the figure to watch; absolute numbers depend on the machine. Every process is
started, waits until all of them have opened their database, and is then released at once; the clock runs
from the release until the last process has reported. Every measurement uses a fresh database file in a
temporary directory. Afterwards each task must have been claimed exactly once and be done; otherwise the
script exits with status 1. It never judges speed by its exit status: benchmarks print figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from _common import (
    BenchError,
    Report,
    Target,
    check_done,
    count_list,
    machine,
    queue_tasks,
    run_group,
    sqlite_url,
    start_barrier,
    swarm_task_rows,
    swarm_worker,
    task_ids,
)
from _report import Record, Result, Table, emit

from swarm.store import StoreOptions

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event, Semaphore

T = TypeVar("T")
Kind = Literal["swarm", "raw"]
EPIC = "bench"

GOAL_PROCESSES = 8
GOAL_RATIO = 0.5
# swarm's default (StoreOptions.busy_timeout_seconds); the raw side uses the same so both wait alike.
BUSY_TIMEOUT_SECONDS = StoreOptions().busy_timeout_seconds
LEASE_TTL_SECONDS = 300.0

RAW_SCHEMA = """
CREATE TABLE t (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    owner       TEXT,
    lease_token TEXT,
    lease_until REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,  -- counts claims, so the check can prove exactly-once
    priority    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);
CREATE INDEX t_ready ON t (priority DESC, created_at, id) WHERE state = 'ready';
"""

# Same shape as swarm's claim: pick the first ready row in claim order and take it in one statement.
RAW_CLAIM = """
UPDATE t SET state = 'claimed', owner = ?, lease_token = ?, lease_until = ?, attempts = attempts + 1
WHERE id = (SELECT id FROM t WHERE state = 'ready' ORDER BY priority DESC, created_at, id LIMIT 1)
RETURNING id
"""
RAW_COMPLETE = "UPDATE t SET state = 'done' WHERE id = ? AND lease_token = ?"


@dataclass(frozen=True)
class Row:
    """One line of the result table: the median of the repeated timings of each side."""

    processes: int
    tasks: int
    swarm_samples: tuple[float, ...]
    raw_samples: tuple[float, ...]

    @property
    def swarm_seconds(self) -> float:
        """Median wall-clock seconds of the swarm runs."""
        return statistics.median(self.swarm_samples)

    @property
    def raw_seconds(self) -> float:
        """Median wall-clock seconds of the raw runs."""
        return statistics.median(self.raw_samples)

    @property
    def swarm_rate(self) -> float:
        """Claim+complete pairs per second through swarm."""
        return self.tasks / self.swarm_seconds

    @property
    def raw_rate(self) -> float:
        """Claim+complete pairs per second through the raw baseline."""
        return self.tasks / self.raw_seconds

    @property
    def ratio(self) -> float:
        """swarm / raw; 1.0 would mean swarm adds nothing over the bare SQL."""
        return self.swarm_rate / self.raw_rate


# -- the raw baseline ------------------------------------------------------------------------------------


def _is_busy(exc: sqlite3.Error) -> bool:
    # Same test as swarm.store.sqlite._is_busy: both "database is locked" and "database is busy" qualify.
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _raw_connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` exactly as swarm opens its database (pragmas, busy timeout, autocommit)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        except sqlite3.OperationalError as exc:
            # Several processes opening at once can collide on the journal-mode switch, as in swarm.
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            conn.close()
            raise


def _raw_write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Cursor], T]) -> T:
    """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying it while busy: swarm's ``_run_write``.

    The backoff (1 ms doubling to 50 ms, on top of SQLite's own busy handler) is copied on purpose, so the
    two sides differ only in what they do inside the transaction.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.001
    while True:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                result = fn(cur)
                cur.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise
        finally:
            cur.close()


def _raw_claim(conn: sqlite3.Connection, agent: str) -> tuple[str, str] | None:
    """Claim the next ready row; returns (id, lease token) or None when the queue is empty."""
    token = secrets.token_hex(16)  # the same kind of token swarm hands out

    def op(cur: sqlite3.Cursor) -> str | None:
        row = cur.execute(RAW_CLAIM, (agent, token, time.time() + LEASE_TTL_SECONDS)).fetchone()
        return None if row is None else str(row[0])

    task_id = _raw_write(conn, op)
    return None if task_id is None else (task_id, token)


def _raw_complete(conn: sqlite3.Connection, task_id: str, token: str) -> None:
    """Mark a claimed row done, fenced by its lease token."""

    def op(cur: sqlite3.Cursor) -> None:
        cur.execute(RAW_COMPLETE, (task_id, token))
        if cur.rowcount != 1:
            # Nobody else can hold the row in this benchmark, so a miss is a real bug, not a lost race.
            raise BenchError(f"raw complete of {task_id} updated {cur.rowcount} rows")

    _raw_write(conn, op)


# -- worker processes (module level so that the spawn start method can import them) ---------------------


def raw_worker(db_path: str, name: str, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Open the database, wait for the common start, then claim+complete until the raw queue is empty.
    (The swarm side is :func:`_common.swarm_worker`.)"""
    report = Report(name=name)
    try:
        conn = _raw_connect(Path(db_path))
        try:
            start_barrier(ready, go)
            while True:
                got = _raw_claim(conn, name)
                if got is None:
                    break
                report.claimed.append(got[0])
                _raw_complete(conn, *got)
        finally:
            conn.close()
    except BaseException:
        # Reported, not raised: the parent turns it into a failed correctness check and exit status 1.
        report.error = traceback.format_exc()
    results.put(report)


# -- one measurement --------------------------------------------------------------------------------------


def _prepare(kind: Kind, db_path: str, ids: Sequence[str]) -> None:
    """Create the database and queue every task as ready, before any worker starts."""
    if kind == "swarm":
        queue_tasks(sqlite_url(db_path), EPIC, ids)
        return
    conn = _raw_connect(Path(db_path))
    try:
        conn.executescript(RAW_SCHEMA)
        now = time.time()
        # One creation time for all, as swarm's add_tasks stamps one batch; the id then decides the order.
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t (id, state, created_at) VALUES (?, 'ready', ?)", [(i, now) for i in ids])
        conn.execute("COMMIT")
    finally:
        conn.close()


def _verify(kind: Kind, db_path: str, ids: Sequence[str], reports: Sequence[Report]) -> None:
    """Every task claimed exactly once (by the workers' own account and by the database) and done."""
    if kind == "swarm":
        rows: Sequence[Sequence[Any]] = swarm_task_rows(sqlite_url(db_path), EPIC)
    else:
        conn = sqlite3.connect(db_path)
        try:
            rows = conn.execute("SELECT id, state, attempts, owner FROM t").fetchall()
        finally:
            conn.close()
    check_done(kind, ids, reports, rows)


def measure(kind: Kind, processes: int, tasks_per_process: int) -> float:
    """Seconds for ``processes`` workers to drain ``processes * tasks_per_process`` tasks; verified."""
    ids = task_ids(processes * tasks_per_process)
    with tempfile.TemporaryDirectory(prefix=f"swarm-bench-{kind}-") as tmp:
        db_path = str(Path(tmp) / f"{kind}.db")
        _prepare(kind, db_path, ids)
        names = [f"w{n:02d}" for n in range(processes)]
        targets: list[Target]
        if kind == "swarm":
            targets = [(name, swarm_worker, (sqlite_url(db_path), name, LEASE_TTL_SECONDS)) for name in names]
        else:
            targets = [(name, raw_worker, (db_path, name)) for name in names]
        # The clock runs from the release of the workers until the last one has reported.
        _, reports, elapsed = run_group(kind, targets, lambda: None, prefix=f"bench-{kind}")
        _verify(kind, db_path, ids, reports)
    return elapsed


# -- the result --------------------------------------------------------------------------------------------


def result(rows: Sequence[Row], tasks_per_process: int, repeat: int) -> Result:
    """The figures: one per process count against the raw queue, the goal at 8 processes."""
    cpus = os.cpu_count() or 1
    records = []
    for r in rows:
        at_goal = r.processes == GOAL_PROCESSES
        records.append(
            Record(
                f"claim+complete pairs/s, {r.processes} process{'es' if r.processes != 1 else ''}",
                r.swarm_rate,
                digits=0,
                baseline=r.raw_rate,
                baseline_of="raw SQLite",
                goal=f">= {GOAL_RATIO}x raw" if at_goal else "",
                met=r.ratio >= GOAL_RATIO if at_goal else None,
                limit=f"swarm's claim+complete takes {1 / r.ratio:.1f}x as long per pair as the raw queue. Both "
                "sides take SQLite's single write lock (BEGIN IMMEDIATE) twice per pair, but swarm does more "
                "inside it: lease reaping, the agent upsert, the capability filter, the event log and dependency "
                f"promotion. With one writer at a time, that work in the lock is the ceiling, and {r.processes} "
                f"processes on {cpus} CPUs add scheduling waits to it."
                if at_goal
                else "",
            )
        )
    table = Table(
        ["processes", "tasks", "swarm pairs/s", "raw pairs/s", "ratio swarm/raw"],
        [[r.processes, r.tasks, r.swarm_rate, r.raw_rate, r.ratio] for r in rows],
        digits=[0, 0, 0, 0, 2],
        units=["", "", "", "", "x"],
    )
    intro = (
        "Claim+complete pairs per second through swarm's SQLite store against a one-table raw SQLite queue with "
        f"the same pragmas and busy rule; {tasks_per_process} tasks per process, median of {repeat} runs per side, "
        "the two sides interleaved."
    )
    params = {"tasks_per_process": tasks_per_process, "repeat": repeat, "processes": [r.processes for r in rows]}
    return Result("queue", "Queue throughput (queue_bench.py)", machine(sqlite=True), params, records, [intro, table])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--tasks-per-process",
        type=int,
        default=500,
        metavar="N",
        help="tasks queued per worker process (default 500)",
    )
    parser.add_argument(
        "--processes",
        type=count_list("process"),
        default=[1, 4, 8, 16],
        metavar="LIST",
        help="comma-separated process counts (default 1,4,8,16)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="R",
        help="timed runs per side and process count; the median is reported (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.tasks_per_process < 1 or args.repeat < 1:
        parser.error("--tasks-per-process and --repeat must be positive")
    rows: list[Row] = []
    try:
        for n in args.processes:
            swarm_samples: list[float] = []
            raw_samples: list[float] = []
            # Interleave the two sides so that a slow patch of the machine hits both, not just one.
            for _ in range(args.repeat):
                swarm_samples.append(measure("swarm", n, args.tasks_per_process))
                raw_samples.append(measure("raw", n, args.tasks_per_process))
            row = Row(n, n * args.tasks_per_process, tuple(swarm_samples), tuple(raw_samples))
            rows.append(row)
            if not args.json:
                # Progress on stderr: a 16-process round takes a few seconds and the table comes last.
                print(
                    f"  {n} process(es): swarm {row.swarm_seconds:.2f}s, raw {row.raw_seconds:.2f}s "
                    f"(median of {args.repeat})",
                    file=sys.stderr,
                    flush=True,
                )
    except BenchError as exc:
        print(f"benchmark FAILED a correctness check: {exc}", file=sys.stderr)
        return 1
    emit(result(rows, args.tasks_per_process, args.repeat), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
