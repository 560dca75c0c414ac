"""Smoke test of benchmarks/: every script runs for real, at the smallest sizes its options allow, with
``--json``, and the result it prints (a ``benchmarks/_report.Result``: its records, its tables, the sizes it ran
at) holds every figure RESULTS.md shows, with sane values; then run_all.py renders RESULTS.md from those
results into a temporary folder. So the benchmarks cannot rot silently when swarm changes under them.

Speed is not judged here (that is what the benchmarks are for): only exit status, shape and counts. The
scripts run at the same time, each in its own process group, to keep the whole module short: most of their
time is fixed waits (a monitor's quiet period, a CPU window, a sample interval), not CPU. Each starts what it
needs on its own (temporary repositories, a tmux server on its own socket, pg_bench its own PostgreSQL) and
removes it at the end. procrastinate is a benchmark-only extra: without it, pg_bench runs ``--no-procrastinate``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks' modules import each other as top-level modules
from _report import Record, Result, Run  # noqa: E402

HAS_PROCRASTINATE = importlib.util.find_spec("procrastinate") is not None
# Generous: the six together take about 20 s on two CPUs; a benchmark still running after this is stuck.
DEADLINE_SECONDS = 240.0
# A stopped benchmark gets this long after SIGINT to clean up (teardown, its tmux server, its PostgreSQL).
STOP_GRACE_SECONDS = 60.0

#: The smallest sizes each script takes (two of a kind where one would skip a code path: a working and an
#: idle agent, two process counts).
SMALL: dict[str, list[str]] = {
    "queue": ["--tasks-per-process", "2", "--processes", "1,2", "--repeat", "1"],
    "msg": [
        *("--waiters", "1", "--messages", "2", "--interval-ms", "0", "--round-trips", "2"),
        *("--idle-waiters", "1", "--idle-seconds", "0.2"),
    ],
    "launch": ["--agents", "2", "--files", "3", "--repeat", "1"],
    "status": ["--agents", "2", "--tasks", "6", "--runs", "1", "--monitor-seconds", "0.5"],
    # Seed 1 gives a task with a dependency among three: the step profile replays it.
    "scale": ["--agents", "1", "--tasks", "3", "--files", "2", "--profile-reps", "1", "--timeout", "180"],
    "pg": [
        *("--workers", "1", "--jobs-per-worker", "2", "--repeat", "1"),
        *("--waiters", "2", "--messages", "2", "--interval-ms", "0"),
        *(() if HAS_PROCRASTINATE else ("--no-procrastinate",)),
    ],
}
TITLES = {
    "queue": "Queue throughput (queue_bench.py)",
    "launch": "Launch and teardown (launch_bench.py)",
    "msg": "Messages (msg_bench.py)",
    "status": "Status and monitor (status_bench.py)",
    "scale": "Scale (scale_bench.py)",
    "pg": "PostgreSQL (pg_bench.py)",
}


@dataclass
class BenchRun:
    """One benchmark script's run."""

    name: str
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def result(self) -> Result:
        """Its result, the one JSON object it printed (the test fails, with its stderr, when there is none)."""
        assert self.returncode == 0, f"{self.name} exited {self.returncode}:\n{self.stderr[-3000:]}"
        try:
            data = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"{self.name} printed no JSON: {self.stdout[:500]!r}") from exc
        assert isinstance(data, dict), data
        result = Result.from_json(data)
        assert result.name == self.name, result.name
        return result


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a benchmark this test started: SIGINT runs its own cleanup; then SIGKILL its process group."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the process started here (start_new_session)
        proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BenchRun]]:
    """Every benchmark script at its small sizes, all started at once; the runs by name."""
    out = tmp_path_factory.mktemp("bench-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    started: dict[str, tuple[list[str], subprocess.Popen[bytes], float]] = {}
    try:
        for name, args in SMALL.items():
            argv = [sys.executable, str(BENCHMARKS / f"{name}_bench.py"), *args, "--json"]
            with (out / f"{name}.out").open("wb") as stdout, (out / f"{name}.err").open("wb") as stderr:
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                )
            started[name] = (argv, proc, time.monotonic())
        deadline = time.monotonic() + DEADLINE_SECONDS
        results: dict[str, BenchRun] = {}
        for name, (argv, proc, began) in started.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(proc)
            results[name] = BenchRun(
                name=name,
                argv=argv,
                returncode=proc.returncode,
                stdout=(out / f"{name}.out").read_text(encoding="utf-8", errors="replace"),
                stderr=(out / f"{name}.err").read_text(encoding="utf-8", errors="replace"),
                seconds=time.monotonic() - began,
            )
        yield results
    finally:
        for _, proc, _ in started.values():
            if proc.poll() is None:
                _stop(proc)


