"""Resuming a swarm end to end: what ``swarm launch`` and the monitor find dead is restarted at once, and what
launch finds in the way (a user's branch, a damaged database) stops it before it writes anything."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions as tmux_sessions
from swarm.store import open_store
from tests.acceptance.conftest import DEMO_AGENT, Run, git, status_json
from tests.helpers import retry_until

#: A lease far longer than any wait below: a task must come back because someone returned it, not because
#: its lease ran out.
LONG_LEASE = {"SWARM_QUEUE_LEASE_TTL_SECONDS": "900"}


def _claims(project: Path) -> Counter[str]:
    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        return Counter(e.task_id for e in store.events() if e.to_state == "claimed")


def _kill_everything(swarm_id: str, socket: str, project: Path) -> None:
    """The machine's view of a crash: the monitor's session closed, every process of the swarm SIGKILLed."""
    subprocess.run(
        ["tmux", "-L", socket, "kill-session", "-t", f"=swarm-{project.name}-monitor"],
        capture_output=True,
        check=False,
    )
    for pid in procs.processes_with_env("SWARM_ID", swarm_id):
        os.kill(pid, signal.SIGKILL)
    retry_until(lambda: not procs.processes_with_env("SWARM_ID", swarm_id), seconds=60)


def test_relaunch_returns_the_claim_of_a_dead_agent_before_restarting_it(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    flag = tmp_path / "started"
    hold = f'touch "{flag}"; sleep 600'
    launched = run("launch", "E1", "--agents", "1", "--command", hold, env=LONG_LEASE)
    assert launched.returncode == 0, launched.stderr
    retry_until(flag.exists, seconds=120)
    swarm_id = status_json(run)["swarm"]["id"]
    _kill_everything(swarm_id, tmux_socket, project)
    assert status_json(run)["counts"]["claimed"] == 1  # the dead agent's claim is still held

    # Well within the lease: only a claim given back by launch lets the epic finish.
    again = run(
        "launch",
        "E1",
        "--agents",
        "1",
        "--command",
        DEMO_AGENT,
        "--wait",
        "--timeout",
        "120",
        env=LONG_LEASE,
        timeout=240,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "returned A of agent-1" in again.stdout
    assert status_json(run)["counts"]["done"] == 4
    assert _claims(project)["A"] == 2
    assert run("teardown").returncode == 0
    assert tmux_sessions(tmux_socket) == []


def test_the_monitor_returns_the_claim_of_a_killed_worker_before_restarting_it(
    project: Path, run: Run, tmp_path: Path
) -> None:
    flag = tmp_path / "slow-once"
    agent = f'[ -e "{flag}" ] || {{ touch "{flag}"; sleep 600; }}; {DEMO_AGENT}'
    fast = {
        **LONG_LEASE,
        "SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3",
        "SWARM_SWARM_RESTART_BACKOFF_SECONDS": "0.2",
    }
    launched = run("launch", "E1", "--agents", "1", "--command", agent, env=fast)
    assert launched.returncode == 0, launched.stderr
    retry_until(flag.exists, seconds=120)
    worker = next(a for a in status_json(run)["agents"] if a["id"] == "agent-1")["pid"]
    os.kill(worker, signal.SIGKILL)
    # Within the lease: the monitor gave the claim back when it restarted the worker.
    retry_until(lambda: status_json(run)["counts"]["done"] == 4, seconds=300, interval=0.3)
    assert _claims(project)["A"] == 2
    assert run("teardown").returncode == 0


def _user_branch(project: Path, name: str) -> str:
    """A branch of the user's own that happens to have an agent branch's name, with an unrelated commit."""
    git(project, "checkout", "-q", "-b", name)
    git(project, "rm", "-q", "-r", "specs")
    git(project, "commit", "-q", "-m", "unrelated: delete specs")
    sha = git(project, "rev-parse", "HEAD")
    git(project, "checkout", "-q", "main")
    return sha


def test_launch_refuses_a_branch_of_an_agent_name_that_swarm_did_not_create(project: Path, run: Run) -> None:
    sha = _user_branch(project, "swarm/E1/agent-1")
    refused = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line
    assert "swarm/E1/agent-1" in line
    assert "not created by swarm" in line
    assert "--reuse-branches" in line
    assert "git branch -m" in line
    assert not (project / ".swarm").exists()  # nothing written
    assert not (project / ".worktrees").exists()
    assert git(project, "rev-parse", "swarm/E1/agent-1") == sha


def test_reuse_branches_adopts_it_and_swarm_resumes_its_own_branches(project: Path, run: Run) -> None:
    sha = _user_branch(project, "swarm/E1/agent-2")
    # swarm's own branches are resumed as they are: agent-1's, created by the first launch, after a teardown.
    first = run("launch", "E1", "--agents", "1", "--command", "sleep 600")
    assert first.returncode == 0, first.stdout + first.stderr
    assert run("teardown", "--now").returncode == 0
    again = run("launch", "E1", "--agents", "2", "--command", "sleep 600")
    assert again.returncode == 2, again.stdout + again.stderr
    assert "swarm/E1/agent-2" in again.stderr
    assert "swarm/E1/agent-1" not in again.stderr
    adopted = run("launch", "E1", "--agents", "2", "--command", "sleep 600", "--reuse-branches")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert git(project, "merge-base", "--is-ancestor", sha, "swarm/E1/agent-2") == ""  # used as it was
    assert run("teardown", "--now").returncode == 0
    # Adopted on purpose once, it is swarm's from then on.
    later = run("launch", "E1", "--agents", "2", "--command", "sleep 600")
    assert later.returncode == 0, later.stdout + later.stderr
    assert run("teardown", "--now").returncode == 0
