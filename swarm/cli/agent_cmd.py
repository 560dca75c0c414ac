"""``swarm attach``, ``swarm logs`` and ``swarm worker`` (the loop launch starts in each session)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import BinaryIO

import typer

from swarm.cli.options import DbOption, load_with_db
from swarm.config import LoadedConfig
from swarm.errors import BadInput
from swarm.models import AgentRecord
from swarm.queue import open_queue
from swarm.runtime.runfile import read_run_file


def _agent(loaded: LoadedConfig, agent_id: str) -> tuple[AgentRecord, str]:
    with open_queue(loaded) as store:
        swarm = store.current_swarm()
        agents = {a.id: a for a in store.list_agents(swarm.id if swarm else None)}
    if agent_id not in agents:
        known = ", ".join(agents) or "none"
        raise BadInput(f"no agent {agent_id!r} in this swarm", hint=f"agents: {known}")
    socket = str((swarm.settings.get("tmux_socket") if swarm else "") or loaded.config.swarm.tmux_socket)
    return agents[agent_id], socket


def attach_cmd(
    agent_id: str = typer.Argument(..., help="The agent whose tmux session to attach, e.g. agent-1."),
    db: DbOption = None,
) -> None:
    """Attach your terminal to an agent's tmux session (detach with the tmux prefix, then d)."""
    # libtmux is imported here: every worker process starts through this module and never drives tmux.
    from swarm.runtime.tmux import Tmux

    agent, socket = _agent(load_with_db(db), agent_id)
    tmux = Tmux(socket)
    if not agent.session or not tmux.has_session(agent.session):
        raise BadInput(f"{agent_id} has no running session", hint=f"'swarm logs {agent_id}' shows its log")
    argv = tmux.attach_argv(agent.session)
    os.execvp(argv[0], argv)  # replaces this process with tmux, as 'tmux attach' would


