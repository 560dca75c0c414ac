"""``swarm launch`` and ``swarm teardown``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from swarm.agents import known_kinds
from swarm.cli.options import DbOption, RememberedDbOption
from swarm.cli.output import console, emit_json, split_list
from swarm.config import load_config
from swarm.errors import BadInput, SwarmError
from swarm.fleet import parse_fleet
from swarm.follow import follow
from swarm.launcher import (
    LaunchRequest,
    LaunchResult,
    TeardownOptions,
    TeardownReport,
    launch,
    launch_json,
    load_launch_config,
    teardown,
    teardown_json,
)
from swarm.runtime.git import open_repo
from swarm.words import did, plural

if TYPE_CHECKING:
    from rich.console import Console

    from swarm.config import LoadedConfig


def _warn(text: str) -> None:
    print(f"swarm: warning: {text}", file=sys.stderr)


def launch_cmd(
    epic: str = typer.Argument(..., help="The epic to work, e.g. E005."),
    agents: int | None = typer.Option(
        None, "--agents", "-n", min=1, help="Number of agents (default: swarm.max_agents)."
    ),
    agent: str | None = typer.Option(None, "--agent", help="Agent kind: claude, codex, aider or command."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model passed to the agent CLI."),
    command: str | None = typer.Option(None, "--command", help="Run this shell command as the agent (kind 'command')."),
    fleet: str | None = typer.Option(
        None,
        "--fleet",
        help="Mixed fleet, kind[:model][=count] comma separated, e.g. claude:sonnet=2,codex=1 "
        "(instead of --agents/--agent/--model; command agents run --command).",
    ),
    base: str | None = typer.Option(None, "--base", help="Start the agent branches from this ref (default: HEAD)."),
    capabilities: str | None = typer.Option(
        None, "--capabilities", help="Comma-separated capabilities the agents offer."
    ),
    db: RememberedDbOption = None,
    host_label: str | None = typer.Option(
        None, "--host-label", help="Prefix of this machine's agent ids on a shared queue (default: the hostname)."
    ),
    reuse_branches: bool = typer.Option(
        False,
        "--reuse-branches",
        help="Use existing branches named like agent branches that swarm did not create, as they are.",
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Follow progress until this epic (and what it needs) is finished; exit 0 only if all done.",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.0, help="With --wait: give up after this many seconds."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print what launch did as one JSON object (its progress goes to stderr)."
    ),
) -> None:
    """Queue an epic, create one worktree and branch per agent, and start each agent in a tmux session."""
    if as_json and wait:
        raise BadInput(
            "--json and --wait do not go together", hint="launch with --json, then poll 'swarm status --json'"
        )
    out = console()
    request = LaunchRequest(
        epic=epic,
        agents=agents,
        kind=agent,
        model=model,
        command=command,
        base=base,
        capabilities=tuple(split_list(capabilities)),
        db=db,
        host_label=host_label,
        reuse_branches=reuse_branches,
        fleet=parse_fleet(fleet, known_kinds()) if fleet is not None else (),
    )
    loaded = load_launch_config(request, cwd=Path.cwd())
    # With --json, stdout is the document only: what launch says on the way goes to stderr.
    say = (lambda line: print(line, file=sys.stderr)) if as_json else out.print
    result = launch(request, cwd=Path.cwd(), say=say, loaded=loaded)
    if as_json:
        for warning in result.warnings:
            _warn(warning)
        emit_json(launch_json(result))
        return
    _print_launch(result, epic, out)
    if wait and not result.idle:
        _wait(result, loaded, timeout)


def _socket_prefix(result: LaunchResult) -> str:
    """``SWARM_TMUX_SOCKET=... `` when the swarm runs on a private tmux socket: the commands to suggest need it."""
    return f"SWARM_TMUX_SOCKET={result.tmux_socket} " if result.tmux_socket else ""


def _print_launch(result: LaunchResult, epic: str, out: Console) -> None:
    """Warnings on stderr, then what was queued, which sessions started or were running, and what to do next."""
    for warning in result.warnings:
        _warn(warning)
    queued = result.queued
    if queued.dependencies:
        out.print(
            f"also queued {plural(len(queued.dependencies), 'undone dependency')} from other epics: "
            + ", ".join(f"{s.id} ({s.epic})" for s in queued.dependencies)
        )
    if queued.added:
        out.print(f"queued {plural(len(queued.added), 'task')} ({len(queued.ready)} ready)")
    elif queued.existing:
        out.print(f"resuming: {plural(len(queued.existing), 'task')} already queued")
    if result.started_sessions:
        started = result.started_sessions
        out.print(f"started {plural(len(started), 'agent session')}: {', '.join(started)}")
    if result.resumed_sessions:
        resumed = result.resumed_sessions
        out.print(f"{plural(len(resumed), 'session')} already running: {', '.join(resumed)}")
    if result.idle:
        return  # launch said why nothing started; there is nothing to watch
    sock = _socket_prefix(result)
    out.print(
        f"swarm {result.swarm.id} is working {_epics_text(result.swarm.epics or (epic,))}. Next: '{sock}swarm status', "
        f"'{sock}swarm attach agent-1', '{sock}swarm teardown'"
    )


def _epics_text(epics: tuple[str, ...]) -> str:
    return f"epic {epics[0]}" if len(epics) == 1 else f"epics {', '.join(epics)}"


def _wait(result: LaunchResult, loaded: LoadedConfig, timeout: float | None) -> None:
    """``--wait``: follow this launch's tasks (its epic and the dependencies it queued) until they are finished;
    Ctrl-C stops only the waiting, and says so."""
    queued = result.queued
    # The tasks of this launch: its epic's and the dependencies it queued, not the rest of the swarm's.
    mine = [*queued.added, *queued.existing]
    try:
        follow(result.swarm, loaded, timeout=timeout, tasks=mine, what=queued.epic)
    except KeyboardInterrupt:
        # Only the waiting stops: the agents work on in their sessions, which the user may not expect.
        sock = _socket_prefix(result)
        print(
            f"swarm: stopped waiting; the swarm keeps running: '{sock}swarm status' to watch, "
            f"'{sock}swarm teardown' to stop",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def teardown_cmd(
    now: bool = typer.Option(False, "--now", help="Stop agents mid-task (their task returns to the queue)."),
    force: bool = typer.Option(False, "--force", help="With --delete-branches: delete unmerged branches too."),
    keep_worktrees: bool = typer.Option(False, "--keep-worktrees", help="Leave the agents' worktrees in place."),
    delete_branches: bool = typer.Option(False, "--delete-branches", help="Delete the agents' branches (merged only)."),
    grace: float | None = typer.Option(
        None, "--grace", min=0.0, help="Seconds to wait for workers (default 30, 15 with --now)."
    ),
    db: DbOption = None,
    all_hosts: bool = typer.Option(
        False, "--all-hosts", help="Also ask the workers of every other host through the database to stop."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Stop everything this swarm owns, return unfinished tasks, save uncommitted work, remove worktrees."""
    out = console()
    loaded = load_config(open_repo(Path.cwd()).root, overrides={"queue.database": db})
    report = teardown(
        cwd=Path.cwd(),
        loaded=loaded,
        options=TeardownOptions(
            now=now,
            force=force,
            keep_worktrees=keep_worktrees,
            delete_branches=delete_branches,
            grace=grace,
            all_hosts=all_hosts,
        ),
        # With --json, stdout is the report only: what teardown says on the way goes to stderr. Not markup: the
        # lines name branches and files that agents chose.
        say=(lambda line: print(line, file=sys.stderr)) if as_json else (lambda text: out.print(text, markup=False)),
    )
    if as_json:
        emit_json(teardown_json(report))
    else:
        _print_report(report)
    if report.swarm_id and not report.clean:
        raise SwarmError(
            f"teardown could not stop everything: processes {report.survivors}, sessions {report.sessions_left}",
            hint="stop those PIDs by hand (they carry this swarm's SWARM_ID) and run teardown again",
        )


