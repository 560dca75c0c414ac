"""Counted nouns in messages read as English: no "task(s)", no "a 8-task", no "all 1 task"."""

from __future__ import annotations

import pytest

from swarm.words import all_of, article, did, plural, plural_of


@pytest.mark.parametrize(
    ("count", "word", "expected"),
    [
        (0, "task", "0 tasks"),
        (1, "task", "1 task"),
        (2, "task", "2 tasks"),
        (1, "process", "1 process"),
        (3, "process", "3 processes"),
        (2, "branch", "2 branches"),
        (2, "undone dependency", "2 undone dependencies"),
        (2, "key", "2 keys"),
    ],
)
def test_plural(count: int, word: str, expected: str) -> None:
    assert plural(count, word) == expected


def test_plural_of_a_verb() -> None:
    assert plural_of("is", 1) == "is"
    assert plural_of("is", 4) == "are"


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, "a"),
        (3, "a"),
        (8, "an"),
        (11, "an"),
        (18, "an"),
        (80, "an"),
        (83, "an"),
        (100, "a"),
        (110, "a"),
        (180, "a"),
        (800, "an"),
        (1100, "a"),
        (8000, "an"),
        (11000, "an"),
        (18500, "an"),
        (110000, "a"),
    ],
)
def test_article(count: int, expected: str) -> None:
    assert article(count) == expected


def test_all_of() -> None:
    assert all_of(1, "task") == "the only task"
    assert all_of(4, "task") == "all 4 tasks"


def test_did_leaves_out_what_was_done_zero_times() -> None:
    assert did(("closed", 2, "session"), ("removed", 0, "worktree")) == "closed 2 sessions"
    assert did(("closed", 1, "session"), ("removed", 3, "worktree")) == "closed 1 session; removed 3 worktrees"
    assert did(("closed", 0, "session"), ("removed", 0, "worktree")) == ""


def test_teardown_of_a_finished_swarm_does_not_report_closing_no_session(capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli.launch_cmd import _print_report
    from swarm.launcher import TeardownReport

    _print_report(TeardownReport(swarm_id="sw-1", worktrees_removed=["w1", "w2", "w3"], ended=True))
    out = capsys.readouterr().out
    assert "removed 3 worktrees" in out
    assert "closed" not in out
    assert "(s)" not in out
    _print_report(TeardownReport(swarm_id="sw-1", sessions_killed=["s1"], worktrees_removed=["w1"]))
    assert "closed 1 session; removed 1 worktree\n" in capsys.readouterr().out
