"""tmux sessions of a swarm: create, find by tag, capture, respawn, kill. The only module importing libtmux.

Every call goes through one ``tmux`` client invocation (``Server.cmd``), built here with exact targets:
``=name`` matches a session name exactly, where a bare ``name`` would prefix-match (``ab`` finds ``abc``)
and could hit a session that is not ours. Stopping is guarded by the ``@swarm_id`` user option
(docs/contract.md §6): :meth:`Tmux.kill_session` checks the tag on the session itself and then kills it by its
immutable id, so a look-alike name never loses a session.

Things tmux does that shape this code (tmux 3.3a):

* ``history-limit`` only applies to panes created after it is set, so :meth:`Tmux.new_session` opens the
  session on an empty placeholder pane, sets its options, opens the real window and closes the placeholder,
  all in one tmux invocation (tmux runs one invocation's command list without handling child exits in
  between, so a command that exits at once cannot make the session vanish before it is tagged).
* A pane inherits the tmux *server's* environment, not ours, so variables go in as ``-e K=V``; only those
  that differ from what the pane would inherit anyway, because tmux refuses commands over 16 KB.
* A command-line argument ending in ``;`` is taken as a command separator, so such arguments are escaped.
* ``-c start-directory`` is expanded as a format, so ``#`` in a path is doubled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from libtmux import exc as tmux_exc
from libtmux.common import get_version_str, tmux_cmd
from libtmux.server import Server

from swarm.errors import BadInput, SwarmError

logger = logging.getLogger(__name__)

TAG_OPTION = "@swarm_id"
"""The session user option that marks a session as belonging to one swarm (docs/contract.md §6)."""

HISTORY_LIMIT = 10000

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Tags travel through tab-separated list output and tmux option values: keep them to printable,
# non-space characters.
_TAG_RE = re.compile(r"^[!-~]+$")
_ENV_KEY_RE = re.compile(r"^[^=\0]+$")

# tmux sets these for every pane; passing the launching terminal's values would point programs in the
# pane at the wrong terminal or the wrong tmux server.
_TMUX_OWNED_ENV = frozenset({"TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "TMUX", "TMUX_PANE"})

# "server exited unexpectedly" and "no current target": the client reached a server with no session
# left (shutting down, or kept up by exit-empty off), which for a query means the same as no server.
_NOT_RUNNING_MARKERS = (
    "no server running",
    "error connecting to",
    "server exited unexpectedly",
    "no current target",
)
_MISSING_SESSION_MARKERS = ("can't find session", "no such session", "can't find window", "can't find pane")

_NOT_INSTALLED_HINT = "install tmux (apt-get install tmux) and run again"


class TmuxError(SwarmError):
    """A tmux command failed (a duplicate session, a server that cannot be reached, a refused command)."""


def tmux_available() -> str:
    """The installed tmux version (``"3.3a"``); :class:`BadInput` if there is no tmux binary."""
    if shutil.which("tmux") is None:
        raise BadInput("tmux is not installed", hint=_NOT_INSTALLED_HINT)
    try:
        return get_version_str()
    except tmux_exc.TmuxCommandNotFound as err:
        raise BadInput("tmux is not installed", hint=_NOT_INSTALLED_HINT) from err
    except tmux_exc.LibTmuxException as err:
        raise TmuxError(f"cannot read the tmux version: {err}", hint="check that 'tmux -V' works") from err


def check_session_name(name: str) -> str:
    """``name`` if tmux can target it safely (letters, digits, ``-``, ``_``); else :class:`BadInput`."""
    if not _NAME_RE.match(name):
        raise BadInput(
            f"invalid tmux session name {name!r}",
            hint="use only letters, digits, '-' and '_' ('.' and ':' are tmux target separators)",
        )
    return name


def _check_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise BadInput(f"invalid swarm tag {tag!r}", hint="use a non-empty tag without spaces")
    return tag


def _escape_arg(arg: str) -> str:
    """Keep tmux from reading a trailing ``;`` of an argument as a command separator."""
    if arg.endswith(";"):
        return arg[:-1] + "\\;"
    return arg


def _escape_format(text: str) -> str:
    """Literal text for an option tmux expands as a format (``-c start-directory``)."""
    return text.replace("#", "##")


def _session_target(name: str) -> str:
    return "=" + check_session_name(name)


def _pane_target(name: str) -> str:
    # "=name:" is the session's current window and its active pane. Commands that take a pane target
    # (show-options, display-message, set-option) do not resolve a bare "=name" as a session once the
    # session's first window is gone: tmux 3.3a then fails or, for display-message, prints nothing.
    return _session_target(name) + ":"


def _directory(cwd: Path) -> str:
    """``cwd`` for tmux's ``-c``: it must exist, because tmux silently starts elsewhere when it does not."""
    path = Path(cwd).resolve()
    if not path.is_dir():
        raise BadInput(f"working directory {str(cwd)!r} does not exist", hint="create it first")
    return _escape_format(str(path))


