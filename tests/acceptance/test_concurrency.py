"""Concurrent commands on one repository: real CLIs started at the same instant, real tmux, git and processes.

``swarm launch``, ``teardown`` and ``repair`` are serialized by ``.swarm/command.lock``; whatever the
interleaving, each command exits 0 when the end state is the one it was asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions as tmux_sessions
from tests.acceptance.conftest import DEMO_AGENT, Run, git, status_json
from tests.helpers import REPO_ROOT, retry_until

#: An agent that holds its task until it is stopped.
SLEEP = "sleep 600"


def _popen(project: Path, socket: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real CLI without waiting for it (as the ``run`` fixture would run it)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    full.update(
        {
            "SWARM_TMUX_SOCKET": socket,
            "SWARM_DEMO_PACE": "0",
            "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
            "SWARM_QUEUE_LEASE_TTL_SECONDS": "30",
        }
    )
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "swarm", *args],
        cwd=project,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240.0) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (a command waiting on the lock has opened it)."""
    try:
        return any(Path(f.path) == path for f in psutil.Process(pid).open_files())
    except psutil.Error:
        return False


def _nothing_left(project: Path, socket: str, swarm_id: str) -> None:
    assert tmux_sessions(socket) == []
    worktrees = project / ".worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []
    assert ".worktrees" not in git(project, "worktree", "list", "--porcelain")
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []
    assert not list((project / ".swarm" / "run").glob("*.json"))  # run files hold secrets


def _hold_lock(project: Path, command: str) -> subprocess.Popen[str]:
    """Another process holding the repository's command lock, as a running swarm command would."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from swarm.cmdlock import command_lock\n"
        f"with command_lock(Path({str(project)!r}), {command!r}, timeout=5, say=print):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_lock_makes_launch_wait_say_who_holds_it_then_give_up(project: Path, run: Run) -> None:
    holder = _hold_lock(project, "swarm launch")
    try:
        launched = run(
            "launch", "E1", "--command", DEMO_AGENT, env={"SWARM_SWARM_LOCK_TIMEOUT_SECONDS": "1"}, timeout=60
        )
    finally:
        holder.kill()
        holder.wait()
    assert launched.returncode == 1, launched.stdout + launched.stderr
    assert f"waiting for `swarm launch` (pid {holder.pid}) to finish" in launched.stdout
    line = launched.stderr.strip()
    assert line.count("\n") == 0
    assert f"`swarm launch` (pid {holder.pid}) of this repository still runs after 1s" in line
    assert not (project / ".swarm" / "swarm.db").exists()  # nothing written
    assert not (project / ".worktrees").exists()


def test_a_waiting_launch_proceeds_when_a_killed_holder_lets_go(project: Path, run: Run, tmux_socket: str) -> None:
    holder = _hold_lock(project, "swarm teardown")
    launch = _popen(project, tmux_socket, "launch", "E1", "--agents", "1", "--command", DEMO_AGENT)
    assert launch.stdout is not None
    # The launch says whom it waits for, then waits; a SIGKILLed holder releases the lock (flock).
    assert f"waiting for `swarm teardown` (pid {holder.pid})" in launch.stdout.readline()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    code, output = _finish(launch)
    assert code == 0, output
    retry_until(lambda: status_json(run)["counts"]["done"] == 4, seconds=120, interval=0.3)
    assert run("teardown").returncode == 0


def test_two_launches_at_the_same_instant_both_succeed_and_start_each_agent_once(
    project: Path, run: Run, tmux_socket: str
) -> None:
    for attempt in range(3):
        first = _popen(project, tmux_socket, "launch", "E1", "--agents", "2", "--command", SLEEP)
        second = _popen(project, tmux_socket, "launch", "E1", "--agents", "2", "--command", SLEEP)
        results = [_finish(first), _finish(second)]
        for code, output in results:
            assert code == 0, f"try {attempt}: {output}"
        data = status_json(run)
        assert sorted(a["id"] for a in data["agents"]) == ["agent-1", "agent-2"]
        assert len(tmux_sessions(tmux_socket)) == 3  # two agents and the monitor, each once
        down = run("teardown", "--now")
        assert down.returncode == 0, down.stdout + down.stderr
        _nothing_left(project, tmux_socket, data["swarm"]["id"])


def test_teardown_during_a_launch_waits_for_it_and_leaves_nothing_behind(
    project: Path, run: Run, tmux_socket: str
) -> None:
    # A setup command that waits on a gate keeps the launch busy between its worktrees and its sessions until
    # the teardown is waiting for it (however slowly a loaded machine starts the teardown).
    gate = project.parent / "gate"
    setup = f"for i in $(seq 1200); do [ -e {gate} ] && break; sleep 0.1; done"
    (project / "swarm.toml").write_text(f'[swarm]\nsetup = ["{setup}"]\n')
    git(project, "add", "swarm.toml")
    git(project, "commit", "-q", "-m", "slow setup")
    launch = _popen(project, tmux_socket, "launch", "E1", "--agents", "2", "--command", SLEEP)
    retry_until((project / ".worktrees" / "agent-1").exists, seconds=120)
    down = _popen(project, tmux_socket, "teardown", "--now")
    retry_until(lambda: _holds_open(down.pid, project / ".swarm" / "command.lock"), seconds=120)
    gate.touch()
    code, output = _finish(launch)
    assert code == 0, output
    down_code, down_output = _finish(down)
    assert down_code == 0, down_output
    assert "waiting for `swarm launch`" in down_output
    assert "is down" in down_output
    swarm_id = status_json(run)["swarm"]["id"]
    _nothing_left(project, tmux_socket, swarm_id)


def test_two_teardowns_at_once_both_succeed_and_the_second_finds_it_down(
    project: Path, run: Run, tmux_socket: str
) -> None:
    launched = run("launch", "E1", "--agents", "2", "--command", SLEEP)
    assert launched.returncode == 0, launched.stderr
    swarm_id = status_json(run)["swarm"]["id"]
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120, interval=0.3)
    first = _popen(project, tmux_socket, "teardown", "--now")
    second = _popen(project, tmux_socket, "teardown", "--now")
    results = [_finish(first), _finish(second)]
    for code, output in results:
        assert code == 0, output
    outputs = sorted(output for _, output in results)
    assert sum("already down" in o for o in outputs) == 1, outputs
    assert sum(f"swarm {swarm_id} is down" in o for o in outputs) == 1, outputs
    _nothing_left(project, tmux_socket, swarm_id)
    report = run("teardown", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["clean"] is True
