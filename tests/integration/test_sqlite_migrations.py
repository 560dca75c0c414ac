"""Forward migration of a SQLite database written by an older schema, and refusal of a newer one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarm.errors import SchemaTooNew
from swarm.store import open_store
from swarm.store.sqlfile import migrations
from swarm.store.sqlite import _split_statements


def test_v1_database_is_migrated_forward_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    number, sql = migrations("sqlite")[0]
    assert number == 1
    for statement in _split_statements(sql):
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO swarms (id, epic, max_agents, created_at) VALUES ('sw-old', 'E1', 2, 1.0)")
    conn.execute(
        "INSERT INTO tasks (id, epic, title, body, state, max_attempts, created_at, updated_at)"
        " VALUES ('A', 'E1', 'a', 'body', 'ready', 3, 1.0, 1.0)"
    )
    conn.commit()
    conn.close()

    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_version() == migrations("sqlite")[-1][0]
        assert [t.id for t in store.list_tasks(swarm_id="sw-old")] == ["A"]  # membership backfilled
        got = store.claim("agent-1", ttl_seconds=60, swarm_id="sw-old")
        assert got is not None
        assert got.task_id == "A"


def test_v5_database_gains_verify_and_allow_empty_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    for number, sql in migrations("sqlite"):
        if number > 5:
            break
        for statement in _split_statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
    conn.execute(
        "INSERT INTO tasks (id, epic, title, body, state, max_attempts, created_at, updated_at)"
        " VALUES ('A', 'E1', 'a', 'body', 'ready', 3, 1.0, 1.0)"
    )
    conn.commit()
    conn.close()

    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_version() == migrations("sqlite")[-1][0] >= 6
        old = store.get_task("A")
        assert (old.verify, old.allow_empty) == (None, False)  # the configuration's verify; changes required


def test_database_from_a_newer_swarm_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    open_store(url).close()
    conn = sqlite3.connect(tmp_path / "new.db")
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade swarm"):
        open_store(url)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    from swarm.errors import StoreError

    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a swarm database"):
        open_store(f"sqlite:///{path}")


def test_v5_database_gains_epics_and_ends_keeping_its_data(tmp_path: Path) -> None:
    """Schema v7 rebuilds swarms (swarm_tasks references it): swarms, membership, agents and done tasks stay."""
    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    for number, sql in migrations("sqlite"):
        if number <= 5:
            for statement in _split_statements(sql):
                conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
    conn.execute(
        "INSERT INTO swarms (id, epic, max_agents, created_at, repo, settings, stop_mode, paused_until)"
        " VALUES ('sw-old', 'E1', 2, 1.0, '/r', '{\"kind\": \"command\"}', 'finish', 5.0)"
    )
    conn.execute(
        "INSERT INTO tasks (id, epic, title, body, state, max_attempts, created_at, updated_at, commit_sha)"
        " VALUES ('A', 'E1', 'a', 'body', 'done', 3, 1.0, 1.0, 'abc'),"
        " ('B', 'E1', 'b', 'body', 'ready', 3, 2.0, 2.0, NULL)"
    )
    conn.execute("INSERT INTO swarm_tasks (swarm_id, task_id) VALUES ('sw-old', 'A'), ('sw-old', 'B')")
    conn.execute(
        "INSERT INTO agents (id, swarm_id, host, created_at, last_seen, branch) VALUES"
        " ('agent-1', 'sw-old', 'h', 1.0, 1.0, 'swarm/E1/agent-1')"
    )
    conn.commit()
    conn.close()

    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_version() == migrations("sqlite")[-1][0] >= 7
        old = store.get_swarm("sw-old")
        assert (old.epic, old.epics, old.ended_at, old.max_agents, old.repo) == ("E1", ("E1",), None, 2, "/r")
        assert (old.settings, old.stop_mode) == ({"kind": "command"}, "finish")
        assert store.claims_paused("sw-old")[0] == 5.0
        assert [t.id for t in store.list_tasks(swarm_id="sw-old")] == ["A", "B"]
        assert store.get_task("A").commit == "abc"
        assert [a.branch for a in store.list_agents("sw-old")] == ["swarm/E1/agent-1"]
        assert store.add_epic("sw-old", "E2").epics == ("E1", "E2")
        store.end_swarm("sw-old")
        new = store.ensure_swarm("E1")  # no longer unique: a second swarm of E1
        assert new.id != "sw-old"
        assert [s.id for s in store.list_swarms()] == ["sw-old", new.id]
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA foreign_key_check").fetchall() == []
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
