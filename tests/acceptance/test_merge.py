"""``swarm merge`` end to end: a finished diamond epic (A -> (B, C) -> D), the real CLI, real tmux and git."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import DEMO_AGENT, Run, git

BRANCH = "swarm/E1/integration"


def _finish_epic(run: Run) -> None:
    """Launch the diamond with the scripted demo agent and wait until every task is done."""
    launched = run("launch", "E1", "--agents", "2", "--command", DEMO_AGENT, "--wait", "--timeout", "90")
    assert launched.returncode == 0, launched.stderr + launched.stdout


def _merge_json(run: Run, *args: str) -> tuple[int, dict[str, Any], str]:
    result = run("merge", "--json", *args)
    return result.returncode, json.loads(result.stdout), result.stderr


def _first_parent_subjects(project: Path, base: str) -> list[str]:
    """Subjects of the integration branch's own commits since ``base``, oldest first."""
    out = git(project, "log", "--first-parent", "--reverse", "--format=%s", f"{base}..{BRANCH}")
    return out.splitlines()


def _worktree_paths(project: Path) -> list[str]:
    porcelain = git(project, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in porcelain.splitlines() if line.startswith("worktree ")]


def test_merges_in_dependency_order_without_touching_the_checkout(project: Path, run: Run) -> None:
    base = git(project, "rev-parse", "HEAD")
    _finish_epic(run)
    # The user's own state: an uncommitted change and an untracked file, on their checked-out branch.
    (project / "README.md").write_text("# proj, edited but not committed\n")
    (project / "notes.txt").write_text("mine\n")
    head_before = git(project, "rev-parse", "HEAD")
    branch_before = git(project, "symbolic-ref", "--short", "HEAD")
    status_before = git(project, "status", "--porcelain")

    merged = run("merge")
    assert merged.returncode == 0, merged.stderr + merged.stdout
    for task in "ABCD":
        assert f"merged       {task}: Make {task}" in merged.stdout
    head = git(project, "rev-parse", BRANCH)
    assert f"branch {BRANCH} is at {head[:12]}" in merged.stdout

    files = set(git(project, "ls-tree", "-r", "--name-only", BRANCH).split())
    assert {"out/A.txt", "out/B.txt", "out/C.txt", "out/D.txt"} <= files
    # One merge commit per task, in dependency order (B and C tie, so by id).
    assert _first_parent_subjects(project, base) == [f"Merge {t}: Make {t}" for t in "ABCD"]
    parents = git(project, "log", "-1", "--format=%P", BRANCH).split()
    assert len(parents) == 2  # --no-ff: a real merge commit even where a fast-forward was possible

    # Nothing of the user's changed, and the temporary worktree is gone.
    assert git(project, "rev-parse", "HEAD") == head_before
    assert git(project, "symbolic-ref", "--short", "HEAD") == branch_before
    assert git(project, "status", "--porcelain") == status_before
    assert (project / "README.md").read_text() == "# proj, edited but not committed\n"
    assert not any("merge-worktree" in p for p in _worktree_paths(project))

    # Re-running merges nothing new and leaves the branch where it was.
    code, data, stderr = _merge_json(run)
    assert code == 0, stderr
    assert data["branch"] == BRANCH
    assert data["head"] == head
    assert data["merged"] == []
    assert data["failed"] is None
    assert [(s["task"], s["reason"]) for s in data["skipped"]] == [(t, "already in") for t in "ABCD"]
    assert git(project, "rev-parse", BRANCH) == head
    assert git(project, "status", "--porcelain") == status_before

    # An invalid branch name is bad input: exit 2, one line, nothing done.
    bad = run("merge", "--into", "no..good")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "invalid branch name" in bad.stderr
    assert run("teardown").returncode == 0


