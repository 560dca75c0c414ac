"""The worker's side of an agent's channel (docs/contract.md §7 "The channel"; the client and the protocol are
``swarm.channel_client``).

A worker serves its own agent on a Unix socket in a folder of its own (``.swarm/run/<agent>/channel.sock``),
from a thread per connection. The channel is the identity: every request is made as this worker's agent, and
only a process below this worker may use it. The kernel tells who connected (``SO_PEERCRED``: pid and uid,
fixed at ``connect``); a peer of another user, or one that does not descend from this worker (pid and start
time, ``procs.descends_from``), is refused before it may send anything. Every agent runs as the same Unix
user and may open every other agent's socket, so the lineage check, not the file's mode, is what keeps
agent-1 from writing as agent-2; a worker is a subreaper, so its agent's detached processes stay below it.

The agent needs no database access at all: each connection opens its own store (a wait blocks only its
own connection) and the worker's loop keeps its own. Lease writes carry the lease token the worker holds
for the task in hand (or the one the agent passes, or one a claim on this channel returned): a stale one is
refused exactly as before (``LeaseLost``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm import threads
from swarm.channel_client import MAX_WAIT_SECONDS, read_line, socket_address, to_wire
from swarm.errors import EXIT_RUNTIME, BadInput, SwarmError
from swarm.models import LEAD, TaskState
from swarm.queue import add_task
from swarm.runtime import procs
from swarm.store import Store

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class ChannelSpec:
    """Who the channel serves and how: the agent, its swarm and the worker it must descend from."""

    path: Path
    agent_id: str
    swarm_id: str
    capabilities: tuple[str, ...]
    lease_ttl_seconds: float
    #: The worker (pid and start time): only its descendants may use the channel.
    owner: procs.ProcId
    #: A new store for one connection.
    open_store: Callable[[], Store]
    #: The lease token the worker holds for a task id (the task in hand), or None.
    lease_for: Callable[[str], str | None]


def peer_of(sock: socket.socket) -> tuple[int, int]:
    """``(pid, uid)`` of the process that connected ``sock``, as the kernel recorded it at ``connect``."""
    pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid


def refusal(spec: ChannelSpec, pid: int, uid: int) -> str | None:
    """Why the process ``pid`` of user ``uid`` may not use ``spec``'s channel, or None when it may."""
    if uid != os.getuid():
        return f"process {pid} runs as another user"
    if not procs.descends_from(pid, spec.owner):
        return f"process {pid} does not run inside {spec.agent_id}"
    return None


