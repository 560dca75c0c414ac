"""The typer application and the one error boundary of the command line."""

from __future__ import annotations

import logging
import os
import sys

import typer

from swarm import __version__
from swarm.errors import EXIT_RUNTIME, SwarmError

log = logging.getLogger(__name__)

app = typer.Typer(
    name="swarm",
    help="Run a team of coding agents on one git repository in parallel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"swarm {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run a team of coding agents on one git repository in parallel."""


def _register() -> None:
    # Imported here so that each command group stays its own module and the app is assembled once.
    from swarm.cli import (
        agent_cmd,
        config_cmd,
        demo_cmd,
        doctor_cmd,
        launch_cmd,
        mcp_cmd,
        merge_cmd,
        msg_cmd,
        queue_cmd,
        repair_cmd,
        status_cmd,
    )

    # Registration order is the order of `swarm --help`: the everyday commands first.
    config_cmd.register(app)
    launch_cmd.register(app)
    status_cmd.register(app)
    merge_cmd.register(app)
    agent_cmd.register(app)
    queue_cmd.register(app)
    msg_cmd.register(app)
    mcp_cmd.register(app)
    doctor_cmd.register(app)
    repair_cmd.register(app)
    demo_cmd.register(app)


_register()


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``swarm`` console script: the single place errors become exit codes."""
    debug = os.environ.get("SWARM_DEBUG", "") not in ("", "0")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # Standalone mode: typer prints usage errors itself and exits 2, --help exits 0.
        app(args=argv, prog_name="swarm")
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
