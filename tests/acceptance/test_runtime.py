"""The runtime end to end: the real ``swarm`` command, real tmux (a private socket), real git, real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest

from swarm.runtime import procs
from swarm.runtime.runfile import process_record_path
from swarm.runtime.sessions import monitor_session
from swarm.runtime.tmux import private_sessions as tmux_sessions
from swarm.store import open_store
from tests.acceptance.conftest import DEMO_AGENT, Run, git, restricted_path, status_json
from tests.helpers import retry_until


def _events(project: Path) -> list[tuple[str, str]]:
    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        return [(e.task_id, e.to_state) for e in store.events()]


def _assert_nothing_left(project: Path, socket: str, swarm_id: str) -> None:
    assert tmux_sessions(socket) == []
    worktrees = project / ".worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []
    assert "worktrees" not in git(project, "worktree", "list", "--porcelain").replace(str(project), "")
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []
    assert not list((project / ".swarm" / "run").glob("*.json"))  # secrets do not outlive the swarm


def test_diamond_epic_with_three_agents(project: Path, run: Run, tmux_socket: str) -> None:
    launched = run("launch", "E1", "--agents", "3", "--command", DEMO_AGENT, "--wait", "--timeout", "90")
    assert launched.returncode == 0, launched.stderr + launched.stdout
    assert "all 4 tasks of E1 are done" in launched.stdout

    data = status_json(run)
    assert data["counts"]["done"] == 4
    assert set(data["swarm"]) >= {"id", "epic", "database", "repo"}
    tasks = {t["id"]: t for t in data["tasks"]}
    for task in tasks.values():
        assert task["attempts"] == 1
        subject = git(project, "log", "-1", "--format=%s", task["commit"])
        assert subject == f"{task['id']}: Make {task['id']}"
    # every task completed exactly once
    assert Counter(t for t, state in _events(project) if state == "done") == Counter("ABCD")
    # the dependent task's agent saw its dependencies' files: D's commit holds everyone's work
    files = git(project, "ls-tree", "-r", "--name-only", tasks["D"]["commit"]).split()
    assert {"out/A.txt", "out/B.txt", "out/C.txt", "out/D.txt"} <= set(files)
    assert len(data["agents"]) == 3
    for agent in data["agents"]:
        assert {
            "id",
            "host",
            "session",
            "branch",
            "worktree",
            "state",
            "task",
            "heartbeat_age_s",
            "lease_left_s",
            "pid",
            "restarts",
        } <= set(agent)
        assert agent["branch"] == f"swarm/E1/{agent['id']}"

    down = run("teardown")
    assert down.returncode == 0, down.stderr
    _assert_nothing_left(project, tmux_socket, data["swarm"]["id"])
    # branches keep the work
    for agent in data["agents"]:
        assert git(project, "rev-parse", "--verify", agent["branch"])


def _worktrees(project: Path) -> list[str]:
    """Each worktree's path and branch (not its HEAD: the agents commit while the test looks)."""
    listed = git(project, "worktree", "list", "--porcelain").splitlines()
    return [line for line in listed if line.startswith(("worktree ", "branch "))]


def test_relaunch_during_a_run_duplicates_nothing_and_foreign_sessions_survive(
    project: Path, run: Run, tmux_socket: str
) -> None:
    slow = f"{DEMO_AGENT}; sleep 2"
    repo_name = project.name
    # A look-alike session on the same server that swarm did not create.
    foreign = f"swarm-{repo_name}-agent-1x"
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", foreign, "sleep 600"], check=True)
    first = run("launch", "E1", "--agents", "2", "--command", slow)
    assert first.returncode == 0, first.stderr
    sessions = set(tmux_sessions(tmux_socket))
    assert sessions == {
        foreign,
        f"swarm-{repo_name}-agent-1",
        f"swarm-{repo_name}-agent-2",
        f"swarm-{repo_name}-monitor",
    }
    worktrees_before = _worktrees(project)

    again = run("launch", "E1", "--agents", "2", "--command", slow)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert set(tmux_sessions(tmux_socket)) == sessions
    assert _worktrees(project) == worktrees_before  # the same worktrees on the same branches (HEADs move on)
    data = status_json(run)
    assert sorted(t["id"] for t in data["tasks"]) == ["A", "B", "C", "D"]
    assert len(data["agents"]) == 2

    wait = run("launch", "E1", "--agents", "2", "--command", slow, "--wait", "--timeout", "90")
    assert wait.returncode == 0, wait.stderr
    assert Counter(t for t, state in _events(project) if state == "claimed") == Counter("ABCD")

    down = run("teardown")
    assert down.returncode == 0, down.stderr
    assert tmux_sessions(tmux_socket) == [foreign]
    _assert_nothing_left_but(project, data["swarm"]["id"])


def _assert_nothing_left_but(project: Path, swarm_id: str) -> None:
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []
    assert not (project / ".worktrees").exists() or list((project / ".worktrees").iterdir()) == []


