"""Printing helpers shared by the command modules: JSON documents to stdout, human text through rich.

The JSON shapes themselves are :mod:`swarm.views`; the console is :mod:`swarm.console` (shared below the CLI).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from swarm.console import console

__all__ = ["console", "emit_json", "split_list"]


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, sort_keys=False) + "\n")
    sys.stdout.flush()


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]
