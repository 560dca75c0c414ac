"""``swarm demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from swarm.errors import SwarmError


def demo_cmd(
    agents: int = typer.Option(3, "--agents", "-n", min=1, max=8, help="How many scripted agents to run."),
    keep: bool = typer.Option(False, "--keep", help="Keep the throwaway repository to look around in it."),
    pace: float = typer.Option(1.0, "--pace", min=0.0, help="Scale the scripted agents' pauses (0: no pauses)."),
    where: Path | None = typer.Option(None, "--dir", help="Create the throwaway repository under this folder."),
) -> None:
    """Run a complete swarm on a throwaway repository with scripted agents: real tmux, real git, no API key."""
    from swarm.demo import run_demo

    result = run_demo(agents=agents, keep=keep, pace=pace, where=where)
    if result.done != result.total or not result.clean or result.merged_into is None:
        raise SwarmError(
            f"the demo finished with {result.done} of {result.total} tasks done",
            hint="run 'swarm doctor' to check the machine, and 'swarm demo --keep' to inspect the logs",
        )


def register(app: typer.Typer) -> None:
    """Attach ``swarm demo``."""
    app.command("demo")(demo_cmd)
