"""Git faults an agent causes, end to end (issue 12, points 4, 5 and 8): the real CLI, a private tmux server,
real git, command agents that break their worktree on purpose.

Each agent does its fault once (a marker file outside the worktree remembers it), then behaves like the demo
agent, so a swarm that recovers finishes the diamond epic A -> (B, C) -> D.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from swarm.store import open_store
from tests.acceptance.conftest import DEMO_AGENT, GIT, Run, git, status_json
from tests.helpers import retry_until

#: Failed attempts come back at once: these tests are about which tasks fail, not when they return.
FAST = {"SWARM_QUEUE_RETRY_BACKOFF_SECONDS": "0", "SWARM_QUEUE_RETRY_BACKOFF_MAX_SECONDS": "0"}


def _once(task: str, fault: str, mark: Path) -> str:
    """A command agent that runs ``fault`` the first time it works on ``task``, then the demo agent."""
    return (
        f'if [ "$SWARM_TASK_ID" = {task} ] && [ ! -e {shlex.quote(str(mark))} ]; then '
        f"touch {shlex.quote(str(mark))}; {fault}; fi; exec {DEMO_AGENT}"
    )


def _launch(run: Run, command: str) -> None:
    launched = run("launch", "E1", "--agents", "1", "--command", command, env=FAST)
    assert launched.returncode == 0, launched.stderr + launched.stdout


def _settled(run: Run) -> dict[str, Any] | None:
    """Status once every task is done, or once one is dead (old behaviour: the backlog burns)."""
    data = status_json(run)
    counts = data["counts"]
    return data if counts["done"] == 4 or counts["dead"] else None


def _tasks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in data["tasks"]}


def _log(project: Path) -> str:
    return (project / ".swarm" / "logs" / "agent-1.log").read_text(encoding="utf-8", errors="replace")


def _teardown(run: Run, *args: str) -> dict[str, Any]:
    down = run("teardown", "--json", *args)
    assert down.returncode == 0, down.stderr + down.stdout
    report: dict[str, Any] = json.loads(down.stdout)
    return report


def _add_submodule(project: Path, tmp_path: Path) -> Path:
    """Give the project a submodule ``sub`` (a local repository holding lib.txt) and commit it."""
    source = tmp_path / "libsource"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    (source / "lib.txt").write_text("lib\n")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "lib")
    subprocess.run(
        [*GIT, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(source), "sub"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    git(project, "commit", "-q", "-m", "add the lib submodule")
    return source


# -- point 4: a broken worktree does not burn the backlog -----------------------------------------------------


def test_a_deleted_worktree_is_recreated_and_the_backlog_is_done(project: Path, run: Run, tmp_path: Path) -> None:
    _launch(run, _once("A", 'rm -rf "$SWARM_WORKTREE"; exit 0', tmp_path / "deleted"))
    data = retry_until(lambda: _settled(run), seconds=180)
    tasks = _tasks(data)
    assert data["counts"]["done"] == 4, tasks
    assert tasks["A"]["attempts"] == 2  # the attempt that deleted the worktree ran and failed ...
    assert [tasks[t]["attempts"] for t in "BCD"] == [1, 1, 1]  # ... and nothing failed without running
    assert "was deleted; recreated it from swarm/E1/agent-1" in _log(project)
    _teardown(run)


def test_a_stale_index_lock_is_removed_and_every_task_runs_once(project: Path, run: Run, tmp_path: Path) -> None:
    # A git killed mid-write leaves index.lock behind; every later git command that writes the index fails.
    _launch(run, _once("A", 'touch "$(git rev-parse --git-dir)/index.lock"', tmp_path / "locked"))
    data = retry_until(lambda: _settled(run), seconds=180)
    tasks = _tasks(data)
    assert data["counts"]["done"] == 4, tasks
    assert [tasks[t]["attempts"] for t in "ABCD"] == [1, 1, 1, 1]
    assert "index.lock (the git process that left it is gone)" in _log(project)
    _teardown(run)


def test_a_dirty_submodule_is_saved_and_the_task_runs_again(project: Path, run: Run, tmp_path: Path) -> None:
    _add_submodule(project, tmp_path)
    # (The agent initialises the submodule itself if launch did not: the fault is the dirt, not its absence.)
    dirty = "git -c protocol.file.allow=always submodule update --init -q && echo dirt >> sub/lib.txt; exit 1"
    _launch(run, _once("A", dirty, tmp_path / "dirtied"))
    data = retry_until(lambda: _settled(run), seconds=180)
    tasks = _tasks(data)
    assert data["counts"]["done"] == 4, tasks
    assert tasks["A"]["attempts"] == 2  # the failed attempt, then a clean one
    # The failed attempt's submodule change is in its stash entry, and the submodule commit it points at is kept.
    stashes = git(project, "stash", "list", "--format=%H %gs").splitlines()
    entry = next(line.split()[0] for line in stashes if "swarm: A attempt 1 (exit 1)" in line)
    kept = git(project, "rev-parse", f"{entry}:sub")
    assert git(project, "show", f"refs/swarm/submodules/{kept}:lib.txt") == "lib\ndirt"
    assert git(project, "show", f"{tasks['A']['commit']}:out/A.txt") == "A"
    _teardown(run)


# -- point 5: branch switches and history rewrites by the agent ------------------------------------------------


def test_task_and_wip_commits_land_on_the_agent_branch_after_a_checkout_b(
    project: Path, run: Run, tmp_path: Path
) -> None:
    holding = tmp_path / "holding"
    switch_a = _once("A", "git checkout -q -b other", tmp_path / "switched")
    hold_d = (
        f'if [ "$SWARM_TASK_ID" = D ]; then git checkout -q -b later && mkdir -p out && echo wip > out/wip.txt '
        f"&& touch {shlex.quote(str(holding))} && exec sleep 600; fi; "
    )
    _launch(run, hold_d + switch_a)
    retry_until(holding.exists, seconds=180)
    tasks = _tasks(status_json(run))
    branch = "swarm/E1/agent-1"
    for task_id in "ABC":
        commit = tasks[task_id]["commit"]
        assert commit, tasks
        # On the agent branch, not on 'other' where the agent left HEAD.
        git(project, "merge-base", "--is-ancestor", commit, branch)  # exit 1 (not on it) fails the test
    assert git(project, "log", "-1", "--format=%s", "other") != "B: Make B"
    assert f"the agent left {branch} for branch 'other'; brought its 1 commit onto {branch}" in _log(project)

    down = run("teardown", "--now")
    assert down.returncode == 0, down.stderr + down.stdout
    assert f"on {branch}" in down.stdout
    # What teardown says is true: the WIP commit is on the agent branch, with D's unfinished file.
    assert git(project, "log", "-1", "--format=%s", branch) == "WIP D: Make D"
    assert git(project, "show", f"{branch}:out/wip.txt") == "wip"
    assert git(project, "rev-parse", "later") != git(project, "rev-parse", branch)


def test_a_done_tasks_commit_stays_reachable_after_git_reset_hard(project: Path, run: Run, tmp_path: Path) -> None:
    # B drops A's commit from the branch (keeping A's file so that B's own check passes).
    reset = "git reset -q --hard HEAD~1 && git checkout -q ORIG_HEAD -- out/A.txt"
    _launch(run, _once("B", reset, tmp_path / "reset"))
    data = retry_until(lambda: _settled(run), seconds=180)
    tasks = _tasks(data)
    assert data["counts"]["done"] == 4, tasks
    _teardown(run, "--delete-branches", "--force")
    git(project, "reflog", "expire", "--expire=now", "--all")
    git(project, "gc", "-q", "--prune=now")
    for task_id, task in tasks.items():
        # A local ref per done task, with no shared remote configured, keeps each commit.
        assert git(project, "rev-parse", f"refs/swarm/tasks/{task_id}") == task["commit"]
        assert git(project, "show", f"{task['commit']}:out/{task_id}.txt") == task_id


# -- point 8: submodules ---------------------------------------------------------------------------------------


def test_submodule_edits_are_committed_in_the_submodule_and_the_task(project: Path, run: Run, tmp_path: Path) -> None:
    _add_submodule(project, tmp_path)
    # Every task also appends its id to the submodule's file: the worktree must have it checked out.
    agent = f'echo "$SWARM_TASK_ID" >> sub/lib.txt && exec {DEMO_AGENT}'
    _launch(run, agent)
    data = retry_until(lambda: _settled(run), seconds=180)
    tasks = _tasks(data)
    assert data["counts"]["done"] == 4, tasks
    report = _teardown(run)
    assert report["worktrees_removed"]  # the work was committed: nothing kept the worktree
    for task_id, task in tasks.items():
        pointer = git(project, "rev-parse", f"{task['commit']}:sub")
        # The submodule's commit outlives the worktree (and its copy of the submodule).
        assert git(project, "log", "-1", "--format=%s", pointer) == f"{task_id}: Make {task_id}"
        assert task_id in git(project, "show", f"{pointer}:lib.txt").split()
    final = git(project, "rev-parse", f"{tasks['D']['commit']}:sub")
    assert sorted(git(project, "show", f"{final}:lib.txt").split()) == ["A", "B", "C", "D", "lib"]


def test_uncommittable_submodule_work_pauses_the_agent_and_keeps_the_worktree(
    project: Path, run: Run, tmp_path: Path
) -> None:
    _add_submodule(project, tmp_path)
    # The submodule refuses commits (signing with a gpg that always fails): swarm cannot save the change.
    refuse = "git -C sub config commit.gpgsign true && git -C sub config gpg.program false"
    _launch(run, _once("A", f"echo precious >> sub/lib.txt && {refuse}; exit 0", tmp_path / "refused"))

    # A commit the machine refuses (signing without a usable key) is not the agent's fault: the agent is paused,
    # the task goes back without spending an attempt (issue 12 point 1), and the submodule is named.
    def agent_paused() -> dict[str, Any] | None:
        data = status_json(run)
        return data if data["agents"][0]["state"] == "paused" else None

    data = retry_until(agent_paused, seconds=180)
    agent = data["agents"][0]
    assert "submodule sub" in agent["detail"]
    task_a = _tasks(data)["A"]
    assert "cannot commit the changes in submodule sub" in agent["detail"]
    assert task_a["attempts"] == 0  # given back, no attempt spent; and no task was failed without running
    assert task_a["state"] == "ready"

    def escalated() -> list[str]:
        with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
            return [m.body for m in store.list_messages("team") if m.type == "escalation"]

    assert "submodule sub" in retry_until(escalated, seconds=60)[0]

    down = run("teardown", "--json")
    assert down.returncode == 0, down.stderr + down.stdout
    report = json.loads(down.stdout)
    worktree = project / ".worktrees" / "agent-1"
    assert report["worktrees_kept"] == [str(worktree)]
    assert report["worktrees_removed"] == []
    assert (worktree / "sub" / "lib.txt").read_text() == "lib\nprecious\n"  # nothing of it lost
    assert len(escalated()) == 1


def test_submodules_can_be_left_uninitialised(project: Path, run: Run, tmp_path: Path) -> None:
    _add_submodule(project, tmp_path)
    (project / "swarm.toml").write_text("[swarm]\nsubmodules = false\n")
    git(project, "add", "swarm.toml")
    git(project, "commit", "-q", "-m", "no submodules")
    _launch(run, DEMO_AGENT)
    data = retry_until(lambda: _settled(run), seconds=180)
    assert data["counts"]["done"] == 4
    assert not (project / ".worktrees" / "agent-1" / "sub" / "lib.txt").exists()
    _teardown(run)