def _shell_command(command: Sequence[str]) -> list[str]:
    """argv for tmux that runs ``command`` under POSIX sh whatever the user's ``default-shell`` is.

    tmux runs a single-string command with the user's shell (which may be fish), so the quoting of
    ``shlex.join`` is only safe under an explicit ``/bin/sh``. ``exec`` makes the pane's pid the
    command's own pid.
    """
    if not command:
        raise BadInput("empty command for a tmux session", hint="give the program to run")
    return ["/bin/sh", "-c", "exec " + shlex.join(command)]


def _parse_environment(lines: Sequence[str]) -> dict[str, str | None]:
    """``show-environment`` output: ``K=V`` sets, ``-K`` removes (``None``)."""
    parsed: dict[str, str | None] = {}
    for line in lines:
        if line.startswith("-"):
            parsed[line[1:]] = None
        elif "=" in line:
            key, _, value = line.partition("=")
            parsed[key] = value
    return parsed


class Tmux:
    """One tmux server: the user's default one, or the one on socket ``socket_name`` (``tmux -L``)."""

    def __init__(self, socket_name: str | None = None) -> None:
        self.socket_name = socket_name or None
        self._server = Server(socket_name=self.socket_name)

    def __repr__(self) -> str:
        return f"Tmux(socket_name={self.socket_name!r})"

    # -- the one way to run tmux --------------------------------------------------------------------

    def _run(self, *commands: Sequence[str]) -> tmux_cmd:
        """Run one or more tmux commands in a single client invocation (joined with ``;``)."""
        argv: list[str] = []
        for i, command in enumerate(commands):
            if i:
                argv.append(";")
            argv.extend(_escape_arg(str(a)) for a in command)
        try:
            return self._server.cmd(*argv)
        except tmux_exc.TmuxCommandNotFound as err:
            raise BadInput("tmux is not installed", hint=_NOT_INSTALLED_HINT) from err
        except OSError as err:
            raise TmuxError(f"cannot run tmux: {err}") from err

    @staticmethod
    def _failed(proc: tmux_cmd) -> bool:
        return proc.returncode != 0 or bool(proc.stderr)

    @staticmethod
    def _stderr(proc: tmux_cmd) -> str:
        return " ".join(proc.stderr).strip() or f"exit status {proc.returncode}"

    @staticmethod
    def _is_absent(proc: tmux_cmd) -> bool:
        """The failure means "no such session" or "no server": nothing to act on, not an error."""
        text = " ".join(proc.stderr)
        return any(m in text for m in _NOT_RUNNING_MARKERS + _MISSING_SESSION_MARKERS)

    def _error(self, what: str, proc: tmux_cmd) -> TmuxError:
        message = self._stderr(proc)
        hint = None
        if "command too long" in message:
            hint = "the command or its environment is too large for tmux (16 KB per command)"
        where = f" on socket {self.socket_name!r}" if self.socket_name else ""
        return TmuxError(f"tmux failed to {what}{where}: {message}", hint=hint)

    # -- environment ----------------------------------------------------------------------------------

    def _env_args(self, env: Mapping[str, str], session: str | None) -> list[str]:
        """``-e K=V`` for each variable the pane would not get right without it.

        A pane starts from the server's global environment, overlaid by the session's. A new session
        copies the variables named in ``update-environment`` from the tmux client, which runs with our
        environment, so a variable can be left out only when the server and we both hold the same value.
        """
        baseline: dict[str, str | None]
        glob = self._run(["show-environment", "-g"])
        if self._failed(glob):
            if not self._is_absent(glob):
                raise self._error("read the server environment", glob)
            # No server yet: the one new-session starts inherits the tmux client's, that is our, environ.
            baseline = dict(os.environ)
        else:
            baseline = dict(_parse_environment(glob.stdout))
        if session is None:
            inherited = {k: v for k, v in baseline.items() if os.environ.get(k) == v}
        else:
            local = self._run(["show-environment", "-t", _pane_target(session)])
            if self._failed(local) and not self._is_absent(local):
                raise self._error(f"read the environment of session {session!r}", local)
            inherited = baseline | _parse_environment(local.stdout if not self._failed(local) else [])
        args: list[str] = []
        for key, value in env.items():
            if not _ENV_KEY_RE.match(key):
                raise BadInput(f"invalid environment variable name {key!r}")
            if key in _TMUX_OWNED_ENV:
                continue
            # Multi-line values cannot be compared reliably in show-environment's line output.
            if "\n" not in value and inherited.get(key) == value:
                continue
            args += ["-e", f"{key}={value}"]
        return args

    # -- sessions -------------------------------------------------------------------------------------

    def new_session(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        tag: str,
        width: int = 200,
        height: int = 50,
    ) -> int:
        """Start a detached session running ``command`` in ``cwd`` with ``env``, tagged ``tag``; its pane pid.

        ``env`` is laid over the environment the tmux server gives every pane (TERM, TMUX and TMUX_PANE
        stay tmux's). The session keeps 10000 lines of history and closes when the command exits
        (``remain-on-exit off``). :class:`TmuxError` if a session of that name exists.
        """
        pane = _pane_target(name)
        _check_tag(tag)
        if width <= 0 or height <= 0:
            raise BadInput(f"invalid tmux window size {width}x{height}")
        directory = _directory(cwd)
        argv = _shell_command(command)
        env_args = self._env_args(env, None)
        proc = self._run(
            # The placeholder is an empty pane (no process): it exists only so that the options below
            # are in place before the real pane is created.
            [
                *["new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "-c", directory],
                *["-P", "-F", "#{session_id}", ""],
            ],
            ["set-option", "-t", pane, TAG_OPTION, tag],
            ["set-option", "-t", pane, "history-limit", str(HISTORY_LIMIT)],
            ["new-window", "-t", pane, "-c", directory, *env_args, "-P", "-F", "#{pane_pid}", "--", *argv],
            ["set-option", "-w", "-t", pane, "remain-on-exit", "off"],
            ["kill-window", "-a", "-t", pane],
        )
        if self._failed(proc):
            if any("duplicate session" in line for line in proc.stderr):
                raise TmuxError(
                    f"tmux session {name!r} already exists",
                    hint="stop it first, or pick another name",
                )
            # A half-built session would block the name. Only the one this call created is removed,
            # by the id new-session printed; with no id, nothing was created.
            created = proc.stdout[0].strip() if proc.stdout else ""
            if created.startswith("$"):
                self._run(["kill-session", "-t", created])
            raise self._error(f"create session {name!r}", proc)
        pid = self._parse_pid(proc.stdout[1:])
        if pid is None:
            raise self._error(f"read the pane pid of session {name!r}", proc)
        logger.info("tmux session %s started (pid %s, tag %s, socket %s)", name, pid, tag, self.socket_name)
        return pid

    @staticmethod
    def _parse_pid(lines: Sequence[str]) -> int | None:
        for line in reversed(lines):
            if line.strip().isdigit():
                return int(line.strip())
        return None

    def has_session(self, name: str) -> bool:
        """Whether a session named exactly ``name`` exists."""
        proc = self._run(["has-session", "-t", _session_target(name)])
        if self._failed(proc):
            if self._is_absent(proc):
                return False
            raise self._error(f"look up session {name!r}", proc)
        return True

    def session_tag(self, name: str) -> str | None:
        """The ``@swarm_id`` set on session ``name`` itself (not inherited), or ``None``."""
        # -q: no error for an unset option (nor, in tmux 3.3a, for a missing session).
        proc = self._run(["show-options", "-q", "-v", "-t", _pane_target(name), TAG_OPTION])
        if self._failed(proc):
            if self._is_absent(proc):
                return None
            raise self._error(f"read the tag of session {name!r}", proc)
        value = "\n".join(proc.stdout).strip()
        return value or None

    def _list(self, fmt: str) -> list[list[str]]:
        """One ``list-sessions`` call; each row split on tabs. No server means no sessions."""
        proc = self._run(["list-sessions", "-F", fmt])
        if self._failed(proc):
            if self._is_absent(proc):
                return []
            raise self._error("list sessions", proc)
        return [line.split("\t") for line in proc.stdout if line]

    def sessions(self) -> list[str]:
        """Names of all sessions on this server."""
        return [row[0] for row in self._list("#{session_name}")]

    def tagged_sessions(self, tag: str) -> list[str]:
        """Names of the sessions whose ``@swarm_id`` is ``tag``, from a single ``list-sessions``."""
        _check_tag(tag)
        rows = self._list("#{session_name}\t#{" + TAG_OPTION + "}")
        return sorted(row[0] for row in rows if len(row) == 2 and row[1] == tag)

    def kill_session(self, name: str, tag: str) -> bool:
        """Kill session ``name`` only if it carries ``tag``; whether it was killed. Gone is not an error."""
        _check_tag(tag)
        target = _pane_target(name)
        # One invocation reads the session's id and its own tag; the kill then targets the id, which
        # tmux never reuses, so a session recreated under the same name in between is not touched.
        # has-session comes first because display-message prints an empty line for a missing target
        # instead of failing; a failed command ends the invocation.
        proc = self._run(
            ["has-session", "-t", _session_target(name)],
            ["display-message", "-p", "-t", target, "#{session_id}"],
            ["show-options", "-q", "-v", "-t", target, TAG_OPTION],
        )
        if self._failed(proc):
            if self._is_absent(proc):
                return False
            raise self._error(f"read session {name!r}", proc)
        lines = [line.strip() for line in proc.stdout]
        session_id = lines[0] if lines else ""
        found = lines[1] if len(lines) > 1 else None
        if not session_id.startswith("$"):
            raise self._error(f"read the id of session {name!r}", proc)
        if found != tag:
            logger.warning(
                "not killing tmux session %s: its tag is %r, not %r (socket %s)",
                name,
                found,
                tag,
                self.socket_name,
            )
            return False
        killed = self._run(["kill-session", "-t", session_id])
        if self._failed(killed):
            if self._is_absent(killed):
                return False
            raise self._error(f"kill session {name!r}", killed)
        logger.info("tmux session %s (%s) killed (tag %s)", name, session_id, tag)
        return True

    # -- the pane -------------------------------------------------------------------------------------

    def pane_pid(self, name: str) -> int | None:
        """The pid of the process in the session's pane; ``None`` if the session or the process is gone."""
        # list-panes, not display-message: the latter prints nothing, successfully, for a missing target.
        proc = self._run(["list-panes", "-t", _pane_target(name), "-F", "#{pane_dead} #{pane_pid}"])
        if self._failed(proc):
            if self._is_absent(proc):
                return None
            raise self._error(f"read the pane of session {name!r}", proc)
        parts = (proc.stdout[0] if proc.stdout else "").split()
        if len(parts) != 2 or parts[0] == "1" or not parts[1].isdigit():
            return None
        return int(parts[1])

    def capture(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` non-blank-trailing lines of the pane's history and screen."""
        if lines <= 0:
            return ""
        # -J joins wrapped lines, so a long log line reads as one.
        proc = self._run(["capture-pane", "-p", "-J", "-t", _pane_target(name), "-S", f"-{lines}"])
        if self._failed(proc):
            if self._is_absent(proc):
                raise TmuxError(f"no tmux session {name!r} to capture")
            raise self._error(f"capture the pane of session {name!r}", proc)
        text = [line.rstrip() for line in proc.stdout]
        # The screen below the last output is blank rows: drop them before taking the tail.
        while text and not text[-1]:
            text.pop()
        return "\n".join(text[-lines:])

    def respawn(self, name: str, command: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> int:
        """Replace the process in the session's pane (``respawn-pane -k``) with ``command``; its pid."""
        pane = _pane_target(name)
        directory = _directory(cwd)
        argv = _shell_command(command)
        env_args = self._env_args(env, name)
        proc = self._run(
            ["respawn-pane", "-k", "-t", pane, "-c", directory, *env_args, "--", *argv],
            ["display-message", "-p", "-t", pane, "#{pane_pid}"],
        )
        if self._failed(proc):
            if self._is_absent(proc):
                raise TmuxError(f"no tmux session {name!r} to respawn")
            raise self._error(f"respawn the pane of session {name!r}", proc)
        pid = self._parse_pid(proc.stdout)
        if pid is None:
            raise self._error(f"read the pane pid of session {name!r}", proc)
        logger.info("tmux session %s respawned (pid %s)", name, pid)
        return pid

    # -- attaching and the server ---------------------------------------------------------------------

    def _base_argv(self) -> list[str]:
        argv = [shutil.which("tmux") or "tmux"]
        if self.socket_name:
            argv += ["-L", self.socket_name]
        return argv

    def _socket_path(self) -> str | None:
        proc = self._run(["display-message", "-p", "#{socket_path}"])
        if self._failed(proc) or not proc.stdout:
            return None
        return proc.stdout[0].strip() or None

    def attach_argv(self, name: str) -> list[str]:
        """argv that puts the user's terminal on session ``name`` (for ``os.execvp``).

        Inside tmux on this same server that is ``switch-client``; inside tmux on another server,
        ``attach`` with ``$TMUX`` unset, because tmux refuses to nest otherwise.
        """
        target = _session_target(name)
        inside = os.environ.get("TMUX", "")
        if not inside:
            return [*self._base_argv(), "attach-session", "-t", target]
        current_socket = inside.split(",", 1)[0]
        ours = self._socket_path()
        if ours is not None and os.path.realpath(ours) == os.path.realpath(current_socket):
            return [*self._base_argv(), "switch-client", "-t", target]
        return ["env", "-u", "TMUX", *self._base_argv(), "attach-session", "-t", target]

    def kill_server_if_empty(self) -> None:
        """Stop this server when no session is left; never the user's default server."""
        if not self.socket_name:
            return
        # Decided inside the server in one command: with no session, #{session_name} is empty. A session
        # created in the meantime by another client therefore keeps the server alive.
        proc = self._run(["if-shell", "-F", "#{==:#{session_name},}", "kill-server"])
        if self._failed(proc) and not self._is_absent(proc):
            raise self._error("stop the empty server", proc)
        logger.debug("tmux server %s stopped if it was empty", self.socket_name)


# -- a private server named by its socket (tests and benchmarks start one each) ---------------------------


def private_sessions(socket_name: str) -> list[str]:
    """Session names on the tmux server of socket ``socket_name``; none when no server runs there."""
    done = subprocess.run(
        ["tmux", "-L", socket_name, "list-sessions", "-F", "#{session_name}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.stdout.split() if done.returncode == 0 else []


def private_socket_file(socket_name: str) -> Path:
    """Where tmux keeps the socket of ``tmux -L socket_name`` (``$TMUX_TMPDIR/tmux-UID/NAME``)."""
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket_name


def stop_private_server(socket_name: str) -> None:
    """Stop the tmux server of socket ``socket_name`` and remove its socket file, which tmux 3.3 leaves behind
    after kill-server. Only for a socket its caller named itself, uniquely: never the user's default server."""
    if not socket_name:
        raise BadInput("stop_private_server needs a socket name: the default server is never stopped")
    subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True, check=False, timeout=30)
    socket_file = private_socket_file(socket_name)
    with contextlib.suppress(OSError):
        if socket_file.is_socket():
            socket_file.unlink()
