"""Smaller launch behaviours end to end: Ctrl-C during ``launch --wait``, two same-named repositories on one
tmux server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from swarm.runtime.tmux import private_sessions as tmux_sessions
from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until, swarm_cli


def test_ctrl_c_during_launch_wait_says_the_swarm_keeps_running(project: Path, run: Run, tmux_socket: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update({"SWARM_TMUX_SOCKET": tmux_socket, "SWARM_QUEUE_HEARTBEAT_SECONDS": "1"})
    waiting = subprocess.Popen(
        [sys.executable, "-m", "swarm", "launch", "E1", "--agents", "1", "--command", "sleep 600", "--wait"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout is not None
    retry_until(lambda: "is working epic" in waiting.stdout.readline(), seconds=120)  # type: ignore[union-attr]
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120, interval=0.3)
    waiting.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 130
    line = err.strip()
    assert "\n" not in line, err
    assert "the swarm keeps running" in line
    assert "swarm status' to watch" in line
    assert "swarm teardown' to stop" in line
    assert status_json(run)["counts"]["claimed"] == 1  # it does keep running
    assert run("teardown", "--now").returncode == 0


def test_two_same_named_repositories_share_a_tmux_server(project: Path, run: Run, tmux_socket: str) -> None:
    other = project.parent / "elsewhere" / project.name
    shutil.copytree(project, other)  # another repository called "proj", in another folder

    def run_other(*args: str) -> subprocess.CompletedProcess[str]:
        return swarm_cli(*args, cwd=other, env={"SWARM_TMUX_SOCKET": tmux_socket, "SWARM_QUEUE_HEARTBEAT_SECONDS": "1"})

    first = run("launch", "E1", "--agents", "1", "--command", "sleep 600")
    assert first.returncode == 0, first.stderr
    second = run_other("launch", "E1", "--agents", "1", "--command", "sleep 600")
    assert second.returncode == 0, second.stdout + second.stderr

    def working(result: subprocess.CompletedProcess[str]) -> bool:
        data = json.loads(result.stdout)
        return bool(data["agents"][0]["state"] == "working" and data["monitor"]["alive"])

    retry_until(lambda: working(run("status", "--json")), seconds=120, interval=0.3)
    retry_until(lambda: working(run_other("status", "--json")), seconds=120, interval=0.3)
    sessions = tmux_sessions(tmux_socket)
    assert len(sessions) == 4, sessions  # two agents and two monitors, none shared
    mine = json.loads(run("status", "--json").stdout)["agents"][0]["session"]
    theirs = json.loads(run_other("status", "--json").stdout)["agents"][0]["session"]
    assert mine != theirs
    for runner in (run, run_other):
        checked = runner("repair", "--dry-run", "--json")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["findings"] == []

    assert run_other("teardown", "--now").returncode == 0
    assert sorted(tmux_sessions(tmux_socket)) == sorted(
        s for s in sessions if s in (mine, f"swarm-{project.name}-monitor")
    )
    assert status_json(run)["counts"]["claimed"] == 1  # the first repository's swarm is untouched
    assert run("teardown", "--now").returncode == 0
    assert tmux_sessions(tmux_socket) == []


def test_launch_wait_waits_for_its_own_epics_only(project: Path, run: Run, tmp_path: Path) -> None:
    from tests.acceptance.conftest import DEMO_AGENT

    (project / "specs" / "Z.md").write_text("---\nid: Z\nepic: E3\ntitle: Make Z\n---\n\n```file out/Z.txt\nZ\n```\n")
    gate = tmp_path / "gate"
    # E1's tasks wait for the gate; E3's do not.
    agent = f'if [ "$SWARM_EPIC" = E1 ]; then while [ ! -e "{gate}" ]; do sleep 0.2; done; fi; {DEMO_AGENT}'
    env = {"SWARM_QUEUE_LEASE_TTL_SECONDS": "900"}
    first = run("launch", "E1", "--agents", "1", "--command", agent, env=env)
    assert first.returncode == 0, first.stderr
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120, interval=0.3)

    waited = run("launch", "E3", "--agents", "2", "--command", agent, "--wait", "--timeout", "90", env=env, timeout=180)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "the only task of E3 is done" in waited.stdout
    data = status_json(run)
    assert data["epics"]["E3"]["done"] == 1
    assert data["epics"]["E1"]["claimed"] == 1  # E1 still runs: the wait did not wait for it
    gate.touch()
    assert run("teardown", "--now").returncode == 0
