"""Named SQL blocks and migration files, read from the package (procrastinate's ``queries.sql`` habit)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$")
_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every ``-- name: x`` block of ``sql/<dialect>/queries.sql``, by name."""
    text = resources.files("swarm.store").joinpath("sql", dialect, "queries.sql").read_text("utf-8")
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            current = blocks.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip().rstrip(";") for name, lines in blocks.items()}


@cache
def migrations(dialect: str) -> tuple[tuple[int, str], ...]:
    """``(version, sql)`` for each ``sql/<dialect>/NNN_name.sql``, in version order."""
    folder = resources.files("swarm.store").joinpath("sql", dialect)
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    found.sort()
    return tuple(found)
