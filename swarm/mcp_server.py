"""``swarm mcp``: the queue and thread verbs as MCP tools on stdio (docs/contract.md §7), for agents that speak MCP.

The server acts as one identity, taken from the environment the agent runs with: inside an agent, its worker's
channel (``SWARM_CHANNEL``, docs/contract.md §7), through which every tool goes without opening the database;
otherwise ``SWARM_AGENT_ID`` proven by ``SWARM_TOKEN`` (no token means the lead). The identity is checked once
at startup, so a misconfigured agent shows up in the server's log right away, and again on every tool that
writes, because a token can be revoked while the server runs. A failed check never stops the server: the tool
returns an MCP tool error carrying swarm's one-line message, which is something the agent can read and act on,
unlike a server that vanished.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from swarm import __version__, channel_client, identity, threads
from swarm.config import LoadedConfig, find_repo_root, load_config
from swarm.errors import BadInput, SwarmError
from swarm.models import LEAD, Message, TaskState
from swarm.queue import add_task, lead_token_path, open_queue
from swarm.store import Store, SwarmRecord
from swarm.views import claim_json, iso, message_json, task_json

log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SERVER_NAME = "swarm"
#: The longest a single msg_wait / msg_ask call blocks. MCP clients time tool calls out (often at 60 s or
#: less), so a long wait is a loop of bounded calls on the agent's side rather than one call that may be cut.
MAX_WAIT_SECONDS = 25.0
#: A wait is run as slices of this length so that a cancelled call or a closing server stops its worker
#: thread promptly instead of leaving it blocked for up to MAX_WAIT_SECONDS.
_WAIT_SLICE_SECONDS = 0.25
_INSTRUCTIONS = """\
Tools of the swarm this agent belongs to: a shared task queue (queue_*) and the team thread (msg_*), where
agents and the lead (the human) talk. You act as {who}. Errors come back as tool errors with one line that
says what went wrong and what to do."""


class _ToolDecorator(Protocol):
    """Registers the function it decorates as a tool of the server, and returns it unchanged."""

    def __call__(self, fn: F, /) -> F: ...


class _Backend:
    """The configuration, the open store and the identity checks shared by every tool.

    The store is opened lazily and a failure is not cached, so a server started before ``swarm queue init``
    (or with a database that is briefly unreachable) starts working once the database is there.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.swarm_id = self.env.get("SWARM_ID") or None
        #: Inside an agent, its worker's channel (docs/contract.md §7): every tool goes through it and the server
        #: never opens the database. None outside an agent (the token in the environment is the identity).
        self.channel_path = self.env.get(channel_client.CHANNEL_ENV) or None
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._loaded: LoadedConfig | None = None
        self._store: Store | None = None

    def loaded(self) -> LoadedConfig:
        """The configuration of the repository around the cwd; ``SWARM_DATABASE_URL`` in ``env`` wins."""
        with self._lock:
            if self._loaded is None:
                # The URL launch gave the agent is authoritative, so it goes in as a flag (the top layer) rather
                # than as an environment alias that SWARM_QUEUE_DATABASE would outrank; a relative SQLite path
                # is still made absolute against the repository, like every other command does.
                url = self.env.get("SWARM_DATABASE_URL") or None
                self._loaded = load_config(find_repo_root(), overrides={"queue.database": url}, env=self.env)
            return self._loaded

    def store(self) -> Store:
        """The open store; never creates a database (a wrong URL must not start an empty queue)."""
        loaded = self.loaded()
        with self._lock:
            if self._store is None:
                self._store = open_queue(loaded)
            return self._store

    def me(self) -> str:
        """The proven identity of this server's agent, checked against the database on every call (inside an
        agent: the channel's agent)."""
        if self.channel_path is not None:
            return str(self.call("whoami")["agent_id"])
        return identity.resolve(self.store(), lead_token_path(self.loaded()), self.env)

    def call(self, op: str, **args: Any) -> Any:
        """One request on the agent's channel, on a connection of its own (tools run on several threads)."""
        assert self.channel_path is not None
        with channel_client.Channel(Path(self.channel_path)) as channel:
            return channel.call(op, **args)

    def ttl(self) -> float:
        """The lease length configured for claims and heartbeats."""
        return float(self.loaded().config.queue.lease_ttl_seconds)

    def swarm(self) -> SwarmRecord | None:
        """The agent's swarm (``SWARM_ID``), else the most recent one."""
        store = self.store()
        if self.swarm_id is not None:
            return store.get_swarm(self.swarm_id)
        return store.current_swarm()

    def close(self) -> None:
        """Stop waits in flight and close the store."""
        self.stop.set()
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn swarm's errors into MCP tool errors: the agent reads the one line; the server keeps running."""
    try:
        yield
    except SwarmError as exc:
        raise ToolError(exc.render()) from exc


