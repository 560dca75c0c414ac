"""Health end to end: real workers and agents killed, stopped, blocked and rate-limited under a real monitor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarm.runtime import procs
from tests.acceptance.conftest import DEMO_AGENT, Run, status_json
from tests.helpers import retry_until

# Fast health settings for tests: a monitor look every 0.3 s, stalls after 3 s, short restart backoff.
FAST = {
    "SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3",
    "SWARM_SWARM_STALL_SECONDS": "3",
    "SWARM_SWARM_RESTART_BACKOFF_SECONDS": "0.2",
    "SWARM_QUEUE_RETRY_BACKOFF_SECONDS": "0.2",
}


def _escalations(run: Run) -> list[dict[str, Any]]:
    result = run("msg", "list", "--json", "--type", "escalation")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _agent(run: Run, agent_id: str) -> dict[str, Any]:
    return next(a for a in status_json(run)["agents"] if a["id"] == agent_id)


def _monitor_looks(project: Path) -> int:
    try:
        return int(json.loads((project / ".swarm" / "monitor.json").read_text())["looks"])
    except (OSError, ValueError, KeyError):
        return 0


def _finished(run: Run) -> bool:
    done: int = status_json(run)["counts"]["done"]
    return done == 4


def test_a_killed_worker_is_respawned_and_the_epic_finishes(project: Path, run: Run, tmp_path: Path) -> None:
    flag = tmp_path / "slow-once"
    agent = f"[ -e {flag} ] || {{ touch {flag}; sleep 3; }}; {DEMO_AGENT}"
    launched = run("launch", "E1", "--agents", "1", "--command", agent, env=FAST)
    assert launched.returncode == 0, launched.stderr
    retry_until(flag.exists, seconds=120)
    worker = _agent(run, "agent-1")["pid"]
    os.kill(worker, signal.SIGKILL)
    retry_until(lambda: _finished(run), seconds=240, interval=0.3)
    agent1 = _agent(run, "agent-1")
    assert agent1["restarts"] == 1
    assert agent1["pid"] != worker
    notes = _escalations(run)
    assert len(notes) == 1
    assert "agent-1 was dead" in notes[0]["body"]
    assert run("teardown").returncode == 0


@pytest.mark.parametrize("how", ["SIGTERM", "tmux kill-session"])
def test_a_signalled_worker_gives_its_task_back_at_once_and_is_restarted(
    project: Path, run: Run, tmp_path: Path, tmux_socket: str, how: str
) -> None:
    """SIGTERM to a worker, or SIGHUP from tmux closing its session: the task goes back at once (leases are
    300 s here, so expiry cannot be what returned it) without spending an attempt, and the monitor restarts
    the worker, once, with one escalation."""
    flag = tmp_path / "slow-once"
    agent = f"[ -e {flag} ] || {{ touch {flag}; sleep 600; }}; {DEMO_AGENT}"
    # A sleeping agent must not look stalled: only the signal may stop it.
    env = {**FAST, "SWARM_QUEUE_LEASE_TTL_SECONDS": "300", "SWARM_SWARM_STALL_SECONDS": "600"}
    launched = run("launch", "E1", "--agents", "1", "--command", agent, env=env)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: flag.exists() and _agent(run, "agent-1")["state"] == "working", seconds=120)
    before = _agent(run, "agent-1")
    if how == "SIGTERM":
        os.kill(before["pid"], signal.SIGTERM)
    else:
        subprocess.run(["tmux", "-L", tmux_socket, "kill-session", "-t", before["session"]], check=True)
    retry_until(lambda: _finished(run), seconds=240, interval=0.3)
    after = _agent(run, "agent-1")
    assert after["restarts"] == 1
    assert after["pid"] != before["pid"]
    tasks = {t["id"]: t for t in status_json(run)["tasks"]}
    assert tasks["A"]["attempts"] == 1  # the interrupted attempt was given back
    from swarm.store import open_store

    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        returned = [e.reason for e in store.events("A") if e.from_state == "claimed" and e.to_state == "ready"]
    signame = "SIGTERM" if how == "SIGTERM" else "SIGHUP"
    assert len(returned) == 1, returned
    assert signame in returned[0]
    notes = _escalations(run)
    assert len(notes) == 1, notes
    assert "agent-1 was dead" in notes[0]["body"]
    assert run("teardown").returncode == 0


def test_a_worker_signalled_again_and_again_is_given_up_after_max_restarts(project: Path, run: Run) -> None:
    """Restarts are counted and bounded: past ``max_restarts`` the agent is failed, its task is back in the
    queue with no attempt spent, and the lead heard of it once per incident."""
    env = {
        **FAST,
        "SWARM_QUEUE_LEASE_TTL_SECONDS": "300",
        "SWARM_SWARM_STALL_SECONDS": "600",
        "SWARM_SWARM_MAX_RESTARTS": "1",
    }
    launched = run("launch", "E1", "--agents", "1", "--command", "sleep 600", env=env)
    assert launched.returncode == 0, launched.stderr
    first = retry_until(lambda: _working_agent(run), seconds=120)
    os.kill(first["pid"], signal.SIGTERM)
    second = retry_until(lambda: (a := _working_agent(run)) and a["pid"] != first["pid"] and a, seconds=120)
    assert second["restarts"] == 1
    os.kill(second["pid"], signal.SIGTERM)
    retry_until(lambda: _agent(run, "agent-1")["state"] == "failed", seconds=120, interval=0.3)
    assert _agent(run, "agent-1")["restarts"] == 1
    tasks = {t["id"]: t for t in status_json(run)["tasks"]}
    assert (tasks["A"]["state"], tasks["A"]["attempts"]) == ("ready", 0)
    notes = [n["body"] for n in _escalations(run)]
    assert len(notes) == 2, notes
    assert "restarting it (restart 1 of 1)" in notes[0]
    assert "gave up after 1 restart (max_restarts)" in notes[1]
    assert run("teardown").returncode == 0


def _working_agent(run: Run) -> dict[str, Any] | None:
    agent = _agent(run, "agent-1")
    return agent if agent["state"] == "working" and agent["pid"] else None


def test_a_stopped_agent_is_stalled_then_restarted(project: Path, run: Run, tmp_path: Path) -> None:
    flag = tmp_path / "stall-once"
    agent = f"if [ ! -e {flag} ]; then touch {flag}; echo working; sleep 600; fi; {DEMO_AGENT}"
    launched = run("launch", "E1", "--agents", "1", "--command", agent, env=FAST)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: flag.exists() and _agent(run, "agent-1")["state"] == "working", seconds=120)
    data = json.loads(run("status", "--json").stdout)
    stuck = next(a for a in data["agents"] if a["id"] == "agent-1")
    from swarm.store import open_store

    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        agent_pid = store.list_agents()[0].agent_pid
    assert agent_pid
    os.killpg(agent_pid, signal.SIGSTOP)  # alive, but neither CPU nor output: stalled
    retry_until(lambda: _finished(run), seconds=240, interval=0.3)
    assert _agent(run, "agent-1")["restarts"] == 1
    notes = _escalations(run)
    assert [n for n in notes if "stalled" in n["body"]], notes
    assert not procs.alive(agent_pid)  # the stopped agent was killed, not left behind
    assert stuck["task"] == "A"
    assert run("teardown").returncode == 0


def test_a_blocked_prompt_is_waiting_for_input_with_one_escalation(project: Path, run: Run) -> None:
    agent = 'echo "Do you want to proceed? (y/n)"; sleep 600'
    env = {**FAST, "SWARM_SWARM_STALL_SECONDS": "120"}
    launched = run("launch", "E1", "--agents", "1", "--command", agent, env=env)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: _agent(run, "agent-1")["state"] == "waiting-for-input", seconds=120, interval=0.3)
    looks = _monitor_looks(project)
    retry_until(lambda: _monitor_looks(project) >= looks + 5, seconds=120, interval=0.2)  # several more looks
    notes = _escalations(run)
    assert len(notes) == 1, notes  # once per incident, however many looks
    assert "waiting for input on A" in notes[0]["body"]
    assert _agent(run, "agent-1")["restarts"] == 0
    assert run("teardown", "--now").returncode == 0


def test_a_rate_limit_pauses_claims_then_resumes(project: Path, run: Run, tmp_path: Path) -> None:
    flag = tmp_path / "limited-once"
    agent = (
        f'if [ ! -e {flag} ]; then touch {flag}; echo "API error: rate limit exceeded, try again in 2 seconds"; '
        f"exit 1; fi; {DEMO_AGENT}"
    )
    launched = run("launch", "E1", "--agents", "2", "--command", agent, env=FAST)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: _finished(run), seconds=240, interval=0.3)
    signals = [
        json.loads(line) for line in run("msg", "list", "--json", "--type", "signal.rate_limited").stdout.splitlines()
    ]
    assert len(signals) == 1
    paused_at = signals[0]["created_at"]
    from datetime import datetime

    from swarm.store import open_store

    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        until, reason = store.claims_paused(data_swarm(run))
        claims_after = [e.at for e in store.events() if e.to_state == "claimed"]
    start = datetime.fromisoformat(paused_at.replace("Z", "+00:00")).timestamp()
    assert until >= start + 1.5
    assert reason is not None
    assert "rate limit" in reason
    # No claim happened while claims were paused.
    assert not [at for at in claims_after if start + 0.2 < at < until - 0.2]
    assert run("teardown").returncode == 0


def data_swarm(run: Run) -> str:
    """The current swarm's id."""
    swarm_id: str = status_json(run)["swarm"]["id"]
    return swarm_id


def test_a_slow_step_of_the_worker_itself_is_not_a_stall(project: Path, run: Run, tmp_path: Path) -> None:
    """Between two agent runs the worker commits, completes, claims and merges; on a busy machine (or behind a
    slow hook) that takes longer than ``stall_seconds``. Stalls are judged on the agent, not on those steps:
    here the first task commit's post-commit hook sleeps twice the stall limit, and nobody is restarted."""
    flag = tmp_path / "hook-slept"
    hook = project / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\n[ -e {flag} ] || {{ touch {flag}; sleep 7; }}\n")
    hook.chmod(0o755)
    launched = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, env=FAST)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: _finished(run), seconds=240, interval=0.3)
    assert flag.exists()
    assert _agent(run, "agent-1")["restarts"] == 0
    assert not [n for n in _escalations(run) if "stalled" in n["body"]]
    assert run("teardown").returncode == 0
