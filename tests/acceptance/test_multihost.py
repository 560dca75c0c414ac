"""Several machines on one queue: two clones of one origin, each with its own agents, one shared database.

The two "hosts" are two clones in two temp dirs with their own host labels and tmux servers; task commits
travel through the shared origin, as they would between machines.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions as tmux_sessions
from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import DEMO_AGENT, git
from tests.helpers import retry_until, swarm_cli
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures: a throwaway PostgreSQL and its databases)

# An 8-task epic whose dependencies cross hosts whatever the schedule: a diamond of diamonds.
GRAPH = {
    "T1": [],
    "T2": ["T1"],
    "T3": ["T1"],
    "T4": ["T2", "T3"],
    "T5": ["T4"],
    "T6": ["T4"],
    "T7": ["T5", "T6"],
    "T8": ["T7", "T1"],
}


def _origin(tmp_path: Path) -> Path:
    work = tmp_path / "seed"
    specs = work / "specs"
    specs.mkdir(parents=True)
    (work / "README.md").write_text("# shared\n")
    for sid, deps in GRAPH.items():
        needs = " ".join(f"out/{d}.txt" for d in deps)
        body = (f"NEED {needs}\n" if deps else "") + f"THINK {sid}\n\n```file out/{sid}.txt\n{sid}\n```\n"
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        (specs / f"{sid}.md").write_text(f"---\nid: {sid}\nepic: E8\ntitle: Make {sid}\n{dep_line}---\n{body}")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True)
    return origin


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[tuple[Path, str, str]]]:
    """Two clones, each with (path, host label, tmux socket)."""
    origin = _origin(tmp_path)
    made: list[tuple[Path, str, str]] = []
    for label in ("h1", "h2"):
        clone = tmp_path / label / "repo"
        clone.parent.mkdir()
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        made.append((clone, label, f"swarm-test-{label}-{uuid.uuid4().hex[:8]}"))
    yield made
    for _, _, sock in made:
        stop_private_server(sock)


def _run(host: tuple[Path, str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    path, _, sock = host
    env = {"SWARM_TMUX_SOCKET": sock, "SWARM_DEMO_PACE": "0", "SWARM_QUEUE_HEARTBEAT_SECONDS": "1"}
    return swarm_cli(*args, cwd=path, env=env, timeout=timeout)


def _status(host: tuple[Path, str, str]) -> dict[str, Any]:
    result = _run(host, "status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database both clones use: a real PostgreSQL (how machines share a queue), or one SQLite file."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path}/shared/swarm.db"


def test_two_clones_share_one_queue(hosts: list[tuple[Path, str, str]], shared_url: str) -> None:
    url = shared_url
    first, second = hosts
    a = _run(first, "launch", "E8", "--agents", "2", "--db", url, "--host-label", "h1", "--command", DEMO_AGENT)
    assert a.returncode == 0, a.stderr
    b = _run(
        second,
        "launch",
        "E8",
        "--agents",
        "2",
        "--db",
        url,
        "--host-label",
        "h2",
        "--command",
        DEMO_AGENT,
        "--wait",
        "--timeout",
        "120",
    )
    assert b.returncode == 0, b.stderr + b.stdout
    assert "resuming" in b.stdout  # the second clone joined the running swarm instead of starting another

    # The database is remembered: later commands in each clone need no --db.
    data = _status(first)
    assert data["counts"]["done"] == len(GRAPH)
    assert {a["id"] for a in data["agents"]} == {"h1-agent-1", "h1-agent-2", "h2-agent-1", "h2-agent-2"}
    tasks = {t["id"]: t for t in data["tasks"]}
    assert {t["owner"].split("-")[0] for t in tasks.values()} <= {"h1", "h2"}
    # Each task's commit is published on the origin for the other hosts ...
    for sid in GRAPH:
        assert git(first[0], "ls-remote", "origin", f"refs/swarm/tasks/{sid}").split()[0] == tasks[sid]["commit"]
    # ... and every dependent task saw its dependencies' files, wherever they were made.
    git(first[0], "fetch", "-q", "origin", "+refs/swarm/tasks/*:refs/swarm/tasks/*")
    for sid, deps in GRAPH.items():
        files = set(git(first[0], "ls-tree", "-r", "--name-only", tasks[sid]["commit"]).split())
        assert {f"out/{d}.txt" for d in deps} | {f"out/{sid}.txt"} <= files, sid
    done = [e for e in _events(first) if e == "done"]
    assert len(done) == len(GRAPH)  # each task completed exactly once

    down_first = _run(first, "teardown")
    assert down_first.returncode == 0, down_first.stderr
    # Tearing down one host leaves the other host's agents alone.
    assert tmux_sessions(first[2]) == []
    down_second = _run(second, "teardown")
    assert down_second.returncode == 0, down_second.stderr
    assert tmux_sessions(second[2]) == []
    assert procs.processes_with_env("SWARM_ID", data["swarm"]["id"]) == []


def _events(host: tuple[Path, str, str]) -> list[str]:
    result = _run(host, "queue", "events", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["to"] for line in result.stdout.splitlines()]


def test_teardown_of_one_host_keeps_the_other_running(hosts: list[tuple[Path, str, str]], shared_url: str) -> None:
    url = shared_url
    first, second = hosts
    slow = "sleep 600"
    assert (
        _run(first, "launch", "E8", "--agents", "1", "--db", url, "--host-label", "h1", "--command", slow).returncode
        == 0
    )
    assert (
        _run(second, "launch", "E8", "--agents", "1", "--db", url, "--host-label", "h2", "--command", slow).returncode
        == 0
    )
    down = _run(first, "teardown", "--now", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["clean"] is True
    data = _status(second)
    states = {a["id"]: a["state"] for a in data["agents"]}
    assert states["h1-agent-1"] == "stopped"
    assert states["h2-agent-1"] in ("working", "idle", "starting")
    assert tmux_sessions(second[2]) != []
    everyone = _run(second, "teardown", "--now", "--all-hosts", "--json")
    assert everyone.returncode == 0, everyone.stderr
    assert tmux_sessions(second[2]) == []


def test_a_second_epic_launched_on_another_host_joins_the_same_swarm(
    hosts: list[tuple[Path, str, str]],
    pg_url: str,  # noqa: F811
) -> None:
    first, second = hosts
    a = _run(first, "launch", "E8", "--agents", "1", "--db", pg_url, "--host-label", "h1", "--command", DEMO_AGENT)
    assert a.returncode == 0, a.stderr
    swarm_id = _status(first)["swarm"]["id"]
    # Host 2's backlog has one more epic (specs are read where the launch runs; the prompt travels in the queue).
    spec = "---\nid: N1\nepic: E9\ntitle: Make N1\n---\n\n```file out/N1.txt\nN1\n```\n"
    (second[0] / "specs" / "N1.md").write_text(spec)
    b = _run(
        second,
        *("launch", "E9", "--agents", "1", "--db", pg_url, "--host-label", "h2", "--command", DEMO_AGENT),
        *("--wait", "--timeout", "120"),
        timeout=240,
    )
    assert b.returncode == 0, b.stdout + b.stderr
    assert f"added E9 to swarm {swarm_id}" in b.stdout
    retry_until(lambda: _status(first)["swarm"]["finished"], seconds=180)
    data = _status(second)
    assert data["swarm"]["id"] == swarm_id
    assert data["swarm"]["epics"] == ["E8", "E9"]
    assert data["epics"]["E9"]["done"] == 1
    assert data["epics"]["E8"]["done"] == len(GRAPH)
    assert {a["id"] for a in data["agents"]} == {"h1-agent-1", "h2-agent-1"}
    for host in hosts:
        down = _run(host, "teardown")
        assert down.returncode == 0, down.stderr
        assert tmux_sessions(host[2]) == []