# -- the records of each benchmark, checked -----------------------------------------------------------------


def _number(value: Any, what: str) -> float:
    assert isinstance(value, int | float), f"{what} = {value!r}"
    assert not isinstance(value, bool), f"{what} = {value!r}"
    return float(value)


def positive(value: Any, what: str = "value") -> float:
    """A number above zero."""
    number = _number(value, what)
    assert number > 0, f"{what} = {value!r}"
    return number


def not_negative(value: Any, what: str = "value") -> float:
    """A number, zero or more."""
    number = _number(value, what)
    assert number >= 0, f"{what} = {value!r}"
    return number


def goal(record: Record, *, measured: bool = True) -> None:
    """A goal with its text and what limits it, and a verdict when it was ``measured`` (else none)."""
    assert record.goal, record
    assert record.limit, record
    assert isinstance(record.met, bool) if measured else record.met is None, record


def no_goal_measured(result: Result) -> None:
    """Where the goal's size was not run (8 processes, 50 waiters, 8 workers), no record claims a verdict."""
    assert [r for r in result.records if r.met is not None] == [], result.records


def check_machine(result: Result, *keys: str) -> None:
    """The machine every benchmark reports, with its own extras."""
    positive(result.machine.get("cpu_count"), "cpu_count")
    for key in ("platform", "python", *keys):
        assert result.machine.get(key) not in ("", None, "missing"), f"machine.{key}"


def check_queue(result: Result) -> None:
    check_machine(result, "sqlite")
    assert result.params == {"tasks_per_process": 2, "repeat": 1, "processes": [1, 2]}
    table = result.table("processes")
    assert table.column("processes") == [1, 2]
    assert table.column("tasks") == [2, 4]
    for column in ("swarm pairs/s", "raw pairs/s", "ratio swarm/raw"):
        for value in table.column(column):
            positive(value, column)
    for figure in ("claim+complete pairs/s, 1 process", "claim+complete pairs/s, 2 processes"):
        positive(result.record(figure).value, figure)
        positive(result.record(figure).baseline, figure)
        assert result.record(figure).baseline_of == "raw SQLite"
    no_goal_measured(result)


def check_msg(result: Result) -> None:
    check_machine(result, "sqlite")
    not_negative(result.machine.get("load_average"), "load_average")
    positive(result.params["poll_seconds"])
    assert result.params["messages"] == 2
    not_negative(result.params["interval_ms"])
    table = result.table("waiters")
    (row,) = table.rows
    assert row[:2] == [1, 2], row  # 1 waiter, 2 samples
    for column in ("p50 ms", "p99 ms", "max ms"):
        positive(row[table.header.index(column)], column)
    for column in ("send p50 ms", "send p99 ms", "waiter CPU %"):
        not_negative(row[table.header.index(column)], column)
    positive(result.record("send -> wait p99, 1 waiter").value)
    assert result.record("ask -> answer round trips in a row (agent-1 asks, lead answers)").value == 2
    for figure in ("ask -> answer round trip p50", "ask -> answer round trip p99", "ask -> answer round trip max"):
        positive(result.record(figure).value, figure)
    assert (result.params["idle_waiters"], positive(result.params["idle_seconds"])) == (1, 0.2)
    not_negative(result.record("idle wait CPU per waiter (1 waiting)").value)
    not_negative(result.record("idle: 1 waiters for 0.2 s, CPU of one core in total").value)
    not_negative(result.record("idle: the same, of the machine").value)
    no_goal_measured(result)


