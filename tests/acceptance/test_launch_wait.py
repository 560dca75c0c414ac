"""Smaller launch behaviours end to end: Ctrl-C during ``launch --wait``, two same-named repositories on one
tmux server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until


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
