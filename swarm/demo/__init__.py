"""``swarm demo``: a complete run on a throwaway repository with scripted agents, real tmux, real git."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from swarm.config import load_config
from swarm.console import console
from swarm.demo.project import EPIC, spec_count, write_project
from swarm.follow import follow
from swarm.launcher import LaunchRequest, launch, teardown
from swarm.merge import TaskOutcome, merge_swarm
from swarm.models import Task
from swarm.runtime.git import open_repo
from swarm.runtime.tmux import private_sessions, private_socket_file, stop_private_server
from swarm.status import Snapshot
from swarm.words import article, did, plural

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for its summary and for tests."""

    repo: Path
    done: int
    total: int
    seconds: float
    clean: bool
    #: The branch ``swarm merge`` built from the done tasks; None when the merge did not run or stopped.
    merged_into: str | None = None


def run_demo(*, agents: int = 3, keep: bool = False, pace: float = 1.0, where: Path | None = None) -> DemoResult:
    """Create the throwaway project, launch the swarm, follow it, tear it down, merge its work, and summarise."""
    out = console()
    started = time.monotonic()
    base_dir = Path(tempfile.mkdtemp(prefix="swarm-demo-", dir=where))
    repo = base_dir / "calc"
    write_project(repo)
    socket_name = _socket_name()
    # Only a socket file the demo made is removed at the end: one that was there before is someone's server.
    made_socket = bool(socket_name) and not private_socket_file(socket_name).exists()
    tasks_count = spec_count()
    cmd = escape(swarm_command())
    server = f"tmux socket '{escape(socket_name)}'" if socket_name else "your default tmux server"
    out.print(
        f"[bold]swarm demo[/]: {plural(agents, 'scripted agent')} {'works' if agents == 1 else 'work'} "
        f"{article(tasks_count)} {tasks_count}-task backlog with dependencies\n"
        f"in a throwaway repository: {escape(str(repo))}\n"
        f"Each agent gets its own git worktree and branch and runs in its own tmux session\n"
        f"({server}). The agents are scripts that follow their specs, so no API key is needed.\n"
    )
    try:
        run = _run_swarm(out, repo, agents, _demo_env(socket_name, pace), socket_name)
        tasks = run.snap.tasks if run.snap else []
        _print_agents(out, repo, tasks)
        merged_into = _show_merge(out, repo) if run.ok else None
    finally:
        if made_socket and not private_sessions(socket_name):
            stop_private_server(socket_name)
    elapsed = time.monotonic() - started
    done = run.snap.counts["done"] if run.snap else 0
    total = sum(run.snap.counts.values()) if run.snap else tasks_count
    out.print(f"\n{done}/{plural(total, 'task')} done in {elapsed:.1f}s.")
    if keep:
        out.print(
            f"The repository is kept at {escape(str(repo))} "
            f"(try: git -C {escape(shlex.quote(str(repo)))} log --oneline --graph --all)."
        )
    else:
        shutil.rmtree(base_dir, ignore_errors=True)
        out.print(f"The throwaway repository was removed (run '{cmd} demo --keep' to look around in it).")
    out.print(
        f"Next: '{cmd} init' in your own repository, write specs, '{cmd} launch EPIC', "
        f"then '{cmd} merge' to collect the work on one branch."
    )
    return DemoResult(
        repo=repo, done=done, total=total, seconds=elapsed, clean=run.ok and run.clean, merged_into=merged_into
    )


def swarm_command() -> str:
    """How to type this swarm in a hint: ``swarm`` when that is it on PATH, else its path (a checkout's .venv)."""
    mine = Path(sys.executable).parent / "swarm"
    found = shutil.which("swarm")
    if found and mine.exists() and Path(found).resolve() == mine.resolve():
        return "swarm"
    if mine.exists():
        return shlex.quote(str(mine))  # absolute: the hints are run from other folders (the demo's repository)
    return f"{shlex.quote(sys.executable)} -m swarm"


def _socket_name() -> str:
    """``SWARM_TMUX_SOCKET`` when it is set (empty: the default tmux server), else a private socket of the demo's."""
    if "SWARM_TMUX_SOCKET" in os.environ:
        return os.environ["SWARM_TMUX_SOCKET"]
    return f"swarm-demo-{os.getpid()}"