def test_a_failing_test_stops_at_the_task_that_broke_it(project: Path, run: Run) -> None:
    base = git(project, "rev-parse", "HEAD")
    _finish_epic(run)
    result = run("merge", "--test", "test ! -f out/C.txt")
    assert result.returncode == 1, result.stderr + result.stdout
    assert "test failed  C: Make C" in result.stdout
    assert "merge stopped at task C" in result.stderr
    assert "exit 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # What passed before C stays; C's merge was taken back; D was never tried.
    assert _first_parent_subjects(project, base) == ["Merge A: Make A", "Merge B: Make B"]
    files = set(git(project, "ls-tree", "-r", "--name-only", BRANCH).split())
    assert {"out/A.txt", "out/B.txt"} <= files
    assert "out/C.txt" not in files
    assert not any("merge-worktree" in p for p in _worktree_paths(project))
    assert not (project / ".swarm" / "merge-worktree").exists()

    # The JSON report of a re-run names the task, the exit code and the test's last lines.
    code, data, _ = _merge_json(run, "--test", "echo checking; test ! -f out/C.txt")
    assert code == 1
    assert data["failed"]["task"] == "C"
    assert data["failed"]["exit_code"] == 1
    assert data["failed"]["output"] == ["checking"]
    assert data["merged"] == []
    assert [s["task"] for s in data["skipped"]] == ["A", "B"]
    assert run("teardown").returncode == 0


def test_a_conflict_names_the_task_and_the_file(project: Path, run: Run, tmp_path: Path) -> None:
    base = git(project, "rev-parse", "HEAD")
    _finish_epic(run)
    # Someone already put a different out/A.txt on the integration branch (in a worktree of their own).
    side = tmp_path / "side"
    git(project, "worktree", "add", "-q", "-b", BRANCH, str(side), base)
    (side / "out").mkdir()
    (side / "out" / "A.txt").write_text("not what the agent wrote\n")
    git(side, "add", "-A")
    git(side, "commit", "-q", "-m", "a conflicting A")
    git(project, "worktree", "remove", str(side))
    before = git(project, "rev-parse", BRANCH)

    code, data, stderr = _merge_json(run)
    assert code == 1
    assert data["failed"]["task"] == "A"
    assert data["failed"]["conflicts"] == ["out/A.txt"]
    assert "out/A.txt" in data["failed"]["reason"]
    assert "merge stopped at task A" in stderr
    assert "out/A.txt" in stderr
    assert data["merged"] == []
    assert data["head"] == before == git(project, "rev-parse", BRANCH)
    assert not any("merge-worktree" in p for p in _worktree_paths(project))
    assert run("teardown").returncode == 0


def test_no_swarm_is_bad_input(project: Path, run: Run) -> None:
    result = run("merge")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("swarm: ")


def test_merge_epic_builds_that_epics_integration_branch(project: Path, run: Run) -> None:
    base = git(project, "rev-parse", "HEAD")
    for sid, deps in {"X": [], "Y": ["X", "A"]}.items():
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        text = f"---\nid: {sid}\nepic: E2\ntitle: Make {sid}\n{dep_line}---\n\n```file out/{sid}.txt\n{sid}\n```\n"
        (project / "specs" / f"{sid}.md").write_text(text)
    _finish_epic(run)
    second = run("launch", "E2", "--command", DEMO_AGENT, "--wait", "--timeout", "90")
    assert second.returncode == 0, second.stderr + second.stdout

    code, report, err = _merge_json(run, "--epic", "E2")
    assert code == 0, err
    assert report["branch"] == "swarm/E2/integration"
    assert [m["task"] for m in report["merged"]] == ["X", "Y"]
    assert report["skipped"] == []  # E1's tasks are not this epic's: not even listed
    subjects = git(project, "log", "--first-parent", "--reverse", "--format=%s", f"{base}..swarm/E2/integration")
    assert subjects.splitlines() == ["Merge X: Make X", "Merge Y: Make Y"]
    files = set(git(project, "ls-tree", "-r", "--name-only", "swarm/E2/integration").split())
    assert {"out/X.txt", "out/Y.txt", "out/A.txt"} <= files  # A came with Y, which was built on it

    code, whole, err = _merge_json(run)  # without --epic: every done task of the swarm, on its first epic's branch
    assert code == 0, err
    assert whole["branch"] == BRANCH
    assert sorted(m["task"] for m in whole["merged"]) == ["A", "B", "C", "D", "X", "Y"]

    for bad, word in ((("--epic", "E9"), "not in swarm"), (("--swarm", "sw-nope"), "no swarm")):
        refused = run("merge", *bad)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert word in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert run("teardown").returncode == 0
