"""The monitor seen from outside: ``swarm status`` shows it, launch restarts a dead one, its crashes are logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from swarm.runtime import procs
from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until

FAST = {"SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3"}


def _monitor(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = status_json(run)["monitor"]
    return data


def test_status_shows_a_dead_monitor_and_launch_restarts_it(project: Path, run: Run, tmp_path: Path) -> None:
    launched = run("launch", "E1", "--agents", "1", "--command", "sleep 600", env=FAST)
    assert launched.returncode == 0, launched.stderr
    alive = retry_until(lambda: (m := _monitor(run))["alive"] and m["looks"] and m, seconds=120, interval=0.3)
    assert alive["pid"]
    assert procs.alive(alive["pid"])
    assert alive["last_look_age_s"] is not None
    assert alive["restarts"] == 0
    shown = run("status")
    assert shown.returncode == 0, shown.stderr
    assert f"monitor: running (pid {alive['pid']})" in shown.stdout

    os.kill(alive["pid"], signal.SIGKILL)
    retry_until(lambda: not procs.alive(alive["pid"]), seconds=60)
    dead = _monitor(run)
    assert dead["alive"] is False
    assert dead["pid"] == alive["pid"]
    assert "swarm launch E1" in dead["hint"]
    shown = run("status")
    assert "monitor: not running" in shown.stdout
    assert "'swarm launch E1' restarts it" in shown.stdout

    again = run("launch", "E1", "--agents", "1", "--command", "sleep 600", env=FAST)
    assert again.returncode == 0, again.stderr
    assert f"swarm-{project.name}-monitor" in again.stdout  # started again
    back = retry_until(
        lambda: (m := _monitor(run))["alive"] and m["pid"] != alive["pid"] and m, seconds=120, interval=0.3
    )
    assert procs.alive(back["pid"])
    assert run("teardown", "--now").returncode == 0


def test_a_crashed_monitor_leaves_its_traceback_in_its_log(project: Path, run: Run) -> None:
    made = run("queue", "init", "--epic", "E1")
    assert made.returncode == 0, made.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    # A real monitor process that cannot work: its swarm is not in the database.
    crashed = subprocess.run(
        [sys.executable, "-m", "swarm.runtime.monitor", "--repo", str(project), "--swarm-id", "sw-gone"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode != 0
    log = (project / ".swarm" / "logs" / "monitor.log").read_text()
    assert "monitor crashed" in log
    assert "Traceback (most recent call last)" in log
    assert "sw-gone" in log
    assert "monitor.log" in crashed.stderr  # the one line on the pane says where the traceback is


def test_status_json_keeps_its_keys_and_adds_the_monitor(project: Path, run: Run) -> None:
    made = run("queue", "init", "--epic", "E1")
    assert made.returncode == 0, made.stderr
    data = status_json(run)
    assert {"swarm", "counts", "tasks", "agents", "questions"} <= set(data)
    assert data["monitor"]["alive"] is False
    assert data["monitor"]["pid"] is None
    json.dumps(data)
