"""``swarm doctor``: check the tools and versions swarm needs on this machine."""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import typer
from rich.table import Table

from swarm.agents import (
    CLAUDE_MCP_OPTION,
    VERSION_TIMEOUT_SECONDS,
    AgentTemplate,
    check_agent_cli,
    known_kinds,
    load_template,
    root_permission_problem,
    templates_dir,
)
from swarm.cli.output import console, emit_json
from swarm.config import AgentSettings, load_config
from swarm.errors import EXIT_RUNTIME, BadInput, SwarmError
from swarm.runtime import sandbox

OK = "ok"
MISSING = "missing"
WARN = "warn"
#: Installed but unusable (too old, or a configuration that does not load).
FAIL = "fail"

MIN_PYTHON = (3, 11)
#: `git worktree` subcommands swarm relies on (list --porcelain, remove, prune) are complete from 2.20.
MIN_GIT = (2, 20)
#: RETURNING and the other SQL the SQLite store uses need 3.35.
MIN_SQLITE = (3, 35)

_POSTGRES_GLOB = "/usr/lib/postgresql/*/bin/pg_ctl"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``required`` checks decide the exit code; the others only inform."""

    name: str
    status: str
    version: str | None
    detail: str
    required: bool

    @property
    def passed(self) -> bool:
        """A required check passes only when ok (or warn); an optional one always passes."""
        return not self.required or self.status in (OK, WARN)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def _show(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _output(argv: list[str], timeout: float) -> tuple[str | None, str]:
    """What a short informational command (``--version``, ``--help``) prints, stdout and stderr, or None and why
    it could not be read."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:g}s"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    text = done.stdout + "\n" + done.stderr
    if not text.strip():
        return None, f"no output, exit {done.returncode}"
    return text, ""


def _first_line(argv: list[str]) -> str | None:
    """The first non-empty output line of a short version command, or None if it cannot run."""
    text, _ = _output(argv, VERSION_TIMEOUT_SECONDS)
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), None)


def _versioned(name: str, found: str | None, version: str | None, minimum: tuple[int, ...] | None) -> Check:
    """A check for a found (or not) tool with an optional minimum version."""
    if found is None:
        return Check(name, MISSING, None, f"'{name}' is not on PATH; install it", required=True)
    if version is None:
        return Check(name, WARN, None, f"{found}: cannot read its version", required=True)
    parsed = _version_tuple(version)
    if minimum is not None and parsed is not None and parsed < minimum:
        return Check(name, FAIL, version, f"{found}: version {_show(minimum)} or newer is needed", required=True)
    return Check(name, OK, version, found, required=True)


def check_python() -> Check:
    """The running interpreter is recent enough."""
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, version, f"Python {_show(MIN_PYTHON)} or newer is needed", True)
    return Check("python", OK, version, sys.executable, True)


def check_git() -> Check:
    """git is installed and new enough for the worktree commands swarm uses."""
    found = shutil.which("git")
    line = _first_line([found, "--version"]) if found else None
    version = line.removeprefix("git version ").strip() if line else None
    return _versioned("git", found, version, MIN_GIT)


def check_tmux() -> Check:
    """tmux is installed: every agent runs in its own tmux session."""
    found = shutil.which("tmux")
    line = _first_line([found, "-V"]) if found else None
    version = line.removeprefix("tmux ").strip() if line else None
    return _versioned("tmux", found, version, None)


def check_sqlite() -> Check:
    """The SQLite library Python links against supports what the SQLite store needs."""
    version = sqlite3.sqlite_version
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        return Check("sqlite", FAIL, version, f"SQLite {_show(MIN_SQLITE)} or newer is needed (use PostgreSQL)", True)
    return Check("sqlite", OK, version, "library linked into Python", True)


def check_agent(template: AgentTemplate, *, required: bool) -> Check:
    """One agent kind's CLI. Missing is a failure only for the kind swarm is configured to run."""
    name = f"agent {template.kind}"
    try:
        version = check_agent_cli(template)
    except BadInput as exc:
        why = "the configured agent kind" if required else "not needed unless you use this kind"
        return Check(name, MISSING, None, f"not installed ({why}); install: {exc.hint or template.binary}", required)
    if version is None:
        return Check(name, OK, None, "runs any --command; nothing to install", required)
    return Check(name, OK, version, shutil.which(template.binary) or template.binary, required)