def _clamp(timeout_s: float | None) -> float:
    if timeout_s is None:
        return MAX_WAIT_SECONDS
    return min(max(timeout_s, 0.0), MAX_WAIT_SECONDS)


def _wait_sliced(store: Store, spec: threads.WaitSpec, timeout: float, stopped: Callable[[], bool]) -> Message | None:
    """``threads.wait`` for ``timeout`` seconds, in short slices; gives up early once ``stopped()``.

    Slicing keeps the wait's meaning: each slice resumes from the identity's cursor (or the same
    ``reply_to``), so an entry that arrives between two slices is found by the next one.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        found = threads.wait(store, spec, max(0.0, min(left, _WAIT_SLICE_SECONDS)))
        if found is not None or left <= _WAIT_SLICE_SECONDS or stopped():
            return found


def _channel_wait(backend: _Backend, timeout: float, stopped: Callable[[], bool], **args: Any) -> Message | None:
    """A wait on the agent's channel, in short requests so that a cancelled call stops soon."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        found = backend.call("wait", timeout_s=max(0.0, min(left, _WAIT_SLICE_SECONDS * 4)), **args)
        if found is not None:
            return channel_client.message_from(found)
        if left <= _WAIT_SLICE_SECONDS * 4 or stopped():
            return None


class _Stoppable(Protocol):
    """A backend whose ``stop`` is set when the server closes (the agents' and the lead's)."""

    stop: threading.Event


async def _in_thread(backend: _Stoppable, fn: Callable[[Callable[[], bool]], T]) -> T:
    """Run a blocking wait on a worker thread so that the event loop keeps serving other requests.

    ``fn`` gets a ``stopped()`` check for its wait. On cancellation the call returns at once and the abandoned
    thread, told to stop, ends at the close of its current slice; so does every wait when the server closes.
    """
    cancel = threading.Event()

    def stopped() -> bool:
        return cancel.is_set() or backend.stop.is_set()

    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, stopped), abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise


def _build(backend: _Backend) -> MCPServer[Any]:
    """The ``swarm`` MCP server acting as ``backend``'s identity, with every queue and thread tool."""
    server: MCPServer[Any] = MCPServer(
        SERVER_NAME,
        instructions=_INSTRUCTIONS.format(who=_announce(backend)),
        version=__version__,
    )
    tool = _registrar(server)
    _add_claim_tools(tool, backend)
    _add_release_tool(tool, backend)
    _add_queue_tools(tool, backend)
    _add_thread_tools(tool, backend)
    _add_wait_tools(tool, backend)
    return server


def _announce(backend: _Backend) -> str:
    """Who the server acts as, logged at startup; a bad identity is logged, not raised (the tools report it)."""
    who = "the identity in SWARM_CHANNEL (or SWARM_AGENT_ID / SWARM_TOKEN)"
    try:
        who = backend.me()
        where = backend.channel_path or backend.loaded().database_url()
        log.info("swarm mcp: serving as %s on %s", who, where)
    except SwarmError as exc:
        log.warning("swarm mcp: %s (tools that need it will report this)", exc.render())
    return who


def _registrar(server: MCPServer[Any]) -> _ToolDecorator:
    """A decorator that adds a function to ``server`` as a tool."""

    def tool(fn: F) -> F:
        # The docstring is the description agents read; dedented so that it does not reach them indented.
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""))
        return fn

    return tool


