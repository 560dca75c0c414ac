"""docs/contract.md §3 "done means verified" through the real ``swarm`` command: a spec's verify that fails
keeps its task from being done, and ``swarm status`` and ``swarm queue status`` say why."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.conftest import Run, status_json


def test_a_failed_verify_shows_its_reason_in_status(project: Path, run: Run) -> None:
    spec = project / "specs" / "A.md"
    check = "echo 'FAILED tests/test_x.py::test_y [assert 2 == 3]'; exit 3"
    spec.write_text(
        spec.read_text().replace("title: Make A\n", f"title: Make A\nmax_attempts: 1\nverify: {json.dumps(check)}\n")
    )
    launched = run("launch", "E1", "--agents", "1", "--command", "echo made > made.txt", "--wait", timeout=240)
    assert launched.returncode == 1, launched.stdout + launched.stderr  # not every task is done
    task = next(t for t in status_json(run)["tasks"] if t["id"] == "A")
    assert task["state"] == "dead"
    reason = "verify failed (exit 3): FAILED tests/test_x.py::test_y [assert 2 == 3]"
    assert task["last_error"] == reason
    shown = run("status", env={"COLUMNS": "240"})
    assert shown.returncode == 0, shown.stderr
    assert "verify failed (exit 3): FAILED tests/test_x.py::test_y [assert 2 == 3]" in shown.stdout
    queued = run("queue", "status", env={"COLUMNS": "240"})
    assert queued.returncode == 0, queued.stderr
    assert f"Make A [{reason}]" in queued.stdout
    assert run("teardown", "--now").returncode == 0
