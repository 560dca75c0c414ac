"""``swarm mcp`` driven end to end: the real server in a subprocess, spoken to by the MCP SDK's own stdio client,
on a real SQLite database set up the way launch leaves it (a swarm, its tasks, an agent with a token)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from swarm import identity, threads
from swarm.models import AgentRecord, Message, Spec, TaskState
from swarm.store import Store, open_store
from tests.helpers import retry_until

pytestmark = pytest.mark.anyio

AGENT = "agent-1"
TOOLS = {
    "queue_claim",
    "queue_heartbeat",
    "queue_release",
    "queue_status",
    "queue_add",
    "msg_send",
    "msg_list",
    "msg_wait",
    "msg_ask",
}


@pytest.fixture
def anyio_backend() -> str:
    """The SDK runs on asyncio in production (``anyio.run`` default); test on the same."""
    return "asyncio"


@dataclass
class World:
    """A swarm's database as launch leaves it, and what an agent of it gets in its environment."""

    root: Path
    url: str
    swarm_id: str
    token: str
    store: Store

    def env(self, token: str | None = None) -> dict[str, str]:
        return {
            "SWARM_DATABASE_URL": self.url,
            "SWARM_ID": self.swarm_id,
            "SWARM_AGENT_ID": AGENT,
            "SWARM_TOKEN": token if token is not None else self.token,
        }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Tasks S1 (priority 2), S2 and S3 (S3 after S1) in swarm E1; agent-1 registered with a token."""
    url = f"sqlite:///{tmp_path / 'db' / 'swarm.db'}"
    store = open_store(url)
    try:
        swarm = store.ensure_swarm("E1")
        store.add_tasks(
            [
                Spec(id="S1", epic="E1", title="First", body="Do the first thing.", priority=2),
                Spec(id="S2", epic="E1", title="Second", body="Do the second thing."),
                Spec(id="S3", epic="E1", title="Third", body="Do the third thing.", depends_on=("S1",)),
            ],
            swarm_id=swarm.id,
        )
        store.register_agent(AgentRecord(id=AGENT, swarm_id=swarm.id))
        token = identity.new_token()
        store.set_token_hash(AGENT, identity.hash_token(token))
        yield World(root=tmp_path, url=url, swarm_id=swarm.id, token=token, store=store)
    finally:
        store.close()


@asynccontextmanager
async def connect(world: World, token: str | None = None) -> AsyncIterator[ClientSession]:
    """Start ``python -m swarm mcp`` with the agent's environment and open an initialized session."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm", "mcp"],
        env=world.env(token),
        cwd=world.root,  # not a git repository: no swarm.toml of the developer's is read
    )
    with (world.root / "mcp-server.log").open("a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def call(session: ClientSession, name: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; its result as the JSON value the tool returned."""
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name} failed: {error_text(result)}"
    structured = result.structured_content
    # Tools returning a list are wrapped by the SDK as {"result": [...]}.
    if isinstance(structured, dict) and set(structured) == {"result"} and name == "msg_list":
        return structured["result"]
    return structured


def error_text(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def call_error(session: ClientSession, name: str, **arguments: Any) -> str:
    """Call a tool that must fail; the error text the agent reads."""
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name} should have failed, returned {result.structured_content!r}"
    return error_text(result)


async def test_lists_the_design_tools_and_rechecks_the_token(world: World) -> None:
    async with connect(world) as session:
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == TOOLS
        assert len(listed.tools) == len(TOOLS)
        by_name = {tool.name: tool for tool in listed.tools}
        assert all(tool.description for tool in listed.tools)
        # docs/contract.md §7 parameter names, and the required ones only where the contract has no "?".
        assert set(by_name["queue_release"].input_schema["properties"]) == {
            "task_id",
            "lease_token",
            "outcome",
            "reason",
        }
        assert set(by_name["queue_release"].input_schema["required"]) == {"task_id", "lease_token", "outcome"}
        assert set(by_name["msg_wait"].input_schema["properties"]) == {"timeout_s", "from_agent", "reply_to"}
        assert set(by_name["msg_send"].input_schema["properties"]) == {"text", "to", "type", "thread"}
        assert set(by_name["queue_add"].input_schema["required"]) == {"title", "body"}
        assert "reply_to" in (by_name["msg_ask"].description or "")

        # The token is checked on every write, not only at startup: a relaunch re-keys agents.
        await call(session, "msg_send", text="still me")
        world.store.set_token_hash(AGENT, identity.hash_token(identity.new_token()))
        assert "wrong token for agent-1" in await call_error(session, "msg_send", text="still me?")
    assert [m.body for m in world.store.list_messages("team")] == ["still me"]


