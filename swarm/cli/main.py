"""The typer application and the one error boundary of the command line."""

from __future__ import annotations

import logging
import os
import sys

import typer

from swarm import __version__
from swarm.errors import EXIT_RUNTIME, SwarmError

log = logging.getLogger(__name__)

#: Which module defines each top-level command. A command line loads only the module it needs (the full tree
#: only for `swarm --help`): start-up time is paid on every `swarm status`, by people and by agents.
MODULE_OF = {
    "init": "config_cmd",
    "config": "config_cmd",
    "launch": "launch_cmd",
    "teardown": "launch_cmd",
    "status": "status_cmd",
    "history": "status_cmd",
    "merge": "merge_cmd",
    "attach": "agent_cmd",
    "logs": "agent_cmd",
    "worker": "agent_cmd",
    "monitor": "agent_cmd",
    "queue": "queue_cmd",
    "msg": "msg_cmd",
    "mcp": "mcp_cmd",
    "notify": "notify_cmd",
    "doctor": "doctor_cmd",
    "repair": "repair_cmd",
    "demo": "demo_cmd",
}
#: Registration order is the order of `swarm --help`: the everyday commands first.
_ORDER = (
    "config_cmd",
    "launch_cmd",
    "status_cmd",
    "merge_cmd",
    "agent_cmd",
    "queue_cmd",
    "msg_cmd",
    "mcp_cmd",
    "notify_cmd",
    "doctor_cmd",
    "repair_cmd",
    "demo_cmd",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"swarm {__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run a team of coding agents on one git repository in parallel."""


def build_app(only: str | None = None) -> typer.Typer:
    """The typer application: every command, or only the one named ``only`` (a top-level command name)."""
    import importlib

    from swarm.cli.helptext import SwarmGroup

    app = typer.Typer(
        name="swarm",
        cls=SwarmGroup,  # whole summaries, values named like EPIC and --db URL (swarm/cli/helptext.py)
        help="Run a team of coding agents on one git repository in parallel.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    if only == "--version":
        modules: tuple[str, ...] = ()  # the root callback prints it: no command module is needed
    else:
        modules = _ORDER if only not in MODULE_OF else (MODULE_OF[only],)
    for name in modules:
        importlib.import_module(f"swarm.cli.{name}").register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    # `from swarm.cli.main import app` (tests, docs) still gets the whole tree, built on first use.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def _command_of(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help"):
            return None
        if arg == "--version":
            return arg
    return None


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``swarm`` console script: the single place errors become exit codes."""
    debug = os.environ.get("SWARM_DEBUG", "") not in ("", "0")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # Standalone mode: typer prints usage errors itself and exits 2, --help exits 0.
        args = sys.argv[1:] if argv is None else argv
        build_app(_command_of(args))(args=args, prog_name="swarm")
    except SystemExit as exc:
        return _exit_code(exc.code)
    except SwarmError as exc:
        log.debug("command failed", exc_info=True)
        if debug:
            import traceback

            traceback.print_exc()
        print(f"swarm: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("swarm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: anything unexpected still gets one line, never a traceback
        if debug:
            import traceback

            traceback.print_exc()
        print(
            f"swarm: internal error: {type(exc).__name__}: {exc}; "
            "run again with SWARM_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") convention
    return EXIT_RUNTIME


def main() -> None:
    """``python -m swarm``."""
    sys.exit(run())
