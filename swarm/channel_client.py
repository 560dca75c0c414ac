"""The agent's side of its channel (docs/contract.md §7 "The channel"): how ``swarm msg``, ``swarm queue`` and
``swarm mcp`` talk to their worker instead of opening the database.

Each worker serves its own agent on a Unix socket, ``<repo>/.swarm/run/<agent>/channel.sock``, handed to the
agent as ``SWARM_CHANNEL`` (the server is ``swarm.runtime.channel``). The protocol is one JSON object per
line each way: a request ``{"op": NAME, "args": {...}}`` and its answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "message", "hint", "exit_code"}``. The channel carries no token: the worker knows who is
calling from the socket itself (the peer's pid, which must descend from that worker), so nothing an agent
could copy from another agent (its environment, its files) lets it write as that agent.

Thread entries, tasks and claims travel as their dataclass fields (:func:`to_wire`, and back with
:func:`message_from`, :func:`task_from`, :func:`claim_from`), so both ends keep using the domain values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from swarm.errors import EXIT_BAD_INPUT, BadInput, SwarmError
from swarm.models import Claim, Message, Task, TaskState

#: The variable that hands an agent the path of its channel.
CHANNEL_ENV = "SWARM_CHANNEL"
#: The socket's name inside the agent's channel folder.
SOCKET_NAME = "channel.sock"
#: The longest a single blocking request (a wait) is asked to block; a longer wait is a loop of them, so a
#: client that goes away never leaves the worker's thread blocked for long.
MAX_WAIT_SECONDS = 20.0
#: A request that does not block answers well within this (it is a few database round trips).
REQUEST_TIMEOUT_SECONDS = 60.0
#: Longest request or answer line (a thread entry is at most 1 MiB of UTF-8, JSON may escape it).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107


def to_wire(value: Any) -> Any:
    """A domain value (a dataclass, an enum, a tuple, ...) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def message_from(data: Mapping[str, Any]) -> Message:
    """A thread entry back from :func:`to_wire`."""
    return Message(**data)


def task_from(data: Mapping[str, Any]) -> Task:
    """A task back from :func:`to_wire`."""
    fields = dict(data)
    fields["state"] = TaskState(fields["state"])
    fields["depends_on"] = tuple(fields["depends_on"])
    fields["requires"] = tuple(fields["requires"])
    return Task(**fields)


def claim_from(data: Mapping[str, Any] | None) -> Claim | None:
    """A claim (or None) back from :func:`to_wire`."""
    if data is None:
        return None
    fields = dict(data)
    fields["depends_on"] = tuple(fields.get("depends_on", ()))
    return Claim(**fields)


def channel_dir(repo: Path, agent_id: str) -> Path:
    """The folder of ``agent_id``'s channel: nothing else lives in it, so a sandbox may bind it whole."""
    return repo / ".swarm" / "run" / agent_id


def channel_path(repo: Path, agent_id: str) -> Path:
    """The socket ``agent_id``'s worker serves (``SWARM_CHANNEL``)."""
    return channel_dir(repo, agent_id) / SOCKET_NAME


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits in sun_path: the path itself, or, when it is longer (a repository
    deep in the file system), the same socket reached through an open descriptor of its folder
    (``/proc/self/fd/N/channel.sock``, Linux), valid while the context lasts."""
    text = str(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def error_from(answer: Mapping[str, Any]) -> SwarmError:
    """The error a failed answer carries, with its exit code (2: bad input, else a runtime failure)."""
    message = str(answer.get("message") or "the worker refused the request")
    hint = answer.get("hint")
    hint = str(hint) if hint else None
    if answer.get("exit_code") == EXIT_BAD_INPUT:
        return BadInput(message, hint=hint)
    return SwarmError(message, hint=hint)


def read_line(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """The next newline-terminated line from ``sock`` (without the newline); None at the end of the stream.
    ``buffer`` keeps what was read past the line."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line
        if len(buffer) > MAX_LINE_BYTES:
            raise SwarmError("a channel message is larger than 8 MiB", hint="send large content as a file path")
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer.extend(chunk)


class Channel:
    """A connection to one agent's channel; every call is one request and its answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(self.path) as address:
                sock.connect(address)
        except OSError as exc:
            sock.close()
            raise SwarmError(
                f"cannot reach the worker's channel {self.path} ({CHANNEL_ENV}): {exc.strerror or exc}",
                hint="the worker of this agent is not running (the task ended or the worker was stopped)",
            ) from exc
        self._sock = sock
        return sock

    def call(self, op: str, **args: Any) -> Any:
        """Send request ``op`` and return its result; the worker's refusal is raised as a SwarmError."""
        wait = float(args.get("timeout_s") or args.get("wait_s") or 0.0)
        sock = self._connect()
        try:
            sock.settimeout(REQUEST_TIMEOUT_SECONDS + wait)
            # A broken pipe: the worker refused the connection and closed it; its answer says why.
            with contextlib.suppress(BrokenPipeError):
                sock.sendall(json.dumps({"op": op, "args": args}).encode("utf-8") + b"\n")
            line = read_line(sock, self._buffer)
        except OSError as exc:
            self.close()
            raise SwarmError(
                f"the channel {self.path} failed during {op}: {exc.strerror or exc}",
                hint="the worker may have stopped; try again, or exit and let the worker decide",
            ) from exc
        if line is None:
            self.close()
            raise SwarmError(
                f"the worker closed the channel {self.path} during {op}",
                hint="the worker may have stopped; try again, or exit and let the worker decide",
            )
        answer = json.loads(line)
        if not answer.get("ok"):
            raise error_from(answer)
        return answer.get("result")

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            self._buffer.clear()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def from_env(env: Mapping[str, str]) -> Channel | None:
    """The channel ``SWARM_CHANNEL`` names, or None outside an agent."""
    path = env.get(CHANNEL_ENV, "")
    return Channel(Path(path)) if path else None
