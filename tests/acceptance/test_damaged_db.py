"""A damaged database end to end: the real CLI on an emptied, corrupt, unreadable or read-only SQLite file.

Every command that opens it says in one line which file, what is wrong with it and what to do; launch never
takes an emptied database beside a previous swarm's ``.swarm/`` for a new one (it would run done tasks again).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import DEMO_AGENT, Run, git

COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["queue", "status"],
    ["launch", "E1", "--command", DEMO_AGENT],
    ["teardown"],
    ["repair"],
]


def _db(project: Path) -> Path:
    return project / ".swarm" / "swarm.db"


def _queue(run: Run) -> None:
    made = run("queue", "init", "--epic", "E1")
    assert made.returncode == 0, made.stderr


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    line = result.stderr.strip()
    assert "\n" not in line, result.stderr
    assert "internal error" not in line
    return line


def test_launch_refuses_an_emptied_database_beside_a_previous_swarm(project: Path, run: Run) -> None:
    done = run("launch", "E1", "--agents", "2", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run("teardown").returncode == 0
    branches = git(project, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
    db = _db(project)
    for extra in (db.with_name("swarm.db-wal"), db.with_name("swarm.db-shm")):
        extra.unlink(missing_ok=True)
    db.write_bytes(b"")  # emptied: a full disk, a bad restore, a `> swarm.db`

    # A reading command first (it may give the empty file a schema): launch must still tell.
    run("status")
    refused = run("launch", "E1", "--agents", "2", "--command", DEMO_AGENT)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = _one_line(refused)
    assert str(db) in line
    assert "holds no swarm" in line
    assert "mv .swarm" in line  # how to start over on purpose
    assert not (project / ".worktrees").exists() or list((project / ".worktrees").iterdir()) == []
    assert git(project, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads") == branches

    # On purpose: a fresh .swarm/ is a new queue.
    (project / ".swarm").rename(project / ".swarm.old")
    fresh = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert run("teardown").returncode == 0


@pytest.mark.parametrize("damage", ["garbage", "malformed pages"])
def test_a_corrupt_database_gets_one_line_from_every_command(project: Path, run: Run, damage: str) -> None:
    _queue(run)
    db = _db(project)
    if damage == "garbage":
        db.write_bytes(os.urandom(16384))
    else:
        size = db.stat().st_size
        assert size > 4 * 4096
        with db.open("r+b") as handle:  # the header stays valid; the tables' pages are overwritten
            handle.seek(2 * 4096)
            handle.write(os.urandom(size - 2 * 4096))
    for command in COMMANDS:
        result = run(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        line = _one_line(result)
        assert str(db) in line, command
        assert "corrupt" in line, (command, line)
        assert "backup" in line, (command, line)


def _without_root_powers(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI as a user whom file modes bind: root loses the capabilities that ignore them."""
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "swarm", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_unreadable_database_says_so(project: Path, run: Run) -> None:
    _queue(run)
    db = _db(project)
    db.chmod(0o000)
    try:
        for command in (["status"], ["queue", "status"], ["launch", "E1", "--command", DEMO_AGENT]):
            result = _without_root_powers(project, *command)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            line = _one_line(result)
            assert str(db) in line, command
            assert "permission denied" in line, (command, line)
            assert "chmod" in line, (command, line)
    finally:
        db.chmod(0o600)


def test_a_read_only_database_can_be_read_and_refuses_writes_saying_so(project: Path, run: Run) -> None:
    _queue(run)
    db = _db(project)
    db.chmod(0o400)
    try:
        shown = _without_root_powers(project, "status", "--json")
        assert shown.returncode == 0, shown.stderr  # reading needs no write access
        for command in (["queue", "add", "--title", "more"], ["launch", "E1", "--command", DEMO_AGENT]):
            result = _without_root_powers(project, *command)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            line = _one_line(result)
            assert str(db) in line, command
            assert "read-only" in line, (command, line)
            assert "chmod" in line, (command, line)
    finally:
        db.chmod(0o600)
