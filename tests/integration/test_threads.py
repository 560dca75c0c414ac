"""Threads on both backends (a real SQLite file, a real PostgreSQL database): sequence order under
concurrency, waits, cursors, identities."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm import identity, threads
from swarm.errors import BadInput
from swarm.models import LEAD, AgentRecord
from swarm.store import Store, open_store
from tests import pg as pg_fixtures
from tests.pg import dbname_of

pg_server = pg_fixtures.pg_server

BACKENDS = ["sqlite", "postgresql"]


def _new_url(backend: str, request: pytest.FixtureRequest, folder: Path) -> str:
    """A fresh database of ``backend``; a PostgreSQL one is dropped when the test ends."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/t.db"
    server: pg_fixtures.PgServer = request.getfixturevalue("pg_server")  # never skipped when unavailable
    url = server.create_database()
    request.addfinalizer(lambda: server.drop_database(dbname_of(url)))
    return url


def _store(url: str) -> Store:
    store = open_store(url)
    swarm = store.ensure_swarm("E")
    for n in range(1, 9):
        store.register_agent(AgentRecord(id=f"agent-{n}", swarm_id=swarm.id))
    return store


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appenders=st.integers(1, 4), waiters=st.integers(1, 4), per_appender=st.integers(1, 15))
def test_every_waiter_sees_every_entry_in_order_once(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    appenders: int,
    waiters: int,
    per_appender: int,
) -> None:
    setup = _store(_new_url(backend, request, tmp_path_factory.mktemp("thread")))
    url = setup.url
    setup.close()
    # Identities: appenders are agent-1..A, waiters agent-5..; a waiter that is also an author is not needed.
    writers = [f"agent-{n}" for n in range(1, appenders + 1)]
    readers = [f"agent-{n}" for n in range(5, 5 + waiters)]
    total = appenders * per_appender
    seen: dict[str, list[int]] = {r: [] for r in readers}
    errors: list[BaseException] = []
    ready = threading.Barrier(len(readers) + 1)

    def reader(name: str) -> None:
        try:
            with open_store(url) as store:
                store.set_cursor(name, "team", 0)  # start at the beginning: entries may land before we wait
                ready.wait()
                while len(seen[name]) < total:
                    got = threads.wait(store, threads.WaitSpec(identity=name), timeout=30)
                    assert got is not None, f"{name} timed out after {len(seen[name])} entries"
                    seen[name].append(got.seq)
        except BaseException as exc:
            errors.append(exc)

    def writer(name: str) -> None:
        try:
            with open_store(url) as store:
                for i in range(per_appender):
                    threads.send(store, name, f"{name} #{i}")
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=reader, args=(r,)) for r in readers]
    for t in pool:
        t.start()
    ready.wait()
    writers_pool = [threading.Thread(target=writer, args=(w,)) for w in writers]
    for t in writers_pool:
        t.start()
    for t in [*writers_pool, *pool]:
        t.join(timeout=60)
    assert errors == []
    for name in readers:
        assert seen[name] == list(range(1, total + 1)), f"{name} saw {seen[name]}"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store with agents agent-1..agent-8, on each backend."""
    opened = _store(_new_url(request.param, request, tmp_path))
    yield opened
    opened.close()


def test_wait_skips_own_entries_and_entries_for_others(store: Store) -> None:
    store.set_cursor("agent-2", "team", 0)
    threads.send(store, "agent-2", "mine")
    threads.send(store, "agent-1", "for agent-3 only", to="agent-3")
    threads.send(store, "agent-1", "for everyone")
    got = threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=1)
    assert got is not None
    assert got.body == "for everyone"
    assert threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.05) is None


def test_cursor_misses_nothing_between_two_waits(store: Store) -> None:
    assert threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.01) is None  # sets the cursor
    threads.send(store, "agent-1", "one")
    threads.send(store, "agent-1", "two")  # sent while nobody waits
    first = threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=1)
    second = threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=1)
    assert first is not None
    assert second is not None
    assert (first.body, second.body) == ("one", "two")


def test_first_wait_starts_at_the_end_of_the_thread(store: Store) -> None:
    threads.send(store, "agent-1", "old news")
    assert threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.05) is None


def test_wait_wakes_on_a_commit_from_another_connection(store: Store) -> None:
    other = open_store(store.url)
    result: list[object] = []
    threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.01)
    waiter = threading.Thread(
        target=lambda: result.append(threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=10))
    )
    waiter.start()
    threads.send(other, "agent-1", "wake up")
    waiter.join(timeout=10)
    assert getattr(result[0], "body", None) == "wake up"
    other.close()


def test_ask_and_reply(store: Store) -> None:
    answers: list[object] = []

    def lead() -> None:
        with open_store(store.url) as mine:
            question = threads.wait(mine, threads.WaitSpec(identity=LEAD, since=0), timeout=10)
            assert question is not None
            answers.append(threads.reply(mine, LEAD, question.seq, "use main"))

    helper = threading.Thread(target=lead)
    helper.start()
    question, answer = threads.ask(store, "agent-1", "which base?", timeout=10)
    helper.join(timeout=10)
    assert answer is not None
    assert answer.body == "use main"
    assert answer.reply_to == question.seq
    assert answer.recipient == "agent-1"
    assert answer.type == "answer"
    assert store.unanswered_questions() == []


def test_unanswered_questions_are_listed_for_the_lead(store: Store) -> None:
    q = threads.send(store, "agent-1", "may I delete the old API?", to=LEAD, type_="question")
    threads.send(store, "agent-2", "a chat", to=LEAD)
    assert [m.seq for m in store.unanswered_questions()] == [q.seq]
    threads.reply(store, LEAD, q.seq, "no")
    assert store.unanswered_questions() == []


class TestRefusals:
    """Bad entries are refused with one clear line and nothing is written."""

    def test_unknown_recipient(self, store: Store) -> None:
        with pytest.raises(BadInput, match="unknown recipient 'agent-99'"):
            threads.send(store, "agent-1", "hi", to="agent-99")
        assert store.list_messages("team") == []

    def test_empty_body(self, store: Store) -> None:
        with pytest.raises(BadInput, match="empty"):
            threads.send(store, "agent-1", "  \n")

    def test_body_over_one_mebibyte(self, store: Store) -> None:
        with pytest.raises(BadInput, match="more than the 1 MiB"):
            threads.send(store, "agent-1", "x" * (1024 * 1024 + 1))
        threads.send(store, "agent-1", "x" * (1024 * 1024))  # exactly 1 MiB is fine

    def test_unknown_type_and_bad_thread(self, store: Store) -> None:
        with pytest.raises(BadInput, match="unknown message type"):
            threads.send(store, "agent-1", "hi", type_="gossip")
        with pytest.raises(BadInput, match="invalid thread name"):
            threads.send(store, "agent-1", "hi", thread="no spaces")
        threads.send(store, "agent-1", "hi", type_="signal.idle")

    def test_reply_to_missing_entry(self, store: Store) -> None:
        with pytest.raises(BadInput, match="no entry 42"):
            threads.reply(store, LEAD, 42, "answer")

    def test_threads_are_append_only(self, store: Store) -> None:
        threads.send(store, "agent-1", "hi")
        for statement in ("UPDATE messages SET body = 'rewritten'", "DELETE FROM messages"):
            # Straight to the database, around swarm: the database itself refuses.
            if store.url.startswith("sqlite:///"):
                conn = sqlite3.connect(store.url.removeprefix("sqlite:///"))
                with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                    conn.execute(statement)
                conn.close()
            else:
                with (
                    psycopg.connect(store.url, autocommit=True) as pg,
                    pytest.raises(psycopg.Error, match="append-only"),
                ):
                    pg.execute(statement)
        assert [m.body for m in store.list_messages("team")] == ["hi"]


class TestIdentity:
    """Tokens prove authors; writing as someone else is refused."""

    def test_agent_with_its_token(self, store: Store, tmp_path: Path) -> None:
        token = identity.new_token()
        store.set_token_hash("agent-1", identity.hash_token(token))
        env = {"SWARM_AGENT_ID": "agent-1", "SWARM_TOKEN": token}
        assert identity.resolve(store, tmp_path / "lead.token", env) == "agent-1"
        assert store.token_hash("agent-1") != token  # only the hash is stored

    def test_forged_author_is_refused(self, store: Store, tmp_path: Path) -> None:
        store.set_token_hash("agent-1", identity.hash_token(identity.new_token()))
        with pytest.raises(BadInput, match="wrong token for agent-1"):
            identity.resolve(store, tmp_path / "lead.token", {"SWARM_AGENT_ID": "agent-1", "SWARM_TOKEN": "guess"})

    def test_writing_as_a_launched_agent_without_its_token_is_refused(self, store: Store, tmp_path: Path) -> None:
        store.set_token_hash("agent-1", identity.hash_token(identity.new_token()))
        with pytest.raises(BadInput, match="needs its SWARM_TOKEN"):
            identity.resolve(store, tmp_path / "lead.token", {}, acting_as="agent-1")
        # an agent id nobody launched may be driven by hand (nspec-style)
        assert identity.resolve(store, tmp_path / "lead.token", {}, acting_as="agent-7") == "agent-7"

    def test_lead_token_created_once_with_mode_0600(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "lead.token"
        assert identity.resolve(store, path, {}) == LEAD
        assert path.stat().st_mode & 0o777 == 0o600
        token = path.read_text().strip()
        assert identity.resolve(store, path, {"SWARM_TOKEN": token}) == LEAD
        path.write_text("replaced\n")
        with pytest.raises(BadInput, match="does not match this database"):
            identity.resolve(store, path, {})
