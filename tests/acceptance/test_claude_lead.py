"""Claude Code as the lead, end to end: the real Claude Code CLI, given the lead's tools the way the README says
(`swarm init --claude`, `claude mcp add swarm -- swarm mcp --lead`), runs against the scripted stand-in for the
Anthropic API (no API key), whose "model" is a script of lead tool calls: launch an epic of command agents, wait
until an agent asks, answer it with msg_reply, wait until the epic is finished, tear down.

./scripts/test installs the CLI into .cache/claude-code (npm); a missing CLI fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from swarm.runtime.tmux import private_sessions, stop_private_server
from tests.acceptance.conftest import git
from tests.acceptance.test_claude_agent import CLAUDE_BIN, claude_env, mock_api
from tests.helpers import swarm_cli, write_spec

__all__ = ["mock_api"]  # the fixture, used by name

#: The agent of every task: A asks the lead which colour to use and writes the answer; B just writes a file.
AGENT = (
    'if [ "$SWARM_TASK_ID" = A ]; then answer=$(swarm msg ask "which colour?" --timeout 120) '
    '&& echo "$answer" > colour.txt; else echo "$SWARM_TASK_ID" > "$SWARM_TASK_ID.txt"; fi'
)


#: Claude Code in print mode, as the agent template runs it.
LEAD_ARGV = (
    *("claude", "-p", "--model", "sonnet", "--permission-mode", "bypassPermissions"),
    *("--output-format", "stream-json", "--verbose"),
)


def tool(name: str, **arguments: object) -> str:
    """One step of the lead's script: a call of a tool of the `swarm` MCP server."""
    return f"TOOL: mcp__swarm__{name} {json.dumps(arguments)}"


def test_claude_code_leads_a_swarm(tmp_path: Path, mock_api: tuple[int, Path]) -> None:
    assert (CLAUDE_BIN / "claude").exists(), (
        f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it (npm install @anthropic-ai/claude-code)"
    )
    port, log = mock_api
    repo = tmp_path / "proj"
    write_spec(repo / "specs", "A", "E1", title="Pick a colour", extra="priority: 1")
    write_spec(repo / "specs", "B", "E1", title="Write B")
    git(repo, "init", "-q", "-b", "main")
    home = tmp_path / "home"
    home.mkdir()
    sock = f"swarm-claude-lead-{os.getpid()}"
    env = {
        **claude_env(home, port, sock, also=str(Path(sys.executable).parent)),
        # Print mode otherwise starts the first turn before the MCP servers are connected.
        "MCP_CONNECTION_NONBLOCKING": "false",
        "MCP_CONNECT_TIMEOUT_MS": "60000",
        "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
    }
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")} | env
    init = swarm_cli("init", "--claude", cwd=repo, env=env)
    assert init.returncode == 0, init.stderr
    assert "claude mcp add swarm -- swarm mcp --lead" in init.stdout
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    # The README's line, with this checkout's interpreter for `swarm`.
    added = subprocess.run(
        ["claude", "mcp", "add", "swarm", "--", sys.executable, "-m", "swarm", "mcp", "--lead"],
        cwd=repo,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    script = "\n".join(
        [
            "Lead the swarm on epic E1.",
            tool("swarm_launch", epic="E1", agents=1, command=AGENT),
            # Each returns once agent-1 asks (the second at once then): twice, for a slow machine.
            tool("swarm_status", wait_s=25),
            tool("swarm_status", wait_s=25),
            tool("questions"),
            tool("msg_reply", seq=1, text="blue"),  # the first entry on the thread: agent-1's question
            # Each returns once the epic is finished.
            tool("swarm_status", wait_s=25),
            tool("swarm_status", wait_s=25),
            tool("swarm_teardown"),
            "",
        ]
    )
    try:
        lead = subprocess.run(
            [*LEAD_ARGV],
            cwd=repo,
            env=full_env,
            input=script,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert lead.returncode == 0, lead.stderr + lead.stdout[-3000:]
        events = [json.loads(line) for line in lead.stdout.splitlines() if line.startswith("{")]
        started = next(e for e in events if e.get("type") == "system" and e.get("subtype") == "init")
        assert "swarm" in started["slash_commands"]  # `swarm init --claude`'s /swarm
        assert {"name": "swarm", "status": "connected"} in started["mcp_servers"]
        result = events[-1]
        assert result["type"] == "result"
        assert result["result"] == "DONE after 8 steps", lead.stdout[-3000:]

        status = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)
        assert {t["id"]: t["state"] for t in status["tasks"]} == {"A": "done", "B": "done"}
        commit_a = next(t["commit"] for t in status["tasks"] if t["id"] == "A")
        assert git(repo, "show", f"{commit_a}:colour.txt") == "blue"
        assert status["swarm"]["ended_at"] is not None  # torn down by the lead
        entries = [
            json.loads(line) for line in swarm_cli("msg", "list", "--json", cwd=repo, env=env).stdout.splitlines()
        ]
        question = next(e for e in entries if e["type"] == "question")
        answer = next(e for e in entries if e["type"] == "answer")
        assert (question["seq"], question["author"], question["to"]) == (1, "agent-1", "lead")
        assert (answer["author"], answer["to"], answer["reply_to"], answer["body"]) == ("lead", "agent-1", 1, "blue")
        assert private_sessions(sock) == []
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert any("mcp__swarm__swarm_launch" in r["tools"] for r in requests)
    finally:
        stop_private_server(sock)