def _print_report(report: TeardownReport) -> None:
    if report.swarm_id is None:
        return
    out = console()
    if report.already_down and report.clean:
        out.print(f"swarm {report.swarm_id} is already down: nothing of it was running on this host")
        return
    if report.killed:
        out.print(f"stopped {plural(len(report.killed), 'process')} that did not exit in time")
    if report.returned_tasks:
        out.print(f"returned to the queue: {', '.join(report.returned_tasks)}")
    # Only what teardown did: after a finished swarm its sessions have closed themselves ("closed 0" says nothing).
    done = did(
        ("closed", len(report.sessions_killed), "session"),
        ("removed", len(report.worktrees_removed), "worktree"),
        ("kept", len(report.worktrees_kept), "worktree"),
    )
    if done:
        out.print(done)
    if report.branches_deleted:
        out.print(f"deleted branches: {', '.join(report.branches_deleted)}")
    if report.branches_kept:
        out.print(f"kept unmerged branches: {', '.join(report.branches_kept)} (--force deletes them)")
    if report.clean:
        out.print(f"swarm {report.swarm_id} is down: no process or session of it is left; branches keep the work")
    if report.ended:
        out.print("it has ended ('swarm history' lists it); the next 'swarm launch' starts a new swarm")


def register(app: typer.Typer) -> None:
    """Attach ``swarm launch`` and ``swarm teardown``."""
    app.command("launch")(launch_cmd)
    app.command("teardown")(teardown_cmd)
