"""How identity tells that a command runs inside an agent (swarm/identity.py, docs/contract.md §7), with real
processes: their environments as /proc shows them, and the process records workers keep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm import identity
from swarm.errors import BadInput
from swarm.models import AgentRecord
from swarm.runtime import procs
from swarm.runtime.runfile import process_record_path
from swarm.store import Store, open_store
from tests.helpers import REPO_ROOT

#: Prints what started_by_agent says about the process that runs it.
PROBE = (
    "import sys; from pathlib import Path; from swarm import identity; from swarm.store import open_store\n"
    "with open_store(sys.argv[1]) as s: print(identity.started_by_agent(s, Path(sys.argv[2])))\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".swarm" / "run").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def store(repo: Path) -> Store:
    opened = open_store(f"sqlite:///{repo / '.swarm' / 'swarm.db'}")
    swarm = opened.ensure_swarm("E1")
    opened.register_agent(AgentRecord(id="agent-1", swarm_id=swarm.id, host="h"))
    return opened


def _probe(store: Store, repo: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, store.url, str(repo)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_process_carrying_an_agents_ids_is_inside_that_agent(store: Store, repo: Path) -> None:
    swarm_id = store.current_swarm().id  # type: ignore[union-attr]
    inside = _probe(store, repo, {"SWARM_ID": swarm_id, "SWARM_AGENT_ID": "agent-1"})
    assert inside.startswith("agent-1 (its process ")


def test_ids_this_database_does_not_know_are_not_an_agent_of_it(store: Store, repo: Path) -> None:
    # An agent of another swarm (say, one whose task is to run this project's tests) is the lead of its own.
    assert _probe(store, repo, {"SWARM_ID": "sw-elsewhere", "SWARM_AGENT_ID": "agent-1"}) == "None"
    assert _probe(store, repo, {}) == "None"


def test_a_process_a_worker_recorded_is_inside_its_agent_even_with_no_environment(store: Store, repo: Path) -> None:
    # This very process, recorded as agent-1's (as a worker records what its agent starts): its environment
    # and ancestors say nothing, the record does.
    assert identity.started_by_agent(store, repo) is None
    me = procs.identify(os.getpid())
    assert me is not None
    procs.write_records(process_record_path(repo, "agent-1"), [me])
    assert (identity.started_by_agent(store, repo) or "").startswith("agent-1 ")
    with pytest.raises(BadInput, match=r"started by agent-1 .* cannot act as the lead"):
        identity.resolve(store, repo / ".swarm" / "lead.token", {})
    # A record of a process that is gone (same pid, another start time) names nobody.
    procs.write_records(process_record_path(repo, "agent-1"), [procs.ProcId(me.pid, me.started - 100.0)])
    assert identity.started_by_agent(store, repo) is None
    assert identity.resolve(store, repo / ".swarm" / "lead.token", {}) == "lead"
