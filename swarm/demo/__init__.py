"""``swarm demo``: a complete run on a throwaway repository with scripted agents, real tmux, real git."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarm.config import load_config
from swarm.console import console
from swarm.demo.project import EPIC, spec_count, write_project
from swarm.follow import follow
from swarm.launcher import LaunchRequest, launch, teardown
from swarm.models import Task
from swarm.runtime.git import open_repo
from swarm.status import Snapshot

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


def run_demo(*, agents: int = 3, keep: bool = False, pace: float = 1.0, where: Path | None = None) -> DemoResult:
    """Create the throwaway project, launch the swarm, follow it, tear it down, and summarise."""
    out = console()
    started = time.monotonic()
    base_dir = Path(tempfile.mkdtemp(prefix="swarm-demo-", dir=where))
    repo = base_dir / "calc"
    write_project(repo)
    socket_name = f"swarm-demo-{os.getpid()}"
    out.print(
        f"[bold]swarm demo[/]: {agents} scripted agents work a {spec_count()}-task backlog with dependencies\n"
        f"in a throwaway repository: {repo}\n"
        f"Each agent gets its own git worktree and branch and runs in its own tmux session\n"
        f"(tmux socket '{socket_name}'). The agents are scripts that follow their specs, so no API key is needed.\n"
    )
    run = _run_swarm(out, repo, agents, _demo_env(socket_name, pace), socket_name)
    tasks = run.snap.tasks if run.snap else []
    _print_agents(out, repo, tasks)
    elapsed = time.monotonic() - started
    done = run.snap.counts["done"] if run.snap else 0
    total = sum(run.snap.counts.values()) if run.snap else spec_count()
    out.print(f"\n{done}/{total} tasks done in {elapsed:.1f}s.")
    if keep:
        out.print(f"The repository is kept at {repo} (try: git -C {repo} log --oneline --graph --all).")
    else:
        shutil.rmtree(base_dir, ignore_errors=True)
        out.print("The throwaway repository was removed (run 'swarm demo --keep' to look around in it).")
    out.print("Next: 'swarm init' in your own repository, write specs, then 'swarm launch EPIC'.")
    return DemoResult(repo=repo, done=done, total=total, seconds=elapsed, clean=run.ok and run.clean)


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
            f"(watch one live from another terminal: SWARM_TMUX_SOCKET={socket_name} swarm attach agent-1, "
            f"run from {repo})\n"
        )
        loaded = load_config(repo, env=env)
        snap = follow(result.swarm, loaded, timeout=120)
        ok = True
    finally:
        out.print("\n[bold]teardown[/]: stopping the agents and removing their worktrees (branches stay)")
        report = teardown(cwd=repo, say=out.print)
        out.print(
            f"closed {len(report.sessions_killed)} session(s), removed {len(report.worktrees_removed)} worktree(s); "
            + ("no swarm process is left running" if report.clean else f"LEFT RUNNING: {report.survivors}")
        )
    return _Run(snap=snap, ok=ok, clean=report.clean)


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
