"""swarm on PostgreSQL: claim+complete throughput against swarm on SQLite and procrastinate, and message wake
latency, all in one run on one throwaway PostgreSQL server.

Run: ``.venv/bin/python benchmarks/pg_bench.py [--workers 1,8,16] [--jobs-per-worker N] [--repeat R]
[--waiters N] [--messages N] [--interval-ms MS] [--durable] [--no-procrastinate] [--json]``

procrastinate is a benchmark-only dependency: ``.venv/bin/pip install -e '.[bench]'`` (or
``.venv/bin/pip install 'procrastinate>=3'``). ``--no-procrastinate`` leaves it out (its figures are then
null): swarm-pg against swarm-sqlite and the wake latency only.

One PostgreSQL server is started for the whole run (``initdb`` in a temporary folder, loopback TCP on a free
port, as the ``postgres`` user when run as root) and stopped at the end. By default it runs with
``fsync=off, synchronous_commit=off, full_page_writes=off`` as the test server does, so the figures measure
round trips and CPU, not the disk; ``--durable`` turns all three on. Both PostgreSQL contenders use the same
server with the same settings, each in a fresh database per measurement.

For every worker count, three contenders, one right after the other (interleaved across repeats):

* **swarm-pg**: W processes each open ``open_store("postgresql://...")`` and loop ``claim`` then
  ``complete`` until the queue is empty: the full domain path (reaper, agent refresh, event log, dependency
  promotion, NOTIFY).
* **swarm-sqlite**: the same on a fresh SQLite file (WAL, synchronous=NORMAL, swarm's defaults).
* **procrastinate**: W processes each open a procrastinate ``App`` on ``PsycopgConnector`` (its own pool of
  one connection, with procrastinate's default connection check) on procrastinate's own schema in a separate
  database of the same server, register as a worker and loop ``JobManager.fetch_job(queues=None, ...)`` then
  ``JobManager.finish_job(job, status=succeeded, delete_job=False)``: exactly what a procrastinate worker does
  around a task, without running one. The jobs are deferred beforehand, outside the timed span.

Each worker handles ``--jobs-per-worker`` items (default 500), so that the timed span (about 3 s at 8
workers) measures the steady state a long-lived worker lives in: a process's first claim+complete costs
several times a later one on either side (each new session plans its statements and functions), and with 100
per worker the whole span was under a second, mostly that warm-up. Smaller runs: ``--jobs-per-worker 100``.

Every process is spawned, opens its database, then waits at a start barrier; all are released at once and
the clock runs from the release until the last one has reported. Afterwards every task/job must have been
claimed exactly once, by the process that says it claimed it, and be done (swarm: state ``done``,
``attempts = 1``, owner = claimer; procrastinate: status ``succeeded``, ``attempts = 1``, ``worker_id`` =
claimer, one ``started`` event).

Message wake latency: ``--waiters`` processes (registered agents) loop ``threads.wait`` on the PostgreSQL
store while this process, as ``lead``, sends ``--messages`` entries to all, one every ``--interval-ms``, each
carrying its ``time.time()`` send stamp; latency = return of the wait - send stamp (send call included). Every
waiter must receive every entry exactly once, in order.

A failed check exits with status 1. The script never judges speed by its exit status: benchmarks print
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from _common import (
    BenchError,
    Report,
    Stats,
    Target,
    broadcast,
    check_claims,
    check_done,
    count_list,
    load_average,
    machine,
    median,
    pg_bin_dir,
    queue_tasks,
    register_agents,
    run_group,
    sqlite_url,
    start_barrier,
    swarm_task_rows,
    swarm_worker,
    task_ids,
)
from _report import Block, Record, Result, Table, emit
from psycopg import sql

from swarm import threads

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event, Semaphore

#: Items per worker by default (see the module docstring for why not fewer).
JOBS_PER_WORKER = 500

Kind = Literal["swarm-pg", "swarm-sqlite", "procrastinate"]
KINDS: tuple[Kind, ...] = ("swarm-pg", "procrastinate", "swarm-sqlite")

GOAL_WORKERS = 8
GOAL_RATIO = 1.5
GOAL_P99_MS = 20.0
EPIC = "bench"
QUEUE = "bench"
LEASE_TTL_SECONDS = 300.0
PG_START_TIMEOUT = 60
# The 1-minute load average when the script started (the report prints after the load it caused itself).
LOAD_BEFORE = load_average()[0]
MISSING_PROCRASTINATE = (
    "procrastinate is not installed; it is a benchmark-only dependency: "
    ".venv/bin/pip install -e '.[bench]' (or .venv/bin/pip install 'procrastinate>=3')"
)


class ServerError(Exception):
    """The PostgreSQL server could not be found, started or used."""


# -- the PostgreSQL server ------------------------------------------------------------------------------


def _find_pg_bin() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb and pg_ctl, else the one on PATH."""
    found = pg_bin_dir(("initdb", "pg_ctl"))
    if found is None:
        raise ServerError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary folder, loopback only, owned by this run (a trimmed tests/pg.py)."""

    def __init__(self, durable: bool) -> None:
        self.bin_dir = _find_pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="swarm-pg-bench-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_file = self.root / "server.log"
        self.port = _free_port()
        self.running = False
        self._counter = 0
        flag = "on" if durable else "off"
        #: The settings that differ from initdb's defaults (shown in the report).
        self.settings = {
            "fsync": flag,
            "synchronous_commit": flag,
            "full_page_writes": flag,
            "shared_buffers": "128MB",
            "max_connections": "200",
        }

    @classmethod
    @contextlib.contextmanager
    def running_server(cls, durable: bool) -> Iterator[PgServer]:
        """Start a server, yield it, and always stop it (and remove its files)."""
        server = cls(durable)
        atexit.register(server.stop)  # also on an abort; stop() is idempotent
        try:
            server._start()
            yield server
        finally:
            server.stop()

    def _as_postgres(self, argv: Sequence[str]) -> list[str]:
        # initdb and pg_ctl refuse to run as root.
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)

    def _run(self, *argv: str) -> None:
        try:
            proc = subprocess.run(
                self._as_postgres(argv), capture_output=True, text=True, timeout=120, check=False, cwd=self.root
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{Path(argv[0]).name} failed: {exc}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().replace("\n", " | ")
            raise ServerError(f"{Path(argv[0]).name} {argv[1:2]} failed (exit {proc.returncode}): {detail}")

    def _read_log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _start(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServerError("running as root, but there is no 'postgres' user to run initdb as") from exc
            for path in (self.root, self.socket_dir):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"),
            "--no-sync",
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "log_min_messages": "warning",
            **self.settings,
        }
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write("\n# swarm pg_bench\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
        )
        for attempt in range(3):
            # The last setting of a name wins, so a new port is simply appended.
            with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
                handle.write(f"port = {self.port}\n")
            try:
                self._pg_ctl("start", "-w", "-t", str(PG_START_TIMEOUT), "-l", str(self.log_file))
                break
            except ServerError:
                # A port found free may be taken by the time the server binds it: try another one.
                if attempt == 2 or "could not bind" not in self._read_log():
                    raise
                self.port = _free_port()
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def stop(self) -> None:
        """Stop the server this object started (fast shutdown) and remove its files; safe to call twice."""
        if self.running or (self.data_dir / "postmaster.pid").exists():
            self.running = False
            with contextlib.suppress(ServerError):
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``dbname`` over loopback TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url(), autocommit=True, application_name="pg-bench-admin")

    def version(self) -> str:
        """The server's version string, e.g. ``15.18``."""
        with self._admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"

    def create_database(self, prefix: str) -> str:
        """A fresh empty database; returns its name."""
        self._counter += 1
        name = f"{prefix}_{self._counter}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting whatever is still connected to it."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- child processes (module level so that the spawn start method can import them) -----------------------


