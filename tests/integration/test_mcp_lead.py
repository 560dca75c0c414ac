"""``swarm mcp --lead`` driven end to end: the real server in a subprocess, spoken to by the MCP SDK's own stdio
client, in a real git repository, launching a real swarm of command agents on a private tmux server. Every tool's
JSON is compared with what the CLI prints with ``--json``."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from swarm import identity
from swarm.models import AgentRecord
from swarm.runtime.tmux import private_sessions, stop_private_server
from swarm.store import open_store
from tests.acceptance.conftest import git
from tests.helpers import swarm_cli, write_spec

pytestmark = pytest.mark.anyio

LEAD_TOOLS = {
    "swarm_launch",
    "swarm_status",
    "swarm_teardown",
    "queue_init",
    "queue_cancel",
    "queue_retry",
    "msg_list",
    "msg_wait",
    "msg_reply",
    "questions",
}
#: The agent: asks the lead which colour to use and writes the answer into the worktree (the task's change).
ASKING_AGENT = 'answer=$(swarm msg ask "which colour for $SWARM_TASK_ID?" --timeout 60) && echo "$answer" > colour.txt'


@pytest.fixture
def anyio_backend() -> str:
    """The SDK runs on asyncio in production (``anyio.run`` default); test on the same."""
    return "asyncio"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with epic E1 (one task, A) and epic E2 (B, then C after B)."""
    root = tmp_path / "proj"
    write_spec(root / "specs", "A", "E1", title="Pick a colour")
    write_spec(root / "specs", "B", "E2")
    write_spec(root / "specs", "C", "E2", depends_on=["B"])
    (root / "README.md").write_text("# proj\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    """A tmux server of this test's own; only it is stopped at the end."""
    name = f"swarm-lead-{uuid.uuid4().hex[:10]}"
    yield name
    stop_private_server(name)


def lead_env(tmux_socket: str) -> dict[str, str]:
    """The lead's environment: no agent identity, swarm's CLI on PATH (command agents call it), a fast pace."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SWARM_TMUX_SOCKET": tmux_socket,
        "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
        "SWARM_QUEUE_LEASE_TTL_SECONDS": "30",
    }


@asynccontextmanager
async def connect(cwd: Path, env: dict[str, str], command: list[str] | None = None) -> AsyncIterator[ClientSession]:
    """Start ``python -m swarm mcp --lead`` (or ``command``) in ``cwd`` and open an initialized session."""
    argv = command or [sys.executable, "-m", "swarm", "mcp", "--lead"]
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
    with (cwd.parent / "mcp-lead.log").open("a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def call(session: ClientSession, name: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; its result as the JSON value the tool returned."""
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name} failed: {error_text(result)}"
    structured = result.structured_content
    # Tools returning a list are wrapped by the SDK as {"result": [...]}.
    if isinstance(structured, dict) and set(structured) == {"result"} and isinstance(structured["result"], list):
        return structured["result"]
    return structured


def error_text(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def call_error(session: ClientSession, name: str, **arguments: Any) -> str:
    """Call a tool that must fail; the error text the lead reads."""
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name} should have failed, returned {result.structured_content!r}"
    return error_text(result)


