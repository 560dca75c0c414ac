"""Fixtures for end-to-end runs: a real git project, a private tmux server, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.runtime.tmux import stop_private_server
from tests.helpers import swarm_cli

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; return stdout."""
    return subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def tmux_socket(tmp_path: Path) -> Iterator[str]:
    """A tmux server of this test's own; only it is killed at the end."""
    name = f"swarm-test-{uuid.uuid4().hex[:10]}"
    yield name
    stop_private_server(name)


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository with a first commit and a diamond epic E1: A -> (B, C) -> D.

    The specs are written for the demo's scripted agent: NEED lines check the dependencies' files are
    present, file blocks are what the agent writes.
    """
    root = tmp_path / "proj"
    specs = root / "specs"
    specs.mkdir(parents=True)
    (root / "README.md").write_text("# proj\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    diamond = {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]}
    for sid, deps in diamond.items():
        needs = " ".join(f"out/{d}.txt" for d in deps)
        body = (f"NEED {needs}\n" if deps else "") + f"THINK working on {sid}\n\n```file out/{sid}.txt\n{sid}\n```\n"
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        (specs / f"{sid}.md").write_text(f"---\nid: {sid}\nepic: E1\ntitle: Make {sid}\n{dep_line}---\n{body}")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def run(project: Path, tmux_socket: str) -> Run:
    """Run the real swarm CLI in the project with this test's tmux socket and a fast-paced demo agent."""

    def runner(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        full = {
            "SWARM_TMUX_SOCKET": tmux_socket,
            "SWARM_DEMO_PACE": "0",
            "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
            "SWARM_QUEUE_LEASE_TTL_SECONDS": "30",
        }
        full.update(env or {})
        return swarm_cli(*args, cwd=project, env=full, timeout=timeout)

    return runner


DEMO_AGENT = f"{sys.executable} -m swarm.demo.agent"


def status_json(run: Run) -> dict[str, Any]:
    """``swarm status --json``."""
    result = run("status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def restricted_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only links to ``tools`` (to simulate a machine that lacks the others)."""
    folder = tmp_path / f"bin-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is needed for this test"
        os.symlink(found, folder / tool)
    return str(folder)
