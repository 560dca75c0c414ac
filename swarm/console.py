"""The rich console that every module printing for a person shares (the CLI, the dashboard follower, the demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    """A console on stdout; plain text (no colour codes) when stdout is not a terminal."""
    # Imported here: rich costs tens of milliseconds at start-up, and the commands agents call most
    # (`swarm msg`, `swarm queue ... --json`) never print through it.
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)