def cli_json(repo: Path, env: dict[str, str], *args: str) -> Any:
    done = swarm_cli(*args, "--json", cwd=repo, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def shape(value: Any) -> Any:
    """The keys of a JSON value, nested: what 'the same JSON shape' means."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        # A list of objects by its first one; a list of plain values (or an empty list) just as a list.
        return [shape(value[0])] if value and isinstance(value[0], dict) else list
    return None


async def test_lead_launches_answers_watches_and_tears_down(repo: Path, tmux_socket: str) -> None:
    env = lead_env(tmux_socket)
    async with connect(repo, env) as session:
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == LEAD_TOOLS
        assert all(tool.description for tool in listed.tools)
        by_name = {tool.name: tool for tool in listed.tools}
        assert set(by_name["swarm_launch"].input_schema["properties"]) == {
            "epic",
            "agents",
            "agent",
            "model",
            "command",
            "fleet",
        }
        assert by_name["swarm_launch"].input_schema["required"] == ["epic"]
        assert set(by_name["msg_reply"].input_schema["required"]) == {"seq", "text"}

        launched = await call(session, "swarm_launch", epic="E1", agents=1, command=ASKING_AGENT)
        assert launched["queued"]["added"] == ["A"]
        assert [a["id"] for a in launched["agents"]] == ["agent-1"]
        assert len(launched["started_sessions"]) == 2  # the agent and the monitor
        # The lead's first wait starts at the thread's end: the question is the next entry addressed to it.
        waited = await call(session, "msg_wait")
        assert (waited["type"], waited["author"], waited["to"]) == ("question", "agent-1", "lead")
        # The agent's question holds the swarm: status returns as soon as it is open.
        watched = await call(session, "swarm_status", wait_s=25)
        assert [q["body"] for q in watched["questions"]] == ["which colour for A?"]
        assert not watched["swarm"]["finished"]
        asked = await call(session, "questions")
        assert asked == cli_json(repo, env, "status")["questions"]
        assert asked[0]["from"] == "agent-1"
    # The server has exited; the swarm it launched lives on in tmux, the agent still waiting for its answer.
    assert len([s for s in private_sessions(tmux_socket) if s.endswith("agent-1")]) == 1
    status = cli_json(repo, env, "status")
    assert status["agents"][0]["state"] == "working"
    assert shape(status) == shape(watched)
    # A resumed launch from the CLI prints the same JSON object as the tool.
    assert shape(cli_json(repo, env, "launch", "E1", "--command", ASKING_AGENT)) == shape(launched)

    async with connect(repo, env) as session:
        answer = await call(session, "msg_reply", seq=asked[0]["seq"], text="blue")
        assert (answer["author"], answer["to"], answer["type"]) == ("lead", "agent-1", "answer")
        assert await call(session, "questions") == []
        thread = await call(session, "msg_list")
        assert thread == [
            json.loads(line) for line in swarm_cli("msg", "list", "--json", cwd=repo, env=env).stdout.splitlines()
        ]
        assert [e["type"] for e in await call(session, "msg_list", type="answer")] == ["answer"]

        finished = await retry_until_async(session, "swarm_status", lambda s: s["swarm"]["finished"], wait_s=25)
        assert finished["counts"]["done"] == 1
        commit = finished["tasks"][0]["commit"]
        assert git(repo, "show", f"{commit}:colour.txt") == "blue"

        down = await call(session, "swarm_teardown")
        assert down["clean"]
        assert down["ended"]
        assert set(down) == set(cli_json(repo, env, "teardown"))
        assert private_sessions(tmux_socket) == []


async def retry_until_async(session: ClientSession, name: str, done: Any, **arguments: Any) -> Any:
    """Call ``name`` until ``done(result)``; a bounded number of bounded calls (each waits at most 25 s)."""
    for _ in range(8):
        result = await call(session, name, **arguments)
        if done(result):
            return result
    raise AssertionError(f"{name} never returned what was waited for; last: {result!r}")


async def test_queue_tools_match_the_cli(repo: Path, tmux_socket: str) -> None:
    env = lead_env(tmux_socket)
    async with connect(repo, env) as session:
        assert "no queue yet" in await call_error(session, "questions")
        queued = await call(session, "queue_init", epic="E2", max_agents=2)
        assert queued["added"] == ["B", "C"]
        assert queued["ready"] == ["B"]
        again = cli_json(repo, env, "queue", "init", "--epic", "E2")
        assert again["existing"] == ["B", "C"]
        assert shape(again) == shape(queued)

        cancelled = await call(session, "queue_cancel", task_id="B", reason="not now")
        assert cancelled == {"task_id": "B", "from": "ready", "state": "cancelled"}
        retried = await call(session, "queue_retry", task_id="B")
        assert retried == {"task_id": "B", "state": "ready"}
        assert cli_json(repo, env, "queue", "cancel", "C") == {"task_id": "C", "from": "blocked", "state": "cancelled"}
        assert cli_json(repo, env, "queue", "retry", "C") == {"task_id": "C", "state": "blocked"}
        unknown = await call_error(session, "queue_cancel", task_id="NOPE")
        assert "NOPE" in unknown
        assert "\n" not in unknown

        assert await call(session, "msg_wait", timeout_s=0.2) == {"timeout": True}
        assert (await call(session, "swarm_status"))["counts"]["ready"] == 1  # B; C waits for B
        unknown_epic = await call_error(session, "swarm_status", epic="E9")
        assert "epic 'E9' is not in swarm" in unknown_epic
        assert "\n" not in unknown_epic
    # The CLI's launch --json is a document alone: with --wait's progress it would not be.
    both = swarm_cli("launch", "E2", "--json", "--wait", cwd=repo, env=env)
    assert both.returncode == 2
    assert both.stderr.count("\n") == 1
    assert "--json and --wait" in both.stderr


async def test_lead_tools_refuse_an_agent(repo: Path, tmux_socket: str) -> None:
    env = lead_env(tmux_socket)
    # Before any database: an agent's identity in the environment is refused at once.
    agent_env = {**env, "SWARM_AGENT_ID": "agent-1", "SWARM_TOKEN": "secret"}
    async with connect(repo, agent_env) as session:
        refused = await call_error(session, "swarm_launch", epic="E1", command="true")
        assert "agent's identity" in refused
        assert "only the lead can" in refused
        assert "\n" not in refused
    assert not (repo / ".swarm" / "swarm.db").exists()

    # A database as launch leaves it: a swarm, its agent with a token.
    assert swarm_cli("queue", "init", "--epic", "E2", cwd=repo, env=env).returncode == 0
    store = open_store(f"sqlite:///{repo / '.swarm' / 'swarm.db'}")
    try:
        swarm = store.current_swarm()
        assert swarm is not None
        store.register_agent(AgentRecord(id="agent-1", swarm_id=swarm.id))
        token = identity.new_token()
        store.set_token_hash("agent-1", identity.hash_token(token))
    finally:
        store.close()

    # The agent's own token proves the agent, not the lead.
    async with connect(repo, {**env, "SWARM_AGENT_ID": "agent-1", "SWARM_TOKEN": token}) as session:
        refused = await call_error(session, "queue_cancel", task_id="B")
        assert "agent-1 cannot cancel tasks: only the lead can" in refused
        assert "\n" not in refused
        assert "only the lead can" in await call_error(session, "msg_reply", seq=1, text="x")

    # Started inside the agent, with its variables cleared: an ancestor carries them, which is enough.
    inside = {**env, "SWARM_ID": swarm.id, "SWARM_AGENT_ID": "agent-1"}
    wrapped = ["/bin/sh", "-c", f"env -u SWARM_ID -u SWARM_AGENT_ID {sys.executable} -m swarm mcp --lead; exit $?"]
    async with connect(repo, inside, command=wrapped) as session:
        refused = await call_error(session, "queue_retry", task_id="B")
        assert "this command was started by agent-1" in refused
        assert "cannot act as the lead" in refused
        assert "\n" not in refused
        assert "cannot act as the lead" in await call_error(session, "swarm_status")
