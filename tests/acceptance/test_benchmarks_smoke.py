"""Smoke test of benchmarks/: every script runs for real, at the smallest sizes its options allow, with
``--json``, and its JSON holds what run_all.py reads, with sane values; then run_all.py renders RESULTS.md from
those records into a temporary folder. So the benchmarks cannot rot silently when swarm changes under them.

Speed is not judged here (that is what the benchmarks are for): only exit status, shape and counts. The
scripts run at the same time, each in its own process group, to keep the whole module short: most of their
time is fixed waits (a monitor's quiet period, a CPU window, a sample interval), not CPU. Each starts what it
needs on its own (temporary repositories, a tmux server on its own socket, pg_bench its own PostgreSQL) and
removes it at the end. procrastinate is a benchmark-only extra: without it, pg_bench runs ``--no-procrastinate``.
"""

from __future__ import annotations

import contextlib
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

    def data(self) -> dict[str, Any]:
        """Its one JSON object (the test fails, with its stderr, when there is none)."""
        assert self.returncode == 0, f"{self.name} exited {self.returncode}:\n{self.stderr[-3000:]}"
        try:
            data = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"{self.name} printed no JSON: {self.stdout[:500]!r}") from exc
        assert isinstance(data, dict), data
        return data


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


# -- what run_all.py reads, checked per benchmark ---------------------------------------------------------