async def test_claim_heartbeat_complete(world: World) -> None:
    async with connect(world) as session:
        claimed = await call(session, "queue_claim")
        task = claimed["task"]
        assert task["id"] == "S1"  # highest priority first
        assert {"id", "title", "prompt", "lease_token", "lease_until", "attempt"} <= set(task)
        assert task["prompt"] == "Do the first thing."
        assert world.store.get_task("S1").owner == AGENT

        beat = await call(session, "queue_heartbeat", task_id="S1", lease_token=task["lease_token"])
        assert beat["task_id"] == "S1"
        assert beat["lease_until"] >= task["lease_until"]

        done = await call(session, "queue_release", task_id="S1", lease_token=task["lease_token"], outcome="completed")
        assert done["state"] == "done"
        assert done["promoted"] == ["S3"]
        assert world.store.get_task("S1").state == TaskState.DONE

        # The lease is spent: a second release is refused with the lease-lost line, and the server lives on.
        stale = await call_error(
            session, "queue_release", task_id="S1", lease_token=task["lease_token"], outcome="completed"
        )
        assert "lease lost on task S1" in stale
        assert "lease lost on task S1" in await call_error(
            session, "queue_heartbeat", task_id="S1", lease_token=task["lease_token"]
        )


async def test_release_failed_and_returned_then_nothing_to_claim(world: World) -> None:
    async with connect(world) as session:
        first = (await call(session, "queue_claim"))["task"]
        no_reason = await call_error(
            session, "queue_release", task_id=first["id"], lease_token=first["lease_token"], outcome="failed"
        )
        assert "needs a reason" in no_reason
        failed = await call(
            session,
            "queue_release",
            task_id=first["id"],
            lease_token=first["lease_token"],
            outcome="failed",
            reason="tests fail",
        )
        assert failed["state"] == "ready"  # attempts left: back after the backoff
        assert world.store.get_task(first["id"]).last_error == "tests fail"

        second = (await call(session, "queue_claim"))["task"]
        assert second["id"] == "S2"  # S1 waits out its backoff
        returned = await call(
            session, "queue_release", task_id="S2", lease_token=second["lease_token"], outcome="returned"
        )
        assert returned["state"] == "ready"
        s2 = world.store.get_task("S2")
        assert (s2.state, s2.owner) == (TaskState.READY, None)

        bad = await call_error(session, "queue_release", task_id="S2", lease_token="x", outcome="finished")
        assert "outcome" in bad

        world.store.cancel("S1")
        world.store.cancel("S2")
        assert await call(session, "queue_claim") == {"task": None}  # S3 is blocked behind S1


async def test_status_and_add(world: World) -> None:
    async with connect(world) as session:
        status = await call(session, "queue_status")
        # Clients that ignore structured content read the same object as JSON text.
        raw = await session.call_tool("queue_status", {})
        assert json.loads(error_text(raw)) == status
        assert status["counts"]["ready"] == 2
        assert status["counts"]["blocked"] == 1
        assert [t["id"] for t in status["tasks"]] == ["S1", "S2", "S3"]

        added = await call(session, "queue_add", title="Follow-up", body="Write the docs.", priority=5)
        assert added["id"] == "Q0004"
        assert added["state"] == "ready"
        blocked = await call(session, "queue_add", title="After S3", body="Then this.", depends_on=["S3"])
        assert (blocked["id"], blocked["state"]) == ("Q0005", "blocked")

        task = world.store.get_task("Q0004")
        assert (task.epic, task.title, task.body, task.priority) == ("E1", "Follow-up", "Write the docs.", 5)
        assert "Q0004" in {t.id for t in world.store.list_tasks(swarm_id=world.swarm_id)}
        # Member of the swarm, so the swarm's claims see it: the highest priority now.
        assert (await call(session, "queue_claim"))["task"]["id"] == "Q0004"

        unknown = await call_error(session, "queue_add", title="x", body="y", depends_on=["NOPE"])
        assert "depends on NOPE" in unknown


