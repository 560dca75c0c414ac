"""Faults of a real worker process (``python -m swarm.runtime.worker``), on both store backends: a signal or a
crash gives the task back at once without spending an attempt; a fault of the machine (a refused commit, a
path that cannot be written) pauses the agent, keeps the work and tells the lead once; a failed task waits out
the configured retry backoff.

Leases are 300 s here, so an expired lease can never be what returned a task.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import sql

from swarm.models import AgentRecord, AgentState, Spec, TaskState
from swarm.runtime import procs
from swarm.runtime.git import open_repo
from swarm.runtime.runfile import AgentRun, write_run_file
from swarm.runtime.worker import Worker
from swarm.store import RetryPolicy, Store, StoreOptions, open_store
from tests import pg as pg_fixtures
from tests.helpers import retry_until, swarm_cli
from tests.pg import PgServer, dbname_of

# The session server and fresh databases of tests/pg.py (no conftest in this folder names them).
pg_server = pg_fixtures.pg_server
pg_url = pg_fixtures.pg_url

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
LEASE = 300.0


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git in ``cwd`` and return its output."""
    done = subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=check)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, repo: Path) -> str:
    """The database of the test's swarm, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{repo}/.swarm/swarm.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@dataclass
class Swarm:
    """One swarm E on a database, with workers started as real processes."""

    repo: Path
    url: str
    swarm_id: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def store(self, **options: object) -> Store:
        """A store on the swarm's database (close it)."""
        return open_store(self.url, StoreOptions(**options))  # type: ignore[arg-type]

    def queue(self, *specs: Spec) -> None:
        """Queue specs as members of swarm E."""
        with self.store() as store:
            self.swarm_id = store.ensure_swarm("E", repo=str(self.repo)).id
            store.add_tasks(list(specs), swarm_id=self.swarm_id)

    def run_of(self, agent: str, command: str, **overrides: object) -> AgentRun:
        """The run file launch would write for ``agent``; its worktree and agent row are created."""
        worktree = self.repo / ".worktrees" / agent
        if not worktree.exists():
            open_repo(self.repo).add_worktree(worktree, f"swarm/E/{agent}", "main")
        with self.store() as store:
            self.swarm_id = store.ensure_swarm("E", repo=str(self.repo)).id
            store.register_agent(
                AgentRecord(
                    id=agent, swarm_id=self.swarm_id, host="h", branch=f"swarm/E/{agent}", worktree=str(worktree)
                )
            )
        fields: dict[str, object] = {
            "swarm_id": self.swarm_id,
            "epic": "E",
            "agent_id": agent,
            "host": "h",
            "repo": str(self.repo),
            "worktree": str(worktree),
            "branch": f"swarm/E/{agent}",
            "session": f"s-{agent}",
            "database_url": self.url,
            "kind": "command",
            "model": "",
            "permission_mode": "default",
            "command": command,
            "lease_ttl_seconds": LEASE,
            "heartbeat_seconds": 0.5,
            "task_timeout_seconds": 600.0,
            "commit_author": "swarm <swarm@example.invalid>",
            "token": "tok",
            "env": {"PATH": "/usr/bin:/bin"},
            "idle_poll_seconds": 0.2,
        }
        fields.update(overrides)
        return AgentRun.model_validate(fields)

    def start(self, agent: str, command: str, **overrides: object) -> subprocess.Popen[bytes]:
        """Start ``python -m swarm.runtime.worker`` for ``agent``, as launch does inside tmux."""
        run_file = write_run_file(self.run_of(agent, command, **overrides))
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(run_file)],
            cwd=self.repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def agent(self, agent: str) -> AgentRecord:
        """One agent's row."""
        with self.store() as store:
            return next(a for a in store.list_agents() if a.id == agent)

    def log(self, agent: str) -> str:
        """The agent's log."""
        return (self.repo / ".swarm" / "logs" / f"{agent}.log").read_text(errors="replace")