def _procrastinate() -> Any:
    """The procrastinate package, or a clear error when the benchmark extra is not installed."""
    try:
        import procrastinate
        import procrastinate.jobs
    except ImportError as exc:
        raise BenchError(MISSING_PROCRASTINATE) from exc
    # "App is instantiated in the main Python module": a hint for apps whose workers import tasks by path;
    # nothing here runs a task, so it is noise.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    return procrastinate


def _procrastinate_app(url: str) -> Any:
    """An App on procrastinate's own psycopg connector, with a pool of one connection (one per process, as
    swarm uses); procrastinate's default connection check stays on."""
    procrastinate = _procrastinate()
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=1))


async def _procrastinate_loop(url: str, ready: Semaphore, go: Event, report: Report) -> None:
    procrastinate = _procrastinate()
    succeeded = procrastinate.jobs.Status.SUCCEEDED
    app = _procrastinate_app(url)
    async with app.open_async():
        manager = app.job_manager
        # The worker row stays (the database is dropped afterwards): the check compares each job's worker_id.
        worker_id = int(await manager.register_worker())
        report.worker_id = worker_id
        await asyncio.to_thread(start_barrier, ready, go)
        while True:
            job = await manager.fetch_job(queues=None, worker_id=worker_id)
            if job is None:
                break
            report.claimed.append(str(job.id))
            await manager.finish_job(job, status=succeeded, delete_job=False)


