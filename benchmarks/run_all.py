"""Run every benchmark, one after the other, and write ``benchmarks/RESULTS.md``.

Run: ``benchmarks/run_all [--quick] [--only NAME[,NAME]] [--render-only] [--scale-agents N] [--scale-tasks N]
[--output PATH] [--cache PATH]``

Each benchmark script runs as its own process with ``--json`` (never two at once: the figures are timings).
A benchmark that fails (non-zero exit, no JSON, a timeout) is recorded as failed and the next one runs.
The file written holds a header (date, commit, machine, tool versions), one summary table with a row per
figure (swarm's figure, the baseline measured in the same run, their ratio, the goal and whether it is met),
a note naming every goal not met with what limits it, then a short section per benchmark.

Every run's records are also kept in ``benchmarks/.results.json`` (or the file ``--cache`` names); ``--only``
reruns the named benchmarks and takes the others from that file, so RESULTS.md always covers every benchmark
(each with its own date and load). ``pg_bench.py`` is included when the file exists.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from _common import load_average, pg_bin_dir, tool_version
from _common import machine as bench_machine
from _report import Result, Run, render_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
CACHE = HERE / ".results.json"
CACHE_VERSION = 2  # 2: every benchmark prints a _report.Result
STDERR_TAIL_LINES = 15
# A benchmark stopped early gets this long after SIGINT to clean up (scale_bench tears down 100 agents),
# then this long after SIGTERM.
INT_GRACE_SECONDS = 180.0
TERM_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how run_all runs it."""

    name: str
    script: str
    title: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    timeout: float = 3600.0


# -- the benchmarks ----------------------------------------------------------------------------------------


BENCHES: tuple[Bench, ...] = (
    Bench(
        "queue",
        "queue_bench.py",
        "Queue throughput (queue_bench.py)",
        (),
        ("--tasks-per-process", "200", "--repeat", "1"),
    ),
    Bench("launch", "launch_bench.py", "Launch and teardown (launch_bench.py)", (), ("--repeat", "1")),
    Bench("msg", "msg_bench.py", "Messages (msg_bench.py)", (), ("--messages", "100", "--round-trips", "50")),
    Bench(
        "status",
        "status_bench.py",
        "Status and monitor (status_bench.py)",
        (),
        ("--runs", "5", "--monitor-seconds", "10"),
    ),
    # scale's sizes come from --scale-agents / --scale-tasks (see main)
    Bench("scale", "scale_bench.py", "Scale (scale_bench.py)"),
    Bench("pg", "pg_bench.py", "PostgreSQL (pg_bench.py)", (), ("--jobs-per-worker", "50", "--repeat", "1")),
)
KNOWN_SCRIPTS = {b.script for b in BENCHES}
# Full size of scale_bench.py, 100 agents x 10,000 tasks: about 3 minutes of run (plus launch, teardown and the
# step profile) on a 2-CPU machine since merges stopped growing with the history; --quick uses the smaller size.
SCALE_DEFAULT = (100, 10_000)
SCALE_QUICK = (20, 500)


def available() -> list[Bench]:
    """The benchmarks whose script exists (pg_bench.py may not), then any other ``*_bench.py`` in this folder
    (every script prints the same :class:`_report.Result`, so any is read alike)."""
    found = [b for b in BENCHES if (HERE / b.script).is_file()]
    for path in sorted(HERE.glob("*_bench.py")):
        if path.name not in KNOWN_SCRIPTS:
            name = path.name.removesuffix("_bench.py")
            found.append(Bench(name, path.name, f"{name} ({path.name})"))
    return found


