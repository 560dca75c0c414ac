"""Real concurrency on one SQLite file: OS processes, a crash, and a property test over random DAGs."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.models import Spec, TaskState
from swarm.store import RetryPolicy, StoreOptions, open_store
from tests.helpers import REPO_ROOT, retry_until, swarm_cli, write_spec
from tests.workers import claim_complete_loop

PROCESSES = 8
CYCLES = 500


def test_eight_processes_claim_and_complete_without_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/swarm.db"
    total = PROCESSES * CYCLES
    with open_store(url) as store:
        store.add_tasks([Spec(id=f"T{i:05d}", epic="E", title=f"t{i}", body="b") for i in range(total)])

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=claim_complete_loop, args=(url, f"agent-{n}", CYCLES, results)) for n in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    errors = [err for _, _, errs in reports for err in errs]
    assert errors == [], "a worker met an error (e.g. 'database is locked'):\n" + "\n".join(errors)
    claimed = [task for _, tasks, _ in reports for task in tasks]
    duplicates = [task for task, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert len(claimed) == total  # nothing lost: every task was claimed by someone
    with open_store(url) as store:
        assert store.counts()["done"] == total
        claims = Counter(e.task_id for e in store.events() if e.to_state == "claimed")
        assert set(claims.values()) == {1}
        assert all(t.commit == f"sha-{t.id}" for t in store.list_tasks())


def test_killed_holder_loses_task_after_ttl(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)  # the CLI finds the repository root by .git
    write_spec(repo / "specs", "A", epic="E1")
    init = swarm_cli("queue", "init", "--epic", "E1", cwd=repo)
    assert init.returncode == 0, init.stderr
    url = f"sqlite:///{repo}/.swarm/swarm.db"

    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.workers", url, "agent-1", "1.0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout is not None
        held = json.loads(victim.stdout.readline())
        assert held["task_id"] == "A"
        assert held["attempt"] == 1
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL

    def reclaimed() -> dict[str, object] | None:
        out = swarm_cli("queue", "claim", "--agent-id", "agent-2", "--json", cwd=repo)
        assert out.returncode == 0, out.stderr
        task: dict[str, object] | None = json.loads(out.stdout)["task"]
        return task

    second = retry_until(reclaimed, seconds=30, interval=0.2)
    assert second["id"] == "A"
    assert second["attempt"] == 2

    late = swarm_cli(
        "queue",
        "release",
        "--agent-id",
        "agent-1",
        "--task-id",
        "A",
        "--lease-token",
        str(held["lease_token"]),
        "--completed",
        cwd=repo,
    )
    assert late.returncode == 1
    assert "lease lost" in late.stderr
    with open_store(url) as store:
        task = store.get_task("A")
        assert task.state == TaskState.CLAIMED
        assert task.owner == "agent-2"
    ok = swarm_cli(
        "queue",
        "release",
        "--agent-id",
        "agent-2",
        "--task-id",
        "A",
        "--lease-token",
        str(second["lease_token"]),
        "--completed",
        "--commit",
        "abc",
        cwd=repo,
    )
    assert ok.returncode == 0, ok.stderr


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    """A random DAG: each node may depend on any earlier node."""
    size = draw(st.integers(min_value=1, max_value=25))
    graph: dict[str, tuple[str, ...]] = {}
    for i in range(size):
        earlier = [f"N{j:02d}" for j in range(i)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4)) if earlier else []
        graph[f"N{i:02d}"] = tuple(deps)
    return graph


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=dags(), claimers=st.integers(min_value=1, max_value=4), seed=st.integers(0, 2**16))
def test_random_dags_respect_dependencies_under_concurrency(
    tmp_path_factory: pytest.TempPathFactory, graph: dict[str, tuple[str, ...]], claimers: int, seed: int
) -> None:
    folder = tmp_path_factory.mktemp("dag")
    url = f"sqlite:///{folder}/q.db"
    options = StoreOptions(retry=RetryPolicy(0, 0), default_max_attempts=1000)
    with open_store(url, options) as store:
        # Queue in a shuffled order: the store must order dependencies itself.
        specs = [Spec(id=n, epic="E", title=n, body=n, depends_on=d) for n, d in graph.items()]
        random.Random(seed).shuffle(specs)
        store.add_tasks(specs)

    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        rng = random.Random(seed + n)
        try:
            with open_store(url, options) as mine:
                agent = f"agent-{n}"
                while True:
                    got = mine.claim(agent, ttl_seconds=300)
                    if got is None:
                        if mine.counts()["done"] == len(graph):
                            return
                        continue  # others hold the rest; their completion will promote more
                    roll = rng.random()
                    if roll < 0.1:
                        mine.fail(got.task_id, agent, got.lease_token, "random failure")
                    elif roll < 0.2:
                        mine.return_task(got.task_id, agent, got.lease_token)
                    else:
                        mine.complete(got.task_id, agent, got.lease_token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []

    with open_store(url, options) as store:
        events = store.events()
        assert {t.state for t in store.list_tasks()} == {TaskState.DONE}
    done_at = {e.task_id: e.seq for e in events if e.to_state == "done"}
    assert Counter(e.task_id for e in events if e.to_state == "done") == Counter(graph.keys())
    for e in events:
        if e.to_state == "claimed":
            for dep in graph[e.task_id]:
                assert done_at[dep] < e.seq, f"{e.task_id} claimed before its dependency {dep} was done"