def procrastinate_worker(url: str, name: str, ready: Semaphore, go: Event, results: Queue[Report]) -> None:
    """Fetch and finish procrastinate jobs until none is left (one asyncio loop in this process)."""
    report = Report(name=name)
    try:
        asyncio.run(_procrastinate_loop(url, ready, go, report))
    except BaseException:
        report.error = traceback.format_exc()
    results.put(report)


# -- throughput ---------------------------------------------------------------------------------------------


def _verify_swarm(label: str, url: str, ids: Sequence[str], reports: Sequence[Report]) -> None:
    check_done(label, ids, reports, swarm_task_rows(url, EPIC))


async def _defer_procrastinate_jobs(url: str, total: int) -> list[str]:
    procrastinate = _procrastinate()
    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        jobs = [
            procrastinate.jobs.Job(queue=QUEUE, task_name="bench", lock=None, queueing_lock=None, task_kwargs={"n": i})
            for i in range(total)
        ]
        deferred = await app.job_manager.batch_defer_jobs_async(jobs)
    return [str(job.id) for job in deferred]


def _verify_procrastinate(label: str, url: str, ids: Sequence[str], reports: Sequence[Report]) -> None:
    claimer = check_claims(label, ids, reports)
    worker_of = {str(r.worker_id): r.name for r in reports}
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT j.id::text, j.status::text, j.attempts, j.worker_id::text,
                   (SELECT count(*) FROM procrastinate_events AS e WHERE e.job_id = j.id AND e.type = 'started')
            FROM procrastinate_jobs AS j
            """
        ).fetchall()
    bad = [
        row
        for row in rows
        if row[1] != "succeeded" or row[2] != 1 or row[4] != 1 or worker_of.get(str(row[3])) != claimer.get(row[0])
    ]
    if len(rows) != len(ids) or bad:
        raise BenchError(
            f"{label}: the database disagrees: {len(rows)} rows for {len(ids)} jobs, "
            f"{len(bad)} not succeeded exactly once by their claimer (e.g. {bad[:3]})"
        )


def measure_throughput(server: PgServer, tmp: Path, kind: Kind, workers: int, per_worker: int) -> float:
    """Seconds for ``workers`` processes to claim+complete ``workers * per_worker`` queued items; verified."""
    label = f"{kind} with {workers} worker(s)"
    total = workers * per_worker
    names = [f"w{n:02d}" for n in range(workers)]
    dbname: str | None = None
    db_path = tmp / f"sqlite-{time.monotonic_ns()}.db"
    try:
        if kind == "swarm-sqlite":
            url = sqlite_url(db_path)
        else:
            dbname = server.create_database(kind.replace("-", "_"))
            url = server.url(dbname)
        targets: list[Target]
        if kind == "procrastinate":
            ids = asyncio.run(_defer_procrastinate_jobs(url, total))
            targets = [(n, procrastinate_worker, (url, n)) for n in names]
        else:
            ids = task_ids(total)
            queue_tasks(url, EPIC, ids)
            targets = [(n, swarm_worker, (url, n, LEASE_TTL_SECONDS)) for n in names]
        _, reports, elapsed = run_group(label, targets, lambda: None, prefix="pg-bench")
        if kind == "procrastinate":
            _verify_procrastinate(label, url, ids, reports)
        else:
            _verify_swarm(label, url, ids, reports)
    finally:
        if dbname is not None:
            server.drop_database(dbname)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return elapsed


@dataclass(frozen=True)
class Row:
    """One line of the throughput table: the timings of each contender (median reported)."""

    workers: int
    jobs: int
    samples: dict[str, tuple[float, ...]]

    def seconds(self, kind: Kind) -> float:
        """Median wall-clock seconds of one contender; NaN for one left out (``--no-procrastinate``)."""
        return median(self.samples.get(kind, ()))

    def rate(self, kind: Kind) -> float:
        """Claim+complete (fetch+finish) pairs per second."""
        return self.jobs / self.seconds(kind)

    @property
    def ratio(self) -> float:
        """swarm-pg / procrastinate."""
        return self.rate("swarm-pg") / self.rate("procrastinate")

    @property
    def pg_vs_sqlite(self) -> float:
        """swarm-pg / swarm-sqlite."""
        return self.rate("swarm-pg") / self.rate("swarm-sqlite")


# -- wake latency ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wake:
    """The wake-latency figures."""

    waiters: int
    messages: int
    interval_ms: float
    latency: Stats
    send: Stats


def measure_wake(server: PgServer, waiters: int, messages: int, interval: float) -> Wake:
    """``waiters`` processes wait on a PostgreSQL store while ``lead`` (this process) sends to all."""
    dbname = server.create_database("wake")
    url = server.url(dbname)
    try:
        register_agents(url, EPIC, waiters)
        latencies, send_seconds, _ = broadcast("wake latency", url, waiters, messages, interval, prefix="pg-bench")
    finally:
        server.drop_database(dbname)
    return Wake(waiters, messages, interval * 1000, Stats.of(latencies), Stats.of(send_seconds))


# -- the result ------------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _machine(server_version: str) -> dict[str, Any]:
    return machine(
        sqlite=True,
        postgresql=server_version,
        psycopg=_version("psycopg"),
        procrastinate=_version("procrastinate"),
        load_average=LOAD_BEFORE,
    )


def _throughput_records(rows: Sequence[Row]) -> list[Record]:
    """Per worker count: swarm-pg against procrastinate (the goal at 8 workers) and against swarm-sqlite."""
    cpus = os.cpu_count() or 1
    records = []
    for r in rows:
        at_goal = r.workers == GOAL_WORKERS and not math.isnan(r.ratio)
        workers = f"{r.workers} worker{'s' if r.workers != 1 else ''}"
        records.append(
            Record(
                f"claim+complete pairs/s on PostgreSQL, {workers}",
                r.rate("swarm-pg"),
                digits=0,
                baseline=r.rate("procrastinate"),
                baseline_of="procrastinate",
                goal=f">= {GOAL_RATIO}x procrastinate" if r.workers == GOAL_WORKERS else "",
                met=r.ratio >= GOAL_RATIO if at_goal else None,
                limit="swarm's claim and complete each run the full domain path (lease reaping, the agent refresh, "
                "the event log, dependency promotion, NOTIFY on completion) as one server-side function call inside "
                "an explicit transaction: two round trips each (BEGIN with the call, then COMMIT once the "
                "transaction id is known, so a COMMIT lost with its connection can be resolved), where "
                "procrastinate's fetch_job and finish_job are one autocommit call each. The PostgreSQL server and "
                f"the worker processes share {cpus} CPUs.",
            )
        )
        records.append(
            Record(
                f"claim+complete pairs/s on PostgreSQL vs SQLite, {workers}",
                r.rate("swarm-pg"),
                digits=0,
                baseline=r.rate("swarm-sqlite"),
                baseline_of="swarm on SQLite",
            )
        )
    return records


def _wake_records(wake: Wake) -> list[Record]:
    lat, snd, cpus = wake.latency, wake.send, os.cpu_count() or 1
    return [
        Record(f"wake latency p50 on PostgreSQL, {wake.waiters} waiters", lat.p50_ms, " ms"),
        Record(
            f"wake latency p99 on PostgreSQL, {wake.waiters} waiters",
            lat.p99_ms,
            " ms",
            goal=f"<= {GOAL_P99_MS:.0f} ms",
            met=None if math.isnan(lat.p99_ms) else lat.p99_ms <= GOAL_P99_MS,
            limit="a wake-up needs the commit, the NOTIFY delivery to each waiter's listener thread and the waiter's "
            f"next check of it (every {threads.POLL_SECONDS * 1000:.0f} ms, longer when idle); with {wake.waiters} "
            f"waiter processes, the server and the sender on {cpus} CPUs, the tail is waiting for a CPU.",
        ),
        Record("wake latency max", lat.max_ms, " ms", summary=False),
        Record("wake latency samples", lat.count, summary=False),
        Record("the send call itself, p50", snd.p50_ms, " ms", summary=False),
        Record("the send call itself, p99", snd.p99_ms, " ms", summary=False),
    ]


def result(server: PgServer, info: dict[str, Any], rows: Sequence[Row], wake: Wake, args: argparse.Namespace) -> Result:
    """The figures: the three contenders per worker count, and the wake latency."""
    settings = ", ".join(f"{k}={v}" for k, v in server.settings.items())
    table = Table(
        [
            "workers",
            "jobs",
            "swarm-pg pairs/s",
            "swarm-sqlite pairs/s",
            "procrastinate pairs/s",
            "pg/procrastinate",
            "pg/sqlite",
        ],
        [
            [
                r.workers,
                r.jobs,
                r.rate("swarm-pg"),
                r.rate("swarm-sqlite"),
                r.rate("procrastinate"),
                r.ratio,
                r.pg_vs_sqlite,
            ]
            for r in rows
        ],
        digits=[0, 0, 0, 0, 0, 2, 2],
        units=["", "", "", "", "", "x", "x"],
    )
    section: list[Block] = [
        "Claim+complete pairs per second (procrastinate: `fetch_job` + `finish_job`), "
        f"{args.jobs_per_worker} per worker, median of {args.repeat} runs, the three contenders interleaved, a fresh "
        f"database per run. One PostgreSQL {info['postgresql']} server for the whole run, loopback TCP, "
        f"{settings or 'defaults'} (the same for swarm and procrastinate {info['procrastinate']}); SQLite: WAL, "
        f"synchronous=NORMAL. Load average before the script: {info['load_average']}.",
        table,
        f"Wake latency on PostgreSQL ({wake.waiters} waiters, {wake.messages} entries to all, one every "
        f"{wake.interval_ms:.0f} ms; NOTIFY on commit, a listener thread per store, waiters checking it every "
        f"{threads.POLL_SECONDS * 1000:.0f} ms).",
    ]
    params = {
        "workers": [r.workers for r in rows],
        "jobs_per_worker": args.jobs_per_worker,
        "repeat": args.repeat,
        "server_settings": server.settings,
        "waiters": wake.waiters,
        "messages": wake.messages,
        "poll_seconds": threads.POLL_SECONDS,
    }
    records = [*_throughput_records(rows), *_wake_records(wake)]
    return Result("pg", "PostgreSQL (pg_bench.py)", info, params, records, section)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, and return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--workers",
        type=count_list("worker"),
        default=[1, 8, 16],
        metavar="LIST",
        help="worker process counts (default 1,8,16)",
    )
    parser.add_argument(
        "--jobs-per-worker",
        type=int,
        default=JOBS_PER_WORKER,
        metavar="N",
        help=f"tasks/jobs queued per worker (default {JOBS_PER_WORKER})",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="R", help="timed runs per contender and count; median (default 3)"
    )
    parser.add_argument("--waiters", type=int, default=10, metavar="N", help="wake-latency waiters (default 10)")
    parser.add_argument("--messages", type=int, default=200, metavar="N", help="entries sent to them (default 200)")
    parser.add_argument(
        "--interval-ms", type=float, default=30.0, metavar="MS", help="pause between two sends (default 30)"
    )
    parser.add_argument(
        "--durable", action="store_true", help="run PostgreSQL with fsync, synchronous_commit, full_page_writes on"
    )
    parser.add_argument(
        "--no-procrastinate",
        action="store_true",
        help="leave procrastinate out (it need not be installed); its figures are null",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.jobs_per_worker < 1 or args.repeat < 1 or args.waiters < 1 or args.messages < 1:
        parser.error("--jobs-per-worker, --repeat, --waiters and --messages must be positive")
    if args.interval_ms < 0:
        parser.error("--interval-ms must not be negative")
    kinds = tuple(kind for kind in KINDS if kind != "procrastinate" or not args.no_procrastinate)
    if "procrastinate" in kinds and importlib.util.find_spec("procrastinate") is None:
        print(f"error: {MISSING_PROCRASTINATE} (or leave it out: --no-procrastinate)", file=sys.stderr)
        return 2

    def progress(text: str) -> None:
        if not args.json:
            print(f"  {text}", file=sys.stderr, flush=True)

    # A plain SIGTERM would skip the finally blocks and leave the server running: exit through them instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    rows: list[Row] = []
    try:
        with PgServer.running_server(args.durable) as server, tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
            info = _machine(server.version())
            for n in args.workers:
                samples: dict[str, list[float]] = {kind: [] for kind in kinds}
                # Interleave the contenders so that a slow patch of the machine hits all, not just one.
                for run in range(1, args.repeat + 1):
                    for kind in kinds:
                        seconds = measure_throughput(server, Path(tmp), kind, n, args.jobs_per_worker)
                        samples[kind].append(seconds)
                        progress(f"  {n} worker(s), run {run}: {kind} {n * args.jobs_per_worker / seconds:.0f} pairs/s")
                row = Row(n, n * args.jobs_per_worker, {k: tuple(v) for k, v in samples.items()})
                rows.append(row)
                progress(
                    f"{n} worker(s): "
                    + ", ".join(f"{kind} {row.rate(kind):.0f} pairs/s" for kind in kinds)
                    + f" (median of {args.repeat})"
                )
            wake = measure_wake(server, args.waiters, args.messages, args.interval_ms / 1000)
            progress(f"wake latency: p50 {wake.latency.p50_ms:.1f} ms, p99 {wake.latency.p99_ms:.1f} ms")
            emit(result(server, info, rows, wake, args), args.json)
    except BenchError as exc:
        print(f"benchmark FAILED a correctness check: {exc}", file=sys.stderr)
        return 1
    except (ServerError, psycopg.Error) as exc:
        print(f"benchmark FAILED: the PostgreSQL server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
