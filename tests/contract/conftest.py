"""The backend fixture of the store contract suite: every test here runs against every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarm.store import RetryPolicy, Store, StoreOptions, open_store
from tests.conftest import FakeClock
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures: the postgresql backend's server and databases)

StoreFactory = Callable[..., Store]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL for each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/contract.db"
    if request.param == "postgresql":
        # A fresh database on the session's throwaway server (tests/pg.py); never skipped when unavailable.
        url: str = request.getfixturevalue("pg_url")
        return url
    raise AssertionError(f"unknown backend {request.param}")


@pytest.fixture
def make_store(backend_url: str, clock: FakeClock) -> Iterator[StoreFactory]:
    """Open stores on the test database; every store opened is closed at the end."""
    opened: list[Store] = []

    def factory(**overrides: object) -> Store:
        opts: dict[str, object] = {
            "clock": clock,
            "retry": RetryPolicy(10.0, 600.0),
            "default_max_attempts": 3,
        }
        opts.update(overrides)
        store = open_store(backend_url, StoreOptions(**opts))  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    """One store on a fresh database with a fake clock."""
    return make_store()
