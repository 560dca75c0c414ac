"""Notifications on both backends: a real monitor's outbox on SQLite and on a real PostgreSQL finds each event
once, sends it once through a real loopback webhook, and a restarted one resends nothing (docs/contract.md §9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.config import NOTIFY_EVENTS, load_config
from swarm.models import LEAD, Spec
from swarm.notify import Outbox
from swarm.store import Store, open_store
from tests.hookserver import hook_server
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures: the postgresql backend's server and databases)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/n.db"
    found: str = request.getfixturevalue("pg_url")
    return found


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = open_store(url)
    yield opened
    opened.close()


def test_each_event_once_and_a_restart_resends_nothing(store: Store, url: str, tmp_path: Path) -> None:
    swarm = store.ensure_swarm("E1")
    store.add_tasks([Spec("S1", "E1", "one", "do", max_attempts=1)], swarm_id=swarm.id)
    claim = store.claim("agent-1", ttl_seconds=60, swarm_id=swarm.id)
    assert claim is not None
    store.fail("S1", "agent-1", claim.lease_token, "verify failed (exit 1)")
    store.append_message("team", "agent-1", "question", "which base?", recipient=LEAD)
    store.append_message("team", "monitor", "escalation", "agent-1 was stalled", recipient=LEAD)
    store.append_message("team", "agent-1", "signal.rate_limited", "claims paused for 60s: 429", recipient=LEAD)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with hook_server() as server:
        (repo / "swarm.toml").write_text(
            f'[queue]\ndatabase = "{url}"\n[notify]\nwebhook = "{server.url}"\n', encoding="utf-8"
        )
        loaded = load_config(repo, env={})
        outbox = Outbox(store, loaded, swarm.id)
        assert outbox.collect() == len(NOTIFY_EVENTS)
        assert outbox.send_due()[0] == len(NOTIFY_EVENTS)
        assert sorted(server.events()) == sorted(NOTIFY_EVENTS)
        restarted = Outbox(store, loaded, swarm.id)
        assert restarted.collect() == 0
        assert restarted.send_due() == (0, None)
        assert len(server.bodies) == len(NOTIFY_EVENTS)
