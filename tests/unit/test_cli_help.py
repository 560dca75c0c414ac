"""Every command and every option has help text (sqlite-utils' test_docs habit), and --help works."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from swarm.cli.main import app


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found.extend(_walk(sub, (*path, name)))
    return found


COMMANDS = _walk(typer.main.get_command(app))


def test_the_tree_has_the_design_commands() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    for expected in (
        "queue init",
        "queue claim",
        "queue heartbeat",
        "queue release",
        "queue status",
        "queue add",
        "queue cancel",
        "queue retry",
        "queue reap",
        "config show",
        "init",
    ):
        assert expected in paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "swarm" for p, _ in COMMANDS])
def test_command_has_help(path: tuple[str, ...], command: Any) -> None:
    assert (command.help or "").strip(), f"'swarm {' '.join(path)}' has no help text"
    for param in command.params:
        if param.name in ("help",):
            continue
        assert (getattr(param, "help", None) or "").strip(), (
            f"'swarm {' '.join(path)}' parameter {param.name!r} has no help text"
        )
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_every_command_loads_on_its_own() -> None:
    """A command line loads only its command's module: each command must be found that way too."""
    from swarm.cli.main import MODULE_OF, build_app

    top = set(getattr(typer.main.get_command(app), "commands", {}))
    assert top == set(MODULE_OF)
    for name in MODULE_OF:
        assert name in getattr(typer.main.get_command(build_app(name)), "commands", {})
