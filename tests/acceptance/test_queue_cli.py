"""``swarm queue`` end to end through the real command, and the JSON shapes scripts rely on (docs/contract.md §8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import swarm_cli, write_spec


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a diamond epic E1 (A -> B, C -> D) queued."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    specs = root / "specs"
    write_spec(specs, "A", extra="priority: 1")
    write_spec(specs, "B", depends_on=["A"])
    write_spec(specs, "C", depends_on=["A"], extra="requires: [gpu]")
    write_spec(specs, "D", depends_on=["B", "C"], extra="max_attempts: 1")
    result = swarm_cli("queue", "init", "--epic", "E1", "--max-agents", "2", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["added"] == ["A", "B", "C", "D"]
    assert data["ready"] == ["A"]
    return root


def run_json(repo: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run a command with --json and parse its output; the command must succeed."""
    result = swarm_cli(*args, "--json", cwd=repo, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_claim_json_shape(repo: Path) -> None:
    got = run_json(repo, "queue", "claim", "--agent-id", "agent-1")
    assert set(got) == {"task"}
    task = got["task"]
    assert {"id", "title", "prompt", "lease_token", "lease_until", "attempt"} <= set(task)
    assert task["id"] == "A"
    assert task["attempt"] == 1
    assert task["prompt"] == "Do the thing."
    assert task["lease_until"].endswith("Z")
    assert run_json(repo, "queue", "claim", "--agent-id", "agent-2") == {"task": None}


def test_full_cycle_with_identity_from_environment(repo: Path) -> None:
    a = run_json(repo, "queue", "claim", "--agent-id", "agent-1")["task"]
    env = {"SWARM_AGENT_ID": "agent-1", "SWARM_TASK_ID": "A", "SWARM_LEASE_TOKEN": a["lease_token"]}
    beat = run_json(repo, "queue", "heartbeat", "--ttl", "600", env=env)
    assert beat["task_id"] == "A"
    done = run_json(repo, "queue", "release", "--completed", "--commit", "abc123", "--cost-usd", "0.5", env=env)
    assert done == {"task_id": "A", "outcome": "completed", "state": "done", "promoted": ["B", "C"]}

    b = run_json(repo, "queue", "claim", "--agent-id", "agent-1")["task"]
    assert b["id"] == "B"  # C requires gpu
    c = run_json(repo, "queue", "claim", "--agent-id", "agent-2", "--capabilities", "gpu,python")["task"]
    assert c["id"] == "C"
    returned = run_json(
        repo,
        "queue",
        "release",
        "--agent-id",
        "agent-2",
        "--spec-id",
        "C",
        "--lease-token",
        c["lease_token"],
        "--returned",
    )
    assert returned["state"] == "ready"
    failed = run_json(
        repo,
        "queue",
        "release",
        "--agent-id",
        "agent-1",
        "--task-id",
        "B",
        "--lease-token",
        b["lease_token"],
        "--failed",
        "tests fail",
    )
    assert failed["state"] == "ready"

    status = run_json(repo, "queue", "status")
    assert status["counts"] == {"blocked": 1, "ready": 2, "claimed": 0, "done": 1, "dead": 0, "cancelled": 0}
    by_id = {t["id"]: t for t in status["tasks"]}
    for key in ("id", "title", "state", "owner", "attempts", "depends_on", "commit", "cost_usd"):
        assert key in by_id["A"]
    assert by_id["A"]["commit"] == "abc123"
    assert by_id["A"]["cost_usd"] == 0.5
    assert by_id["A"]["owner"] == "agent-1"
    assert by_id["D"]["depends_on"] == ["B", "C"]
    assert by_id["B"]["last_error"] == "tests fail"

    events = swarm_cli("queue", "events", "A", "--json", cwd=repo)
    trail = [json.loads(line)["to"] for line in events.stdout.splitlines()]
    assert trail == ["ready", "claimed", "done"]


def test_lease_lost_exits_1(repo: Path) -> None:
    a = run_json(repo, "queue", "claim", "--agent-id", "agent-1")["task"]
    run_json(repo, "queue", "cancel", "A")
    for verb in (["heartbeat"], ["release", "--completed"]):
        result = swarm_cli(
            "queue",
            *verb,
            "--agent-id",
            "agent-1",
            "--task-id",
            "A",
            "--lease-token",
            a["lease_token"],
            cwd=repo,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("swarm: lease lost on task A")
        assert result.stderr.count("\n") == 1


class_cases = [
    (["queue", "release", "--agent-id", "a1", "--task-id", "A", "--lease-token", "t"], "exactly one outcome"),
    (
        [
            "queue",
            "release",
            "--agent-id",
            "a1",
            "--task-id",
            "A",
            "--lease-token",
            "t",
            "--completed",
            "--returned",
        ],
        "exactly one outcome",
    ),
    (
        [
            "queue",
            "release",
            "--agent-id",
            "a1",
            "--task-id",
            "A",
            "--lease-token",
            "t",
            "--returned",
            "--commit",
            "x",
        ],
        "--commit goes with --completed",
    ),
    (["queue", "claim", "--agent-id", "bad agent"], "invalid agent id"),
    (["queue", "cancel", "NOPE"], "no task 'NOPE'"),
    (["queue", "retry", "A"], "only dead or cancelled"),
    (["queue", "add", "--title", "x", "--depends-on", "GHOST"], "depends on GHOST"),
    (["queue", "add", "--title", "x", "--id", "A"], "already queued"),
    (["queue", "status", "--db", "mysql://x"], "unsupported database URL"),
]


@pytest.mark.parametrize(("args", "message"), class_cases, ids=[m for _, m in class_cases])
def test_bad_input_exits_2_with_one_line(repo: Path, args: list[str], message: str) -> None:
    result = swarm_cli(*args, cwd=repo)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_commands_before_init_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    result = swarm_cli("queue", "claim", "--agent-id", "agent-1", cwd=tmp_path)
    assert result.returncode == 2
    assert "swarm queue init" in result.stderr
    assert not (tmp_path / ".swarm").exists()


def test_add_cancel_retry_reap(repo: Path) -> None:
    added = run_json(repo, "queue", "add", "--title", "Fix the typo", "--body", "In README", "--priority", "9")
    assert added == {"id": "Q0005", "epic": "E1", "state": "ready"}
    top = run_json(repo, "queue", "claim", "--agent-id", "agent-1")["task"]
    assert top["id"] == "Q0005"
    assert top["prompt"] == "In README"
    dep = run_json(repo, "queue", "add", "--title", "after", "--id", "LATER", "--depends-on", "Q0005")
    assert dep["state"] == "blocked"
    assert run_json(repo, "queue", "cancel", "LATER") == {
        "task_id": "LATER",
        "from": "blocked",
        "state": "cancelled",
    }
    assert run_json(repo, "queue", "retry", "LATER")["state"] == "blocked"
    assert run_json(repo, "queue", "reap") == {"reaped": []}
    short = run_json(repo, "queue", "claim", "--agent-id", "agent-2", "--ttl", "0.001")["task"]
    assert short["id"] == "A"
    assert run_json(repo, "queue", "reap")["reaped"] == [{"task_id": "A", "owner": "agent-2", "state": "ready"}]


def test_db_flag_and_env_select_the_database(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    url = f"sqlite:///{other}"
    result = swarm_cli("queue", "init", "--epic", "E1", "--db", url, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert other.exists()
    status = run_json(repo, "queue", "status", env={"SWARM_DATABASE_URL": url})
    assert status["counts"]["ready"] == 1
    assert (other.stat().st_mode & 0o777) == 0o600
