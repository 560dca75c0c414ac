"""Every command and every option has help text (sqlite-utils' test_docs habit), and --help works."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.core import TyperArgument
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


def _summary(command: Any) -> str:
    """A command's first paragraph, whitespace collapsed: what a listing of commands must show in full."""
    return " ".join((command.help or "").split("\n\n")[0].split())


GROUPS = [(p, c) for p, c in COMMANDS if getattr(c, "commands", None)]


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(p) or "swarm" for p, _ in GROUPS])
def test_command_listings_show_the_whole_first_line(path: tuple[str, ...], group: Any) -> None:
    """`swarm --help` lists each command with its whole summary (wrapped if long), never cut short with '...'."""
    out = CliRunner().invoke(app, [*path, "--help"], terminal_width=80).output
    listing = out.split("Commands:\n", 1)[1]
    flat = " ".join(listing.split())
    for name, sub in group.commands.items():
        assert f"{name} {_summary(sub)}" in flat, f"'swarm {' '.join(path)} --help' cuts the summary of {name}:\n{out}"
    assert "..." not in listing.replace("[ARGS]...", ""), out


#: What typer shows by default in place of a name for the value: `<str>`, `<int range>`, `{epic}`, `list[str]`.
_TYPE_METAVAR = re.compile(r"<(str|int|float|bool|path|file|text|uuid|datetime|choice)( range)?>|\{[a-z_]+\}|list\[")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "swarm" for p, _ in COMMANDS])
def test_help_names_values_in_capitals(path: tuple[str, ...], command: Any) -> None:
    """Usage and options name their values like `EPIC`, `--db URL`, `--agents N`, not by type (`<str>`, `{epic}`)."""
    out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
    assert not _TYPE_METAVAR.search(out), f"'swarm {' '.join(path)} --help':\n{out}"
    usage = out.splitlines()[0]
    for param in command.params:
        if isinstance(param, TyperArgument):
            assert (param.metavar or "").isupper(), param.name
            shown = param.metavar if param.required else f"[{param.metavar}]"
            assert shown in usage.split(), usage
        elif not (param.is_flag or param.count):
            assert (param.metavar or "").replace("_", "").isupper(), (path, param.name, param.metavar)
            assert any(f"{opt} {param.metavar}" in out for opt in param.opts), out