@pytest.fixture
def swarm(repo: Path, db_url: str) -> Iterator[Swarm]:
    """A swarm on each backend; every worker it started is gone at the end."""
    made = Swarm(repo, db_url)
    yield made
    for proc in made.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def spec(sid: str, *, max_attempts: int = 1) -> Spec:
    """A spec of epic E."""
    return Spec(id=sid, epic="E", title=f"title {sid}", body=f"do {sid}", max_attempts=max_attempts)


def _exit(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the worker did not exit within 90s") from None


def _working(swarm: Swarm, flag: Path) -> Callable[[], bool]:
    def ready() -> bool:
        return flag.exists() and swarm.agent("agent-1").state == AgentState.WORKING.value

    return ready


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_worker_gives_its_task_back_at_once_without_spending_an_attempt(
    swarm: Swarm, tmp_path: Path, sig: signal.Signals
) -> None:
    flag = tmp_path / "started"
    swarm.queue(spec("A"))  # max_attempts 1: a spent attempt would make it dead
    worker = swarm.start("agent-1", f"echo partial > half.txt; touch {flag}; sleep 600")
    retry_until(_working(swarm, flag), seconds=90)
    agent_pid = swarm.agent("agent-1").agent_pid
    assert agent_pid
    os.kill(worker.pid, sig)
    code = _exit(worker)
    with swarm.store() as store:
        task = store.get_task("A")
        events = store.events("A")
    assert task.state == TaskState.READY  # back at once, not after the 300 s lease
    assert task.attempts == 0  # the interruption spent no attempt
    assert task.owner is None
    assert code != 0
    assert events[-1].to_state == "ready"
    assert sig.name in events[-1].reason
    assert "no attempt spent" in events[-1].reason
    agent = swarm.agent("agent-1")
    assert agent.state == AgentState.DEAD.value  # the monitor restarts dead agents, never stopped ones
    assert agent.detail
    assert sig.name in agent.detail
    assert f"terminated by {sig.name} while working on A" in swarm.log("agent-1")
    retry_until(lambda: not procs.alive(agent_pid), seconds=60)  # the agent went with its worker
    # The partial work is kept twice: in the worktree, and under a WIP ref.
    worktree = swarm.repo / ".worktrees" / "agent-1"
    assert (worktree / "half.txt").read_text() == "partial\n"
    assert git(swarm.repo, "show", "refs/swarm/wip/agent-1/A:half.txt") == "partial"


def test_a_signal_after_a_stop_request_leaves_the_agent_stopped(swarm: Swarm, tmp_path: Path) -> None:
    """Teardown's fallback: it asked first, then sent SIGTERM. The task goes back; nobody restarts the agent."""
    flag = tmp_path / "started"
    swarm.queue(spec("A"))
    worker = swarm.start("agent-1", f"touch {flag}; sleep 600")
    retry_until(_working(swarm, flag), seconds=90)
    with swarm.store() as store:
        store.request_stop(swarm.swarm_id, "finish")
    os.kill(worker.pid, signal.SIGTERM)
    assert _exit(worker) == 0
    with swarm.store() as store:
        task = store.get_task("A")
    assert (task.state, task.attempts) == (TaskState.READY, 0)
    assert swarm.agent("agent-1").state == AgentState.STOPPED.value


def test_a_refused_commit_pauses_the_agent_keeps_the_work_and_escalates_once(swarm: Swarm) -> None:
    """commit.gpgsign without a usable gpg: the agent's work is fine, the machine is not."""
    git(swarm.repo, "config", "commit.gpgsign", "true")
    git(swarm.repo, "config", "gpg.program", "/bin/false")
    swarm.queue(spec("A"), spec("B"))
    worker = swarm.start("agent-1", 'echo "work of $SWARM_TASK_ID" > out.txt')
    code = _exit(worker)
    with swarm.store() as store:
        a, b = store.get_task("A"), store.get_task("B")
        events = store.events("A")
        notes = [m for m in store.list_messages("team") if m.type == "escalation"]
    assert (a.state, a.attempts, a.owner) == (TaskState.READY, 0, None)
    assert b.attempts == 0  # it stopped claiming: B was never tried
    assert code == 1
    assert "gpg" in events[-1].reason
    assert "no attempt spent" in events[-1].reason
    agent = swarm.agent("agent-1")
    assert agent.state == AgentState.PAUSED.value
    assert agent.detail
    assert "gpg" in agent.detail
    assert "swarm launch E" in agent.detail
    assert len(notes) == 1
    assert "agent-1 paused on A" in notes[0].body
    assert git(swarm.repo, "show", "refs/swarm/wip/agent-1/A:out.txt") == "work of A"
    assert (swarm.repo / ".worktrees" / "agent-1" / "out.txt").read_text() == "work of A\n"
    # swarm status says why.
    env = {"SWARM_QUEUE_DATABASE": swarm.url}
    shown = swarm_cli("status", "--json", cwd=swarm.repo, env=env)
    assert shown.returncode == 0, shown.stderr
    row = next(x for x in json.loads(shown.stdout)["agents"] if x["id"] == "agent-1")
    assert row["state"] == "paused"
    assert "gpg" in row["detail"]
    table = swarm_cli("status", cwd=swarm.repo, env={**env, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "paused" in table.stdout


def test_a_path_the_worker_cannot_write_pauses_the_agent_without_spending_an_attempt(swarm: Swarm) -> None:
    """An OSError of the worker's own (its prompt file cannot be written) is the machine's fault."""
    swarm.queue(spec("A"))
    run = swarm.run_of("agent-1", "echo never runs > out.txt")
    (run.prompt_dir / "A-1.md").mkdir(parents=True)  # the prompt file's path is taken by a folder
    worker = swarm.start("agent-1", "echo never runs > out.txt")
    code = _exit(worker)
    with swarm.store() as store:
        task = store.get_task("A")
        events = store.events("A")
    assert (task.state, task.attempts) == (TaskState.READY, 0)
    assert code == 1
    assert "A-1.md" in events[-1].reason
    agent = swarm.agent("agent-1")
    assert agent.state == AgentState.PAUSED.value
    assert agent.detail
    assert "A-1.md" in agent.detail


def test_a_read_only_database_pauses_the_agent_and_the_task_goes_back_once_it_is_writable(
    repo: Path, pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL turned read-only under a running task: the worker keeps the work, pauses, and gives the task
    back (no attempt spent) as soon as the database takes writes again. (SQLite cannot be made read-only for
    root without mounts; the same path handles its 'readonly database' error.)"""
    swarm = Swarm(repo, pg_url)
    dbname = dbname_of(pg_url)
    flag = tmp_path / "started"
    swarm.queue(spec("A"))
    worker = swarm.start("agent-1", f"echo partial > half.txt; touch {flag}; sleep 600")
    try:
        retry_until(_working(swarm, flag), seconds=90)

        def read_only(on: bool) -> None:
            with pg_server.admin() as conn:
                value = sql.SQL("on" if on else "off")
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
                        sql.Identifier(dbname), value
                    )
                )
            pg_server.terminate_backends(dbname=dbname)  # new sessions get the new default

        read_only(True)
        retry_until(lambda: "cannot give the task back yet" in swarm.log("agent-1"), seconds=90)
        read_only(False)
        code = _exit(worker)
        with swarm.store() as store:
            task = store.get_task("A")
            events = store.events("A")
        assert (task.state, task.attempts, task.owner) == (TaskState.READY, 0, None)
        assert code == 1
        assert "read-only" in events[-1].reason
        agent = swarm.agent("agent-1")
        assert agent.state == AgentState.PAUSED.value
        assert agent.detail
        assert "read-only" in agent.detail
        assert git(repo, "show", "refs/swarm/wip/agent-1/A:half.txt") == "partial"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)


def test_a_failed_task_waits_out_the_configured_retry_backoff(swarm: Swarm, tmp_path: Path) -> None:
    flag = tmp_path / "failed-once"
    swarm.queue(spec("A", max_attempts=2))
    command = f"if [ ! -e {flag} ]; then touch {flag}; exit 3; fi; echo ok > ok.txt"
    worker = swarm.start("agent-1", command, retry_backoff_seconds=2.0, retry_backoff_max_seconds=60.0)
    assert _exit(worker) == 0
    with swarm.store() as store:
        task = store.get_task("A")
        events = store.events("A")
    assert (task.state, task.attempts) == (TaskState.DONE, 2)
    failed = next(e for e in events if e.to_state == "ready" and e.reason.startswith("failed"))
    again = [e for e in events if e.to_state == "claimed" and e.seq > failed.seq]
    assert again
    # Not claimed again before the backoff of the first attempt (2 s) was over.
    assert again[0].at >= failed.at + 2.0 - 1e-3


def test_status_shows_how_long_a_ready_task_still_waits(swarm: Swarm) -> None:
    swarm.queue(spec("A", max_attempts=3), spec("B"))
    with swarm.store(retry=RetryPolicy(60.0, 600.0)) as store:
        claim = store.claim("agent-9", ttl_seconds=LEASE, swarm_id=swarm.swarm_id)
        assert claim is not None
        assert claim.task_id == "A"
        store.fail("A", "agent-9", claim.lease_token, "it broke")
    env = {"SWARM_QUEUE_DATABASE": swarm.url, "COLUMNS": "200"}
    shown = swarm_cli("status", "--json", cwd=swarm.repo, env=env)
    assert shown.returncode == 0, shown.stderr
    tasks = {t["id"]: t for t in json.loads(shown.stdout)["tasks"]}
    assert 0 < tasks["A"]["ready_in_s"] <= 60
    assert tasks["B"]["ready_in_s"] is None  # ready now
    table = swarm_cli("status", cwd=swarm.repo, env=env)
    assert table.returncode == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if ln.strip().startswith("A "))
    assert "ready in " in line


# -- in-process: a crash nobody foresaw, the stash labels, the finished line ---------------------------------


def test_a_crashing_worker_gives_its_task_back_and_is_left_for_the_monitor(
    swarm: Swarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm.queue(spec("A"))
    worker = Worker(swarm.run_of("agent-1", "echo x > x.txt"), out=io.BytesIO())

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the worker")

    monkeypatch.setattr(worker, "finish", broken)
    code = None
    with contextlib.suppress(RuntimeError):  # before the fix, the crash escaped the loop
        code = worker.loop()
    with swarm.store() as store:
        task = store.get_task("A")
        events = store.events("A")
    assert (task.state, task.attempts) == (TaskState.READY, 0)
    assert code == 1
    assert "crashed: RuntimeError: a bug in the worker" in events[-1].reason
    agent = swarm.agent("agent-1")
    assert agent.state == AgentState.DEAD.value
    assert "Traceback" in swarm.log("agent-1")  # the whole story is in the agent's log


def test_leftovers_are_stashed_under_an_honest_name(swarm: Swarm) -> None:
    """Changes found before B was claimed are not B's work: the stash says so, and names the last task run."""
    swarm.queue(spec("B"))
    run = swarm.run_of("agent-1", "echo b > b.txt")
    run.prompt_dir.mkdir(parents=True)
    (run.prompt_dir / "A-2.md").write_text("the prompt of A, attempt 2")  # what this agent ran last
    (Path(run.worktree) / "left.txt").write_text("from an interrupted run\n")
    assert Worker(run, out=io.BytesIO()).loop() == 0
    stashes = git(swarm.repo, "stash", "list", "--format=%gs")
    assert "changes left in the worktree of agent-1 outside any task" in stashes
    assert "the last task this agent ran was A (attempt 2)" in stashes
    assert "B attempt" not in stashes  # not labelled as B's own work


def test_cancelled_tasks_are_not_counted_as_done(swarm: Swarm) -> None:
    swarm.queue(spec("A"), spec("B"))
    with swarm.store() as store:
        store.cancel("B")
    out = io.BytesIO()
    assert Worker(swarm.run_of("agent-1", "echo a > a.txt"), out=out).loop() == 0
    text = out.getvalue().decode()
    assert "nothing left to do: 1 done, 1 cancelled" in text
    assert "tasks of the swarm are done" not in text
    assert "only task of the swarm is done" not in text
