"""``swarm mcp --lead``: the lead's verbs as MCP tools on stdio (docs/contract.md §7), for a lead that is itself an
agent session, e.g. Claude Code driving a swarm.

Every tool acts as the lead and proves it on every call, exactly like the CLI's lead-only verbs
(:func:`swarm.identity.require_lead`): the lead's secret ``.swarm/lead.token`` of the main checkout, and not
running inside an agent of this database. A failed proof is a tool error with swarm's one line; the server keeps
running. Each tool returns what the matching CLI command prints with ``--json``.

MCP clients time tool calls out, so no call blocks for long: waits take at most :data:`MAX_WAIT_SECONDS`, and
launch and teardown (which can take longer: worktrees, a shutdown grace period) run on a thread of the server
that outlives the call; a call that returns before they finish says so, and calling the tool again with the
same arguments keeps waiting for the same run. What launch starts lives in tmux, not in this process: the swarm
keeps running when the server exits. A client that closes stdin gets a launch or teardown in progress finished
first; one that kills the server (the MCP SDK sends SIGTERM 2 s after closing stdin) interrupts it, as Ctrl-C
interrupts ``swarm launch``, and launching again resumes.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from pydantic import Field

from swarm import __version__, identity, threads
from swarm import status as dashboard
from swarm.agents import known_kinds
from swarm.config import LoadedConfig, find_repo_root, load_config
from swarm.errors import BadInput, SwarmError
from swarm.fleet import parse_fleet
from swarm.launcher import (
    LaunchRequest,
    TeardownOptions,
    launch,
    launch_json,
    load_launch_config,
    teardown,
    teardown_json,
)
from swarm.mcp_server import MAX_WAIT_SECONDS, _clamp, _in_thread, _tool_errors, _wait_sliced
from swarm.models import LEAD, Message
from swarm.queue import backlog_folder, database_exists, lead_token_path, open_queue, queue_epic, queued_json
from swarm.store import Store
from swarm.views import message_json, question_json

log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SERVER_NAME = "swarm-lead"
#: How often a waiting ``swarm_status`` looks again at most while the database changes (heartbeats change it).
_STATUS_POLL_SECONDS = 0.25
_INSTRUCTIONS = """\
Tools to lead a swarm of coding agents working one git repository (you are the lead): swarm_launch starts an
epic's agents, swarm_status(wait_s=25) watches it (it returns early when the epic is finished or an agent asks
you something), questions() lists what agents asked you and msg_reply(seq, text) answers, swarm_teardown stops
everything. Each returns what `swarm <command> --json` prints. Errors come back as tool errors with one line
that says what went wrong and what to do."""


class _ToolDecorator(Protocol):
    """Registers the function it decorates as a tool of the server, and returns it unchanged."""

    def __call__(self, fn: F, /) -> F: ...


@dataclass
class _Job:
    """A launch or teardown running on its own thread of the server; it outlives the tool call that started it."""

    key: tuple[Any, ...]
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


class _LeadBackend:
    """The lead's environment, its proof on every call, and the launch or teardown in progress."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._threads: list[threading.Thread] = []

    def loaded(self) -> LoadedConfig:
        """The repository's configuration, read afresh on each call (the lead may edit swarm.toml meanwhile)."""
        return load_config(find_repo_root(self.cwd), env=self.env)

    @contextmanager
    def lead_store(self, what: str) -> Iterator[tuple[LoadedConfig, Store]]:
        """The configuration and the open queue, once the caller proved it is the lead (BadInput otherwise)."""
        loaded = self.loaded()
        with open_queue(loaded) as store:
            identity.require_lead(store, lead_token_path(loaded), self.env, what)
            yield loaded, store

    def check_lead(self, loaded: LoadedConfig, what: str) -> None:
        """The lead's proof for a verb that may create the database: checked in full once the database exists."""
        if database_exists(loaded.database_url()):
            with self.lead_store(what):
                return
        if self.env.get("SWARM_TOKEN") or self.env.get("SWARM_AGENT_ID"):
            # No database yet to prove anything against; an agent's identity in the environment is enough to say no.
            raise BadInput(
                f"this server has an agent's identity (SWARM_AGENT_ID / SWARM_TOKEN) and cannot {what}: "
                "only the lead can",
                hint="start 'swarm mcp --lead' from the lead's own shell, where those variables are not set",
            )

    def job(self, name: str, key: tuple[Any, ...], fn: Callable[[], dict[str, Any]]) -> _Job:
        """The run of ``name`` with these arguments: the one in progress (or finished, not yet collected), else
        a new one started on its own thread. BadInput while a run with other arguments is in progress."""
        with self._lock:
            current = self._jobs.get(name)
            if current is not None and current.key != key:
                if not current.done.is_set():
                    raise BadInput(
                        f"a {name} with other arguments is still in progress",
                        hint=f"call {name} again with the same arguments to wait for it first",
                    )
                current = None
            if current is not None:
                return current
            job = _Job(key=key)
            self._jobs[name] = job
            thread = threading.Thread(target=self._run, args=(job, fn), name=f"swarm-lead-{name}")
            self._threads.append(thread)
            thread.start()
            return job

    @staticmethod
    def _run(job: _Job, fn: Callable[[], dict[str, Any]]) -> None:
        try:
            job.result = fn()
        except BaseException as exc:  # handed to the tool call that collects the job
            job.error = exc
        finally:
            job.done.set()

    def collect(self, name: str, job: _Job) -> dict[str, Any]:
        """The finished job's result (or its error, raised), forgetting the job."""
        with self._lock:
            if self._jobs.get(name) is job:
                del self._jobs[name]
        if job.error is not None:
            raise job.error
        return job.result if job.result is not None else {}  # a job that ended without error set its result

    def close(self) -> None:
        """Stop waits in flight, and let a launch or teardown in progress finish: half of one helps nobody."""
        self.stop.set()
        for thread in self._threads:
            thread.join()


