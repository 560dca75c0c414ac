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
        assert store.schema_version() == 6
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
