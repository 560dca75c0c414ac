"""The lead server's long calls (launch, teardown) run on a thread of the server that outlives the tool call: a
call that returns first says so, and calling again with the same arguments waits for the same run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from swarm import mcp_lead
from swarm.errors import BadInput


def test_a_slow_run_is_in_progress_then_collected_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_lead, "MAX_WAIT_SECONDS", 0.05)
    backend = mcp_lead._LeadBackend({}, tmp_path)
    release = threading.Event()
    runs: list[int] = []

    def slow() -> dict[str, Any]:
        runs.append(1)
        release.wait(30)
        return {"done": True}

    async def scenario() -> None:
        first = await mcp_lead._run_job(backend, "swarm_launch", ("E1",), slow)
        assert first["in_progress"] == "swarm_launch"
        assert "same arguments" in first["hint"]
        # Another launch while this one runs is refused; the same one is joined, not started twice.
        with pytest.raises(BadInput, match="other arguments is still in progress"):
            await mcp_lead._run_job(backend, "swarm_launch", ("E2",), slow)
        assert (await mcp_lead._run_job(backend, "swarm_launch", ("E1",), slow))["in_progress"] == "swarm_launch"
        release.set()
        monkeypatch.setattr(mcp_lead, "MAX_WAIT_SECONDS", 10.0)
        assert await mcp_lead._run_job(backend, "swarm_launch", ("E1",), slow) == {"done": True}
        # Collected: the next call starts a new run.
        assert await mcp_lead._run_job(backend, "swarm_launch", ("E1",), slow) == {"done": True}

    anyio.run(scenario)
    backend.close()
    assert len(runs) == 2


def test_a_failed_run_raises_its_error_once(tmp_path: Path) -> None:
    backend = mcp_lead._LeadBackend({}, tmp_path)

    def broken() -> dict[str, Any]:
        raise BadInput("no such epic E9", hint="pick one of the backlog's epics")

    async def scenario() -> None:
        with pytest.raises(BadInput, match="no such epic E9"):
            await mcp_lead._run_job(backend, "swarm_teardown", (False,), broken)

    anyio.run(scenario)
    backend.close()


def test_close_waits_for_a_run_in_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_lead, "MAX_WAIT_SECONDS", 0.01)
    backend = mcp_lead._LeadBackend({}, tmp_path)
    release = threading.Event()
    finished: list[bool] = []

    def slow() -> dict[str, Any]:
        release.wait(30)
        finished.append(True)
        return {}

    async def scenario() -> None:
        assert "in_progress" in await mcp_lead._run_job(backend, "swarm_teardown", (False,), slow)

    anyio.run(scenario)
    threading.Timer(0.2, release.set).start()
    backend.close()
    assert finished == [True]