def _add_claim_tools(tool: _ToolDecorator, backend: _Backend) -> None:
    """Claiming a task and keeping its lease: ``queue_claim``, ``queue_heartbeat``."""

    @tool
    def queue_claim(
        capabilities: Annotated[
            list[str] | None,
            Field(description='Capabilities you offer, e.g. ["python"]; default: those the launch gave you.'),
        ] = None,
    ) -> dict[str, Any]:
        """Claim the next task you may work on: the highest-priority, then oldest, ready task of your swarm whose
        `requires` you offer. Returns {"task": {"id", "title", "prompt", "lease_token", "lease_until", "attempt",
        ...}} or {"task": null} when nothing is eligible. Keep the lease alive with queue_heartbeat (well before
        lease_until) and finish with queue_release; every later call needs the task id and the lease_token."""
        with _tool_errors():
            if backend.channel_path is not None:
                return claim_json(channel_client.claim_from(backend.call("claim", capabilities=capabilities)))
            store = backend.store()
            me = backend.me()
            offered = capabilities
            if offered is None:
                mine = next((a for a in store.list_agents() if a.id == me), None)
                offered = list(mine.capabilities) if mine else []
            got = store.claim(
                me, offered, ttl_seconds=backend.ttl(), host=socket.gethostname(), swarm_id=backend.swarm_id
            )
            return claim_json(got)

    @tool
    def queue_heartbeat(
        task_id: Annotated[str, Field(description="The id of the task you claimed.")],
        lease_token: Annotated[str, Field(description="The lease_token queue_claim returned.")],
    ) -> dict[str, Any]:
        """Extend your lease on a claimed task by the configured lease length; returns {"task_id", "lease_until"}.
        Call it regularly while you work. An error saying "lease lost" means the task is no longer yours
        (it expired, was cancelled or was returned): stop working on it."""
        with _tool_errors():
            if backend.channel_path is not None:
                until = float(backend.call("heartbeat", task_id=task_id, lease_token=lease_token or None))
                return {"task_id": task_id, "lease_until": iso(until)}
            store = backend.store()
            me = backend.me()
            until = store.heartbeat(task_id, me, lease_token, ttl_seconds=backend.ttl())
            return {"task_id": task_id, "lease_until": iso(until)}


def _add_release_tool(tool: _ToolDecorator, backend: _Backend) -> None:
    """Finishing a claimed task: ``queue_release``."""

    @tool
    def queue_release(
        task_id: Annotated[str, Field(description="The id of the task you claimed.")],
        lease_token: Annotated[str, Field(description="The lease_token queue_claim returned.")],
        outcome: Annotated[
            Literal["completed", "failed", "returned"],
            Field(
                description="completed: the work is done; failed: this attempt failed (give a reason; the task is "
                "retried after a backoff, or dead when out of attempts); returned: give it back unfinished "
                "without spending an attempt."
            ),
        ],
        reason: Annotated[
            str | None,
            Field(description="Why: required when failed, optional when returned, ignored when completed."),
        ] = None,
    ) -> dict[str, Any]:
        """Release a claimed task with an outcome: completed, failed (with a reason) or returned. Returns
        {"task_id", "outcome", "state"} (and "promoted": the tasks that became ready, when completed).
        An error saying "lease lost" means the task was no longer yours and nothing was recorded."""
        with _tool_errors():
            why = (reason or "").strip()
            if outcome == "failed" and not why:
                raise BadInput("outcome failed needs a reason", hint='say why in reason, e.g. "tests fail"')
            return {"task_id": task_id, "outcome": outcome, **_release(backend, task_id, lease_token, outcome, why)}