#: Seconds to wait for ``<cli> --help``: aider imports its whole stack first (5 s on an idle machine).
HELP_TIMEOUT_SECONDS = 30.0


def template_options(template: AgentTemplate) -> tuple[list[str], list[str]]:
    """The ``--help`` argv of the template's CLI and the options the template passes it.

    The CLI's own arguments start at the first argv entry that is the template's binary (codex's template runs
    it through a small ``/bin/sh -c`` front); the words right after it are subcommands (``codex exec``), whose
    own ``--help`` lists their options. An option is an entry starting with ``-``, without any ``=value``; a
    Claude Code run also gets the option the worker adds.
    """
    argv = list(template.argv)
    start = next((n for n, part in enumerate(argv) if os.path.basename(part) == template.binary), 0)
    own = argv[start + 1 :]
    subcommands = []
    for part in own:
        if part.startswith("-") or "{" in part:
            break
        subcommands.append(part)
    options = [part.split("=", 1)[0] for part in own if part.startswith("-") and part != "-"]
    if template.kind == "claude":
        options.append(CLAUDE_MCP_OPTION)  # the worker adds it (the swarm MCP server)
    return [template.binary, *subcommands, "--help"], list(dict.fromkeys(options))


def _help_text(argv: list[str]) -> tuple[str | None, str]:
    """The output of a CLI's ``--help`` (stdout and stderr), or None and why it could not be read."""
    return _output(argv, HELP_TIMEOUT_SECONDS)


def check_agent_options(template: AgentTemplate, version: str | None, *, required: bool) -> Check:
    """Every option the template passes its CLI is one the installed version lists in its ``--help``: a renamed
    or dropped option (codex 0.171 dropped --full-auto) would otherwise fail every task at its start."""
    name = f"flags {template.kind}"
    help_argv, options = template_options(template)
    shown = " ".join(help_argv)
    text, why = _help_text(help_argv)
    if text is None:
        return Check(name, WARN, version, f"cannot read {shown} ({why}); the template's options are not checked", False)
    # An option is listed when it stands alone: "--model" must not be found inside "--model-settings".
    unknown = [opt for opt in options if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)]
    if unknown:
        source = templates_dir() / "agents" / f"{template.kind}.toml"
        return Check(
            name,
            FAIL,
            version,
            f"{source} passes {', '.join(unknown)}, which {template.binary} {version or '(version unknown)'} does "
            f"not accept ({shown}); remove it from the template's argv or install the version the template names",
            required,
        )
    return Check(name, OK, version, f"{shown} lists the template's {len(options)} options", required)


def _agent_checks(template: AgentTemplate, *, required: bool) -> list[Check]:
    """A kind's CLI, and once it is installed, the options its template passes it."""
    found = check_agent(template, required=required)
    if found.status != OK or not template.binary:
        return [found]
    return [found, check_agent_options(template, found.version, required=required)]


def check_postgres() -> Check:
    """PostgreSQL client and server tools: only needed for a PostgreSQL queue, so informational."""
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob(_POSTGRES_GLOB), reverse=True)), None)
    if found is None:
        return Check("postgresql", MISSING, None, "pg_ctl not found; needed only for a PostgreSQL queue", False)
    line = _first_line([found, "--version"])
    # "pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)": the first dotted number is the version.
    match = re.search(r"\d+(?:\.\d+)+", line or "")
    version = match.group(0) if match else line
    return Check("postgresql", OK, version, found, False)


def check_claude_root(permission_mode: str, env: Mapping[str, str]) -> Check:
    """Claude Code refuses bypassPermissions as root unless IS_SANDBOX=1: warn before a launch fails."""
    template = load_template("claude")
    problem = root_permission_problem(template, permission_mode, env)
    if problem is not None:
        return Check("claude as root", WARN, None, problem, False)
    return Check("claude as root", OK, None, f"permission mode {permission_mode} can run as this user", False)