async def test_send_list_wait(world: World) -> None:
    async with connect(world) as session:
        sent = await call(session, "msg_send", text="hello team")
        assert sent["thread"] == "team"
        await call(session, "msg_send", text="are you there?", to="lead", type="question")
        entries = await call(session, "msg_list")
        assert [e["body"] for e in entries] == ["hello team", "are you there?"]
        first = entries[0]
        assert set(first) == {"seq", "thread", "author", "to", "type", "body", "reply_to", "created_at"}
        assert (first["seq"], first["author"], first["to"], first["type"]) == (sent["seq"], AGENT, None, "chat")
        assert [e["body"] for e in await call(session, "msg_list", type="question")] == ["are you there?"]
        assert [e["seq"] for e in await call(session, "msg_list", since=sent["seq"])] == [sent["seq"] + 1]
        assert "unknown message type" in await call_error(session, "msg_send", text="x", type="gossip")
        assert "unknown recipient" in await call_error(session, "msg_send", text="x", to="agent-9")

        # The first wait of an identity starts at the thread's end; it times out quickly when told to.
        assert await call(session, "msg_wait", timeout_s=0.5) == {"timeout": True}
        threads.send(world.store, AGENT, "my own words are not waited for")
        sent_by_lead = threads.send(world.store, "lead", "stop after this task", to=AGENT)
        got = await call(session, "msg_wait", timeout_s=10)
        assert (got["seq"], got["author"], got["to"]) == (sent_by_lead.seq, "lead", AGENT)
        assert got["body"] == "stop after this task"
        assert await call(session, "msg_wait", timeout_s=0.2, from_agent="lead") == {"timeout": True}


async def test_ask_times_out_then_gets_the_answer(world: World) -> None:
    async with connect(world) as session:
        unanswered = await call(session, "msg_ask", text="Anyone?", timeout_s=0.3)
        assert unanswered["answer"] is None
        assert world.store.get_message("team", unanswered["question"]).type == "question"

        def lead_answers() -> None:
            def asked() -> list[Message]:
                return [q for q in world.store.unanswered_questions("lead") if q.body == "May I change the schema?"]

            question = retry_until(asked, seconds=15)[0]
            threads.reply(world.store, "lead", question.seq, f"yes to #{question.seq}")

        helper = threading.Thread(target=lead_answers, daemon=True)
        helper.start()
        result = await call(session, "msg_ask", text="May I change the schema?", timeout_s=15)
        helper.join(timeout=5)
    question = world.store.get_message("team", result["question"])
    assert (question.author, question.recipient, question.type) == (AGENT, "lead", "question")
    answer = result["answer"]
    assert (answer["author"], answer["to"], answer["type"]) == ("lead", AGENT, "answer")
    assert (answer["reply_to"], answer["body"]) == (result["question"], f"yes to #{result['question']}")


async def test_wrong_token_refuses_every_write(world: World) -> None:
    async with connect(world, token="not-the-token") as session:
        # The server starts and answers; it is the writes that are refused, each with the one clear line.
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        writes: list[tuple[str, dict[str, Any]]] = [
            ("queue_claim", {}),
            ("queue_heartbeat", {"task_id": "S1", "lease_token": "x"}),
            ("queue_release", {"task_id": "S1", "lease_token": "x", "outcome": "returned"}),
            ("queue_add", {"title": "sneaky", "body": "nope"}),
            ("msg_send", {"text": "impostor"}),
            ("msg_wait", {"timeout_s": 0.1}),
            ("msg_ask", {"text": "impostor?", "timeout_s": 0.1}),
        ]
        for name, arguments in writes:
            text = await call_error(session, name, **arguments)
            assert "wrong token for agent-1" in text, (name, text)
        # Reading is not writing: the queue is visible.
        assert (await call(session, "queue_status"))["counts"]["ready"] == 2
    assert world.store.counts()["claimed"] == 0
    assert {t.id for t in world.store.list_tasks()} == {"S1", "S2", "S3"}
    assert world.store.list_messages("team") == []
    assert "wrong token for agent-1" in (world.root / "mcp-server.log").read_text(encoding="utf-8")


def test_waits_are_bounded_per_call() -> None:
    """A call never blocks longer than 25 s, whatever the agent asks for (clients time long calls out)."""
    from swarm.mcp_server import MAX_WAIT_SECONDS, _clamp

    assert MAX_WAIT_SECONDS == 25.0
    assert (_clamp(None), _clamp(600), _clamp(0.5), _clamp(-3)) == (25.0, 25.0, 0.5, 0.0)
