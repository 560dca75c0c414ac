"""Conversations survive interruptions (docs/contract.md §3): the real Claude Code CLI, run by a real swarm against
the scripted Anthropic API, is stopped by ``teardown --now`` in the middle of a task; the next launch's attempt
continues that conversation (``claude -p --resume <the recorded session id>``) with a prompt that says it was
interrupted, and the API sees the first run's messages again.

./scripts/test installs the CLI into .cache/claude-code (npm); a missing CLI fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import git
from tests.acceptance.test_claude_agent import CLAUDE_BIN, claude_env, mock_api  # noqa: F401  (mock_api: a fixture)
from tests.helpers import retry_until, swarm_cli


def _requests(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["teardown --now", "SIGTERM"])
def test_an_interrupted_task_resumes_its_conversation(
    tmp_path: Path,
    mock_api: tuple[int, Path],  # noqa: F811
    how: str,
) -> None:
    """``teardown --now`` then launch, or a signal to the worker (which the monitor restarts)."""
    assert (CLAUDE_BIN / "claude").exists(), f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it"
    port, log = mock_api
    go = tmp_path / "go"  # the second step waits for it: the first run is stopped while it waits
    repo = tmp_path / "proj"
    (repo / "specs").mkdir(parents=True)
    (repo / "README.md").write_text("# proj\n")
    (repo / "specs" / "A.md").write_text(
        "---\nid: A\nepic: E1\ntitle: Three steps\n---\n"
        "RUN: mkdir -p out && echo one >> out/steps.txt\n"
        f"RUN: test -f {go} || sleep 120\n"
        # A worker restarted after a signal finds the first step's file stashed as leftovers (the prompt says
        # where the work was saved): the last step does not need it.
        "RUN: mkdir -p out && echo three >> out/steps.txt\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    home = tmp_path / "home"
    home.mkdir()
    sock = f"swarm-resume-{os.getpid()}"
    env = {
        **claude_env(home, port, sock),
        # The model waits in a sleep: the monitor must not take that for a stall; a signalled worker is restarted
        # at once.
        "SWARM_SWARM_STALL_SECONDS": "600",
        "SWARM_SWARM_RESTART_BACKOFF_SECONDS": "0.2",
        "SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3",
    }
    launch = ("launch", "E1", "--agent", "claude", "--model", "sonnet", "--agents", "1")
    logs = repo / ".swarm" / "logs" / "agent-1.log"
    try:
        first = swarm_cli(*launch, cwd=repo, env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        # The model asked for the waiting step: the first step's result came back (done == 1).
        retry_until(lambda: any(r["done"] == 1 for r in _requests(log)), seconds=120, interval=0.2)
        raw = logs.with_suffix(".jsonl").read_text().splitlines()
        session = next(e["session_id"] for e in map(json.loads, raw) if e.get("subtype") == "init")
        fresh = len(_requests(log))
        if how == "teardown --now":
            down = swarm_cli("teardown", "--now", cwd=repo, env=env, timeout=120)
            assert down.returncode == 0, down.stderr
            go.touch()
            again = swarm_cli(*launch, "--wait", "--timeout", "180", cwd=repo, env=env, timeout=240)
            assert again.returncode == 0, again.stderr + logs.read_text()
        else:
            status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
            os.kill(next(a["pid"] for a in status["agents"] if a["id"] == "agent-1"), signal.SIGTERM)
            go.touch()

            def finished() -> bool:
                now = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
                return bool(now["tasks"][0]["state"] == "done")

            retry_until(finished, seconds=180, interval=0.5)
        events = swarm_cli("queue", "events", "A", "--json", cwd=repo, env=env)
        assert "returned: " in events.stdout, events.stdout + events.stderr
        status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
        task = status["tasks"][0]
        assert task["state"] == "done", task
        assert "three" in git(repo, "show", f"{task['commit']}:out/steps.txt")
        shown = logs.read_text()
        assert f"A: resuming the interrupted conversation {session}" in shown
        # The retry's first request carries the first run's conversation: both prompts' steps (3 + 3) and the
        # first step's result; a fresh start would show 3 steps and none done.
        resumed = _requests(log)[fresh]
        assert (resumed["runs"], resumed["done"]) == (6, 1), resumed
        prompts = sorted((repo / ".swarm" / "prompts" / "agent-1").glob("A-*.md"))
        assert prompts
        assert "## You were interrupted" in prompts[-1].read_text()
        done = swarm_cli("teardown", cwd=repo, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        stop_private_server(sock)


def test_keep_context_continues_the_agents_conversation_across_tasks(
    tmp_path: Path,
    mock_api: tuple[int, Path],  # noqa: F811
) -> None:
    assert (CLAUDE_BIN / "claude").exists(), f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it"
    port, log = mock_api
    repo = tmp_path / "proj"
    (repo / "specs").mkdir(parents=True)
    (repo / "swarm.toml").write_text("[agent]\nkeep_context = true\n")
    (repo / "specs" / "A.md").write_text(
        "---\nid: A\nepic: E1\ntitle: First\npriority: 2\n---\nRUN: mkdir -p out && echo a > out/a.txt\n"
    )
    (repo / "specs" / "B.md").write_text("---\nid: B\nepic: E1\ntitle: Second\n---\nRUN: echo b > out/b.txt\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    home = tmp_path / "home"
    home.mkdir()
    sock = f"swarm-context-{os.getpid()}"
    env = {
        **claude_env(home, port, sock),
    }
    logs = repo / ".swarm" / "logs" / "agent-1.log"
    try:
        launched = swarm_cli(
            "launch",
            "E1",
            "--agent",
            "claude",
            "--agents",
            "1",
            "--wait",
            "--timeout",
            "180",
            cwd=repo,
            env=env,
            timeout=240,
        )
        assert launched.returncode == 0, launched.stderr + (logs.read_text() if logs.exists() else "")
        status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
        assert [t["state"] for t in status["tasks"]] == ["done", "done"]
        raw = logs.with_suffix(".jsonl").read_text().splitlines()
        first = next(e["session_id"] for e in map(json.loads, raw) if e.get("subtype") == "init")
        assert f"B: continuing this agent's conversation {first} (keep_context)" in logs.read_text()
        # B's first request carries A's conversation: A's step and its result, then B's step.
        requests = _requests(log)
        assert [(r["runs"], r["done"]) for r in requests] == [(1, 0), (1, 1), (2, 1), (2, 2)], requests
        done = swarm_cli("teardown", cwd=repo, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        stop_private_server(sock)