def check_launch(result: Result) -> None:
    check_machine(result, "git", "tmux")
    assert result.params == {"agents": 2, "files": 3, "repeat": 1}
    for phase in ("launch", "teardown"):
        record = result.record(f"{phase} of 2 agents, s")
        positive(record.value, phase)
        positive(record.baseline, phase)
        goal(record)
    phases = result.table("phase")
    assert phases.column("phase") == ["launch", "teardown"]
    for column in ("swarm s", "raw s", "ratio"):
        for value in phases.column(column):
            positive(value, column)
    for column in ("swarm runs", "raw runs"):
        assert [len(v) if isinstance(v, list) else v for v in phases.column(column)] == [1, 1], column
    not_negative(result.record("workers running after launch returned, s").value)
    # One agent works (its task is ready), the other waits idle: both kinds were measured.
    workers = result.table("workers")
    assert dict(zip(workers.column("workers"), workers.column("count"), strict=True)) == {
        "all": 2,
        "working": 1,
        "idle": 1,
    }
    for column in ("RSS MB median", "RSS MB max", "with agent MB"):
        for value in workers.column(column):
            positive(value, column)
    for value in workers.column("CPU % max"):
        not_negative(value, "CPU % max")
    for figure in ("worker RSS, max over workers", "worker CPU, max over workers"):
        not_negative(result.record(figure).value, figure)
        goal(result.record(figure))


def check_status(result: Result) -> None:
    check_machine(result, "sqlite")
    positive(result.machine.get("processes"), "processes")
    params = result.params
    assert (params["agents"], params["working_agents"], params["tasks"], params["runs"]) == (2, 1, 6, 1)
    assert sum(params["counts"].values()) == 6, params["counts"]
    assert params["counts"]["claimed"] == 1, params["counts"]
    table = result.table("swarm status --json")
    rows = {row[0]: row[1:] for row in table.rows}
    for label in ("CLI, end to end (subprocess)", "CLI start-up alone (swarm --version)"):
        for value in rows[label]:
            positive(value, label)
    for value in rows["of it, Python alone (python -c pass)"]:
        positive(value, "python start-up")
    for phase in ("load_config", "status.take()", "total"):
        positive(rows[f"in-process: {phase}"][0], phase)
    positive(result.record("status JSON").value)
    cli = result.record("swarm status --json p50 (2 agents, 6 tasks)")
    positive(cli.value)
    positive(cli.baseline)
    goal(cli)
    for figure in (
        "look(), first (cold)",
        "monitor process window",
        "monitor process RSS",
        "Monitor.look() steady p50",
    ):
        positive(result.record(figure).value, figure)
    for figure in (
        "look(), steady CPU",
        "look() CPU at the 2 s interval (derived)",
        "monitor process looks in the window",
    ):
        not_negative(result.record(figure).value, figure)
    monitor = result.record("monitor process CPU (2 agents)")
    not_negative(monitor.value)
    goal(monitor)


def check_scale(result: Result) -> None:
    check_machine(result, "git", "tmux")
    positive(result.machine.get("memory_gb"), "memory_gb")
    not_negative(result.machine.get("load_average_1m"), "load_average_1m")
    params = result.params
    assert (params["agents"], params["tasks"], params["finished"]) == (1, 3, True)
    assert not [b for b in result.section if isinstance(b, str) and b.startswith("Problems:")], result.section
    assert result.record("tasks done").value == 3
    assert result.record("attempts that did not end done (failed, expired or returned)").value == 0
    positive(result.record("tasks/s, launch included").value)
    positive(result.record("claim -> done per task, median").value)
    assert params["graph"]["tasks"] == 3
    assert params["graph"]["tasks_with_deps"] >= 1
    phases = {str(row[0]): row[1] for row in result.table("phase").rows}
    for label in (
        "swarm launch returned",
        "first task claimed",
        "last task done",
        "workers and monitor exited on their own",
        "swarm teardown (its own duration)",
    ):
        positive(phases[label], label)
    positive(phases["the last of 1 agents claimed a task"])
    positive(result.record("launch, s").value)
    positive(result.record("teardown, s").value)
    for figure in ("swarm CPU", "over (workers and monitor exited)"):
        positive(result.record(figure).value, figure)
    not_negative(result.record("swarm CPU per task (git included)").value)
    for figure in ("run to the end (1 agents, 3 tasks)", "left after teardown"):
        goal(result.record(figure))
        assert result.record(figure).met is True, result.record(figure)
    assert result.record("left after teardown").value == "clean"
    # A run this short may end between two samples: RSS and monitor CPU can be unmeasured, never NOT met.
    for figure in ("worker RSS, max over workers", "monitor CPU"):
        assert result.record(figure).goal
        assert result.record(figure).met in (True, False, None)
    for phase in ("early", "late"):
        positive(params["commits_in_history"][phase], phase)
    profile = result.table("step")
    assert len(profile.rows) > 1, "no per-task steps"
    total = profile.rows[-1]
    assert total[0] == "sum", total
    positive(total[2], "sum start wall ms")
    positive(total[3], "sum end wall ms")
    not_negative(total[4], "sum end child CPU ms")