def check_sandbox(kind: str) -> Check:
    """bubblewrap is installed and can create namespaces here; required only with ``sandbox = "bwrap"``."""
    required = kind == "bwrap"
    why = "" if required else ' (needed only with [swarm] sandbox = "bwrap")'
    found = shutil.which("bwrap")
    if found is None:
        return Check("sandbox", MISSING, None, f"bwrap is not on PATH{why}; {sandbox.INSTALL_HINT}", required)
    line = _first_line([found, "--version"])
    version = line.removeprefix("bubblewrap ").strip() if line else None
    problem = sandbox.bwrap_problem(found)
    if problem is not None:
        hint = "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or run as root)"
        return Check("sandbox", FAIL, version, f"{problem}{why}; {hint}", required)
    return Check("sandbox", OK, version, f"{found} (sandbox = {kind!r})", required)


def run_checks(agent_kind: str | None = None) -> list[Check]:
    """Every check, in report order. ``agent_kind`` overrides the configured ``agent.kind``."""
    checks = [check_python(), check_git(), check_tmux(), check_sqlite()]
    defaults = AgentSettings()
    kind, permission_mode = defaults.kind, defaults.permission_mode
    sandbox_kind = "none"
    try:
        loaded = load_config()
    except SwarmError as exc:
        # Report it and go on with the defaults: the tool checks are still worth seeing.
        checks.append(Check("config", FAIL, None, exc.render(), True))
    else:
        kind, permission_mode = loaded.config.agent.kind, loaded.config.agent.permission_mode
        sandbox_kind = loaded.config.swarm.sandbox
        where = loaded.toml_path if loaded.toml_path.exists() else "defaults (no swarm.toml)"
        checks.append(Check("config", OK, None, f"{where}; agent.kind = {kind}", True))
    if agent_kind is not None:
        load_template(agent_kind)  # an unknown --agent is bad input: exit 2 with the known kinds
        kind = agent_kind
    kinds = known_kinds()
    if kind not in kinds:
        checks.append(Check(f"agent {kind}", FAIL, None, f"unknown agent kind; known: {', '.join(kinds)}", True))
    # Each kind's CLI in its own thread: aider alone takes seconds to print its version and its help.
    with ThreadPoolExecutor(max_workers=max(1, len(kinds))) as pool:
        for found in pool.map(lambda each: _agent_checks(load_template(each), required=each == kind), kinds):
            checks.extend(found)
    checks.append(check_postgres())
    checks.append(check_sandbox(sandbox_kind))
    if "claude" in kinds:
        checks.append(check_claude_root(permission_mode, os.environ))
    return checks


def doctor_cmd(
    agent: str | None = typer.Option(
        None, "--agent", help="Agent kind whose CLI must be installed (default: agent.kind from swarm.toml)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check the tools swarm needs (Python, git, tmux, SQLite, the agent CLIs, bwrap for a sandbox) and that each
    installed agent CLI accepts the options its template passes. Exits 1 if a required one is missing or fails."""
    checks = run_checks(agent)
    ok = all(c.passed for c in checks)
    if as_json:
        emit_json(
            {
                "checks": [
                    {
                        "name": c.name,
                        "status": c.status,
                        "version": c.version,
                        "detail": c.detail,
                        "required": c.required,
                    }
                    for c in checks
                ],
                "ok": ok,
            }
        )
    else:
        out = console()
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("check", "status", "version", "detail"):
            table.add_column(column)
        for c in checks:
            table.add_row(c.name, c.status, c.version or "-", c.detail)
        out.print(table)
        failed = [c.name for c in checks if not c.passed]
        if failed:
            out.print(f"not ready: {', '.join(failed)} (required)")
        else:
            out.print("all required checks pass")
    if not ok:
        raise typer.Exit(EXIT_RUNTIME)


def register(app: typer.Typer) -> None:
    """Attach ``swarm doctor`` to the root app."""
    app.command("doctor")(doctor_cmd)
