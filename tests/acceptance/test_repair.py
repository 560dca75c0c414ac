"""``swarm repair`` end to end: the real CLI, real tmux on a private socket, real git, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions as tmux_sessions
from tests.acceptance.conftest import DEMO_AGENT, Run, git, status_json
from tests.helpers import retry_until

#: An agent that holds its first task (sleeps) and then behaves like the demo agent.
SLEEP = "sleep 600"


def _repair(run: Run, *args: str) -> dict[str, Any]:
    result = run("repair", "--json", *args)
    assert result.returncode == 0, result.stderr + result.stdout
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["dry_run"] is ("--dry-run" in args)
    return data


def _launch(run: Run, command: str) -> str:
    launched = run("launch", "E1", "--agents", "1", "--command", command)
    assert launched.returncode == 0, launched.stderr + launched.stdout
    swarm_id: str = status_json(run)["swarm"]["id"]
    return swarm_id


def _task_claimed(run: Run) -> bool:
    """The agent holds its task and says so (a steady state to compare before and after)."""
    data = status_json(run)
    return bool(data["counts"]["claimed"] == 1 and data["agents"][0]["state"] == "working")


def _snapshot(project: Path, run: Run, socket: str) -> dict[str, Any]:
    """What a dry run must leave exactly as it was."""
    data = status_json(run)
    return {
        "tasks": {t["id"]: (t["state"], t["owner"], t["attempts"]) for t in data["tasks"]},
        "agents": {a["id"]: (a["state"], a["pid"]) for a in data["agents"]},
        "sessions": sorted(tmux_sessions(socket)),
        "worktrees": git(project, "worktree", "list", "--porcelain"),
        "branches": git(project, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "status": {
            p.name: git(p, "status", "--porcelain") for p in sorted((project / ".worktrees").iterdir()) if p.is_dir()
        },
    }


def _teardown_and_check(project: Path, run: Run, socket: str, swarm_id: str, *, keep: list[str]) -> None:
    down = run("teardown", "--now")
    assert down.returncode == 0, down.stderr + down.stdout
    assert tmux_sessions(socket) == keep
    worktrees = project / ".worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []
    assert ".worktrees" not in git(project, "worktree", "list", "--porcelain")
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []


def test_a_tagged_session_without_an_agent_is_killed_and_an_untagged_one_survives(
    project: Path, run: Run, tmux_socket: str
) -> None:
    swarm_id = _launch(run, SLEEP)
    ghost = f"swarm-{project.name}-ghost"
    lookalike = f"swarm-{project.name}-ghost-untagged"
    tmux = ["tmux", "-L", tmux_socket]
    subprocess.run([*tmux, "new-session", "-d", "-s", ghost, "sleep 600"], check=True)
    subprocess.run([*tmux, "set-option", "-t", f"={ghost}:", "@swarm_id", swarm_id], check=True)
    subprocess.run([*tmux, "new-session", "-d", "-s", lookalike, "sleep 600"], check=True)
    retry_until(lambda: _task_claimed(run), seconds=120)
    before = _snapshot(project, run, tmux_socket)

    dry = _repair(run, "--dry-run")
    assert dry["findings"] == [
        {
            "kind": "session-without-agent",
            "subject": ghost,
            "action": "kill the session",
            "done": False,
            "problem": f"tmux session {ghost} is tagged with swarm {swarm_id} but belongs to no agent",
            "error": None,
        }
    ]
    assert _snapshot(project, run, tmux_socket) == before  # a dry run changes nothing

    fixed = run("repair")
    assert fixed.returncode == 0, fixed.stderr
    assert f"tmux session {ghost} is tagged" in fixed.stdout
    assert "kill the session: done" in fixed.stdout
    sessions = set(tmux_sessions(tmux_socket))
    assert ghost not in sessions
    assert {lookalike, f"swarm-{project.name}-agent-1", f"swarm-{project.name}-monitor"} <= sessions
    assert _repair(run)["findings"] == []  # repaired: a second run finds nothing

    _teardown_and_check(project, run, tmux_socket, swarm_id, keep=[lookalike])


def test_an_agent_whose_session_was_killed_gets_its_task_returned_and_a_relaunch_finishes(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    flag = tmp_path / "held-once"
    agent = f"[ -e {flag} ] || {{ touch {flag}; sleep 600; }}; {DEMO_AGENT}"
    swarm_id = _launch(run, agent)
    retry_until(lambda: flag.exists() and _task_claimed(run), seconds=120)
    worker = status_json(run)["agents"][0]["pid"]
    tmux = ["tmux", "-L", tmux_socket]
    # The monitor goes first: left running, it would restart the agent itself before repair looks.
    subprocess.run([*tmux, "kill-session", "-t", f"=swarm-{project.name}-monitor"], check=True)
    # SIGKILL first: a worker that gets the session's SIGHUP gives its task back itself (see test_monitor.py),
    # and repair is for the worker that got no chance to.
    os.kill(worker, signal.SIGKILL)
    # The session may already have closed with its only process.
    subprocess.run([*tmux, "kill-session", "-t", f"=swarm-{project.name}-agent-1"], check=False, capture_output=True)
    retry_until(lambda: not procs.alive(worker), seconds=120)
    before = _snapshot(project, run, tmux_socket)
    assert before["tasks"]["A"][0] == "claimed"

    dry = _repair(run, "--dry-run")
    kinds = {(f["kind"], f["subject"]) for f in dry["findings"]}
    # Depending on whether the worker noticed the hang-up, it is a live agent without a session, or a stopped
    # one that still holds its claim: either way its task goes back and it is marked dead.
    assert kinds in ({("agent-without-session", "agent-1")}, {("claim-of-dead-agent", "A")}), dry
    assert not any(f["done"] for f in dry["findings"])
    assert _snapshot(project, run, tmux_socket) == before

    fixed = _repair(run)
    assert [f["done"] for f in fixed["findings"]] == [True]
    data = status_json(run)
    tasks = {t["id"]: t for t in data["tasks"]}
    assert tasks["A"]["state"] == "ready"
    assert tasks["A"]["owner"] is None
    assert tasks["A"]["attempts"] == 0  # returned, not failed: no attempt spent
    assert data["agents"][0]["state"] == "dead"
    assert tmux_sessions(tmux_socket) == []  # repair started nothing
    assert _repair(run)["findings"] == []

    # The relaunched worker is slow to start (a loaded machine): until it writes, its row must say it is starting,
    # not what repair wrote of the last one, or the monitor "restarts" it and --wait gives up on it.
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('SWARM_AGENT_ID') == 'agent-1':\n"
        f"    open('{slow}/ran', 'a').close()\n    time.sleep(3)\n"
    )
    relaunched = run("launch", "E1", "--agents", "1", "--command", agent, env={"PYTHONPATH": str(slow)})
    assert relaunched.returncode == 0, relaunched.stderr
    agent_row = status_json(run)["agents"][0]
    assert agent_row["state"] == "starting", agent_row
    assert (slow / "ran").exists()
    assert procs.alive(agent_row["pid"])
    again = run("launch", "E1", "--agents", "1", "--command", agent, "--wait", "--timeout", "90")
    log = project / ".swarm" / "logs" / "agent-1.log"
    assert again.returncode == 0, again.stderr + again.stdout + (log.read_text()[-4000:] if log.exists() else "")
    assert status_json(run)["counts"]["done"] == 4

    _teardown_and_check(project, run, tmux_socket, swarm_id, keep=[])


def test_a_worktree_without_an_agent_has_its_work_committed_then_is_removed(
    project: Path, run: Run, tmux_socket: str
) -> None:
    swarm_id = _launch(run, SLEEP)
    retry_until(lambda: _task_claimed(run), seconds=120)
    stray = project / ".worktrees" / "stray"
    git(project, "worktree", "add", "-q", "-b", "stray-work", str(stray))
    (stray / "notes.txt").write_text("unsaved work\n")
    start = git(project, "rev-parse", "stray-work")
    before = _snapshot(project, run, tmux_socket)

    dry = _repair(run, "--dry-run")
    assert [(f["kind"], f["subject"], f["done"]) for f in dry["findings"]] == [
        ("worktree-without-agent", ".worktrees/stray", False)
    ]
    assert "WIP: saved by swarm repair" in dry["findings"][0]["action"]
    assert _snapshot(project, run, tmux_socket) == before
    assert (stray / "notes.txt").read_text() == "unsaved work\n"

    fixed = run("repair")
    assert fixed.returncode == 0, fixed.stderr
    assert "worktree .worktrees/stray (branch stray-work) belongs to no agent" in fixed.stdout
    assert not stray.exists()
    assert str(stray) not in git(project, "worktree", "list", "--porcelain")
    assert git(project, "log", "-1", "--format=%s", "stray-work") == "WIP: saved by swarm repair"
    assert git(project, "rev-parse", "stray-work~1") == start
    assert git(project, "show", "stray-work:notes.txt") == "unsaved work"
    # The agent's own worktree and session are untouched.
    assert (project / ".worktrees" / "agent-1").is_dir()
    assert f"swarm-{project.name}-agent-1" in tmux_sessions(tmux_socket)
    assert _task_claimed(run)

    _teardown_and_check(project, run, tmux_socket, swarm_id, keep=[])


def test_a_consistent_swarm_has_nothing_to_repair(project: Path, run: Run, tmux_socket: str) -> None:
    swarm_id = _launch(run, SLEEP)
    retry_until(lambda: _task_claimed(run), seconds=120)
    before = _snapshot(project, run, tmux_socket)

    clean = run("repair")
    assert clean.returncode == 0, clean.stderr
    assert "nothing to repair" in clean.stdout
    assert _repair(run, "--dry-run") == {"findings": [], "dry_run": True}
    assert _snapshot(project, run, tmux_socket) == before

    _teardown_and_check(project, run, tmux_socket, swarm_id, keep=[])


def test_no_swarm_is_bad_input(project: Path, run: Run) -> None:
    result = run("repair")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "swarm launch" in result.stderr


def test_a_worktree_without_an_agent_keeps_submodule_work_repair_cannot_commit(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    source = tmp_path / "libsource"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    (source / "lib.txt").write_text("lib\n")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "lib")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(source), "sub")
    git(project, "commit", "-q", "-m", "add the lib submodule")
    swarm_id = _launch(run, SLEEP)
    retry_until(lambda: _task_claimed(run), seconds=120)
    stray = project / ".worktrees" / "stray"
    git(project, "worktree", "add", "-q", "-b", "stray-work", str(stray))
    git(stray, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q")
    (stray / "sub" / "lib.txt").write_text("unsaved work in the submodule\n")
    # The submodule refuses commits (signing with a gpg that always fails): its work cannot be saved.
    git(stray / "sub", "config", "commit.gpgsign", "true")
    git(stray / "sub", "config", "gpg.program", "false")

    fixed = run("repair", "--json")
    data = json.loads(fixed.stdout)
    finding = next(f for f in data["findings"] if f["subject"] == ".worktrees/stray")
    assert finding["done"] is False
    assert "submodule sub" in finding["error"]
    assert (stray / "sub" / "lib.txt").read_text() == "unsaved work in the submodule\n"  # nothing lost
    _teardown_and_check_keeping(project, run, swarm_id, stray)


def _teardown_and_check_keeping(project: Path, run: Run, swarm_id: str, stray: Path) -> None:
    down = run("teardown", "--now")
    assert down.returncode == 0, down.stderr + down.stdout
    assert procs.processes_with_env("SWARM_ID", swarm_id) == []
    assert stray.is_dir()