# -- running -----------------------------------------------------------------------------------------------


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _parse_result(stdout: str) -> Result | None:
    """The benchmark's result: its last output line that parses as one (progress may come before it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.lstrip().startswith("{"):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return Result.from_json(data)
    return None


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the benchmark we started, by its id: SIGINT first (a KeyboardInterrupt runs its cleanup: teardown,
    tmux kill-server, stopping what it started), then SIGTERM, then SIGKILL to its process group."""
    for sig, grace in ((signal.SIGINT, INT_GRACE_SECONDS), (signal.SIGTERM, TERM_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the process we started (start_new_session)
    proc.wait()


def run_one(bench: Bench, extra: Sequence[str], quick: bool) -> Run:
    """Run one benchmark with ``--json``: its result, or the reason it has none."""
    argv = [sys.executable, str(HERE / bench.script), *extra, "--json"]
    load = load_average()
    started = time.time()
    run = Run(
        name=bench.name,
        title=bench.title,
        argv=["benchmarks/" + bench.script, *extra, "--json"],
        started=dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        commit=commit(),
        load_before=load,
        quick=quick,
    )
    print(f"run_all: {bench.name}: {' '.join(run.argv)} (load average {load[0]})", file=sys.stderr, flush=True)
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a hung benchmark can be stopped with everything it started
    )
    try:
        stdout, stderr = proc.communicate(timeout=bench.timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        stdout, stderr = proc.communicate()
        run.error = f"timed out after {bench.timeout:.0f} s and was stopped"
    except BaseException:
        _stop(proc)
        raise
    run.seconds = round(time.time() - started, 1)
    run.returncode = proc.returncode
    run.result = _parse_result(stdout)
    if run.error is None and proc.returncode != 0:
        run.error = f"exit status {proc.returncode}: {_tail(stderr) or 'no output on stderr'}"
    elif run.error is None and run.result is None:
        run.error = f"no result in its output: {_tail(stdout or stderr, 5) or 'no output'}"
    elif run.error is not None and stderr.strip():
        run.error += f": {_tail(stderr)}"
    print(f"run_all: {bench.name}: {'FAILED' if run.error else 'ok'} in {run.seconds} s", file=sys.stderr, flush=True)
    return run


# -- the machine -------------------------------------------------------------------------------------------


def _postgres_binary() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin/postgres``, else ``postgres`` on PATH (as tests/pg.py looks)."""
    folder = pg_bin_dir(("postgres",))
    return folder / "postgres" if folder else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """What the benchmarks ran on: platform, CPUs, memory and the versions of what they use."""
    info = bench_machine(sqlite=True, tools=True, memory=True)
    pg = _postgres_binary()
    return {
        "platform": info["platform"],
        "cpus": f"{info['cpu_count']} x {_cpu_model()}",
        "ram": f"{info['memory_gb']:.1f} GB",
        "python": f"{info['python']} ({sys.executable})",
        "sqlite": info["sqlite"],
        "git": info["git"],
        "tmux": info["tmux"],
        "postgresql": tool_version([str(pg), "--version"], "postgres (PostgreSQL) ") if pg else "missing",
    }


def commit() -> str:
    """``git rev-parse --short HEAD``, marked when the working tree has changes (read without taking locks)."""
    head = tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return f"{head} + uncommitted changes" if dirty else head


# -- the cache ---------------------------------------------------------------------------------------------


def load_cache(path: Path = CACHE) -> dict[str, Run]:
    """The runs kept from earlier, by benchmark name; none when there is no cache or it cannot be read (or
    holds an older format)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        cache = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cache, dict) and cache.get("version") == CACHE_VERSION and isinstance(cache.get("runs"), dict):
            return {name: Run.from_json(run) for name, run in cache["runs"].items()}
    return {}


def save_cache(runs: dict[str, Run], path: Path = CACHE) -> None:
    """Write the cache atomically (a half-written file would lose every earlier run)."""
    tmp = path.with_suffix(".tmp")
    data = {"version": CACHE_VERSION, "runs": {name: asdict(run) for name, run in runs.items()}}
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# -- main --------------------------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = [b.name for b in available()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(known)}")
    return names


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, write RESULTS.md; 1 if a benchmark failed (its goals are then unknown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes for the slow benchmarks")
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(b.name for b in available())}); keep the others' last results",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing: rewrite RESULTS.md from benchmarks/.results.json"
    )
    parser.add_argument("--scale-agents", type=int, metavar="N", help="agents for scale_bench.py")
    parser.add_argument("--scale-tasks", type=int, metavar="N", help="tasks for scale_bench.py")
    parser.add_argument(
        "--output", type=Path, default=RESULTS_MD, help="where to write (default benchmarks/RESULTS.md)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=CACHE,
        help="where the records of the runs are kept (default benchmarks/.results.json)",
    )
    args = parser.parse_args(argv)
    present = available()
    wanted = [] if args.render_only else [b for b in present if args.only is None or b.name in args.only]
    agents, tasks = SCALE_QUICK if args.quick else SCALE_DEFAULT
    agents = args.scale_agents or agents
    tasks = args.scale_tasks or tasks

    # SIGTERM stops the running benchmark the same way as Ctrl-C: through its own cleanup, then RESULTS.md.
    signal.signal(signal.SIGTERM, _interrupt)
    runs = load_cache(args.cache)
    interrupted = False
    for bench in wanted:
        extra = list(bench.quick_args if args.quick else bench.args)
        if bench.name == "scale":
            extra += ["--agents", str(agents), "--tasks", str(tasks), "--timeout", str(int(bench.timeout - 300))]
        try:
            runs[bench.name] = run_one(bench, extra, args.quick)
        except KeyboardInterrupt:
            print(f"run_all: interrupted during {bench.name}; writing what has run", file=sys.stderr)
            interrupted = True
            break
        save_cache(runs, args.cache)  # after every benchmark: an interrupted run keeps what it measured
    shown = [runs[b.name] for b in present if b.name in runs]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.output.write_text(render_results(shown, machine(), now=now, commit=commit()), encoding="utf-8")
    print(f"run_all: wrote {args.output}", flush=True)
    if interrupted:
        return 130
    return 1 if any(runs[b.name].error for b in wanted if b.name in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
