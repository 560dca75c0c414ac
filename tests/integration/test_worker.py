"""The worker loop in-process, on a real git repository, a real store and real agent processes."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from swarm.agents import parse_usage
from swarm.models import AgentRecord, Spec, TaskState
from swarm.runtime import procs
from swarm.runtime.git import open_repo
from swarm.runtime.runfile import AgentRun, process_record_path, write_run_file
from swarm.runtime.worker import CONTROL_THREAD, Terminated, Worker
from swarm.store import open_store
from tests.helpers import retry_until, swarm_cli

GIT_ENV = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its output."""
    done = subprocess.run(["git", *GIT_ENV, *args], cwd=cwd, capture_output=True, text=True, check=True)
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


MakeWorker = Callable[..., Worker]
MakeRun = Callable[..., AgentRun]
StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def make_run(repo: Path) -> MakeRun:
    """The run file contents of ``agent-N`` with its own worktree, running ``command`` as the agent."""
    url = f"sqlite:///{repo}/.swarm/swarm.db"

    def factory(agent: str, command: str, **overrides: object) -> AgentRun:
        git_repo = open_repo(repo)
        worktree = repo / ".worktrees" / agent
        git_repo.add_worktree(worktree, f"swarm/E/{agent}", "main")
        with open_store(url) as store:
            swarm = store.ensure_swarm("E")
        fields: dict[str, object] = {
            "swarm_id": swarm.id,
            "epic": "E",
            "agent_id": agent,
            "host": "h",
            "repo": str(repo),
            "worktree": str(worktree),
            "branch": f"swarm/E/{agent}",
            "session": f"s-{agent}",
            "database_url": url,
            "kind": "command",
            "model": "",
            "permission_mode": "default",
            "command": command,
            "lease_ttl_seconds": 60.0,
            "heartbeat_seconds": 0.2,
            "task_timeout_seconds": 60.0,
            "commit_author": "swarm <swarm@example.invalid>",
            "token": "tok",
            "env": {"PATH": "/usr/bin:/bin"},
            "idle_poll_seconds": 0.2,
        }
        fields.update(overrides)
        return AgentRun.model_validate(fields)

    return factory


@pytest.fixture
def make_worker(make_run: MakeRun) -> MakeWorker:
    """A worker for ``agent-N`` in this process, running ``command`` as the agent."""

    def factory(agent: str, command: str, **overrides: object) -> Worker:
        return Worker(make_run(agent, command, **overrides), out=io.BytesIO())

    return factory


@pytest.fixture
def owned() -> Iterator[Callable[[int], int]]:
    """Processes a test is responsible for (by pid, with their start time): SIGKILLed at the end if alive."""
    handles: list[psutil.Process] = []

    def own(pid: int) -> int:
        with contextlib.suppress(psutil.NoSuchProcess):  # already gone: nothing to clean up
            handles.append(psutil.Process(pid))
        return pid

    yield own
    for handle in handles:
        with contextlib.suppress(psutil.Error):
            handle.kill()  # psutil checks the pid still names the same process