def _add_queue_tools(tool: _ToolDecorator, backend: _Backend) -> None:
    """The queue as a whole: ``queue_status``, ``queue_add``."""

    @tool
    def queue_status() -> dict[str, Any]:
        """The whole queue, as `swarm queue status --json` prints it: {"counts": {state: n}, "tasks": [{"id",
        "title", "state", "owner", "attempts", "depends_on", ...}]}. States: blocked, ready, claimed, done,
        dead, cancelled."""
        with _tool_errors():
            if backend.channel_path is not None:
                got = backend.call("status")
                tasks = [channel_client.task_from(t) for t in got["tasks"]]
                return {"counts": got["counts"], "tasks": [task_json(t) for t in tasks]}
            store = backend.store()
            return {"counts": store.counts(), "tasks": [task_json(t) for t in store.list_tasks()]}

    @tool
    def queue_add(
        title: Annotated[str, Field(description="One-line title of the new task.")],
        body: Annotated[str, Field(description="The prompt: what the agent that claims it must do.")],
        depends_on: Annotated[
            list[str] | None, Field(description="Ids of queued tasks that must be done first.")
        ] = None,
        priority: Annotated[int, Field(description="Higher is claimed first; default 0.")] = 0,
    ) -> dict[str, Any]:
        """Add a follow-up task to your swarm's queue (epic of the swarm, next free id like Q0007). It is
        ready at once, or blocked until its depends_on are done. Returns {"id", "state", "epic"}."""
        with _tool_errors():
            if backend.channel_path is not None:
                got = backend.call("add", title=title, body=body, depends_on=depends_on, priority=priority)
                return {"id": got["id"], "state": got["state"], "epic": got["epic"]}
            added = add_task(
                backend.store(),
                title=title,
                body=body,
                depends_on=tuple(depends_on or ()),
                priority=priority,
                actor=backend.me(),
            )
            return {"id": added.id, "state": added.state.value, "epic": added.epic}


def _add_thread_tools(tool: _ToolDecorator, backend: _Backend) -> None:
    """Writing and reading the team thread: ``msg_send``, ``msg_list``."""

    @tool
    def msg_send(
        text: Annotated[str, Field(description="The message.")],
        to: Annotated[str | None, Field(description="Recipient: an agent id or 'lead'; default: everyone.")] = None,
        type: Annotated[  # shadows the builtin: docs/contract.md §7 names the parameter
            str | None,
            Field(description="chat (default), question, answer, escalation, shutdown_response or signal.<name>."),
        ] = None,
        thread: Annotated[str | None, Field(description="Thread name; default: team.")] = None,
    ) -> dict[str, Any]:
        """Post a message to a thread (default: team, shared with the other agents and the lead). Returns
        {"seq", "thread"}. To ask something and wait for the answer, use msg_ask instead."""
        with _tool_errors():
            if backend.channel_path is not None:
                got = backend.call(
                    "send", body=text, to=to, type=type or "chat", thread=thread or threads.DEFAULT_THREAD
                )
                return {"seq": got["seq"], "thread": got["thread"]}
            store = backend.store()
            me = backend.me()
            sent = threads.send(store, me, text, to=to, type_=type or "chat", thread=thread or threads.DEFAULT_THREAD)
            return {"seq": sent.seq, "thread": sent.thread}

    @tool
    def msg_list(
        since: Annotated[int | None, Field(description="Only entries after this sequence number.")] = None,
        type: Annotated[  # shadows the builtin: docs/contract.md §7 names the parameter
            str | None, Field(description="Only entries of this type, e.g. question.")
        ] = None,
    ) -> list[dict[str, Any]]:
        """Read the team thread in order: a list of {"seq", "thread", "author", "to", "type", "body",
        "reply_to", "created_at"}. Pass since=<last seq you saw> to get only what is new."""
        with _tool_errors():
            if backend.channel_path is not None:
                entries = [channel_client.message_from(m) for m in backend.call("list", since=since or 0)]
            else:
                entries = backend.store().list_messages(threads.DEFAULT_THREAD, since=since or 0)
            return [message_json(m) for m in entries if type is None or m.type == type]