def _demo_env(socket_name: str, pace: float) -> dict[str, str]:
    """The environment of the demo's swarm: its own tmux socket, the agents' pace, short leases."""
    env = dict(os.environ)
    env.update(
        {
            "SWARM_TMUX_SOCKET": socket_name,
            "SWARM_DEMO_PACE": str(pace),
            # Short leases and heartbeats so the demo's dashboard moves; real swarms keep the defaults.
            "SWARM_QUEUE_LEASE_TTL_SECONDS": "30",
            "SWARM_QUEUE_HEARTBEAT_SECONDS": "2",
            "SWARM_QUEUE_RETRY_BACKOFF_SECONDS": "1",
        }
    )
    return env


@dataclass(frozen=True)
class _Run:
    """How the swarm went: the last snapshot (None if launch failed), whether it finished, whether teardown was."""

    snap: Snapshot | None
    ok: bool
    clean: bool


def _run_swarm(out: Console, repo: Path, agents: int, env: dict[str, str], socket_name: str) -> _Run:
    """Launch the scripted swarm and follow it to its end; tear it down whatever happened."""
    command = f"{shlex.quote(sys.executable)} -m swarm.demo.agent"
    ok = False
    snap = None
    try:
        result = launch(LaunchRequest(epic=EPIC, agents=agents, command=command), cwd=repo, say=out.print, env=env)
        out.print(
            f"launched swarm {result.swarm.id}: sessions {', '.join(result.started_sessions)}\n"
            f"(watch one live from another terminal: {_socket_prefix(socket_name)}{swarm_command()} attach agent-1, "
            f"run from {escape(str(repo))})\n"
        )
        loaded = load_config(repo, env=env)
        snap = follow(result.swarm, loaded, timeout=120)
        ok = True
    finally:
        out.print("\n[bold]teardown[/]: stopping the agents and removing their worktrees (branches stay)")
        report = teardown(cwd=repo, say=out.print)
        # After a finished swarm the agents' sessions have closed themselves: say only what teardown did.
        done = did(
            ("closed", len(report.sessions_killed), "session"), ("removed", len(report.worktrees_removed), "worktree")
        )
        left = "no swarm process is left running" if report.clean else f"LEFT RUNNING: {report.survivors}"
        out.print(f"{done}; {left}" if done else left[0].upper() + left[1:])
    return _Run(snap=snap, ok=ok, clean=report.clean)


def _socket_prefix(socket_name: str) -> str:
    """``SWARM_TMUX_SOCKET=NAME `` for a command shown to the user, when the demo runs on a private socket."""
    return f"SWARM_TMUX_SOCKET={escape(shlex.quote(socket_name))} " if socket_name else ""


def _show_merge(out: Console, repo: Path) -> str | None:
    """Run ``swarm merge`` on the demo's result and show the branch it built; None if it stopped."""
    out.print("\n[bold]swarm merge[/]: every done task's commit, in dependency order, onto one branch")
    out.print(f"  $ {swarm_command()} merge   (run in {repo})", markup=False)

    def show(outcome: TaskOutcome) -> None:
        out.print(f"  {outcome.status.value:<8}  {outcome.task}: {outcome.title}", markup=False)

    report = merge_swarm(repo, on_task=show, say=lambda text: out.print(f"  {text}", markup=False))
    failed = report.failed
    if failed is not None:
        out.print(f"  the merge stopped at {failed.task}: {failed.reason}", markup=False)
        return None
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", report.branch],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    built = [f for f in listed.stdout.split() if not f.startswith("specs/")]
    out.print(
        f"branch {report.branch} is at {report.head[:10]}: {plural(len(report.merged), 'task')} merged, "
        f"one 'Merge <task>: <title>' commit each; it holds {', '.join(built)}",
        markup=False,
    )
    return report.branch


def _print_agents(out: Console, repo: Path, tasks: list[Task]) -> None:
    """What each agent did on its branch, and how the last task's commit holds the whole project."""
    git = open_repo(repo)
    base = git.resolve("main")
    out.print("\n[bold]what each agent did[/] (one branch per agent):")
    for agent in sorted({t.owner for t in tasks if t.owner}):
        branch = f"swarm/{EPIC}/{agent}"
        mine = [t for t in tasks if t.owner == agent]
        out.print(f"  {agent} on {branch}:")
        for task in mine:
            out.print(f"    {(task.commit or '-')[:10]} {task.id}: {task.title}")
        merged = sorted({c.subject.split(":")[0] for c in git.commits_between(base, branch)} - {t.id for t in mine})
        merged = [m for m in merged if not m.startswith("Merge ")]
        if merged:
            out.print(f"    (merged in from other agents before starting: {', '.join(merged)})")
    final = next((t for t in tasks if t.id == "D8"), None)
    if final and final.commit:
        out.print(
            f"\nD8 depends on every other task, so commit {final.commit[:10]} holds the whole project: "
            "each agent merged its dependencies' commits before starting."
        )
