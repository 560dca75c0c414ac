"""An agent's channel (docs/contract.md §7): a real server on a real Unix socket and a real SQLite database, spoken
to by the real ``swarm`` command and ``swarm mcp`` in subprocesses. The channel is the identity: its own
processes write as the agent, any other process is refused, and a stale lease is refused as without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from swarm.channel_client import channel_path
from swarm.models import AgentRecord, Claim, Spec
from swarm.runtime import procs
from swarm.runtime.channel import ChannelServer, ChannelSpec
from swarm.store import Store, open_store
from tests.helpers import swarm_cli

AGENT = "agent-1"


@dataclass
class Served:
    """A channel for agent-1, the store behind it and the claim its "worker" holds."""

    path: Path
    store: Store
    url: str
    claim: Claim
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"SWARM_CHANNEL": str(self.path), "SWARM_AGENT_ID": AGENT, **extra}


def _serve(root: Path, owner: procs.ProcId) -> Iterator[Served]:
    url = f"sqlite:///{root / '.swarm' / 'swarm.db'}"
    (root / ".swarm").mkdir(parents=True)
    store = open_store(url)
    swarm = store.ensure_swarm("E1")
    store.add_tasks(
        [Spec(id="A", epic="E1", title="First", body="a"), Spec(id="B", epic="E1", title="Second", body="b")],
        swarm_id=swarm.id,
    )
    store.register_agent(AgentRecord(id=AGENT, swarm_id=swarm.id))
    claim = store.claim(AGENT, ttl_seconds=300, swarm_id=swarm.id)
    assert claim is not None
    spec = ChannelSpec(
        path=channel_path(root, AGENT),
        agent_id=AGENT,
        swarm_id=swarm.id,
        capabilities=(),
        lease_ttl_seconds=300,
        owner=owner,
        open_store=lambda: open_store(url),
        lease_for=lambda task_id: claim.lease_token if task_id == claim.task_id else None,
    )
    server = ChannelServer(spec).start()
    try:
        yield Served(path=spec.path, store=store, url=url, claim=claim, root=root)
    finally:
        server.close()
        store.close()


def _me() -> procs.ProcId:
    me = procs.identify(os.getpid())
    assert me is not None
    return me


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """This test process plays the worker: its children are the agent's processes."""
    yield from _serve(tmp_path / "repo", _me())


def test_the_agents_processes_write_as_the_agent_without_a_database(served: Served) -> None:
    cwd = served.root.parent  # no repository, no database URL: only the channel
    sent = swarm_cli("msg", "send", "over the channel", "--json", cwd=cwd, env=served.env())
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["author"] == AGENT
    beat = swarm_cli("queue", "heartbeat", "--task-id", "A", "--json", cwd=cwd, env=served.env())
    assert beat.returncode == 0, beat.stderr  # the lease the worker holds: no token passed
    status = swarm_cli("queue", "status", "--json", cwd=cwd, env=served.env())
    assert status.returncode == 0, status.stderr
    assert {t["id"]: t["owner"] for t in json.loads(status.stdout)["tasks"]} == {"A": AGENT, "B": None}
    added = swarm_cli("queue", "add", "--title", "more", "--id", "Q1", "--epic", "E1", cwd=cwd, env=served.env())
    assert added.returncode == 0, added.stderr
    events = served.store.events("Q1")
    assert events[0].actor == AGENT
    listed = swarm_cli("msg", "list", "--json", cwd=cwd, env=served.env())
    assert [json.loads(line)["body"] for line in listed.stdout.splitlines()] == ["over the channel"]
    waited = swarm_cli("msg", "wait", "--timeout", "0.3", cwd=cwd, env=served.env())
    assert waited.returncode == 124, waited.stderr


def test_a_stale_lease_is_refused_on_the_channel(served: Served) -> None:
    served.store.cancel("A", reason="the lead changed its mind")
    cwd = served.root.parent
    beat = swarm_cli("queue", "heartbeat", "--task-id", "A", cwd=cwd, env=served.env())
    assert beat.returncode == 1, beat.stderr
    assert "lease lost on task A" in beat.stderr
    released = swarm_cli("queue", "release", "--task-id", "A", "--completed", cwd=cwd, env=served.env())
    assert released.returncode == 1
    assert "lease lost on task A" in released.stderr
    other = swarm_cli("queue", "heartbeat", "--task-id", "B", cwd=cwd, env=served.env())
    assert other.returncode == 2
    assert "agent-1 holds no lease on B" in other.stderr


def test_acting_as_another_agent_is_refused(served: Served) -> None:
    cwd = served.root.parent
    forged = swarm_cli("msg", "send", "hi", cwd=cwd, env=served.env(SWARM_AGENT_ID="agent-2"))
    assert forged.returncode == 2
    assert "this channel is agent-1's: it cannot act as agent-2" in forged.stderr
    assert served.store.list_messages("team") == []


def test_a_process_outside_the_worker_is_refused(tmp_path: Path) -> None:
    # The "worker" is another process; this test process and its children are not below it.
    other = subprocess.Popen(["sleep", "60"])
    try:
        owner = procs.identify(other.pid)
        assert owner is not None
        for served in _serve(tmp_path / "repo", owner):
            refused = swarm_cli("msg", "send", "hi", cwd=tmp_path, env=served.env())
            assert refused.returncode == 2, refused.stderr
            assert f"serves {AGENT} only" in refused.stderr
            assert "does not run inside agent-1" in refused.stderr
            assert refused.stderr.count("\n") == 1
            assert served.store.list_messages("team") == []
    finally:
        other.kill()
        other.wait()


def test_a_socket_path_longer_than_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "repo"
    for served in _serve(deep, _me()):
        assert len(str(served.path)) > 108
        sent = swarm_cli("msg", "send", "from deep down", cwd=tmp_path, env=served.env())
        assert sent.returncode == 0, sent.stderr


def test_a_missing_worker_is_one_line(tmp_path: Path) -> None:
    gone = swarm_cli("msg", "send", "hi", cwd=tmp_path, env={"SWARM_CHANNEL": str(tmp_path / "nothing.sock")})
    assert gone.returncode == 1
    assert "cannot reach the worker's channel" in gone.stderr
    assert gone.stderr.count("\n") == 1
    bad = swarm_cli("msg", "send", "hi", "--db", "sqlite:///x.db", cwd=tmp_path, env={"SWARM_CHANNEL": "/x.sock"})
    assert bad.returncode == 2
    assert "--db cannot be used inside an agent" in bad.stderr


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_goes_through_the_channel(served: Served) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "swarm", "mcp"], env=served.env(), cwd=served.root.parent
    )
    with (served.root.parent / "mcp.log").open("a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            async def call(name: str, **arguments: Any) -> Any:
                result = await session.call_tool(name, arguments)
                assert not result.is_error, result.content
                return result.structured_content

            sent = await call("msg_send", text="hello from mcp")
            assert served.store.get_message("team", sent["seq"]).author == AGENT
            beat = await call("queue_heartbeat", task_id="A", lease_token=served.claim.lease_token)
            assert beat["task_id"] == "A"
            status = await call("queue_status")
            assert status["counts"]["claimed"] == 1
            claimed = await call("queue_claim")
            assert claimed["task"]["id"] == "B"
            released = await call("queue_release", task_id="B", lease_token="", outcome="returned")
            assert released["state"] == "ready"
            waited = await call("msg_wait", timeout_s=0.2)
            assert waited == {"timeout": True}