def logs_cmd(
    agent_id: str = typer.Argument(..., help="The agent whose log to print, e.g. agent-1."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they arrive."),
    lines: int = typer.Option(0, "--lines", "-n", min=0, help="Only the last N lines (0: all)."),
    raw: bool = typer.Option(
        False, "--raw", help="The JSON events the agent's CLI printed (claude, codex), one a line, instead of the log."
    ),
    swarm_id: str | None = typer.Option(
        None, "--swarm", help="Only the runs of this swarm (an id from 'swarm history'); the log holds every swarm's."
    ),
    db: DbOption = None,
) -> None:
    """Print an agent's log: the worker's own lines and what the agent did, its JSON events (Claude Code's
    stream-json, codex's --json) as readable lines; --raw prints the events themselves."""
    loaded = load_with_db(db)
    path = _log_path(loaded, agent_id, swarm_id, follow=follow, raw=raw)
    out = sys.stdout.buffer
    handle = path.open("rb")
    try:
        data = handle.read()
        older = path.with_name(path.name + ".1")  # the worker rotates both files at swarm.log_max_bytes
        if swarm_id is not None or not lines or data.count(b"\n") < lines:
            with contextlib.suppress(OSError):
                data = older.read_bytes() + data
        if swarm_id is not None:
            data = _runs_of(data, agent_id, swarm_id)
        if lines:
            data = b"".join(data.splitlines(keepends=True)[-lines:])
        out.write(data)
        out.flush()
        while follow:
            chunk = handle.read()
            if chunk:
                out.write(chunk)
                out.flush()
            elif _rotated(path, handle):
                handle.close()  # everything of the old file is printed: follow the new one from its start
                handle = path.open("rb")
            else:
                time.sleep(0.2)
    finally:
        handle.close()


def _log_path(loaded: LoadedConfig, agent_id: str, swarm_id: str | None, *, follow: bool, raw: bool) -> Path:
    """The file ``swarm logs`` prints: the agent's log, or its events with ``--raw``; BadInput when the agent, the
    swarm or the file does not exist, or the flags do not go together."""
    if swarm_id is None:
        _agent(loaded, agent_id)  # an unknown agent is bad input, whether or not a log exists
    else:
        _check_swarm_option(loaded, swarm_id, follow=follow, raw=raw)
        if not _AGENT_ID.fullmatch(agent_id):  # no longer checked against this swarm's agents: it names a file
            raise BadInput(f"{agent_id!r} is not an agent id", hint="agent ids look like agent-1 or host1-agent-1")
    path = loaded.repo / ".swarm" / "logs" / f"{agent_id}.{'jsonl' if raw else 'log'}"
    if raw and not path.exists():
        raise BadInput(
            f"{agent_id} printed no JSON events (no {path})",
            hint=f"only claude and codex agents print them; 'swarm logs {agent_id}' shows everything it printed",
        )
    if not path.exists():
        raise BadInput(f"{agent_id} has no log yet at {path}", hint="its worker has not started")
    return path


_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_swarm_option(loaded: LoadedConfig, swarm_id: str, *, follow: bool, raw: bool) -> None:
    """``--swarm``: a swarm of this database, and neither ``-f`` (which follows the log as it grows) nor ``--raw``
    (the events carry no swarm)."""
    if follow or raw:
        flag = "-f" if follow else "--raw"
        raise BadInput(
            f"--swarm cannot be combined with {flag}",
            hint="-f follows the current log and --raw prints every swarm's events; drop --swarm or the other flag",
        )
    with open_queue(loaded) as store:
        store.get_swarm(swarm_id)  # BadInput naming the unknown id


def _runs_of(data: bytes, agent_id: str, swarm_id: str) -> bytes:
    """The lines of the log ``data`` written in runs of ``swarm_id``: from each worker's ``started ... (swarm ID)``
    line to the next worker's start. What comes before the first such line is of a run whose swarm is unknown."""
    start = re.compile(rb"\[swarm [^\]]*\] " + re.escape(agent_id.encode()) + rb": started in .* \(swarm (\S+)\)$")
    keep = False
    kept: list[bytes] = []
    for line in data.splitlines(keepends=True):
        begun = start.match(line.rstrip(b"\r\n"))
        if begun:
            keep = begun.group(1) == swarm_id.encode()
        if keep:
            kept.append(line)
    if not kept:
        typer.echo(
            f"note: the log of {agent_id} holds no run of swarm {swarm_id} (rotated away, or written before swarm "
            "named the swarm in its logs)",
            err=True,
        )
    return b"".join(kept)


def _rotated(path: Path, handle: BinaryIO) -> bool:
    """Whether ``path`` now names another file than the open ``handle`` (the worker rotated the log)."""
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False  # between the rename and the new file: look again


def worker_cmd(
    run_file: Path = typer.Option(..., "--run-file", help="The agent's run file, written by 'swarm launch'."),
) -> None:
    """Run one agent's loop: claim, merge dependencies, run the agent, commit, complete (started by launch)."""
    from swarm.runtime.worker import run_worker

    raise typer.Exit(run_worker(read_run_file(run_file)))


def register(app: typer.Typer) -> None:
    """Attach the per-agent commands."""
    app.command("attach")(attach_cmd)
    app.command("logs")(logs_cmd)
    app.command("worker")(worker_cmd)
    app.command("monitor")(monitor_cmd)


def monitor_cmd(
    swarm_id: str | None = typer.Option(None, "--swarm-id", help="The swarm to watch (default: the current one)."),
    db: DbOption = None,
) -> None:
    """Watch this host's agents, restart dead or stalled ones, escalate to the lead (started by launch)."""
    from swarm.runtime.monitor import Monitor

    loaded = load_with_db(db)
    if swarm_id is None:
        with open_queue(loaded) as store:
            current = store.current_swarm()
        if current is None:
            raise BadInput("no swarm in this database yet", hint="start one with 'swarm launch EPIC'")
        swarm_id = current.id
    raise typer.Exit(Monitor(loaded.repo, swarm_id, loaded=loaded).run())