def test_teardown_now_keeps_uncommitted_work_and_returns_the_task(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    flag = tmp_path / "started"
    busy = 'mkdir -p out && echo "half done" > out/partial.txt && touch "$STARTED_FLAG" && sleep 600'
    launched = run("launch", "E1", "--agents", "1", "--command", busy, env={"STARTED_FLAG": str(flag)})
    assert launched.returncode == 0, launched.stderr
    retry_until(flag.exists, seconds=120)
    data = status_json(run)
    assert data["counts"]["claimed"] == 1

    down = run("teardown", "--now", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["clean"] is True
    assert report["wip_commits"].keys() == {"agent-1"}
    sha = report["wip_commits"]["agent-1"]
    assert git(project, "log", "-1", "--format=%s", sha) == "WIP A: Make A"
    assert git(project, "show", f"{sha}:out/partial.txt") == "half done"
    assert git(project, "rev-parse", "swarm/E1/agent-1") == sha  # on the agent's branch
    after = {t["id"]: t for t in status_json(run)["tasks"]}
    assert after["A"]["state"] == "ready"
    assert after["A"]["attempts"] == 0
    _assert_nothing_left(project, tmux_socket, data["swarm"]["id"])


def test_teardown_stops_what_an_agent_detached_after_its_worker_was_killed(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    """An agent starts a process in its own session with an empty environment (no SWARM_ID) whose parent then
    exits, and the worker is SIGKILLed so it cannot stop it: the orphan goes to init. Teardown still finds it
    (the worker recorded it) and stops it before it says nothing is left."""
    marker = tmp_path / "orphan.pid"
    busy = f'env -i setsid sh -c "sleep 1000 & echo \\$! > {marker}"; sleep 600'
    launched = run("launch", "E1", "--agents", "1", "--command", busy)
    assert launched.returncode == 0, launched.stderr

    def orphan_pid() -> int | None:
        text = marker.read_text().strip() if marker.exists() else ""
        return int(text) if text.isdigit() else None

    handle = psutil.Process(retry_until(orphan_pid, seconds=120))
    try:
        record = process_record_path(project, "agent-1")
        retry_until(lambda: handle.pid in {p.pid for p in procs.read_records(record)}, seconds=60)
        # No monitor, so that nobody restarts the worker (a restarted worker would stop the orphan itself).
        monitor = monitor_session(project, "")
        subprocess.run(["tmux", "-L", tmux_socket, "kill-session", "-t", monitor], check=True)
        worker = status_json(run)["agents"][0]["pid"]
        os.kill(worker, signal.SIGKILL)
        retry_until(lambda: not procs.alive(worker), seconds=60)
        assert procs.alive(handle.pid)  # it outlived its worker; its environment does not name the swarm
        assert handle.pid not in procs.processes_with_env("SWARM_ID", status_json(run)["swarm"]["id"])

        down = run("teardown", "--now", "--json")
        assert down.returncode == 0, down.stderr
        report = json.loads(down.stdout)
        assert report["clean"] is True
        assert handle.pid in report["killed"]
        assert not procs.alive(handle.pid)
        assert not record.exists()  # nothing it lists is left
    finally:
        with contextlib.suppress(psutil.Error):
            handle.kill()  # psutil checks the pid still names the same process


def test_agent_environment(project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
    dump = tmp_path / "env"
    dump.mkdir()
    script = tmp_path / "dump_env.py"
    script.write_text(
        "import json, os, shutil, sys\n"
        "env = dict(os.environ)\n"
        "env['__swarm_on_path'] = shutil.which('swarm') or ''\n"
        "env['__stdin'] = sys.stdin.read()\n"
        f"json.dump(env, open(os.path.join({str(dump)!r}, os.environ['SWARM_TASK_ID'] + '.json'), 'w'))\n"
        # A task is done only if its agent changed something (docs/contract.md §3).
        "open(os.environ['SWARM_TASK_ID'] + '.txt', 'w').write('env dumped')\n"
    )
    launched = run(
        "launch",
        "E1",
        "--agents",
        "1",
        "--command",
        f"{sys.executable} {script}",
        "--wait",
        "--timeout",
        "60",
        env={"LAUNCH_ONLY_VARIABLE": "from-the-launching-shell"},
    )
    assert launched.returncode == 0, launched.stderr
    env = json.loads((dump / "A.json").read_text())
    design6 = [
        "SWARM_ID",
        "SWARM_AGENT_ID",
        "SWARM_CHANNEL",
        "SWARM_TASK_ID",
        "SWARM_PROMPT_FILE",
        "SWARM_WORKTREE",
        "SWARM_EPIC",
        "SWARM_ATTEMPT",
    ]
    for name in design6:
        assert env.get(name), f"{name} missing from the agent environment"
    # Nothing another agent could reuse (docs/contract.md §6, §7): the channel is the identity.
    for name in ("SWARM_TOKEN", "SWARM_LEASE_TOKEN", "SWARM_DATABASE_URL"):
        assert name not in env, f"{name} is in the agent environment"
    data = status_json(run)
    assert env["SWARM_ID"] == data["swarm"]["id"]
    assert env["SWARM_AGENT_ID"] == "agent-1"
    assert env["SWARM_TASK_ID"] == "A"
    assert env["SWARM_CHANNEL"] == f"{project}/.swarm/run/agent-1/channel.sock"
    assert env["SWARM_WORKTREE"] == str(project / ".worktrees" / "agent-1")
    assert env["LAUNCH_ONLY_VARIABLE"] == "from-the-launching-shell"  # the launching environment
    assert env["__swarm_on_path"], "the swarm command is not on the agent's PATH"
    prompt = Path(env["SWARM_PROMPT_FILE"]).read_text()
    assert "Make A" in prompt
    assert env["__stdin"] == prompt  # the prompt arrives on stdin too, never in the command string
    assert str(project / ".worktrees") not in env["SWARM_PROMPT_FILE"]  # prompts are never committed
    assert run("teardown").returncode == 0


def test_dirty_checkout_warns(project: Path, run: Run, tmux_socket: str) -> None:
    (project / "README.md").write_text("changed but not committed\n")
    launched = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, "--wait", "--timeout", "60")
    assert launched.returncode == 0, launched.stderr
    assert "warning: the main checkout has uncommitted changes; agents start from" in launched.stderr
    assert run("teardown").returncode == 0


class TestBadInput:
    """Each gives one clear line, exit 2, and creates nothing: no database, worktree, branch or session."""

    @staticmethod
    def _nothing_created(project: Path, socket: str) -> None:
        assert not (project / ".swarm").exists()
        assert not (project / ".worktrees").exists()
        assert "swarm/" not in git(project, "branch", "--list")
        assert tmux_sessions(socket) == []

    @staticmethod
    def _one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
        assert result.returncode == 2, result.stderr + result.stdout
        assert result.stderr.startswith("swarm: ")
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
        for fragment in fragments:
            assert fragment in result.stderr

    def test_bad_backlog(self, project: Path, run: Run, tmux_socket: str) -> None:
        (project / "specs" / "B.md").write_text("---\nid: B\nepic: E1\ndepends_on: [GHOST]\n---\nbody\n")
        result = run("launch", "E1", "--command", DEMO_AGENT)
        assert result.returncode == 2
        assert "GHOST" in result.stderr
        assert "nothing was written" in result.stderr
        self._nothing_created(project, tmux_socket)

    def test_epic_with_no_specs(self, project: Path, run: Run, tmux_socket: str) -> None:
        self._one_line(run("launch", "E9", "--command", DEMO_AGENT), "no specs in epic 'E9'", "E1")
        self._nothing_created(project, tmux_socket)

    def test_unknown_agent_kind(self, project: Path, run: Run, tmux_socket: str) -> None:
        self._one_line(run("launch", "E1", "--agent", "claud"), "unknown agent kind 'claud'", "did you mean 'claude'")
        self._nothing_created(project, tmux_socket)

    def test_missing_agent_cli(self, project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
        path = restricted_path(tmp_path, "git", "tmux")
        self._one_line(
            run("launch", "E1", "--agent", "aider", env={"PATH": path}), "needs the 'aider' command", "pip install"
        )
        self._nothing_created(project, tmux_socket)

    def test_not_a_git_repository(self, run: Run, tmp_path: Path) -> None:
        from tests.helpers import swarm_cli

        plain = tmp_path / "plain"
        plain.mkdir()
        result = swarm_cli("launch", "E1", "--command", "true", cwd=plain)
        self._one_line(result, "not a git repository")
        assert list(plain.iterdir()) == []

    def test_tmux_missing(self, project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
        path = restricted_path(tmp_path, "git")
        self._one_line(run("launch", "E1", "--command", DEMO_AGENT, env={"PATH": path}), "tmux is not installed")
        self._nothing_created(project, tmux_socket)

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (["--agent", "claude", "--command", "x"], "--command runs any program"),
            (["--base", "no-such-ref", "--command", "x"], "no-such-ref"),
            (["--command", "  "], "--command is empty"),
        ],
        ids=["agent-and-command", "unknown-base", "empty-command"],
    )
    def test_bad_flags(self, project: Path, run: Run, tmux_socket: str, args: list[str], fragment: str) -> None:
        self._one_line(run("launch", "E1", *args), fragment)
        self._nothing_created(project, tmux_socket)


def test_commands_need_a_swarm(project: Path, run: Run) -> None:
    for args in (["status"], ["attach", "agent-1"], ["logs", "agent-1"]):
        result = run(*args)
        assert result.returncode == 2
        assert "swarm launch" in result.stderr or "swarm queue init" in result.stderr
