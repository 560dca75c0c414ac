"""The `claude` template end to end: the real Claude Code CLI, run by a real swarm, against the scripted
stand-in for the Anthropic API from the shared tools (no API key). It proves the template's flags, the prompt
on stdin, stream-json cost accounting, the `swarm` MCP server reached through --mcp-config, and the log showing
the events as readable lines with the raw events beside it.

./scripts/test installs the CLI into .cache/claude-code (npm); a missing CLI fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.agents import COMMAND_TIMEOUT_SECONDS
from swarm.runtime.tmux import private_sessions as tmux_sessions
from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import git
from tests.helpers import REPO_ROOT, retry_until, swarm_cli

CLAUDE_BIN = REPO_ROOT / ".cache" / "claude-code" / "node_modules" / ".bin"


def claude_env(home: Path, port: int, tmux_socket: str, *, also: str = "") -> dict[str, str]:
    """What the real Claude Code CLI needs to work against the scripted API on ``port``: the CLI (and ``also``)
    first on PATH, its own HOME, a key that is none, no traffic beyond loopback, and swarm's private
    ``tmux_socket``."""
    return {
        "PATH": os.pathsep.join(p for p in (str(CLAUDE_BIN), also, os.environ.get("PATH", "")) if p),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": "not-a-real-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "IS_SANDBOX": "1",
        "ENABLE_TOOL_SEARCH": "false",
        "SWARM_TMUX_SOCKET": tmux_socket,
    }


MOCK = REPO_ROOT.parent / "shared" / "tools" / "mock_anthropic.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def mock_api(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The scripted Messages API on a free loopback port; stopped by PID at the end."""
    assert MOCK.is_file(), f"the scripted API stand-in is missing: {MOCK}"
    port = _free_port()
    log = tmp_path / "mock.jsonl"
    proc = subprocess.Popen([sys.executable, str(MOCK), str(port), str(log)])
    try:

        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        retry_until(up, seconds=15)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_claude_template_runs_the_real_cli(tmp_path: Path, mock_api: tuple[int, Path]) -> None:
    assert (CLAUDE_BIN / "claude").exists(), (
        f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it (npm install @anthropic-ai/claude-code)"
    )
    port, log = mock_api
    repo = tmp_path / "proj"
    (repo / "specs").mkdir(parents=True)
    (repo / "README.md").write_text("# proj\n")
    (repo / "specs" / "A.md").write_text(
        "---\nid: A\nepic: E1\ntitle: Write a file and say hello\n---\n"
        "RUN: mkdir -p out && echo written-by-claude > out/A.txt\n"
        'RUN: echo "$BASH_DEFAULT_TIMEOUT_MS $BASH_MAX_TIMEOUT_MS" > out/timeouts.txt\n'
        'TOOL: mcp__swarm__msg_send {"text": "hello from claude", "to": "lead"}\n'
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    home = tmp_path / "home"
    home.mkdir()
    # The swarm MCP server starts slowly here, as it does on a busy machine with several agents starting at
    # once: Claude Code's own default (MCP_CONNECT_TIMEOUT_MS, 5 s) would start the task without the swarm
    # tools; the template's longer wait must hold.
    slow = tmp_path / "slow-mcp"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\nif sys.orig_argv[1:4] == ['-m', 'swarm', 'mcp']:\n    time.sleep(8)\n"
    )
    sock = f"swarm-claude-{os.getpid()}"
    env = {
        "PYTHONPATH": str(slow),
        **claude_env(home, port, sock),
    }
    try:
        launched = swarm_cli(
            "launch",
            "E1",
            "--agent",
            "claude",
            "--model",
            "sonnet",
            "--agents",
            "1",
            "--wait",
            "--timeout",
            "180",
            cwd=repo,
            env=env,
            timeout=240,
        )
        logs = repo / ".swarm" / "logs" / "agent-1.log"
        assert launched.returncode == 0, launched.stderr + (logs.read_text() if logs.exists() else "")
        status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
        task = status["tasks"][0]
        assert task["state"] == "done"
        assert git(repo, "show", f"{task['commit']}:out/A.txt") == "written-by-claude"
        assert git(repo, "log", "-1", "--format=%s", task["commit"]) == "A: Write a file and say hello"
        # The Bash tool lets a command run longer than the prompt's `swarm msg ask --timeout` waits.
        limit = str(COMMAND_TIMEOUT_SECONDS * 1000)
        assert git(repo, "show", f"{task['commit']}:out/timeouts.txt") == f"{limit} {limit}"
        # Claude Code's own worktree, subagent, task-list and scheduling tools are not offered (the init event
        # lists the tools of the session; "Task" there is the subagent tool "Agent").
        kept = logs.with_suffix(".jsonl").read_text()  # the raw events, beside the readable log
        events = [json.loads(line) for line in kept.splitlines() if line.startswith('{"type":"system"')]
        offered = next(e["tools"] for e in events if e.get("subtype") == "init")
        assert "Bash" in offered
        assert not [
            t for t in offered if t in {"Task", "Agent", "Workflow", "ScheduleWakeup"} or t.endswith("Worktree")
        ]
        assert not [t for t in offered if t.startswith(("Task", "Cron"))]
        assert (task["cost_usd"] or 0) > 0  # from the stream-json result line
        assert (task["tokens"] or 0) > 0
        # The agent reached the swarm MCP server (proving its identity with its token) and wrote on the thread.
        entries = [
            json.loads(line) for line in swarm_cli("msg", "list", "--json", cwd=repo, env=env).stdout.splitlines()
        ]
        hello = [e for e in entries if e["body"] == "hello from claude"]
        assert [(e["author"], e["to"]) for e in hello] == [("agent-1", "lead")]
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert any("mcp__swarm__msg_send" in r["tools"] for r in requests)
        # The log (the pane gets the same bytes: tests/integration/test_worker_progress.py) reads as what the agent
        # did; the raw stream-json events are kept beside it.
        shown = logs.read_text()
        assert "→ Bash: mkdir -p out && echo written-by-claude > out/A.txt\n" in shown
        assert '→ mcp__swarm__msg_send: {"text": "hello from claude", "to": "lead"}\n' in shown
        assert "■ done: " in shown
        assert not [line for line in shown.splitlines() if line.startswith("{")]
        raw = swarm_cli("logs", "agent-1", "--raw", cwd=repo, env=env)
        assert raw.returncode == 0, raw.stderr
        events = [json.loads(line) for line in raw.stdout.splitlines()]
        assert events == [json.loads(line) for line in (logs.with_suffix(".jsonl")).read_text().splitlines()]
        assert events[-1]["type"] == "result"
        assert events[-1]["total_cost_usd"] == task["cost_usd"]
        down = swarm_cli("teardown", cwd=repo, env=env)
        assert down.returncode == 0, down.stderr
        assert tmux_sessions(sock) == []
    finally:
        stop_private_server(sock)