async def _run_job(
    backend: _LeadBackend, name: str, key: tuple[Any, ...], fn: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Start (or join) the job ``name`` and wait for it up to :data:`MAX_WAIT_SECONDS`."""
    job = backend.job(name, key, fn)
    finished = await anyio.to_thread.run_sync(job.done.wait, MAX_WAIT_SECONDS, abandon_on_cancel=True)
    if not finished:
        return {
            "in_progress": name,
            "seconds": round(time.monotonic() - job.started, 1),
            "hint": f"{name} is still working; call {name} again with the same arguments to keep waiting",
        }
    return backend.collect(name, job)


def _build(backend: _LeadBackend) -> MCPServer[Any]:
    """The lead's MCP server with every lead tool."""
    server: MCPServer[Any] = MCPServer(SERVER_NAME, instructions=_INSTRUCTIONS, version=__version__)

    def tool(fn: F) -> F:
        # The docstring is the description the lead reads; dedented so that it does not reach it indented.
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""))
        return fn

    tool_: _ToolDecorator = tool

    _add_swarm_tools(tool_, backend)
    _add_queue_tools(tool_, backend)
    _add_thread_tools(tool_, backend)
    return server


def _add_swarm_tools(tool: _ToolDecorator, backend: _LeadBackend) -> None:
    """Starting and stopping the swarm: ``swarm_launch``, ``swarm_teardown`` (and ``swarm_status`` between them)."""

    @tool
    async def swarm_launch(
        epic: Annotated[str, Field(description="The epic to work, e.g. E005 (the `epic:` of its specs).")],
        agents: Annotated[int | None, Field(description="Number of agents (default: swarm.max_agents).", ge=1)] = None,
        agent: Annotated[str | None, Field(description="Agent kind: claude, codex, aider or command.")] = None,
        model: Annotated[str | None, Field(description="Model passed to the agent CLI, e.g. sonnet.")] = None,
        command: Annotated[
            str | None, Field(description="Run this shell command as the agent (kind 'command').")
        ] = None,
        fleet: Annotated[
            str | None,
            Field(
                description="A mixed fleet instead of agents/agent/model: kind[:model][=count], comma separated, "
                "e.g. claude:sonnet=2,codex=1 (command agents run `command`)."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Queue an epic and start its agents (`swarm launch EPIC --json`): one git worktree, branch and tmux
        session per agent. Returns {"swarm": {"id", "epic", "epics"}, "queued": {"added", "ready", ...},
        "agents": [{"id", "session", "branch", "worktree", "kind", "model"}], "started_sessions", "warnings",
        ...}. Launching again resumes (nothing is duplicated); launching another epic while a swarm runs adds it to
        that swarm.
        A call returns after at most 25 s: {"in_progress": "swarm_launch"} means call it again with the same
        arguments to keep waiting. Then watch with swarm_status(wait_s=25)."""
        with _tool_errors():
            members = parse_fleet(fleet, known_kinds()) if fleet is not None else ()
        request = LaunchRequest(epic=epic, agents=agents, kind=agent, model=model, command=command, fleet=members)

        def run() -> dict[str, Any]:
            loaded = load_launch_config(request, cwd=backend.cwd, env=backend.env)
            backend.check_lead(loaded, "launch swarms")
            result = launch(request, cwd=backend.cwd, say=log.info, env=backend.env, loaded=loaded)
            return launch_json(result)

        with _tool_errors():
            return await _run_job(backend, "swarm_launch", (epic, agents, agent, model, command, fleet), run)

    _add_status_tool(tool, backend)

    @tool
    async def swarm_teardown(
        now: Annotated[
            bool, Field(description="Stop agents mid-task (their task goes back to the queue); default: after it.")
        ] = False,
    ) -> dict[str, Any]:
        """Stop everything the swarm runs on this host and end it (`swarm teardown --json`): workers stop
        (after their task, or at once with now=true), unfinished claims go back, uncommitted work is committed
        as WIP on the agent's branch, sessions and worktrees are removed; branches keep the work. Returns
        {"swarm", "returned_tasks", "wip_commits", "sessions_killed", "worktrees_removed", "clean", "ended",
        ...}. A call returns after at most 25 s: {"in_progress": "swarm_teardown"} means call it again to keep
        waiting."""

        def run() -> dict[str, Any]:
            loaded = backend.loaded()
            with backend.lead_store("tear the swarm down"):
                pass
            report = teardown(cwd=backend.cwd, loaded=loaded, options=TeardownOptions(now=now), say=log.info)
            if report.swarm_id and not report.clean:
                raise SwarmError(
                    f"teardown could not stop everything: processes {report.survivors}, "
                    f"sessions {report.sessions_left}",
                    hint="stop those PIDs by hand (they carry this swarm's SWARM_ID) and run teardown again",
                )
            return teardown_json(report)

        with _tool_errors():
            return await _run_job(backend, "swarm_teardown", (now,), run)


def _add_status_tool(tool: _ToolDecorator, backend: _LeadBackend) -> None:
    """Watching the swarm: ``swarm_status``."""

    @tool
    async def swarm_status(
        epic: Annotated[str | None, Field(description="Only this epic's tasks and counts.")] = None,
        wait_s: Annotated[
            float | None,
            Field(
                description=f"Wait up to this many seconds (at most {MAX_WAIT_SECONDS:g}) for the swarm to finish "
                "or an agent to ask you something; default 0: return at once."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """The swarm as `swarm status --json` prints it: {"swarm": {"id", "epics", "finished", ...}, "counts":
        {state: n}, "tasks": [{"id", "title", "state", "owner", "attempts", "commit", "last_error", ...}],
        "agents": [{"id", "state", "task", ...}], "questions": [open questions to you], "epics": {...}}.
        With wait_s it returns as soon as nothing is ready or claimed any more (swarm.finished: true) or a
        question to you is open, else after wait_s: call it in a loop to watch the swarm."""
        wait_for = _clamp(wait_s) if wait_s else 0.0

        def blocking(stopped: Callable[[], bool]) -> dict[str, Any]:
            deadline = time.monotonic() + wait_for
            with backend.lead_store("read the swarm's status") as (loaded, store):
                while True:
                    marker = store.change_marker()
                    swarm = store.current_swarm()
                    if swarm is None:
                        raise BadInput("no swarm in this database yet", hint="start one with swarm_launch")
                    snap = dashboard.take(store, loaded, swarm, epic=epic)
                    left = deadline - time.monotonic()
                    if snap.finished or snap.questions or left <= 0 or stopped():
                        return dashboard.to_json(snap)
                    store.wait_for_change(marker, min(left, 1.0), first=_STATUS_POLL_SECONDS, most=1.0)

        with _tool_errors():
            return await _in_thread(backend, blocking)


def _add_queue_tools(tool: _ToolDecorator, backend: _LeadBackend) -> None:
    """The queue by hand: ``queue_init``, ``queue_cancel``, ``queue_retry``."""

    @tool
    def queue_init(
        epic: Annotated[str, Field(description="The epic to queue (its specs and the undone specs they need).")],
        max_agents: Annotated[int | None, Field(description="Agents this swarm may run.", ge=1)] = None,
    ) -> dict[str, Any]:
        """Validate the backlog and queue an epic without starting agents (`swarm queue init --json`):
        {"swarm": {"id", "epic", "database", "max_agents"}, "added", "existing", "ready", "dependencies",
        "already_done"}. Safe to call again."""
        with _tool_errors():
            loaded = backend.loaded()
            backend.check_lead(loaded, "queue epics")
            from swarm.backlog import load_backlog  # YAML parsing: loaded only when specs are read

            specs = load_backlog(backlog_folder(loaded))  # validates everything before any write
            return queued_json(queue_epic(loaded, specs, epic, max_agents=max_agents), loaded)

    @tool
    def queue_cancel(
        task_id: Annotated[str, Field(description="The task to cancel.")],
        reason: Annotated[str | None, Field(description="Why (kept in the event log).")] = None,
    ) -> dict[str, Any]:
        """Cancel a task that is not done (`swarm queue cancel --json`); an agent holding it loses its lease.
        Returns {"task_id", "from", "state": "cancelled"}. Its dependents stay blocked; queue_retry undoes it."""
        with _tool_errors(), backend.lead_store("cancel tasks") as (_, store):
            before = store.cancel(task_id, reason=reason or "cancelled by the lead")
            return {"task_id": task_id, "from": before.value, "state": "cancelled"}

    @tool
    def queue_retry(
        task_id: Annotated[str, Field(description="The dead or cancelled task to queue again.")],
    ) -> dict[str, Any]:
        """Put a dead or cancelled task back in the queue with fresh attempts (`swarm queue retry --json`).
        Returns {"task_id", "state"}."""
        with _tool_errors(), backend.lead_store("retry tasks") as (_, store):
            return {"task_id": task_id, "state": store.retry(task_id).value}


def _add_thread_tools(tool: _ToolDecorator, backend: _LeadBackend) -> None:
    """The team thread as the lead: ``msg_list``, ``msg_wait``, ``msg_reply``, ``questions``."""

    @tool
    def msg_list(
        since: Annotated[int | None, Field(description="Only entries after this sequence number.")] = None,
        type: Annotated[  # shadows the builtin: docs/contract.md §7 names the parameter
            str | None, Field(description="Only entries of this type, e.g. question.")
        ] = None,
    ) -> list[dict[str, Any]]:
        """Read the team thread in order (`swarm msg list --json`, one entry per line there): a list of
        {"seq", "thread", "author", "to", "type", "body", "reply_to", "created_at"}. Pass since=<last seq you
        saw> to get only what is new."""
        with _tool_errors(), backend.lead_store("read the thread as the lead") as (_, store):
            entries = store.list_messages(threads.DEFAULT_THREAD, since=since or 0)
            return [message_json(m) for m in entries if type is None or m.type == type]

    @tool
    async def msg_wait(
        timeout_s: Annotated[
            float | None, Field(description=f"Seconds to wait, at most {MAX_WAIT_SECONDS:g} (the default).")
        ] = None,
        from_agent: Annotated[str | None, Field(description="Only an entry from this author.")] = None,
        reply_to: Annotated[int | None, Field(description="Only an entry answering this seq.")] = None,
    ) -> dict[str, Any]:
        """Wait for the next entry on the team thread addressed to you (the lead) or to everyone that you did
        not write (`swarm msg wait --json`); returns the entry or {"timeout": true}. One call waits at most
        25 s; each call continues where your last wait stopped, so nothing sent in between is missed (the very
        first starts at the thread's end: msg_list and questions show what came before)."""
        wait_for = _clamp(timeout_s)

        def blocking(stopped: Callable[[], bool]) -> Message | None:
            with backend.lead_store("wait on the thread as the lead") as (_, store):
                spec = threads.WaitSpec(identity=LEAD, from_author=from_agent, reply_to=reply_to)
                return _wait_sliced(store, spec, wait_for, stopped)

        with _tool_errors():
            found = await _in_thread(backend, blocking)
            return message_json(found) if found is not None else {"timeout": True}

    @tool
    def msg_reply(
        seq: Annotated[int, Field(description="The seq of the entry (usually a question) to answer.", ge=1)],
        text: Annotated[str, Field(description="The answer.")],
    ) -> dict[str, Any]:
        """Answer an entry of the team thread, usually an agent's question (`swarm msg reply SEQ TEXT --json`):
        the answer goes to its author, who is waiting for it. Returns the answer entry {"seq", "author": "lead",
        "to", "type": "answer", "body", "reply_to", ...}."""
        with _tool_errors(), backend.lead_store("answer as the lead") as (_, store):
            return message_json(threads.reply(store, LEAD, seq, text))

    @tool
    def questions() -> list[dict[str, Any]]:
        """The open questions to you, oldest first, as `swarm status --json` lists them under "questions": a
        list of {"seq", "from", "author", "body", "created_at", ...}. Answer each with msg_reply(seq, text)."""
        with _tool_errors(), backend.lead_store("read the questions to the lead") as (_, store):
            return [question_json(q) for q in store.unanswered_questions(LEAD)]


def serve() -> None:
    """Run the lead's MCP server on stdin/stdout until the client closes the connection.

    It acts as the lead of the repository around the cwd (its configuration, its database); every tool proves
    that first (docs/contract.md §7) and returns the failure as a tool error. A launch or teardown still in
    progress when the client closes the connection is finished before the process exits (unless it is killed).
    """
    backend = _LeadBackend(os.environ, Path.cwd())
    try:
        _build(backend).run("stdio")
    finally:
        backend.close()
