"""``swarm config show`` and ``swarm init``: thin layers over swarm.config and swarm.scaffold."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from swarm.config import CONFIG_FILE_NAME, find_repo_root, load_config
from swarm.scaffold import EXAMPLE_EPIC, SPECS_DIR, write_scaffold


def show(
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object: values, sources, repo and resolved database URL."),
    ] = False,
) -> None:
    """Print every configuration value and where it came from (default, swarm.toml, env VAR or flag)."""
    loaded = load_config()
    values = loaded.values()
    if json_output:
        document = {
            "values": values,
            "sources": loaded.sources,
            "repo": str(loaded.repo),
            "database_url": loaded.database_url(),
        }
        typer.echo(json.dumps(document, indent=2))
        return
    found = "found" if loaded.toml_path.is_file() else "not found, defaults apply"
    typer.echo(f"repo:   {loaded.repo}")
    typer.echo(f"config: {loaded.toml_path} ({found})")
    typer.echo("")
    rows = [("KEY", "VALUE", "SOURCE")]
    # JSON renders strings quoted and lists as lists, which reads like the TOML the user would write.
    rows += [(key, json.dumps(value), loaded.sources[key]) for key, value in values.items()]
    key_width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    for key, value, source in rows:
        typer.echo(f"{key:<{key_width}}  {value:<{value_width}}  {source}".rstrip())


def init(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Overwrite swarm.toml and the example specs if they exist (no other file is touched).",
        ),
    ] = False,
    claude: Annotated[
        bool,
        typer.Option(
            "--claude",
            help="Also write the Claude Code slash command .claude/commands/swarm.md (/swarm EPIC: launch, watch, "
            "answer, tear down through 'swarm mcp --lead'); a repository with a swarm.toml gets only that.",
        ),
    ] = False,
) -> None:
    """Write a commented swarm.toml and an example specs/ backlog in the current repository."""
    repo = find_repo_root()
    written = write_scaffold(repo, force=force, claude=claude)
    for path in written:
        typer.echo(f"wrote {path.relative_to(repo)}")
    if claude:
        typer.echo("give Claude Code the lead's tools, once: claude mcp add swarm -- swarm mcp --lead")
        if repo / CONFIG_FILE_NAME not in written:
            return
    if not (repo / ".git").exists():
        typer.echo(f"note: {repo} is not a git repository; run 'git init' before 'swarm launch'", err=True)
    typer.echo(f"next: edit the specs in {SPECS_DIR}/ (or keep the examples), then run 'swarm launch {EXAMPLE_EPIC}'")


def register(app: typer.Typer) -> None:
    """Add ``swarm config show`` and ``swarm init`` to ``app``."""
    config_app = typer.Typer(
        name="config",
        help="Inspect the configuration (swarm.toml, SWARM_* variables, flags).",
        no_args_is_help=True,
    )
    config_app.command("show", help="Print every configuration value and where it came from.")(show)
    app.add_typer(config_app, name="config")
    app.command("init", help="Write swarm.toml and an example specs/ backlog in this repository.")(init)
