"""Chaos: a 40-task epic with dependencies on 6 agents while a chaos thread SIGKILLs random agent commands and
workers. The epic must finish, every task complete exactly once, every done task's commit hold its work,
late writes from killed holders be refused, and teardown leave no process, session or worktree.

Short form (15 kills) runs in ./scripts/test. Long form: ``CHAOS_LONG=1 ./scripts/test tests/chaos``
(5 rounds of 40 kills each).
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import LeaseLost
from swarm.runtime import procs
from swarm.runtime.tmux import stop_private_server
from swarm.store import open_store
from tests.helpers import retry_until, swarm_cli

LONG = os.environ.get("CHAOS_LONG") == "1"
TASKS = 40
AGENTS = 6
KILLS = 40 if LONG else 15
ROUNDS = 5 if LONG else 1
GIT = ["git", "-c", "user.name=chaos", "-c", "user.email=chaos@example.invalid"]


def _graph(seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    graph: dict[str, list[str]] = {}
    for i in range(TASKS):
        earlier = [f"C{j:02d}" for j in range(max(0, i - 8), i)]
        graph[f"C{i:02d}"] = sorted(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2))))
    return graph


def _project(root: Path, graph: dict[str, list[str]]) -> None:
    specs = root / "specs"
    specs.mkdir(parents=True)
    (root / "README.md").write_text("# chaos\n")
    for sid, deps in graph.items():
        needs = " ".join(f"out/{d}.txt" for d in deps)
        body = (f"NEED {needs}\n" if deps else "") + f"THINK {sid}\n\n```file out/{sid}.txt\n{sid}\n```\n"
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        (specs / f"{sid}.md").write_text(f"---\nid: {sid}\nepic: CH\ntitle: Make {sid}\n{dep_line}---\n{body}")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def socket_name() -> Iterator[str]:
    """A private tmux server, killed at the end."""
    name = f"swarm-chaos-{uuid.uuid4().hex[:8]}"
    yield name
    stop_private_server(name)


class Chaos:
    """Kills random agent commands and workers, remembering the leases their victims held."""

    def __init__(self, db: Path, seed: int) -> None:
        self.db = db
        self.rng = random.Random(seed)
        self.kills: list[tuple[str, int]] = []
        self.stale: list[tuple[str, str, str]] = []  # (task, agent, lease token) held by a killed process
        self.errors: list[BaseException] = []

    def _rows(self) -> list[tuple[str, int | None, int | None, str | None]]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return list(conn.execute("SELECT id, pid, agent_pid, task_id FROM agents WHERE state = 'working'"))
        finally:
            conn.close()

    def _lease(self, agent: str) -> tuple[str, str] | None:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            row = conn.execute(
                "SELECT id, lease_token FROM tasks WHERE state = 'claimed' AND owner = ?", (agent,)
            ).fetchone()
            return (row[0], row[1]) if row else None
        finally:
            conn.close()

    def _done(self) -> int:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return int(conn.execute("SELECT count(*) FROM tasks WHERE state = 'done'").fetchone()[0])
        finally:
            conn.close()

    def _moved_on(self, before: int) -> bool:
        done = self._done()
        return done > before or done == TASKS

    def run(self, swarm_id: str) -> None:
        try:
            for _ in range(KILLS):
                working = retry_until(lambda: [r for r in self._rows() if r[2]], seconds=60, interval=0.05)
                agent, worker, agent_pid, _ = self.rng.choice(working)
                lease = self._lease(agent)
                target = worker if self.rng.random() < 0.5 else agent_pid
                if not target or target not in procs.processes_with_env("SWARM_ID", swarm_id):
                    continue
                before = self._done()
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it finished on its own a moment ago: pick another victim
                self.kills.append(("worker" if target == worker else "agent", target))
                if lease:
                    self.stale.append((lease[0], agent, lease[1]))
                # Pace by progress, not by the clock: the next kill waits until the swarm moved on.
                retry_until(functools.partial(self._moved_on, before), seconds=60, interval=0.05)
                if self._done() == TASKS:
                    return
        except BaseException as exc:
            self.errors.append(exc)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_chaos(tmp_path: Path, socket_name: str, round_: int) -> None:
    seed = 1000 + round_
    graph = _graph(seed)
    repo = tmp_path / "chaos"
    _project(repo, graph)
    env = {
        "SWARM_TMUX_SOCKET": socket_name,
        "SWARM_DEMO_PACE": "0.5",
        "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
        "SWARM_QUEUE_LEASE_TTL_SECONDS": "10",
        "SWARM_QUEUE_MAX_ATTEMPTS": "50",
        "SWARM_QUEUE_RETRY_BACKOFF_SECONDS": "0.1",
        "SWARM_SWARM_MAX_RESTARTS": "100",
        "SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3",
        "SWARM_SWARM_RESTART_BACKOFF_SECONDS": "0.1",
    }
    agent = f"{sys.executable} -m swarm.demo.agent"
    launched = swarm_cli("launch", "CH", "--agents", str(AGENTS), "--command", agent, cwd=repo, env=env)
    assert launched.returncode == 0, launched.stderr
    db = repo / ".swarm" / "swarm.db"
    status: dict[str, Any] = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
    swarm_id = status["swarm"]["id"]

    chaos = Chaos(db, seed)
    thread = threading.Thread(target=chaos.run, args=(swarm_id,), daemon=True)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert chaos.errors == []
    assert len(chaos.kills) >= KILLS * 0.6, chaos.kills  # the chaos really happened

    def finished() -> bool:
        with open_store(f"sqlite:///{db}") as store:
            return store.counts()["done"] == TASKS

    retry_until(finished, seconds=240, interval=0.3)

    with open_store(f"sqlite:///{db}") as store:
        tasks = {t.id: t for t in store.list_tasks()}
        done_events = Counter(e.task_id for e in store.events() if e.to_state == "done")
        # Late writes from killed holders are refused (their tokens are stale now).
        for task_id, agent_id, token in chaos.stale:
            with pytest.raises(LeaseLost):
                store.complete(task_id, agent_id, token, commit="late")
    assert done_events == Counter(graph.keys())  # every task completed exactly once
    for sid, deps in graph.items():
        files = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", tasks[sid].commit or "missing"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert {f"out/{d}.txt" for d in deps} | {f"out/{sid}.txt"} <= set(files), sid

    down = swarm_cli("teardown", "--now", "--json", cwd=repo, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["clean"] is True
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []
    sessions = subprocess.run(["tmux", "-L", socket_name, "ls"], capture_output=True, text=True, check=False)
    assert sessions.returncode != 0 or sessions.stdout.strip() == ""
    worktrees = repo / ".worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []
