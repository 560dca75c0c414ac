"""The PostgreSQL backend under real conditions: OS processes, a server restart, a killed LISTEN connection,
wrong URLs and missing permissions. Runs on the throwaway server of ``tests/pg.py`` (never skipped)."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from swarm import threads
from swarm.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, BadInput, StoreBusy, StoreError
from swarm.models import AgentRecord, Spec, TaskState
from swarm.store import RetryPolicy, Store, StoreOptions, open_store
from swarm.store.postgres import POLL_SECONDS, PostgresStore
from swarm.store.sqlfile import migrations
from tests import pg as pg_fixtures
from tests.helpers import REPO_ROOT, retry_until
from tests.pg import PASSWORD_ROLE, PgServer, dbname_of, free_port
from tests.workers import claim_complete_loop

# The session server and fresh databases of tests/pg.py (no conftest in this folder names them).
pg_server = pg_fixtures.pg_server
pg_url = pg_fixtures.pg_url

PROCESSES = 16
CYCLES = 500


def _specs(count: int, prefix: str = "T") -> list[Spec]:
    return [Spec(id=f"{prefix}{i:05d}", epic="E", title=f"t{i}", body="b") for i in range(count)]


def _pg(store: Store) -> PostgresStore:
    assert isinstance(store, PostgresStore)
    return store


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A store on a fresh database."""
    store = open_store(pg_url)
    yield store
    store.close()


# -- many processes ----------------------------------------------------------------------------------


def test_sixteen_processes_claim_and_complete_without_duplicates(pg_url: str) -> None:
    total = PROCESSES * CYCLES
    with open_store(pg_url) as store:
        store.add_tasks(_specs(total))

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=claim_complete_loop, args=(pg_url, f"agent-{n}", CYCLES, results)) for n in range(PROCESSES)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    logging.getLogger(__name__).info("%d cycles in %.1fs", total, time.monotonic() - started)

    errors = [err for _, _, errs in reports for err in errs]
    assert errors == [], "a worker met an error:\n" + "\n".join(errors)
    claimed = [task for _, tasks, _ in reports for task in tasks]
    assert [task for task, n in Counter(claimed).items() if n > 1] == []  # no duplicates
    assert len(claimed) == total  # nothing lost
    with open_store(pg_url) as store:
        assert store.counts()["done"] == total
        claims = Counter(e.task_id for e in store.events(limit=10 * total) if e.to_state == "claimed")
        assert set(claims.values()) == {1}
        assert len(claims) == total
        assert all(t.commit == f"sha-{t.id}" for t in store.list_tasks())


def test_concurrent_first_opens_migrate_once(pg_url: str) -> None:
    """Several processes opening a new database at once: the advisory lock lets one migrate, others wait."""
    versions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def opener() -> None:
        try:
            barrier.wait()
            with open_store(pg_url) as store:
                versions.append(store.schema_version())
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=opener) for _ in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert errors == []
    assert len(set(versions)) == 1
    assert versions[0] >= 4


def test_random_dags_respect_dependencies_under_concurrency(pg_server: PgServer) -> None:
    """Completions that share dependents run concurrently; promotion stays exact and deadlock-free."""
    url = pg_server.create_database()
    options = StoreOptions(retry=RetryPolicy(0, 0), default_max_attempts=1000)
    # A wide diamond: every M depends on every top node, so completions fight over the same dependents.
    tops = [Spec(id=f"A{i}", epic="E", title="a", body="a") for i in range(8)]
    mids = [Spec(id=f"M{i}", epic="E", title="m", body="m", depends_on=tuple(s.id for s in tops)) for i in range(8)]
    last = Spec(id="Z", epic="E", title="z", body="z", depends_on=tuple(s.id for s in mids))
    with open_store(url, options) as store:
        store.add_tasks([last, *mids, *tops])
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            with open_store(url, options) as mine:
                while True:
                    got = mine.claim(f"agent-{n}", ttl_seconds=300)
                    if got is None:
                        if mine.counts()["done"] == 17:
                            return
                        time.sleep(0.001)
                        continue
                    mine.complete(got.task_id, f"agent-{n}", got.lease_token)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert errors == []
    with open_store(url, options) as store:
        events = store.events()
    done_at = {e.task_id: e.seq for e in events if e.to_state == "done"}
    claimed_at = {e.task_id: e.seq for e in events if e.to_state == "claimed"}
    assert len(done_at) == 17
    assert all(done_at[t.id] < claimed_at[m.id] for t in tops for m in mids)
    assert all(done_at[m.id] < claimed_at["Z"] for m in mids)
    promoted = Counter(e.task_id for e in events if e.from_state == "blocked" and e.to_state == "ready")
    assert promoted == Counter({**{m.id: 1 for m in mids}, "Z": 1})


def _slow_commits(url: str, table: str, seconds: float) -> None:
    """Make every transaction that writes ``table`` spend ``seconds`` in its COMMIT (a deferred trigger)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep({}); RETURN NULL; END $$"
            ).format(sql.Literal(seconds))
        )
        conn.execute(
            sql.SQL(
                "CREATE CONSTRAINT TRIGGER {} AFTER INSERT OR UPDATE ON {} DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION slow_commit()"
            ).format(sql.Identifier(f"slow_{table}"), sql.Identifier(table))
        )


def _backend_in_commit(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The pid of another backend of this database that is executing COMMIT right now, or 0."""
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'COMMIT' "
        "AND state = 'active' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(str(row[0])) if row else 0


def test_dependent_added_while_its_dependency_completes_is_promoted(pg_url: str) -> None:
    """add_tasks counts X as pending while X's completion runs: the completion must still promote T."""
    with open_store(pg_url) as store:
        store.add_tasks([Spec(id="X", epic="E", title="x", body="x")])
        held = store.claim("agent-1", ttl_seconds=60)
        assert held is not None
        _slow_commits(pg_url, "deps", 1.5)  # the adder of T sits in COMMIT, T counted blocked on X
        errors: list[BaseException] = []

        def add() -> None:
            try:
                with open_store(pg_url) as mine:
                    assert mine.add_tasks([Spec(id="T", epic="E", title="t", body="t", depends_on=("X",))]).ready == []
            except BaseException as exc:
                errors.append(exc)

        adder = threading.Thread(target=add)
        adder.start()
        with psycopg.connect(pg_url, autocommit=True) as watch:
            retry_until(lambda: _backend_in_commit(watch), seconds=10, interval=0.01)
        promoted = store.complete("X", "agent-1", held.lease_token)  # waits for the adder's commit
        adder.join(timeout=30)
        assert errors == []
        assert promoted == ["T"]
        assert store.get_task("T").state == TaskState.READY


# -- threads ---------------------------------------------------------------------------------------------


def _thread_db(server: PgServer) -> str:
    url = server.create_database()
    with open_store(url) as store:
        swarm = store.ensure_swarm("E")
        for n in range(1, 9):
            store.register_agent(AgentRecord(id=f"agent-{n}", swarm_id=swarm.id))
    return url


def test_threads_and_events_are_append_only(pg_store: Store, pg_url: str) -> None:
    threads.send(pg_store, "lead", "hi")
    pg_store.add_tasks(_specs(1))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in ("UPDATE messages SET body = 'x'", "DELETE FROM messages", "TRUNCATE messages"):
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(statement)
        for statement in ("UPDATE events SET reason = 'x'", "DELETE FROM events"):
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(statement)


# -- wake-ups -------------------------------------------------------------------------------------------


def _send_from_another_process(url: str, body: str) -> None:
    """Append a message from a separate OS process: no in-process shortcut can wake the waiter."""
    code = (
        "import sys; from swarm.store import open_store; from swarm import threads\n"
        "with open_store(sys.argv[1]) as s: threads.send(s, 'agent-1', sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, url, body], cwd=REPO_ROOT, check=True, timeout=60)


def _wait_in_thread(store: Store, identity: str, timeout: float) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []
    waiter = threading.Thread(
        target=lambda: result.append(threads.wait(store, threads.WaitSpec(identity=identity), timeout=timeout))
    )
    waiter.start()
    return waiter, result


def test_change_marker_is_a_memory_read_while_the_listener_is_healthy(pg_server: PgServer) -> None:
    url = _thread_db(pg_server)
    with open_store(url) as opened:
        store = _pg(opened)
        store.change_marker()
        retry_until(lambda: store._listener is not None and store._listener.healthy, seconds=10)
        before, started = store.polls, time.monotonic()
        for _ in range(500):
            store.change_marker()
        elapsed = time.monotonic() - started
        # At most the safety poll every 0.25 s, never one query per call.
        assert store.polls - before <= 1 + elapsed / POLL_SECONDS
        assert store._listener is not None
        thread = store._listener._thread
    assert not thread.is_alive()  # close() stops the listener at once
    retry_until(lambda: all(app != "swarm-listen" for _, app in pg_server.backends(dbname_of(url))), seconds=10)


def test_the_listener_connecting_does_not_move_the_marker_but_a_commit_before_it_does(pg_server: PgServer) -> None:
    url = _thread_db(pg_server)
    with open_store(url) as opened:
        store = _pg(opened)
        before = store.change_marker()  # starts the listener
        retry_until(lambda: store._listener is not None and store._listener.healthy, seconds=10)
        # Nothing was written: the LISTEN coming up is no change (callers would wake and look for nothing).
        assert store.change_marker() == before
        listener = store._listener
        assert listener is not None

        # Down, then a commit nobody is told about, then back: the first look after the reconnect sees it.
        reconnect = listener._connect

        def refuse() -> psycopg.Connection[tuple[object, ...]]:
            raise OSError("reconnect disabled by the test")

        listener._connect = refuse
        assert pg_server.terminate_backends(dbname=dbname_of(url), application_name="swarm-listen") == 1
        retry_until(lambda: not listener.healthy, seconds=10)
        down = store.change_marker()
        _send_from_another_process(url, "while the listener is down")  # no in-process count sees it
        connects = listener.connects
        listener._connect = reconnect
        retry_until(lambda: listener.healthy and listener.connects > connects, seconds=10)
        store._polled_at = time.monotonic()  # no routine poll is due: only the reconnect may cause this look
        assert store.change_marker() != down


def test_wait_wakes_on_a_commit_from_another_process(pg_server: PgServer) -> None:
    url = _thread_db(pg_server)
    with open_store(url) as store:
        threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.01)  # sets the cursor
        waiter, result = _wait_in_thread(store, "agent-2", timeout=20)
        _send_from_another_process(url, "over NOTIFY")
        waiter.join(timeout=30)
        assert getattr(result[0], "body", None) == "over NOTIFY"


def test_killed_listen_connection_falls_back_to_polling_and_reconnects(pg_server: PgServer) -> None:
    url = _thread_db(pg_server)
    with open_store(url) as opened:
        store = _pg(opened)
        threads.wait(store, threads.WaitSpec(identity="agent-2"), timeout=0.01)  # starts the listener
        listener = store._listener
        assert listener is not None
        retry_until(lambda: listener.healthy, seconds=10)

        # 1. Killed, and kept from coming back: waits must still wake, through the snapshot poll.
        reconnect = listener._connect

        def refuse() -> psycopg.Connection[tuple[object, ...]]:
            raise OSError("reconnect disabled by the test")

        listener._connect = refuse
        assert pg_server.terminate_backends(dbname=dbname_of(url), application_name="swarm-listen") == 1
        retry_until(lambda: not listener.healthy, seconds=10)
        polls = store.polls
        waiter, result = _wait_in_thread(store, "agent-2", timeout=20)
        _send_from_another_process(url, "through the fallback")
        waiter.join(timeout=30)
        assert getattr(result[0], "body", None) == "through the fallback"
        assert not listener.healthy
        assert store.polls > polls

        # 2. Allowed back: the listener reconnects by itself and waits wake through NOTIFY again.
        listener._connect = reconnect
        retry_until(lambda: listener.healthy, seconds=10)
        waiter, result = _wait_in_thread(store, "agent-2", timeout=20)
        _send_from_another_process(url, "after the reconnect")
        waiter.join(timeout=30)
        assert getattr(result[0], "body", None) == "after the reconnect"


# -- connection loss --------------------------------------------------------------------------------------


def test_server_restart_mid_run_loses_and_duplicates_nothing(
    pg_server: PgServer,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="swarm.store.postgres")
    total = 400
    with open_store(pg_url) as store:
        store.add_tasks(_specs(total))
    done: list[str] = []
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            with open_store(pg_url, StoreOptions(busy_timeout_seconds=60)) as mine:
                while True:
                    got = mine.claim("agent-1", ttl_seconds=300)
                    if got is None:
                        return
                    mine.complete(got.task_id, "agent-1", got.lease_token)
                    done.append(got.task_id)
        except BaseException as exc:
            errors.append(exc)

    watcher = _pg(open_store(pg_url))
    try:
        watcher.change_marker()  # a listener that must come back after the restart
        assert watcher._listener is not None
        listener = watcher._listener
        retry_until(lambda: listener.healthy, seconds=10)
        worker = threading.Thread(target=loop)
        worker.start()
        retry_until(lambda: len(done) >= 40, seconds=30, interval=0.005)
        try:
            pg_server.restart()
        finally:
            pg_server.ensure_running()
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert errors == []
        assert "retrying" in caplog.text  # the loop did meet the restart, and got over it
        assert len(done) == total
        assert len(set(done)) == total
        assert retry_until(lambda: listener.healthy, seconds=10)
        assert watcher.counts()["done"] == total
        claims = Counter(e.task_id for e in watcher.events(limit=10 * total) if e.to_state == "claimed")
        assert set(claims.values()) == {1}
    finally:
        watcher.close()