def _add_wait_tools(tool: _ToolDecorator, backend: _Backend) -> None:
    """The tools that block for an answer: ``msg_wait``, ``msg_ask``."""

    @tool
    async def msg_wait(
        timeout_s: Annotated[
            float | None, Field(description=f"Seconds to wait, at most {MAX_WAIT_SECONDS:g} (the default).")
        ] = None,
        from_agent: Annotated[str | None, Field(description="Only an entry from this author.")] = None,
        reply_to: Annotated[int | None, Field(description="Only an entry answering this seq.")] = None,
    ) -> dict[str, Any]:
        """Wait for the next entry on the team thread that you did not write and that is addressed to you or
        to everyone; returns the entry ({"seq", "author", "type", "body", ...}) or {"timeout": true}. One call
        waits at most 25 s: call it again to keep waiting. Without reply_to, each call continues where your
        last wait stopped, so nothing sent in between is missed."""
        wait_for = _clamp(timeout_s)

        def blocking(stopped: Callable[[], bool]) -> Message | None:
            if backend.channel_path is not None:
                return _channel_wait(backend, wait_for, stopped, from_author=from_agent, reply_to=reply_to)
            # All of it on the worker thread: opening the store and proving the identity touch the database too.
            me = backend.me()
            spec = threads.WaitSpec(identity=me, from_author=from_agent, reply_to=reply_to)
            return _wait_sliced(backend.store(), spec, wait_for, stopped)

        with _tool_errors():
            found = await _in_thread(backend, blocking)
            return message_json(found) if found is not None else {"timeout": True}

    @tool
    async def msg_ask(
        text: Annotated[str, Field(description="The question.")],
        to: Annotated[str | None, Field(description="Who should answer: 'lead' (default) or an agent id.")] = None,
        timeout_s: Annotated[
            float | None,
            Field(description=f"Seconds to wait for the answer, at most {MAX_WAIT_SECONDS:g} (the default)."),
        ] = None,
    ) -> dict[str, Any]:
        """Ask a question (to the lead by default) and wait for the answer; returns {"question": <seq>,
        "answer": {entry} or null}. One call waits at most 25 s; if the answer is null, keep waiting with
        msg_wait(reply_to=<question seq>) instead of asking again."""
        wait_for = _clamp(timeout_s)
        with _tool_errors():
            question, answer = await _in_thread(backend, functools.partial(_ask, backend, text, to or LEAD, wait_for))
            return {"question": question.seq, "answer": message_json(answer) if answer is not None else None}


def _release(backend: _Backend, task_id: str, lease_token: str, outcome: str, why: str) -> dict[str, Any]:
    """Record ``outcome`` for a claimed task: the task's new state (and, when completed, the tasks promoted)."""
    if backend.channel_path is not None:
        got: dict[str, Any] = backend.call(
            "release", task_id=task_id, lease_token=lease_token or None, outcome=outcome, reason=why or None
        )
        return got
    store = backend.store()
    me = backend.me()
    if outcome == "completed":
        return {"state": TaskState.DONE.value, "promoted": store.complete(task_id, me, lease_token)}
    if outcome == "failed":
        return {"state": store.fail(task_id, me, lease_token, why).value}
    store.return_task(task_id, me, lease_token, why or "returned")
    return {"state": TaskState.READY.value}


def _ask(
    backend: _Backend, text: str, to: str, wait_for: float, stopped: Callable[[], bool]
) -> tuple[Message, Message | None]:
    """``threads.ask`` in two steps, so that the wait can be sliced and cancelled like ``msg_wait``'s."""
    if backend.channel_path is not None:
        question = channel_client.message_from(backend.call("ask", body=text, to=to))
        try:
            return question, _channel_wait(backend, wait_for, stopped, reply_to=question.seq)
        finally:
            with contextlib.suppress(SwarmError):
                backend.call("asked")
    # All of it on the worker thread: opening the store and proving the identity touch the database too.
    store = backend.store()
    me = backend.me()
    question = threads.send(store, me, text, to=to, type_="question")
    if me != LEAD:
        store.update_agent(me, detail="waiting for an answer")  # shows in `swarm status`
    try:
        spec = threads.WaitSpec(identity=me, reply_to=question.seq)
        return question, _wait_sliced(store, spec, wait_for, stopped)
    finally:
        if me != LEAD:
            store.update_agent(me, detail=None)


def serve() -> None:
    """Run the ``swarm`` MCP server on stdin/stdout until the client closes the connection.

    It acts as the identity in the environment: inside an agent its channel (``SWARM_CHANNEL``), else
    ``SWARM_AGENT_ID``, ``SWARM_TOKEN``, ``SWARM_ID`` and ``SWARM_DATABASE_URL`` (without it, the database
    configured for the repository around the cwd). A bad identity
    or a missing database does not stop it: it is logged, and every tool that needs it returns the error.
    """
    backend = _Backend(os.environ)
    try:
        _build(backend).run("stdio")
    finally:
        backend.close()