class _Handler(socketserver.StreamRequestHandler):
    """One connection: the peer check, then requests until the client closes."""

    server: _Server

    def handle(self) -> None:
        spec = self.server.spec
        sock: socket.socket = self.request
        pid, uid = peer_of(sock)
        why = refusal(spec, pid, uid)
        if why is not None:
            log.warning("channel of %s refused %s", spec.agent_id, why)
            # Its request is read (and dropped) first, so that the refusal is what the client reads, not a
            # broken pipe on its write.
            with contextlib.suppress(OSError, SwarmError):
                sock.settimeout(5.0)
                read_line(sock, bytearray())
            self._answer(
                {
                    "ok": False,
                    "exit_code": BadInput.exit_code,
                    "message": f"the channel {spec.path} serves {spec.agent_id} only: {why}",
                    "hint": "an agent writes through its own channel ($SWARM_CHANNEL), as itself",
                }
            )
            return
        ops = _Ops(spec, self.server.claims)
        buffer = bytearray()
        try:
            while not self.server.closing.is_set():
                try:
                    line = read_line(sock, buffer)
                except (OSError, SwarmError):
                    return
                if line is None:
                    return
                self._answer(ops.answer(line))
        finally:
            ops.close()

    def _answer(self, answer: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.request.sendall(json.dumps(answer).encode("utf-8") + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a wait in flight never keeps the worker from exiting

    def __init__(self, address: str, spec: ChannelSpec) -> None:
        self.spec = spec
        self.closing = threading.Event()
        #: Lease tokens of the tasks claimed on this channel (the agent claimed more work itself).
        self.claims: dict[str, str] = {}
        super().__init__(address, _Handler)


class _Ops:
    """The requests of one connection, each made as the channel's agent, on the connection's own store."""

    def __init__(self, spec: ChannelSpec, claims: dict[str, str]) -> None:
        self.spec = spec
        self.claims = claims
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.spec.open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()

    def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line; never raises."""
        try:
            request = json.loads(line)
            return {"ok": True, "result": to_wire(self._dispatch(request["op"], dict(request.get("args") or {})))}
        except SwarmError as exc:
            return {"ok": False, "exit_code": exc.exit_code, "message": exc.message, "hint": exc.hint}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "exit_code": BadInput.exit_code, "message": f"bad channel request: {exc}"}
        except Exception as exc:  # a bug must not end the connection's thread without an answer
            log.exception("channel request failed")
            return {"ok": False, "exit_code": EXIT_RUNTIME, "message": f"the worker failed: {exc}"}

    def _dispatch(self, op: object, args: dict[str, Any]) -> Any:
        # An ``agent_id`` in a request (``--agent-id``, ``SWARM_AGENT_ID``) must be the channel's own.
        acting_as = args.pop("agent_id", None)
        if acting_as not in (None, self.spec.agent_id):
            raise BadInput(
                f"this channel is {self.spec.agent_id}'s: it cannot act as {acting_as}",
                hint=f"drop --agent-id (or SWARM_AGENT_ID); a request here is made as {self.spec.agent_id}",
            )
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        if handler is None:
            raise BadInput(f"unknown channel request {op!r}", hint="use a swarm of the worker's version")
        return handler(**args)

    # -- identity and leases -----------------------------------------------------------------------
    def _lease(self, task_id: str, lease_token: str | None) -> str:
        token = lease_token or self.spec.lease_for(task_id) or self.claims.get(task_id)
        if not token:
            raise BadInput(
                f"{self.spec.agent_id} holds no lease on {task_id}",
                hint="heartbeat or release the task you are working on ($SWARM_TASK_ID), or pass --lease-token",
            )
        return token

    def op_whoami(self) -> dict[str, Any]:
        return {"agent_id": self.spec.agent_id, "swarm_id": self.spec.swarm_id}

    # -- threads -----------------------------------------------------------------------------------
    def op_send(
        self,
        body: str,
        to: str | None = None,
        type: str = "chat",  # the protocol's name
        thread: str = threads.DEFAULT_THREAD,
        reply_to: int | None = None,
    ) -> Any:
        return threads.send(self.store, self.spec.agent_id, body, to=to, type_=type, thread=thread, reply_to=reply_to)

    def op_reply(self, seq: int, body: str, thread: str = threads.DEFAULT_THREAD) -> Any:
        return threads.reply(self.store, self.spec.agent_id, int(seq), body, thread=thread)

    def op_list(self, thread: str = threads.DEFAULT_THREAD, since: int = 0, wait_s: float = 0.0) -> Any:
        """The entries after ``since``; with ``wait_s``, blocks up to that long for at least one."""
        threads.check_thread(thread)
        wait_s = min(max(float(wait_s), 0.0), MAX_WAIT_SECONDS)
        store = self.store
        deadline = time.monotonic() + wait_s
        while True:
            marker = store.change_marker()
            found = store.list_messages(thread, since=int(since))
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            store.wait_for_change(marker, left, first=threads.IDLE_POLL_SECONDS)

    def op_wait(
        self,
        thread: str = threads.DEFAULT_THREAD,
        from_author: str | None = None,
        reply_to: int | None = None,
        type: str | None = None,  # the protocol's name
        since: int | None = None,
        timeout_s: float = MAX_WAIT_SECONDS,
    ) -> Any:
        spec = threads.WaitSpec(
            identity=self.spec.agent_id,
            thread=thread,
            from_author=from_author,
            reply_to=reply_to,
            type_=type,
            since=since,
        )
        return threads.wait(self.store, spec, min(max(float(timeout_s), 0.0), MAX_WAIT_SECONDS))

    def op_ask(self, body: str, to: str = LEAD, thread: str = threads.DEFAULT_THREAD) -> Any:
        """The question is sent and ``swarm status`` shows the agent waiting; ``asked`` ends that."""
        question = threads.send(self.store, self.spec.agent_id, body, to=to, type_="question", thread=thread)
        self.store.update_agent(self.spec.agent_id, detail="waiting for an answer")
        return question

    def op_asked(self) -> None:
        self.store.update_agent(self.spec.agent_id, detail=None)

    # -- queue -------------------------------------------------------------------------------------
    def op_claim(self, capabilities: list[str] | None = None, ttl_s: float | None = None) -> Any:
        offered = self.spec.capabilities if capabilities is None else tuple(capabilities)
        got = self.store.claim(
            self.spec.agent_id,
            offered,
            ttl_seconds=float(ttl_s or self.spec.lease_ttl_seconds),
            host=socket.gethostname(),
            swarm_id=self.spec.swarm_id,
        )
        if got is not None:
            self.claims[got.task_id] = got.lease_token
        return got

    def op_heartbeat(self, task_id: str, lease_token: str | None = None, ttl_s: float | None = None) -> float:
        token = self._lease(task_id, lease_token)
        ttl = float(ttl_s or self.spec.lease_ttl_seconds)
        return self.store.heartbeat(task_id, self.spec.agent_id, token, ttl_seconds=ttl)

    def op_release(
        self,
        task_id: str,
        outcome: str,
        lease_token: str | None = None,
        reason: str | None = None,
        commit: str | None = None,
        cost_usd: float | None = None,
    ) -> dict[str, Any]:
        token = self._lease(task_id, lease_token)
        me = self.spec.agent_id
        why = (reason or "").strip()
        if outcome == "completed":
            promoted = self.store.complete(task_id, me, token, commit=commit, cost_usd=cost_usd)
            result: dict[str, Any] = {"state": TaskState.DONE.value, "promoted": promoted}
        elif outcome == "failed":
            if not why:
                raise BadInput("a failed release needs a reason", hint='say why, e.g. --failed "tests fail"')
            result = {"state": self.store.fail(task_id, me, token, why, cost_usd=cost_usd).value}
        elif outcome == "returned":
            self.store.return_task(task_id, me, token, why or "returned")
            result = {"state": TaskState.READY.value}
        else:
            raise BadInput(f"unknown outcome {outcome!r}", hint="use completed, failed or returned")
        self.claims.pop(task_id, None)
        return result

    def op_status(self, epic: str | None = None) -> dict[str, Any]:
        return {"counts": self.store.counts(epic), "tasks": self.store.list_tasks(epic)}

    def op_add(
        self,
        title: str,
        body: str | None = None,
        task_id: str | None = None,
        epic: str | None = None,
        depends_on: list[str] | None = None,
        priority: int = 0,
        requires: list[str] | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        added = add_task(
            self.store,
            title=title,
            body=body,
            task_id=task_id,
            epic=epic,
            depends_on=tuple(depends_on or ()),
            priority=int(priority),
            requires=tuple(requires or ()),
            max_attempts=max_attempts,
            actor=self.spec.agent_id,
        )
        return {"id": added.id, "epic": added.epic, "state": added.state.value}


class ChannelServer:
    """The channel of one agent, served from a background thread while the worker lives."""

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        folder = spec.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        # A worker killed earlier left its socket: this worker serves the agent now.
        spec.path.unlink(missing_ok=True)
        with socket_address(spec.path) as address:
            self._server = _Server(address, spec)
        os.chmod(spec.path, 0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="swarm-channel", daemon=True
        )

    def start(self) -> ChannelServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and remove the socket (connections in flight end with the worker)."""
        self._server.closing.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(OSError):
            self.spec.path.unlink()
        with contextlib.suppress(OSError):  # the folder held only the socket (another worker may use it again)
            self.spec.path.parent.rmdir()