def test_connection_lost_before_commit_is_retried_once(pg_server: PgServer, pg_store: Store) -> None:
    store = _pg(pg_store)
    runs: list[int] = []

    def op(cur: psycopg.Cursor[tuple[object, ...]]) -> int:
        runs.append(cur.connection.info.backend_pid)
        cur.execute("INSERT INTO meta (key, value) VALUES (%s, 'x')", [f"probe-{len(runs)}"])
        if len(runs) == 1:
            with pg_server.admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [runs[0]])
        return len(runs)

    assert store._write(op) == 2
    with psycopg.connect(store.url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM meta WHERE key LIKE 'probe-%%' ORDER BY key")]
    assert keys == ["probe-2"]  # the first attempt rolled back with its connection, the retry committed


def test_connection_lost_during_commit_asks_the_server_what_happened(
    pg_server: PgServer,
    pg_store: Store,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _pg(pg_store)
    swarm = store.ensure_swarm("E1")
    store.add_tasks(_specs(2))
    held = store.claim("agent-1", ttl_seconds=60)
    assert held is not None
    # The test cuts the connection while the COMMIT is in progress: once for a plain write transaction, once
    # for a pipelined one (a completion), whose COMMIT travels apart from its statements.
    _slow_commits(pg_url, "swarms", 1.0)
    _slow_commits(pg_url, "events", 1.0)
    writes: list[Callable[[], object]] = [
        lambda: store.pause_claims(swarm.id, 1e12, "test"),
        lambda: store.complete(held.task_id, "agent-1", held.lease_token, commit="abc"),
    ]
    for write in writes:
        caplog.clear()
        writer = threading.Thread(target=write)
        with (
            caplog.at_level(logging.INFO, logger="swarm.store.postgres"),
            psycopg.connect(pg_url, autocommit=True) as conn,
        ):
            writer.start()
            pid = retry_until(lambda: _backend_in_commit(conn), seconds=10, interval=0.01)
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            writer.join(timeout=30)
        assert not writer.is_alive()
        assert "rolled back by the lost connection; running it again" in caplog.text
    assert store.claims_paused(swarm.id) == (1e12, "test")
    assert store.get_task(held.task_id).state == TaskState.DONE
    assert [e.to_state for e in store.events(held.task_id)].count("done") == 1

    # The resolver itself: a committed transaction is reported committed, an aborted one aborted.
    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
            conn.execute("INSERT INTO meta (key, value) VALUES ('committed', 'x')")
        assert row is not None
        committed = str(row[0])
        with conn.transaction(force_rollback=True):
            row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
            conn.execute("INSERT INTO meta (key, value) VALUES ('rolled-back', 'x')")
        assert row is not None
        aborted = str(row[0])
    deadline = time.monotonic() + 10
    assert store._committed(committed, deadline) is True
    assert store._committed(aborted, deadline) is False


def test_write_stuck_behind_a_foreign_lock_is_store_busy(pg_url: str) -> None:
    with open_store(pg_url, StoreOptions(busy_timeout_seconds=0.5)) as store:
        store.add_tasks(_specs(1))
        held = store.claim("agent-1", ttl_seconds=60)
        assert held is not None
        with psycopg.connect(pg_url) as other, other.transaction():
            other.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", [held.task_id])  # e.g. a forgotten psql
            # lock_timeout (the busy timeout) turns the wait into StoreBusy; pytest-timeout guards a hang.
            with pytest.raises(StoreBusy, match="stayed locked"):
                store.heartbeat(held.task_id, "agent-1", held.lease_token, ttl_seconds=60)
        assert store.heartbeat(held.task_id, "agent-1", held.lease_token, ttl_seconds=60) > 0


# -- refusals -------------------------------------------------------------------------------------------


class TestRefusals:
    """Wrong URLs are bad input (exit 2); unreachable servers and missing rights are runtime errors (exit 1)."""

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://postgres@nohost.invalid/swarm",
            "postgresql://postgres@127.0.0.1:notaport/swarm",
            "postgresql://postgres@127.0.0.1/swarm?nosuchoption=1",
        ],
        ids=["unknown-host", "bad-port", "bad-parameter"],
    )
    def test_bad_url_is_bad_input(self, url: str) -> None:
        with pytest.raises(BadInput, match="cannot use database URL") as caught:
            open_store(url)
        assert caught.value.exit_code == EXIT_BAD_INPUT
        assert "check the URL" in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_missing_database_is_bad_input(self, pg_server: PgServer) -> None:
        with pytest.raises(BadInput, match="does not exist"):
            open_store(pg_server.url("no_such_db"))

    def test_refused_connection_fails_fast(self) -> None:
        port = free_port()
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            # With a 600 s retry budget, a first open that retried would run into pytest's timeout: the refusal
            # must come from the first attempt.
            open_store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/swarm", StoreOptions(busy_timeout_seconds=600))
        assert time.monotonic() - started < 300
        assert caught.value.exit_code == EXIT_RUNTIME
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "server is running" in message
        assert "s3cret" not in message
        assert "\n" not in message

    def test_wrong_password_is_a_store_error_without_the_password(self, pg_server: PgServer) -> None:
        url = pg_server.url("postgres", user=PASSWORD_ROLE, password="wrong-secret")
        with pytest.raises(StoreError, match="password authentication failed") as caught:
            open_store(url)
        assert "wrong-secret" not in str(caught.value)
        assert "GRANT" in str(caught.value)

    def test_role_without_connect_privilege(self, pg_server: PgServer, pg_url: str) -> None:
        name = dbname_of(pg_url)
        with pg_server.admin() as admin:
            admin.execute("DROP ROLE IF EXISTS swarm_noperm")
            admin.execute("CREATE ROLE swarm_noperm LOGIN")
            admin.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        with pytest.raises(StoreError, match="permission denied") as caught:
            open_store(pg_server.url(name, user="swarm_noperm"))
        assert caught.value.exit_code == EXIT_RUNTIME
        assert "GRANT" in str(caught.value)

    def test_role_without_create_privilege(self, pg_server: PgServer, pg_url: str) -> None:
        # PostgreSQL 15 no longer lets every role create tables in the public schema: the first run fails.
        with pg_server.admin() as admin:
            admin.execute("DROP ROLE IF EXISTS swarm_nocreate")
            admin.execute("CREATE ROLE swarm_nocreate LOGIN")
        with pytest.raises(StoreError, match="permission denied") as caught:
            open_store(pg_server.url(dbname_of(pg_url), user="swarm_nocreate"))
        assert not isinstance(caught.value, BadInput)
        assert "GRANT" in str(caught.value)

    def test_nul_in_text_is_bad_input(self, pg_store: Store) -> None:
        with pytest.raises(BadInput, match="NUL"):
            pg_store.append_message("team", "lead", "chat", "a\x00b")
        assert pg_store.list_messages("team") == []


def test_schema_mirrors_sqlite(pg_store: Store, tmp_path: Path) -> None:
    """Both dialects have the same migration numbers, tables and columns: a migration added on one side only
    fails here."""
    assert [n for n, _ in migrations("postgresql")] == [n for n, _ in migrations("sqlite")]
    assert pg_store.schema_version() == migrations("sqlite")[-1][0]
    with open_store(f"sqlite:///{tmp_path}/mirror.db"):
        pass
    lite = sqlite3.connect(tmp_path / "mirror.db")
    expected: dict[str, set[str]] = {}
    for (table,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        expected[table] = {row[1] for row in lite.execute(f"PRAGMA table_info({table})")}
    lite.close()
    with psycopg.connect(pg_store.url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column))
    found["swarms"].discard("created_order")  # PostgreSQL's stand-in for SQLite's rowid
    assert found == expected


def test_task_states_survive_reopen(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.add_tasks(_specs(3))
        got = store.claim("agent-1", ttl_seconds=60)
        assert got is not None
    with open_store(pg_url) as store:
        assert store.get_task(got.task_id).state == TaskState.CLAIMED