def check_pg(result: Result) -> None:
    check_machine(result, "sqlite", "postgresql", "psycopg")
    not_negative(result.machine.get("load_average"), "load_average")
    params = result.params
    assert params["server_settings"], "no server settings"
    assert (params["workers"], params["jobs_per_worker"], params["repeat"]) == ([1], 2, 1)
    table = result.table("workers")
    (row,) = table.rows
    assert row[:2] == [1, 2], row
    for column in ("swarm-pg pairs/s", "swarm-sqlite pairs/s", "pg/sqlite"):
        positive(row[table.header.index(column)], column)
    versus = result.record("claim+complete pairs/s on PostgreSQL, 1 worker")
    for column in ("procrastinate pairs/s", "pg/procrastinate"):
        value = row[table.header.index(column)]
        if HAS_PROCRASTINATE:
            positive(value, column)
        else:
            assert value is None, (column, value)
    assert (versus.baseline is not None) == HAS_PROCRASTINATE, versus
    positive(result.record("claim+complete pairs/s on PostgreSQL vs SQLite, 1 worker").baseline)
    assert (params["waiters"], params["messages"]) == (2, 2)
    positive(params["poll_seconds"])
    assert result.record("wake latency samples").value == 4
    for figure in ("wake latency p50 on PostgreSQL, 2 waiters", "wake latency max"):
        positive(result.record(figure).value, figure)
    for figure in ("the send call itself, p50", "the send call itself, p99"):
        not_negative(result.record(figure).value, figure)
    assert versus.met is None  # the throughput goal sits at 8 workers
    wake = result.record("wake latency p99 on PostgreSQL, 2 waiters")
    positive(wake.value)
    goal(wake)


CHECKS: dict[str, Callable[[Result], None]] = {
    "queue": check_queue,
    "msg": check_msg,
    "launch": check_launch,
    "status": check_status,
    "scale": check_scale,
    "pg": check_pg,
}


@pytest.mark.parametrize("name", list(SMALL))
def test_benchmark_runs_and_returns_its_records(runs: dict[str, BenchRun], name: str) -> None:
    result = runs[name].result()
    assert result.title == TITLES[name]
    CHECKS[name](result)


def test_every_benchmark_script_is_exercised() -> None:
    scripts = {p.name.removesuffix("_bench.py") for p in BENCHMARKS.glob("*_bench.py")}
    assert scripts == set(SMALL) == set(CHECKS) == set(TITLES)


def test_run_all_renders_results_from_saved_records(runs: dict[str, BenchRun], tmp_path: Path) -> None:
    """run_all.py --render-only, from runs made of these results, writes a RESULTS.md (in tmp_path) with a
    summary row and a section for every benchmark; the repository's own files are left alone."""
    record_files = [BENCHMARKS / "RESULTS.md", BENCHMARKS / ".results.json"]
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in record_files}
    records = {
        name: dataclasses.asdict(
            Run(
                name=name,
                title=TITLES[name],
                argv=[f"benchmarks/{name}_bench.py", *SMALL[name], "--json"],
                started="2026-01-01 00:00:00 UTC",
                commit="smoke",
                load_before=[0.5, 0.5, 0.5],
                returncode=run.returncode,
                seconds=round(run.seconds, 1),
                result=run.result(),
            )
        )
        for name, run in runs.items()
    }
    cache = tmp_path / "results.json"
    cache.write_text(json.dumps({"version": 2, "runs": records}), encoding="utf-8")
    output = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run_all.py"),
            "--render-only",
            "--cache",
            str(cache),
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text(encoding="utf-8")
    assert "could not" not in text, text
    assert "FAILED" not in text, text
    for name, title in TITLES.items():
        assert f"\n## {title}\n" in text, f"no section for {name}"
        assert f"\n| {name} | " in text, f"no summary row for {name}"
    assert {p: p.stat().st_mtime_ns if p.exists() else None for p in record_files} == before
