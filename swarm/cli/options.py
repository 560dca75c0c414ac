"""Command-line options shared by several commands, declared once so that their name, help and effect agree."""

from __future__ import annotations

from typing import Annotated

import typer

from swarm.config import LoadedConfig, find_repo_root, load_config

#: ``--db URL``: this command's database, over ``queue.database`` from the environment, launch or swarm.toml.
DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: queue.database).")]
#: ``swarm launch --db URL``: the same, and launch remembers it for the repository's later commands.
RememberedDbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: queue.database); remembered for this repo.")
]


def load_with_db(db: str | None) -> LoadedConfig:
    """The configuration of the repository around the cwd, with ``--db`` (when given) as ``queue.database``."""
    return load_config(find_repo_root(), overrides={"queue.database": db})
