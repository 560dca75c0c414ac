"""Storage backends behind one interface; :func:`open_store` picks one from a database URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from swarm.errors import BadInput
from swarm.store.base import (
    AddResult,
    Notification,
    Reaped,
    RetryPolicy,
    Store,
    StoreOptions,
    SwarmRecord,
    Withdrawal,
)
from swarm.store.common import path_from_url  # pure: importing it must not load sqlite3 (see open_store)

__all__ = [
    "AddResult",
    "Notification",
    "Reaped",
    "RetryPolicy",
    "Store",
    "StoreOptions",
    "SwarmRecord",
    "Withdrawal",
    "open_store",
    "path_from_url",
]


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Open (creating and migrating as needed) the database at ``url``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from swarm.store.sqlite import SQLiteStore

        return SQLiteStore(url, options)
    if scheme in ("postgresql", "postgres"):
        from swarm.store.postgres import PostgresStore  # imports psycopg only when a PostgreSQL URL is used

        return PostgresStore(url, options)
    raise BadInput(
        f"unsupported database URL {url!r}",
        hint="use sqlite:///path/to/swarm.db or postgresql://user@host/db",
    )