@pytest.fixture
def start_worker(make_run: MakeRun, owned: Callable[[int], int]) -> StartWorker:
    """A real worker process (`python -m swarm.runtime.worker`, as launch starts it) for ``agent-N``."""

    def start(agent: str, command: str, **overrides: object) -> subprocess.Popen[bytes]:
        run_file = write_run_file(make_run(agent, command, **overrides))
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(run_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        owned(proc.pid)
        return proc

    return start


def _pid_in(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def queue(repo: Path, *specs: Spec) -> None:
    """Queue specs as members of swarm E."""
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        swarm = store.ensure_swarm("E")
        store.add_tasks(list(specs), swarm_id=swarm.id)


def task(repo: Path, task_id: str) -> object:
    """Read one task back."""
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        return store.get_task(task_id)


def spec(sid: str, *deps: str, max_attempts: int = 1, allow_empty: bool = False, verify: str | None = None) -> Spec:
    """A spec of epic E; ``allow_empty`` for agents that change nothing (docs/contract.md §3)."""
    return Spec(
        id=sid,
        epic="E",
        title=f"title {sid}",
        body=f"do {sid}",
        depends_on=deps,
        max_attempts=max_attempts,
        allow_empty=allow_empty,
        verify=verify,
    )


def test_success_commits_with_task_id_and_completes(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    worker = make_worker("agent-1", 'echo "$SWARM_TASK_ID" > done.txt; cat > prompt-copy.txt')
    assert worker.loop() == 0
    done = task(repo, "A")
    assert done.state == TaskState.DONE  # type: ignore[attr-defined]
    sha = done.commit  # type: ignore[attr-defined]
    assert git(repo, "log", "-1", "--format=%s", sha) == "A: title A"
    assert git(repo, "show", f"{sha}:done.txt") == "A"
    assert "do A" in git(repo, "show", f"{sha}:prompt-copy.txt")  # the prompt arrived on stdin
    assert git(repo, "log", "-1", "--format=%an <%ae>", sha) == "swarm <swarm@example.invalid>"


def test_failure_fails_with_last_lines_and_stashes_partial_work(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    worker = make_worker("agent-1", "echo partial > half.txt; echo 'cannot find the config'; exit 3")
    worker.loop()
    failed = task(repo, "A")
    assert failed.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert "agent exited 3" in failed.last_error  # type: ignore[attr-defined]
    assert "cannot find the config" in failed.last_error  # type: ignore[attr-defined]
    worktree = repo / ".worktrees" / "agent-1"
    assert not (worktree / "half.txt").exists()  # the next task starts clean ...
    stash = git(repo, "stash", "list")
    assert "swarm: A attempt 1 (exit 3)" in stash  # ... and nothing was lost


def test_dependency_commits_are_merged_before_the_agent_runs(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B"), spec("C", "A", "B"))
    one = make_worker("agent-1", 'echo "$SWARM_TASK_ID" > "$SWARM_TASK_ID.txt"')
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        # agent-1 does A and B, agent-2 then does C and must see both files.
        for _ in range(2):
            got = store.claim("agent-1", ttl_seconds=60)
            assert got is not None
            one.work(got)
    two = make_worker("agent-2", "test -f A.txt && test -f B.txt && echo both > C.txt")
    two.loop()
    c = task(repo, "C")
    assert c.state == TaskState.DONE  # type: ignore[attr-defined]
    files = git(repo, "ls-tree", "--name-only", c.commit)  # type: ignore[attr-defined]
    assert {"A.txt", "B.txt", "C.txt"} <= set(files.split())


def test_merge_conflict_fails_the_task_with_the_reason(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B"), spec("C", "A", "B"))
    one = make_worker("agent-1", "echo one > shared.txt")
    two = make_worker("agent-2", "echo two > shared.txt")
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        a = store.claim("agent-1", ttl_seconds=60)
        b = store.claim("agent-2", ttl_seconds=60)
        assert a is not None
        assert b is not None
        one.work(a)
        two.work(b)
    three = make_worker("agent-3", "echo never > C.txt")
    three.loop()
    c = task(repo, "C")
    assert c.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert "merge conflict" in c.last_error  # type: ignore[attr-defined]
    assert "shared.txt" in c.last_error  # type: ignore[attr-defined]
    worktree = repo / ".worktrees" / "agent-3"
    assert git(worktree, "status", "--porcelain") == ""  # the merge was aborted
    assert not (worktree / "C.txt").exists()


def test_a_dependency_commit_missing_on_one_host_fails_the_task_with_the_reason(
    repo: Path, make_worker: MakeWorker
) -> None:
    queue(repo, spec("A"), spec("B", "A"))
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        a = store.claim("agent-9", ttl_seconds=60)
        assert a is not None
        store.complete("A", "agent-9", a.lease_token, commit="1" * 40)  # a commit this repository lacks
    worker = make_worker("agent-1", "echo never > B.txt")
    worker.loop()
    b = task(repo, "B")
    assert b.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert "not in this repository" in b.last_error  # type: ignore[attr-defined]
    assert not (repo / ".worktrees" / "agent-1" / "B.txt").exists()


def test_timeout_kills_the_agent_group_and_fails(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    marker = repo / "child.pid"
    worker = make_worker(
        "agent-1", f"sleep 300 & echo $! > {marker}; wait", task_timeout_seconds=1.0, heartbeat_seconds=0.2
    )
    worker.loop()
    assert "timed out" in task(repo, "A").last_error  # type: ignore[attr-defined]
    from swarm.runtime import procs

    assert not procs.alive(int(marker.read_text()))  # the agent's child died with its group


def test_lost_lease_stops_the_agent_and_keeps_the_work(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A", max_attempts=3))
    flag = repo / "started"
    worker = make_worker("agent-1", f"echo mine > mine.txt; touch {flag}; sleep 300")
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        got = store.claim("agent-1", ttl_seconds=60)
        assert got is not None
        import threading

        thread = threading.Thread(target=worker.work, args=(got,))
        thread.start()
        from tests.helpers import retry_until

        retry_until(flag.exists, seconds=20)
        store.cancel("A", reason="the lead changed their mind")
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert task(repo, "A").state == TaskState.CANCELLED  # type: ignore[attr-defined]
    assert "swarm: A attempt 1 (lease lost)" in git(repo, "stash", "list")


def test_stop_now_returns_the_task_and_leaves_work_for_teardown(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    flag = repo / "started"
    worker = make_worker("agent-1", f"echo wip > wip.txt; touch {flag}; sleep 300", stop_poll_seconds=0.1)
    import threading

    from tests.helpers import retry_until

    thread = threading.Thread(target=worker.loop)
    thread.start()
    retry_until(flag.exists, seconds=20)
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        swarm = store.ensure_swarm("E")
        store.request_stop(swarm.id, "now")
    thread.join(timeout=30)
    assert not thread.is_alive()
    a = task(repo, "A")
    assert a.state == TaskState.READY  # type: ignore[attr-defined]
    assert a.attempts == 0  # type: ignore[attr-defined]
    assert (repo / ".worktrees" / "agent-1" / "wip.txt").read_text() == "wip\n"


def test_worker_exits_when_the_swarm_is_finished(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A", allow_empty=True), spec("B", "A", allow_empty=True))
    worker = make_worker("agent-1", "true")
    assert worker.loop() == 0
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        agent = store.list_agents()[0]
        assert agent.state == "done"
        assert store.counts()["done"] == 2


def test_cost_and_tokens_from_claude_stream_json(repo: Path, make_worker: MakeWorker) -> None:
    line = (
        '{"type":"result","subtype":"success","total_cost_usd":0.0421,'
        '"usage":{"input_tokens":100,"output_tokens":20,"cache_read_input_tokens":5}}'
    )
    script = repo / "fake_claude.py"
    script.write_text(f"print({line!r})\n")
    queue(repo, spec("A"))
    worker = make_worker("agent-1", f"{sys.executable} {script}")
    worker.loop()
    a = task(repo, "A")
    assert a.cost_usd == pytest.approx(0.0421)  # type: ignore[attr-defined]
    assert a.tokens == 125  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type":"result","total_cost_usd":1.5,"usage":{"input_tokens":1}}', {"cost_usd": 1.5, "tokens": 1}),
        ('{"type":"assistant","total_cost_usd":1.5}', {}),
        ("not json total_cost_usd", {}),
        ('{"type":"result","total_cost_usd":"x"}', {}),
    ],
    ids=["result", "other-type", "not-json", "bad-value"],
)
def test_parse_usage(line: str, expected: dict[str, object]) -> None:
    usage: dict[str, object] = {}
    parse_usage("claude-stream-json", line, usage)
    assert usage == expected


def test_claude_agents_get_the_swarm_mcp_server(repo: Path, make_worker: MakeWorker, tmp_path: Path) -> None:
    """The claude template runs `claude -p ... --mcp-config <worktree>/.swarm/mcp.json`, never committed."""
    import json
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "claude-argv.json"
    fake = bin_dir / "claude"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "argv = sys.argv[1:]\n"
        "config = json.load(open(argv[argv.index('--mcp-config') + 1]))\n"
        f"json.dump({{'argv': argv, 'config': config, 'stdin': sys.stdin.read()}}, open({str(record)!r}, 'w'))\n"
        "open('work.txt', 'w').write('done')\n"
        'print(json.dumps({"type": "result", "total_cost_usd": 0.01, "usage": {"output_tokens": 3}}))\n'
    )
    fake.chmod(0o755)
    open_repo(repo).ensure_excluded("/.swarm/")
    queue(repo, spec("A"))
    worker = make_worker(
        "agent-1",
        None,
        kind="claude",
        model="sonnet",
        permission_mode="acceptEdits",
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"},
    )
    worker.loop()
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    assert argv[:2] == ["-p", "--model"]
    assert "--output-format" in argv
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    server = seen["config"]["mcpServers"]["swarm"]
    assert server["args"] == ["-m", "swarm", "mcp"]
    assert server["env"]["SWARM_AGENT_ID"] == "agent-1"
    # The channel is the server's identity and its way to the queue: no token, no database URL.
    assert server["env"]["SWARM_CHANNEL"] == str(repo / ".swarm" / "run" / "agent-1" / "channel.sock")
    assert "SWARM_TOKEN" not in server["env"]
    assert "SWARM_DATABASE_URL" not in server["env"]
    assert "do A" in seen["stdin"]
    a = task(repo, "A")
    assert a.state == TaskState.DONE  # type: ignore[attr-defined]
    committed = git(repo, "ls-tree", "-r", "--name-only", a.commit).split()  # type: ignore[attr-defined]
    assert "work.txt" in committed
    assert not any(name.startswith(".swarm") for name in committed)  # the MCP configuration never lands in git
    config_file = repo / ".worktrees" / "agent-1" / ".swarm" / "mcp.json"
    assert config_file.stat().st_mode & 0o777 == 0o600


def test_worker_entry_point_without_the_cli_stack(tmp_path: Path) -> None:
    """Launch starts `python -m swarm.runtime.worker`; a bad run file is one line and exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("swarm worker: no run file at")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, swarm.runtime.worker; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('typer', 'rich', 'mcp', 'libtmux')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"  # a worker does not pay for the command line


# -- the worktree before each claim, and where task commits go (issue 12: points 4, 5) ------------------------


def _register(repo: Path) -> None:
    """Record agent-1 in the database, as launch does, so that its state and detail can be read back."""
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        swarm = store.ensure_swarm("E")
        store.register_agent(AgentRecord(id="agent-1", swarm_id=swarm.id, state="starting"))


def _agent(repo: Path) -> AgentRecord:
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        swarm = store.ensure_swarm("E")
        return next(a for a in store.list_agents(swarm.id) if a.id == "agent-1")


def test_a_deleted_worktree_is_recreated_before_the_next_claim(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B", "A"))
    worker = make_worker("agent-1", 'echo "$SWARM_TASK_ID" > "$SWARM_TASK_ID.txt"')
    worktree = repo / ".worktrees" / "agent-1"
    subprocess.run(["rm", "-rf", str(worktree)], check=True)
    assert worker.loop() == 0
    for task_id in "AB":
        done = task(repo, task_id)
        assert done.state == TaskState.DONE  # type: ignore[attr-defined]
        assert done.attempts == 1  # type: ignore[attr-defined]
    assert (worktree / "A.txt").exists()
    assert git(repo, "rev-parse", "swarm/E/agent-1") == task(repo, "B").commit  # type: ignore[attr-defined]


def test_leftovers_are_stashed_under_an_honest_name_before_the_claim(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    worker = make_worker("agent-1", "test ! -e stray.txt && echo ok > A.txt")
    (repo / ".worktrees" / "agent-1" / "stray.txt").write_text("left by someone\n")
    worker.loop()
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]
    stashes = git(repo, "stash", "list")
    assert "swarm: changes left in the worktree of agent-1 outside any task" in stashes
    assert "A attempt" not in stashes  # not labelled after the task that found them


def test_an_unrepairable_worktree_stops_the_worker_without_failing_tasks(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B"))
    worker = make_worker("agent-1", "echo never > X.txt")
    _register(repo)
    worktree = repo / ".worktrees" / "agent-1"
    git(repo, "worktree", "remove", "--force", str(worktree))
    worktree.mkdir()
    (worktree / "precious.txt").write_text("not git's\n")  # files swarm must not delete to recreate it
    assert worker.loop() == 1  # stopped without finishing: not a success
    agent = _agent(repo)
    assert agent.state == "failed"
    assert "is no longer a git worktree" in (agent.detail or "")
    for task_id in "AB":
        untouched = task(repo, task_id)
        assert untouched.state == TaskState.READY  # type: ignore[attr-defined]
        assert untouched.attempts == 0  # type: ignore[attr-defined]
    assert (worktree / "precious.txt").read_text() == "not git's\n"


def test_a_git_failure_before_the_agent_ran_returns_the_task_unspent(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B", "A"))
    # A is done with a commit of an unrelated history: merging it into B's worktree is a git failure, not a
    # conflict, and happens before B's agent runs.
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    orphan = git(repo, "commit-tree", tree, "-m", "unrelated")
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        a = store.claim("agent-9", ttl_seconds=60)
        assert a is not None
        store.complete("A", "agent-9", a.lease_token, commit=orphan)
    worker = make_worker("agent-1", "echo ran > B.txt")
    _register(repo)
    assert worker.loop() == 1  # stopped without finishing: not a success
    b = task(repo, "B")
    assert b.state == TaskState.READY  # type: ignore[attr-defined]
    assert b.attempts == 0  # type: ignore[attr-defined]
    agent = _agent(repo)
    assert agent.state == "failed"
    assert "git failed 3 times in a row before the agent could run" in (agent.detail or "")
    assert not (repo / ".worktrees" / "agent-1" / "B.txt").exists()


def test_task_commits_land_on_the_agent_branch_and_a_local_task_ref(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B", "A"))
    command = (
        'if [ "$SWARM_TASK_ID" = A ]; then git checkout -q -b other; fi; '
        'if [ "$SWARM_TASK_ID" = B ]; then git reset -q --hard HEAD~1; fi; echo "$SWARM_TASK_ID" > "$SWARM_TASK_ID.txt"'
    )
    worker = make_worker("agent-1", command)
    worker.loop()
    a, b = task(repo, "A"), task(repo, "B")
    assert git(repo, "rev-parse", "refs/swarm/tasks/A") == a.commit  # type: ignore[attr-defined]
    assert git(repo, "rev-parse", "refs/swarm/tasks/B") == b.commit  # type: ignore[attr-defined]
    # A's commit was made on the agent branch although the agent left HEAD on 'other' ...
    assert git(repo, "rev-parse", "swarm/E/agent-1") == b.commit  # type: ignore[attr-defined]
    assert git(repo, "rev-parse", "other") == git(repo, "rev-parse", "main")
    # ... and B's reset dropped it from the branch, but not from the repository.
    assert git(repo, "show", f"{a.commit}:A.txt") == "A"  # type: ignore[attr-defined]
    assert worker.worktree.branch() == "swarm/E/agent-1"


# -- processes an agent leaves behind ---------------------------------------------------------------------


@pytest.mark.parametrize("detach", ["setsid", "nohup", "env -i setsid"])
def test_a_detached_child_is_stopped_when_its_task_ends_and_does_not_hold_the_task(
    repo: Path, start_worker: StartWorker, owned: Callable[[int], int], detach: str
) -> None:
    """The agent exits at once and leaves a child that would sleep 1000 s with the agent's stdout open: the
    task is done, the worker does not wait for the pipe to close, and the child is stopped."""
    queue(repo, spec("A", allow_empty=True))
    marker = repo / "child.pid"
    worker = start_worker("agent-1", f"{detach} sleep 1000 & echo $! > {marker}")
    child = owned(retry_until(lambda: _pid_in(marker), seconds=60))
    assert worker.wait(timeout=120) == 0  # the swarm is finished: the worker exits
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]
    retry_until(lambda: not procs.alive(child), seconds=60)
    assert procs.read_records(process_record_path(repo, "agent-1")) == []  # nothing of it is left to find


def test_an_orphan_of_the_agent_is_stopped_when_its_task_ends(
    repo: Path, start_worker: StartWorker, owned: Callable[[int], int]
) -> None:
    """A double fork out of the agent's tree (its parent exits) with no environment: the worker, a child
    subreaper, gets the orphan and stops it with the task; the worker goes on to the next task."""
    queue(repo, spec("A", allow_empty=True), spec("B", "A", allow_empty=True))
    marker = repo / "orphan.pid"
    worker = start_worker(
        "agent-1",
        f'if [ "$SWARM_TASK_ID" = A ]; then env -i setsid sh -c "sleep 1000 & echo \\$! > {marker}"; fi',
    )
    assert worker.wait(timeout=120) == 0
    orphan = owned(retry_until(lambda: _pid_in(marker), seconds=60))
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]
    assert task(repo, "B").state == TaskState.DONE  # type: ignore[attr-defined]
    retry_until(lambda: not procs.alive(orphan), seconds=60)


def test_a_terminated_worker_stops_what_its_agent_detached(
    repo: Path, start_worker: StartWorker, owned: Callable[[int], int]
) -> None:
    """SIGTERM (teardown's fallback) while the agent runs: the worker stops the agent and its orphans on its
    way out, even one in its own session without SWARM_ID."""
    queue(repo, spec("A", max_attempts=3))
    marker = repo / "orphan.pid"
    worker = start_worker("agent-1", f'env -i setsid sh -c "sleep 1000 & echo \\$! > {marker}"; sleep 1000')
    orphan = owned(retry_until(lambda: _pid_in(marker), seconds=60))
    os.kill(worker.pid, signal.SIGTERM)
    worker.wait(timeout=120)
    retry_until(lambda: not procs.alive(orphan), seconds=60)


def test_a_signal_just_after_the_agent_started_stops_it(repo: Path, make_worker: MakeWorker) -> None:
    """SIGTERM between starting the agent and supervising it (the worker was recording its pid): the agent does
    not outlive its worker, and the task goes back."""
    queue(repo, spec("A", max_attempts=3))
    worker = make_worker("agent-1", "sleep 1000")
    started: list[int] = []
    record = worker.store.update_agent

    def signalled(agent_id: str, **fields: object) -> None:
        if isinstance(fields.get("agent_pid"), int) and not started:
            started.append(int(fields["agent_pid"]))  # type: ignore[call-overload]
            raise Terminated("SIGTERM")  # what the signal handler raises, at this very point
        record(agent_id, **fields)

    worker.store.update_agent = signalled  # type: ignore[method-assign]
    worker.loop()
    assert started
    retry_until(lambda: not procs.alive(started[0]), seconds=60)
    assert task(repo, "A").state == TaskState.READY  # type: ignore[attr-defined]


def test_a_restarted_worker_stops_what_the_killed_one_left(
    repo: Path, start_worker: StartWorker, owned: Callable[[int], int]
) -> None:
    """SIGKILL leaves the worker no chance to clean up, and its orphans go to init. It recorded them: the next
    worker of that agent stops them before it runs a task."""
    queue(repo, spec("A", max_attempts=3), spec("B"))
    marker = repo / "orphan.pid"
    record = process_record_path(repo, "agent-1")
    command = (
        f'if [ "$SWARM_TASK_ID" = A ] && [ ! -e {marker} ]; then '
        f'env -i setsid sh -c "sleep 1000 & echo \\$! > {marker}"; sleep 1000; fi'
    )
    first = start_worker("agent-1", command)
    orphan = owned(retry_until(lambda: _pid_in(marker), seconds=60))
    retry_until(lambda: orphan in {p.pid for p in procs.read_records(record)}, seconds=60)
    first.kill()
    first.wait(timeout=60)
    assert procs.alive(orphan)  # it outlived its worker
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        store.return_claims(["agent-1"], reason="the test killed the worker")
    second = subprocess.Popen(
        [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(repo / ".swarm" / "run" / "agent-1.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    owned(second.pid)
    assert second.wait(timeout=120) == 0
    retry_until(lambda: not procs.alive(orphan), seconds=60)
    assert "left by an earlier run" in (repo / ".swarm" / "logs" / "agent-1.log").read_text()


# -- the agent's log ---------------------------------------------------------------------------------------


def test_the_log_is_rotated_at_its_cap_and_keeps_the_newest_lines(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A", allow_empty=True), spec("B", allow_empty=True))
    worker = make_worker("agent-1", "seq 1 3000; echo last line of $SWARM_TASK_ID", log_max_bytes=4096)
    worker.loop()
    log = repo / ".swarm" / "logs" / "agent-1.log"
    older = log.with_name("agent-1.log.1")
    assert older.exists()
    assert log.stat().st_size <= 4096
    assert older.stat().st_size <= 4096
    assert not log.with_name("agent-1.log.2").exists()  # one older file: at most twice the cap on disk
    newest = log.read_text()
    assert newest.rstrip().endswith("all 2 tasks of the swarm are done; exiting")
    assert "last line of B" in older.read_text() + newest

    # `swarm logs` shows the tail across the rotation: the older file first, then the current one.
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        store.register_agent(AgentRecord(id="agent-1", swarm_id=store.ensure_swarm("E").id))
    lines = newest.count("\n") + 5
    shown = swarm_cli("logs", "agent-1", "-n", str(lines), cwd=repo)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == (older.read_text() + newest).splitlines()[-lines:]
    everything = swarm_cli("logs", "agent-1", cwd=repo)
    assert everything.stdout == older.read_text() + newest


def test_swarm_logs_follow_goes_on_in_the_new_file_after_a_rotation(repo: Path, make_run: MakeRun) -> None:
    run = make_run("agent-1", "true", log_max_bytes=1024)
    with open_store(run.database_url) as store:
        store.register_agent(AgentRecord(id="agent-1", swarm_id=run.swarm_id))
    worker = Worker(run, out=io.BytesIO())
    worker.say("before the rotation")
    follow = subprocess.Popen(
        [sys.executable, "-m", "swarm", "logs", "agent-1", "-f"],
        cwd=repo,
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("SWARM_")},
    )
    printed: list[bytes] = []
    # Read in a thread: a follow that stopped printing must fail the test at the deadline, not hang it.
    reader = threading.Thread(target=lambda: printed.extend(iter(follow.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        retry_until(lambda: any(b"before the rotation" in line for line in printed), seconds=60)
        for n in range(40):  # well past the cap: at least one rotation
            worker.say(f"line {n}")
        assert run.log_path.with_name("agent-1.log.1").exists()
        worker.say("after the rotation")
        retry_until(lambda: any(b"after the rotation" in line for line in printed), seconds=60)
        text = b"".join(printed).decode()
        assert all(f"agent-1: line {n}\n" in text for n in range(40))  # nothing around a rotation was skipped
    finally:
        follow.kill()
        follow.wait(timeout=60)
        worker.store.close()
        worker.logfile.close()


# -- commit hooks ------------------------------------------------------------------------------------------


def test_a_failing_pre_commit_hook_does_not_block_the_task_commit(repo: Path, make_worker: MakeWorker) -> None:
    """Task commits skip the repository's hooks (README: commit hooks); checks belong in the task itself."""
    hooks = Path(git(repo, "rev-parse", "--git-path", "hooks"))
    hook = (hooks if hooks.is_absolute() else repo / hooks) / "pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho refused by the hook >&2\nexit 1\n")
    hook.chmod(0o755)
    queue(repo, spec("A"))
    make_worker("agent-1", "echo work > work.txt").loop()
    a = task(repo, "A")
    assert a.state == TaskState.DONE  # type: ignore[attr-defined]
    assert git(repo, "log", "-1", "--format=%s", a.commit) == "A: title A"  # type: ignore[attr-defined]


# -- done means verified (docs/contract.md §3) ------------------------------------------------------------


def test_a_passing_verify_lets_the_task_be_done(repo: Path, make_worker: MakeWorker) -> None:
    worktree = repo / ".worktrees" / "agent-1"
    # The verify runs in the worktree with the agent's environment, after the agent and before the commit.
    check = f'test "$PWD" = {worktree} && test "$SWARM_TASK_ID" = A && grep -q hi out.txt && echo checked-ok'
    queue(repo, spec("A", verify=check))
    worker = make_worker("agent-1", "echo hi > out.txt")
    assert worker.loop() == 0
    done = task(repo, "A")
    assert done.state == TaskState.DONE  # type: ignore[attr-defined]
    assert git(repo, "show", f"{done.commit}:out.txt") == "hi"  # type: ignore[attr-defined]
    log = (repo / ".swarm" / "logs" / "agent-1.log").read_text()
    assert "checked-ok" in log  # its output reaches the pane and the log
    assert "A: verify passed" in log


def test_a_failing_verify_fails_the_task_with_its_output_and_keeps_the_changes(
    repo: Path, make_worker: MakeWorker
) -> None:
    queue(repo, spec("A", verify="echo 'FAILED tests/test_x.py::test_y - assert 2 == 3'; exit 4"))
    worker = make_worker("agent-1", "echo wrong > out.txt")
    worker.loop()
    failed = task(repo, "A")
    assert failed.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert failed.commit is None  # type: ignore[attr-defined]
    assert failed.last_error == "verify failed (exit 4): FAILED tests/test_x.py::test_y - assert 2 == 3"  # type: ignore[attr-defined]
    assert not (repo / ".worktrees" / "agent-1" / "out.txt").exists()
    assert "swarm: A attempt 1 (not verified)" in git(repo, "stash", "list")  # the changes are kept


def test_the_configured_verify_applies_unless_the_spec_says_otherwise(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"), spec("B", verify=""), spec("C", verify="true"))
    worker = make_worker("agent-1", 'echo x > "$SWARM_TASK_ID.txt"', verify="echo configured check failed; exit 1")
    worker.loop()
    assert task(repo, "A").last_error == "verify failed (exit 1): configured check failed"  # type: ignore[attr-defined]
    assert task(repo, "B").state == TaskState.DONE  # type: ignore[attr-defined]  # "": no verify
    assert task(repo, "C").state == TaskState.DONE  # type: ignore[attr-defined]  # its own wins


def test_a_verify_is_bounded_by_the_tasks_timeout(repo: Path, make_worker: MakeWorker) -> None:
    slow = Spec(
        id="A", epic="E", title="t", body="b", max_attempts=1, timeout_seconds=1, verify="echo started; sleep 60"
    )
    queue(repo, slow)
    worker = make_worker("agent-1", "echo x > out.txt")
    worker.loop()
    failed = task(repo, "A")
    assert failed.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert failed.last_error == "verify timed out after 1s: started"  # type: ignore[attr-defined]


def test_an_agent_that_changed_nothing_fails(repo: Path, make_worker: MakeWorker) -> None:
    # The API was down, the CLI retried, gave up and exited 0.
    queue(repo, spec("A"))
    worker = make_worker("agent-1", "echo 'nothing to do'")
    worker.loop()
    failed = task(repo, "A")
    assert failed.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert failed.last_error.startswith("the agent changed nothing")  # type: ignore[attr-defined]


def test_a_run_that_changes_nothing_because_the_task_is_already_on_its_branch_is_done(
    repo: Path, make_run: MakeRun
) -> None:
    queue(repo, spec("A"))
    run = make_run("agent-1", "echo hi > out.txt")
    assert Worker(run, out=io.BytesIO()).loop() == 0
    earlier = task(repo, "A").commit  # type: ignore[attr-defined]
    # The queue started over (.swarm/ moved away on purpose); the kept branch already holds A's commit, so the
    # agent writes what is there and changes nothing: that is A done, at the commit that did it.
    for name in ("swarm.db", "swarm.db-wal", "swarm.db-shm"):
        (repo / ".swarm" / name).unlink(missing_ok=True)
    queue(repo, spec("A"))
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        again = run.model_copy(update={"swarm_id": store.ensure_swarm("E").id})
    assert Worker(again, out=io.BytesIO()).loop() == 0
    done = task(repo, "A")
    assert done.state == TaskState.DONE  # type: ignore[attr-defined]
    assert done.commit == earlier  # type: ignore[attr-defined]
    assert git(repo, "rev-parse", "swarm/E/agent-1") == earlier  # no empty commit on top
    log = (repo / ".swarm" / "logs" / "agent-1.log").read_text()
    assert f"A: the agent changed nothing; the task's commit {earlier[:12]} is already on swarm/E/agent-1" in log


def test_a_commit_of_the_agents_own_counts_as_a_change(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    commit = "echo mine > mine.txt && git add mine.txt && git -c user.name=a -c user.email=a@x commit -qm 'my own'"
    worker = make_worker("agent-1", commit)
    worker.loop()
    done = task(repo, "A")
    assert done.state == TaskState.DONE  # type: ignore[attr-defined]
    assert git(repo, "show", f"{done.commit}:mine.txt") == "mine"  # type: ignore[attr-defined]


def test_allow_empty_lets_a_task_without_changes_be_done(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A", allow_empty=True))
    worker = make_worker("agent-1", "true")
    assert worker.loop() == 0
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]


FAKE_AIDER = """#!/bin/sh
# A stand-in for aider that ends the way aider 0.86.2 does when the key is refused: the message, then exit 0.
for arg; do prompt="$arg"; done
cat "$prompt"
echo edited > edited.txt
if [ -n "$FAKE_AIDER_FAIL" ]; then
  echo 'litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid'
  echo 'x-api-key'
  echo 'The API provider is not able to authenticate you. Check your API key.'
fi
exit 0
"""


@pytest.mark.parametrize("fail", [True, False], ids=["cli-gave-up", "prompt-only-mentions-it"])
def test_a_known_failure_output_fails_the_task_although_the_cli_exited_0(
    repo: Path, make_worker: MakeWorker, tmp_path: Path, fail: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aider").write_text(FAKE_AIDER)
    (bin_dir / "aider").chmod(0o755)
    # The prompt holds the very line aider prints: the agent echoing it (the stand-in cats its prompt) is no failure.
    body = "Explain this message in docs/errors.md:\n\nThe API provider is not able to authenticate you.\n"
    queue(repo, Spec(id="A", epic="E", title="t", body=body, max_attempts=1))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **({"FAKE_AIDER_FAIL": "1"} if fail else {})}
    worker = make_worker("agent-1", "", kind="aider", model="openai/mock", env=env)
    worker.loop()
    got = task(repo, "A")
    if not fail:
        assert got.state == TaskState.DONE  # type: ignore[attr-defined]
        return
    assert got.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert got.last_error == (  # type: ignore[attr-defined]
        "the agent exited 0 but its output shows a known failure: litellm.AuthenticationError: AuthenticationError: "
        "OpenAIException - invalid | x-api-key | The API provider is not able to authenticate you. Check your API key."
    )
    assert "swarm: A attempt 1 (not verified)" in git(repo, "stash", "list")


def test_the_next_attempts_prompt_carries_the_previous_failure(repo: Path, make_worker: MakeWorker) -> None:
    check = 'test "$SWARM_ATTEMPT" = 2 || { echo "expected 3, got 2"; exit 1; }'
    queue(repo, spec("A", max_attempts=2, verify=check))
    worker = make_worker("agent-1", 'echo "$SWARM_ATTEMPT" > out.txt', retry_backoff_seconds=0.0)
    assert worker.loop() == 0
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]
    prompts = repo / ".swarm" / "prompts" / "agent-1"
    first, second = (prompts / "A-1.md").read_text(), (prompts / "A-2.md").read_text()
    assert "previous attempt" not in first
    assert "## The previous attempt failed\n\n> verify failed (exit 1): expected 3, got 2\n" in second


#: A spec about rate limiting: its lines read like a provider's rate-limit message.
RATE_LIMIT_SPEC = "Retry when the API answers HTTP 429:\n\nError: rate limited, try again in 30 seconds\n"


@pytest.mark.parametrize(
    ("agent", "paused"),
    [
        # Codex echoes its prompt: the spec's own lines are the task, not the provider talking.
        pytest.param("cat; echo x > f.txt", False, id="the-agent-echoes-its-prompt"),
        # Claude Code's stream-json "user" events are what its tools returned (a file it read, a command's
        # output): the task's material, not the provider. (The command kind reads stream-json like claude.)
        pytest.param(
            """echo '{"type":"user","message":{"content":[{"type":"tool_result","content":"rate limited"}]}}'; """
            "echo x > f.txt",
            False,
            id="a-tool-result-in-stream-json",
        ),
        # The same words in a line of the agent's own still pause claims (for the second it names).
        pytest.param("cat; echo 'Error: rate limited, try again in 1 second'; echo x > f.txt", True, id="real"),
    ],
)
def test_a_rate_limit_in_the_prompt_echoed_does_not_pause_claims(
    repo: Path, make_worker: MakeWorker, agent: str, paused: bool
) -> None:
    queue(repo, Spec(id="A", epic="E", title="t", body=RATE_LIMIT_SPEC, max_attempts=1))
    worker = make_worker("agent-1", agent)
    assert worker.loop() == 0
    assert task(repo, "A").state == TaskState.DONE  # type: ignore[attr-defined]
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        until, reason = store.claims_paused(worker.run.swarm_id)
        signals = [m.body for m in store.list_messages(CONTROL_THREAD) if m.type == "signal.rate_limited"]
    if not paused:
        assert (until, reason, signals) == (0.0, None, [])
        return
    assert until > 0
    assert reason == "rate limit seen by agent-1"
    assert signals == ["claims paused for 1s: Error: rate limited, try again in 1 second"]


def test_the_end_of_a_one_task_swarm_reads_as_english() -> None:
    counts = {"done": 1, "blocked": 0, "dead": 0, "cancelled": 0}
    assert Worker._finished_text(counts) == "the only task of the swarm is done; exiting"
    assert Worker._finished_text({**counts, "done": 3}) == "all 3 tasks of the swarm are done; exiting"
