"""What the codex and aider end-to-end tests share: the scripted OpenAI API stand-in from the shared tools, a
diamond epic whose spec bodies script that stand-in, and the checks of the task commits a run leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from swarm.runtime.tmux import private_sessions as tmux_sessions
from tests.acceptance.conftest import git
from tests.helpers import REPO_ROOT, retry_until, swarm_cli

MOCK = REPO_ROOT.parent / "shared" / "tools" / "mock_openai.py"

#: The diamond S1 -> S2, S3 -> S4: each task's dependencies.
DIAMOND: dict[str, list[str]] = {"S1": [], "S2": ["S1"], "S3": ["S1"], "S4": ["S2", "S3"]}


@pytest.fixture
def mock_openai(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The scripted OpenAI API on a free loopback port (it prints the port it picked); stopped by PID."""
    assert MOCK.is_file(), f"the scripted API stand-in is missing: {MOCK}"
    log = tmp_path / "mock.jsonl"
    proc = subprocess.Popen([sys.executable, str(MOCK), "0", str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def diamond_project(root: Path, bodies: Mapping[str, str]) -> Path:
    """A git repository with the diamond epic E1 in specs/, each spec's body from ``bodies``."""
    (root / "specs").mkdir(parents=True)
    (root / "README.md").write_text("# proj\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    for sid, deps in DIAMOND.items():
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        spec = f"---\nid: {sid}\nepic: E1\ntitle: Make {sid}\n{dep_line}---\n{bodies[sid]}"
        (root / "specs" / f"{sid}.md").write_text(spec)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def launch_diamond(repo: Path, agent: str, model: str, env: Mapping[str, str], *extra: str) -> list[dict[str, Any]]:
    """``swarm launch E1 --agent AGENT --wait`` with two agents (and ``extra`` arguments, e.g. ``--db URL``); the
    tasks of ``swarm status --json``."""
    launched = swarm_cli(
        "launch",
        "E1",
        *("--agent", agent, "--model", model, "--agents", "2", "--wait", "--timeout", "300", *extra),
        cwd=repo,
        env=env,
        timeout=360,
    )
    logs = "".join(p.read_text() for p in sorted((repo / ".swarm" / "logs").glob("*agent-*.log")))
    assert launched.returncode == 0, launched.stdout + launched.stderr + logs
    status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
    tasks: list[dict[str, Any]] = status["tasks"]
    assert sorted((t["id"], t["state"]) for t in tasks) == [(sid, "done") for sid in DIAMOND], logs
    return tasks


def check_task_commits(repo: Path, tasks: list[dict[str, Any]]) -> None:
    """Each task's commit is ``<id>: <title>`` and changes that task's own file, out/<id>.txt, and nothing else
    (no .gitignore, nothing an agent CLI keeps for itself)."""
    for task in tasks:
        sha = task["commit"]
        assert git(repo, "log", "-1", "--format=%s", sha) == f"{task['id']}: Make {task['id']}"
        changed = git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", sha).splitlines()
        assert changed == [f"out/{task['id']}.txt"], (task["id"], changed)


def agent_log_lines(repo: Path) -> list[str]:
    """Every non-empty line the agents printed, stripped, as the worker sees them."""
    lines: list[str] = []
    for path in sorted((repo / ".swarm" / "logs").glob("*agent-*.log")):
        lines += [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines


def teardown_leaves_nothing(repo: Path, env: Mapping[str, str], socket: str) -> None:
    """``swarm teardown`` exits 0 and leaves no session and no agent worktree behind."""
    down = swarm_cli("teardown", cwd=repo, env=env)
    assert down.returncode == 0, down.stderr
    retry_until(lambda: tmux_sessions(socket) == [] or None, seconds=15)
    listed = git(repo, "worktree", "list", "--porcelain").splitlines()
    worktrees = [line for line in listed if line.startswith("worktree ")]
    assert worktrees == [f"worktree {repo}"], worktrees