def at(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``; the test fails naming the first step that is missing."""
    for n, step in enumerate(path):
        where = path[: n + 1]
        if isinstance(step, int):
            assert isinstance(data, list), f"no list at {where}"
            assert -len(data) <= step < len(data), f"no item {where}"
        else:
            assert isinstance(data, dict), f"no object at {where}"
            assert step in data, f"no key {where}"
        data = data[step]
    return data


def _number(data: Any, path: tuple[str | int, ...]) -> float:
    value = at(data, *path)
    assert isinstance(value, int | float), f"{path} = {value!r}"
    assert not isinstance(value, bool), f"{path} = {value!r}"
    return float(value)


def positive(data: Any, *path: str | int) -> float:
    """A number above zero at ``path``."""
    value = _number(data, path)
    assert value > 0, f"{path} = {value!r}"
    return value


def not_negative(data: Any, *path: str | int) -> float:
    """A number, zero or more, at ``path``."""
    value = _number(data, path)
    assert value >= 0, f"{path} = {value!r}"
    return value


def goal(data: Any, *path: str, measured: bool = True) -> None:
    """A goal with its text, and a verdict when it was ``measured`` (else none)."""
    assert isinstance(at(data, *path, "text"), str)
    met = at(data, *path, "met")
    assert isinstance(met, bool) if measured else met is None, f"{path}: met = {met!r}"


def check_machine(data: dict[str, Any], *keys: str) -> None:
    """The header every benchmark prints, with its own extras."""
    positive(data, "machine", "cpu_count")
    for key in ("platform", "python", *keys):
        assert at(data, "machine", key) not in ("", None, "missing"), f"machine.{key}"


def check_queue(data: dict[str, Any]) -> None:
    check_machine(data, "sqlite")
    assert at(data, "tasks_per_process") == 2
    assert at(data, "repeat") == 1
    assert [at(r, "processes") for r in at(data, "results")] == [1, 2]
    for r in at(data, "results"):
        assert at(r, "tasks") == at(r, "processes") * 2
        for key in ("swarm_pairs_per_s", "raw_pairs_per_s", "ratio"):
            positive(r, key)
    goal(data, "goal", measured=False)  # the goal sits at 8 processes


def check_msg(data: dict[str, Any]) -> None:
    check_machine(data, "sqlite")
    not_negative(data, "machine", "load_average")
    positive(data, "poll_seconds")
    assert at(data, "messages") == 2
    not_negative(data, "interval_ms")
    (row,) = at(data, "broadcast")
    assert at(row, "waiters") == 1
    assert at(row, "latency", "count") == 2
    assert at(row, "send", "count") == 2
    for key in ("p50_ms", "p99_ms", "max_ms"):
        positive(row, "latency", key)
        positive(data, "ask_answer", key)
        not_negative(row, "send", key)
    not_negative(row, "waiter_cpu_percent")
    assert at(data, "ask_answer", "count") == 2
    assert at(data, "idle", "waiters") == 1
    positive(data, "idle", "seconds")
    not_negative(data, "idle", "cpu_percent_of_one_core")
    not_negative(data, "idle", "cpu_percent_of_machine")
    goal(data, "goal", measured=False)  # the goal sits at 50 waiters


def check_launch(data: dict[str, Any]) -> None:
    check_machine(data, "git", "tmux")
    assert (at(data, "agents"), at(data, "files"), at(data, "repeat")) == (2, 3, 1)
    for phase in ("launch", "teardown"):
        for key in ("swarm_s", "raw_s", "ratio"):
            positive(data, "phases", phase, key)
        assert len(at(data, "phases", phase, "swarm_samples")) == len(at(data, "phases", phase, "raw_samples")) == 1
    not_negative(data, "workers_ready", "swarm_s")
    # One agent works (its task is ready), the other waits idle: both kinds were measured.
    assert {group: at(data, "workers", group, "count") for group in ("all", "working", "idle")} == {
        "all": 2,
        "working": 1,
        "idle": 1,
    }
    for group in ("all", "working", "idle"):
        for key in ("rss_mb", "tree_rss_mb"):
            positive(data, "workers", group, key, "median")
        positive(data, "workers", group, "rss_mb", "max")
        not_negative(data, "workers", group, "cpu_percent", "max")
    for key in ("launch", "teardown", "worker_rss", "worker_cpu"):
        goal(data, "goals", key)


def check_status(data: dict[str, Any]) -> None:
    check_machine(data, "sqlite")
    positive(data, "machine", "processes")
    assert (at(data, "agents"), at(data, "working_agents"), at(data, "tasks"), at(data, "runs")) == (2, 1, 6, 1)
    counts = at(data, "counts")
    assert sum(counts.values()) == 6, counts
    assert counts["claimed"] == 1, counts
    status = at(data, "status")
    for key in ("cli_ms", "cli_startup_ms", "python_startup_ms"):
        for stat in ("p50", "p95", "max"):
            positive(status, key, stat)
    positive(status, "json_bytes")
    for phase in ("load_config", "status.take()", "total"):
        positive(status, "in_process_ms", phase, "p50")
    monitor = at(data, "monitor")
    for key in ("interval_s", "look_first_ms", "process_window_s", "process_rss_mb"):
        positive(monitor, key)
    positive(monitor, "look_steady_ms", "p50")
    for key in ("look_steady_cpu_ms", "look_cpu_percent_at_interval", "process_cpu_percent", "process_looks"):
        not_negative(monitor, key)
    goal(data, "goals", "status_cli")
    goal(data, "goals", "monitor_cpu")


def check_scale(data: dict[str, Any]) -> None:
    check_machine(data, "git", "tmux")
    positive(data, "machine", "memory_gb")
    not_negative(data, "machine", "load_average_1m")
    assert (at(data, "agents"), at(data, "tasks")) == (1, 3)
    assert at(data, "problems") == []
    assert at(data, "finished") is True
    assert at(data, "throughput", "tasks_done") == 3
    assert at(data, "throughput", "failed_attempts") == 0
    positive(data, "throughput", "tasks_per_s")
    positive(data, "throughput", "claim_to_done_s", "median")
    assert at(data, "graph", "tasks") == 3
    assert at(data, "graph", "tasks_with_deps") >= 1
    for key in ("launch_s", "first_claim_s", "last_done_s", "workers_exited_s", "teardown_s"):
        positive(data, "phases", key)
    assert at(data, "phases", "agents_claimed") == 1
    for key in ("swarm_cpu_s", "window_s"):
        positive(data, "cpu", key)
    not_negative(data, "cpu", "swarm_cpu_ms_per_task")
    for key in ("finished", "teardown"):
        goal(data, "goals", key)
        assert at(data, "goals", key, "met") is True
    # A run this short may end between two samples: RSS and monitor CPU can be unmeasured, never NOT met.
    for key in ("worker_rss", "monitor_cpu"):
        assert at(data, "goals", key, "met") in (True, False, None)
    profile = at(data, "profile")
    for phase in ("early", "late"):
        positive(profile, phase, "commits_in_history")
        assert at(profile, f"per_task_{phase}"), f"no per-task steps for {phase}"
        positive(profile, f"sum_{phase}", "wall_ms")
    not_negative(profile, "sum_late", "child_cpu_ms")
    assert "samples" in data


def check_pg(data: dict[str, Any]) -> None:
    check_machine(data, "sqlite", "postgresql", "psycopg")
    not_negative(data, "machine", "load_average")
    assert at(data, "server_settings"), "no server settings"
    assert (at(data, "jobs_per_worker"), at(data, "repeat")) == (2, 1)
    (row,) = at(data, "results")
    assert (at(row, "workers"), at(row, "jobs")) == (1, 2)
    positive(row, "swarm_pg_pairs_per_s")
    positive(row, "swarm_sqlite_pairs_per_s")
    positive(row, "ratio_pg_vs_sqlite")
    if HAS_PROCRASTINATE:
        positive(row, "procrastinate_pairs_per_s")
        positive(row, "ratio_pg_vs_procrastinate")
    else:
        assert at(row, "procrastinate_pairs_per_s") is None
        assert at(row, "ratio_pg_vs_procrastinate") is None
    wake = at(data, "wake")
    assert (at(wake, "waiters"), at(wake, "messages")) == (2, 2)
    positive(wake, "poll_seconds")
    assert at(wake, "latency", "count") == 4
    assert at(wake, "send", "count") == 2
    for key in ("p50_ms", "p99_ms", "max_ms"):
        positive(wake, "latency", key)
        not_negative(wake, "send", key)
    goal(data, "goals", "throughput", measured=False)  # the goal sits at 8 workers
    goal(data, "goals", "wake")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "queue": check_queue,
    "msg": check_msg,
    "launch": check_launch,
    "status": check_status,
    "scale": check_scale,
    "pg": check_pg,
}


@pytest.mark.parametrize("name", list(SMALL))
def test_benchmark_runs_and_reports_what_run_all_reads(runs: dict[str, BenchRun], name: str) -> None:
    CHECKS[name](runs[name].data())


def test_every_benchmark_script_is_exercised() -> None:
    scripts = {p.name.removesuffix("_bench.py") for p in BENCHMARKS.glob("*_bench.py")}
    assert scripts == set(SMALL) == set(CHECKS) == set(TITLES)


def test_run_all_renders_results_from_saved_records(runs: dict[str, BenchRun], tmp_path: Path) -> None:
    """run_all.py --render-only, from records made of these runs, writes a RESULTS.md (in tmp_path) with a
    summary row and a section for every benchmark; the repository's own files are left alone."""
    record_files = [BENCHMARKS / "RESULTS.md", BENCHMARKS / ".results.json"]
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in record_files}
    records = {
        name: {
            "name": name,
            "script": f"{name}_bench.py",
            "argv": [f"benchmarks/{name}_bench.py", *SMALL[name], "--json"],
            "started": "2026-01-01 00:00:00 UTC",
            "commit": "smoke",
            "load_before": [0.5, 0.5, 0.5],
            "returncode": run.returncode,
            "seconds": round(run.seconds, 1),
            "data": run.data(),
            "error": None,
            "quick": False,
        }
        for name, run in runs.items()
    }
    cache = tmp_path / "results.json"
    cache.write_text(json.dumps({"version": 1, "runs": records}), encoding="utf-8")
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
