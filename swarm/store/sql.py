"""The SQL core both backends share: every domain operation whose logic is the same on SQLite and PostgreSQL.

A backend (:mod:`swarm.store.sqlite`, :mod:`swarm.store.postgres`) subclasses :class:`SqlStore` and supplies
only what truly differs:

* its named queries, ``sql/<dialect>/queries.sql``: the same names and parameters on both, so one Python
  body runs either dialect's SQL (placeholders, upserts, casts and ``GREATEST``/``max`` live in the files);
* how an operation runs (:meth:`SqlStore._read`, :meth:`SqlStore._write`): ``BEGIN IMMEDIATE`` with busy
  retries on SQLite; autocommit reads, explicit transactions, reconnects and NOTIFY on PostgreSQL;
* how string arrays travel (JSON text on SQLite, ``text[]`` on PostgreSQL): :meth:`SqlStore._array`,
  :meth:`SqlStore._strings`, :meth:`SqlStore._ids`;
* the operations whose SQL shape differs: claim, complete and reap (server-side functions on PostgreSQL),
  the batching and locking of ``add_tasks``, teardown's ``return_claims``, running a migration script, and
  wake-ups (LISTEN/NOTIFY against polling).
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from swarm.errors import BadInput, InvalidTransition, SchemaTooNew, SwarmError, UnknownTask
from swarm.models import LEAD, STATE_ORDER, AgentRecord, Claim, Event, Message, Spec, Task, TaskState, check_id
from swarm.store.base import AddResult, Notification, Reaped, Store, StoreOptions, SwarmRecord, Withdrawal
from swarm.store.common import (
    AGENT_FIELDS,
    AGENT_SEEN_SECONDS,
    check_agent,
    check_task_ids,
    lease_lost,
    new_specs_in_order,
)
from swarm.store.sqlfile import migrations

log = logging.getLogger(__name__)

#: The advisory lock (PostgreSQL) that serialises creating swarms and adding epics to them.
SWARMS_LOCK = 0x5377_6172_6D00_0002

T = TypeVar("T")


class SqlCursor(Protocol):
    """What the shared operations use of a DB-API cursor (``sqlite3.Cursor`` and ``psycopg.Cursor`` both)."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""

    def execute(self, query: str, params: Any = ..., /) -> Self:
        """Run one statement with named parameters."""

    def executemany(self, query: str, params_seq: Iterable[Any], /) -> object:
        """Run one statement once per parameter set."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""


C = TypeVar("C", bound=SqlCursor)


@dataclass(frozen=True)
class ClaimRequest:
    """One claim, validated: who claims, what it offers (sorted, unique), the new lease's token and TTL."""

    agent_id: str
    caps: list[str]
    token: str
    ttl_seconds: float
    host: str
    swarm_id: str | None


def event(
    task: str, now: float, actor: str, from_state: TaskState | None, to_state: TaskState, reason: str
) -> dict[str, Any]:
    """The parameters of one ``insert_event`` row: ``actor`` moved ``task`` from ``from_state`` to ``to_state``."""
    return {
        "task": task,
        "now": now,
        "actor": actor,
        "from_state": None if from_state is None else from_state.value,
        "to_state": to_state.value,
        "reason": reason,
    }


def completed_reason(commit: str | None) -> str:
    """The event reason of a completion (with the commit it delivered, when there is one)."""
    return f"completed{f' at {commit}' if commit else ''}"


def promoted_reason(task_id: str) -> str:
    """The event reason of a dependent that the completion of ``task_id`` made ready."""
    return f"dependencies done (last: {task_id})"


def log_reaped(count: int) -> None:
    """Say how many expired leases a reap took back (nothing when none)."""
    if count:
        log.info("reaped %d expired lease(s)", count)


class SqlStore(Store, Generic[C]):
    """The domain operations of :class:`~swarm.store.base.Store` written once over a dialect's named queries."""

    #: The folder of ``sql/`` this dialect's queries and migrations come from.
    dialect: ClassVar[str]
    #: The dialect's named queries (``sqlfile.queries(dialect)``).
    _q: ClassVar[dict[str, str]]
    #: How a named parameter is written in hand-built SQL: ``:{}`` or ``%({})s``.
    _param: ClassVar[str]
    #: The cast a float parameter needs in an expression the server cannot type by itself ("" for none).
    _float_cast: ClassVar[str] = ""

    def __init__(self, url: str, options: StoreOptions | None, label: str) -> None:
        self.url = url
        self.options = options or StoreOptions()
        #: How messages name this database (a path, or the URL without its password).
        self._label = label
        #: When each (agent, host, capabilities) last refreshed its agent row from a claim.
        self._agent_seen: dict[tuple[str, str, str], float] = {}

    # -- dialect hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _read(self, fn: Callable[[C], T]) -> T:
        """Run ``fn`` on a consistent read (it may run again after a lost connection: it only reads)."""

    @abstractmethod
    def _write(self, fn: Callable[[C], T], *, notify: bool = True) -> T:
        """Run ``fn`` as one write transaction; ``notify=False`` for writes nobody waits for (agent rows,
        heartbeats), which a backend that signals commits then need not signal. ``fn`` may run again."""

    def _write_idempotent(self, fn: Callable[[C], T]) -> T:
        """Run one statement that may safely run twice and that nobody waits for (a cursor moving forward)."""
        return self._write(fn, notify=False)

    @staticmethod
    @abstractmethod
    def _array(values: list[str]) -> Any:
        """A list of strings as the dialect stores it (JSON text, or a native array)."""

    @staticmethod
    @abstractmethod
    def _strings(value: Any) -> tuple[str, ...]:
        """A stored list of strings (requires, capabilities) read back."""

    @staticmethod
    @abstractmethod
    def _ids(value: Any) -> tuple[str, ...]:
        """A task's dependency ids as the task queries return them."""

    @abstractmethod
    def _reap_in(self, cur: C, now: float) -> list[Reaped]:
        """Take back every lease expired at ``now`` inside the caller's transaction."""

    @abstractmethod
    def _claim(self, request: ClaimRequest, refresh_due: Callable[[float], bool]) -> Claim | None:
        """Reap, then take the next eligible task. ``refresh_due(now)``, asked once per attempt, says
        whether the agent's row must be refreshed too."""

    @abstractmethod
    def _complete(self, done: dict[str, Any]) -> list[str]:
        """Mark the task done under its lease, log it and promote its dependents; return the ids that became
        ready. ``done`` holds the parameters of the ``complete`` query but ``now``, which each attempt adds."""

    @abstractmethod
    def _existing_ids(self, cur: C, specs: Sequence[Spec]) -> dict[str, str]:
        """``{id: state}`` of the tasks already queued that ``specs`` name (as ids or dependencies),
        taking whatever locks keep that answer true until COMMIT."""

    @abstractmethod
    def _unblock(self, cur: C, ids: list[str], now: float) -> set[str]:
        """Count the unfinished dependencies of the new tasks ``ids``; make ready those with none."""

    def _added(self, cur: C, count: int) -> None:
        """Called at the end of an ``add_tasks`` transaction that inserted ``count`` tasks."""

    def _lock_schema(self, cur: C) -> None:
        """Keep other processes out of the migration until COMMIT (nothing to do where writers are serial)."""

    @abstractmethod
    def _run_script(self, cur: C, script: str) -> None:
        """Run one migration file."""

    def _check_migrated(self, cur: C) -> None:
        """Called before COMMIT when migrations ran: refuse a result that breaks the schema's rules."""

    # -- schema ----------------------------------------------------------------------------------
    def _migrate(self, cur: C) -> None:
        """Bring the schema up to the newest migration; SchemaTooNew for a database from a newer swarm."""
        self._lock_schema(cur)
        row = cur.execute(self._q["has_meta"]).fetchone()
        version = 0
        if row and row[0]:
            found = cur.execute(self._q["get_meta"], {"key": "schema_version"}).fetchone()
            version = int(found[0]) if found else 0
        known = migrations(self.dialect)
        latest = known[-1][0] if known else 0
        if version > latest:
            raise SchemaTooNew(
                f"the database {self._label} is at schema version {version}, this swarm knows up to {latest}",
                hint="upgrade swarm, or use another database",
            )
        for number, script in known:
            if number <= version:
                continue
            log.info("migrating %s to schema version %d", self._label, number)
            self._run_script(cur, script)
            cur.execute(self._q["set_meta"], {"key": "schema_version", "value": str(number)})
        if version < latest:
            self._check_migrated(cur)

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        row = self._read(lambda cur: cur.execute(self._q["get_meta"], {"key": "schema_version"}).fetchone())
        return int(row[0]) if row else 0

    # -- swarms ----------------------------------------------------------------------------------
    def ensure_swarm(
        self,
        epic: str,
        max_agents: int | None = None,
        *,
        repo: str | None = None,
        settings: dict[str, Any] | None = None,
        swarm_id: str | None = None,
    ) -> SwarmRecord:
        """Return the open swarm that works ``epic``, creating one (named ``swarm_id``, else a fresh id) the
        first time (and after the last one ended); given values replace stored ones."""
        if swarm_id is not None:
            check_id(swarm_id, "swarm id")

        def op(cur: C) -> SwarmRecord:
            cur.execute(self._q["lock_swarms"], {"key": SWARMS_LOCK})
            found = cur.execute(self._q["open_swarm_of_epic"], {"epic": epic}).fetchone()
            now = self.options.clock()
            if found is None:
                chosen = swarm_id or new_swarm_id()
                new = {"id": chosen, "epic": epic, "max_agents": max_agents, "now": now}
                cur.execute(self._q["insert_swarm"], new)
                cur.execute(self._q["add_swarm_epic"], {"id": chosen, "epic": epic, "now": now})
            else:
                chosen = found[0]
            return self._update_swarm(cur, chosen, max_agents, repo, settings)

        return self._write(op)

    def add_epic(
        self,
        swarm_id: str,
        epic: str,
        max_agents: int | None = None,
        *,
        repo: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> SwarmRecord:
        """Add ``epic`` to an open swarm (nothing when it works it already); given values replace stored ones."""
        check_id(epic, "epic")

        def op(cur: C) -> SwarmRecord:
            cur.execute(self._q["lock_swarms"], {"key": SWARMS_LOCK})
            row = cur.execute(self._q["swarm_by_id"], {"id": swarm_id}).fetchone()
            if row is None:
                raise self._no_swarm(swarm_id)
            if row[7] is not None:
                raise BadInput(
                    f"swarm {swarm_id} has ended: no epic can be added to it",
                    hint="'swarm launch EPIC' starts a new swarm",
                )
            cur.execute(self._q["add_swarm_epic"], {"id": swarm_id, "epic": epic, "now": self.options.clock()})
            return self._update_swarm(cur, swarm_id, max_agents, repo, settings)

        return self._write(op)

    def _update_swarm(
        self, cur: C, swarm_id: str, max_agents: int | None, repo: str | None, settings: dict[str, Any] | None
    ) -> SwarmRecord:
        """Replace the given values of a swarm and clear its stop request (a launch); the swarm as it is now."""
        params = {
            "id": swarm_id,
            "max_agents": max_agents,
            "repo": repo,
            "settings": None if settings is None else json.dumps(settings, sort_keys=True),
        }
        cur.execute(self._q["update_swarm"], params)
        row = cur.execute(self._q["swarm_by_id"], {"id": swarm_id}).fetchone()
        assert row is not None  # inserted or found in this transaction
        return swarm_of(row)

    def withdraw(self, withdrawal: Withdrawal, *, actor: str = "launch") -> list[str]:
        """Take back what a failed launch queued (see :meth:`Store.withdraw`)."""
        w = withdrawal
        q = self._q

        def op(cur: C) -> list[str]:
            cur.execute(q["lock_swarms"], {"key": SWARMS_LOCK})
            now = self.options.clock()
            ids = self._array(list(w.tasks))
            gone: list[str] = []
            kept: list[str] = []
            for task_id in w.tasks:
                row = cur.execute(q["withdrawable_task"], {"id": task_id, "ids": ids}).fetchone()
                (gone if row is not None else kept).append(task_id)
            for task_id in dict.fromkeys([*w.members, *gone]):
                cur.execute(q["withdraw_member"], {"swarm": w.swarm_id, "id": task_id})
            for task_id in gone:
                cur.execute(q["withdraw_deps"], {"id": task_id})
            for task_id in gone:
                cur.execute(q["withdraw_task"], {"id": task_id})
            reason = "the launch that queued it failed"
            withdrawn = {"now": now, "actor": actor, "from_state": None, "to_state": "withdrawn", "reason": reason}
            cur.executemany(q["insert_event"], [{"task": t, **withdrawn} for t in gone])
            for agent_id in w.agents:
                cur.execute(q["withdraw_agent"], {"id": agent_id, "swarm": w.swarm_id})
            if w.previous is None:
                for name in ("withdraw_swarm_members", "withdraw_swarm_epics", "withdraw_swarm_incidents"):
                    cur.execute(q[name], {"id": w.swarm_id})
                cur.execute(q["withdraw_swarm"], {"id": w.swarm_id})
                return kept
            if w.epic is not None:
                cur.execute(q["withdraw_swarm_epic"], {"id": w.swarm_id, "epic": w.epic})
            before = w.previous
            params = {
                "id": w.swarm_id,
                "max_agents": before.max_agents,
                "repo": before.repo,
                "settings": json.dumps(before.settings, sort_keys=True),
                "stop_mode": before.stop_mode,
            }
            cur.execute(q["restore_swarm"], params)
            return kept

        return self._write(op)

    def end_swarm(self, swarm_id: str) -> SwarmRecord:
        """Record that the swarm ended (teardown); ending it again keeps the first end."""

        def op(cur: C) -> SwarmRecord:
            cur.execute(self._q["end_swarm"], {"id": swarm_id, "now": self.options.clock()})
            row = cur.execute(self._q["swarm_by_id"], {"id": swarm_id}).fetchone()
            if row is None:
                raise self._no_swarm(swarm_id)
            return swarm_of(row)

        return self._write(op)

    def list_swarms(self) -> list[SwarmRecord]:
        """Every swarm, oldest first."""
        rows = self._read(lambda cur: cur.execute(self._q["list_swarms"]).fetchall())
        return [swarm_of(r) for r in rows]

    def current_swarm(self) -> SwarmRecord | None:
        """The most recently created swarm."""
        row = self._read(lambda cur: cur.execute(self._q["latest_swarm"]).fetchone())
        return swarm_of(row) if row else None

    def get_swarm(self, swarm_id: str) -> SwarmRecord:
        """One swarm by id."""
        row = self._read(lambda cur: cur.execute(self._q["swarm_by_id"], {"id": swarm_id}).fetchone())
        if row is None:
            raise self._no_swarm(swarm_id)
        return swarm_of(row)

    def _no_swarm(self, swarm_id: str) -> BadInput:
        return BadInput(f"no swarm {swarm_id!r} in {self._label}", hint="'swarm history' lists the swarms")

    def request_stop(self, swarm_id: str, mode: str) -> None:
        """Set the stop request that workers poll."""
        if mode not in ("finish", "now"):
            raise BadInput(f"unknown stop mode {mode!r}", hint="use 'finish' or 'now'")
        self._write(lambda cur: cur.execute(self._q["request_stop"], {"id": swarm_id, "mode": mode}))

    def pause_claims(self, swarm_id: str, until: float, reason: str) -> None:
        """Pause claims until ``until`` (a longer pause already set stays)."""
        params = {"id": swarm_id, "until": until, "reason": reason}
        self._write(lambda cur: cur.execute(self._q["pause_claims"], params))

    def claims_paused(self, swarm_id: str) -> tuple[float, str | None]:
        """The pause of a swarm's claims."""
        row = self._read(lambda cur: cur.execute(self._q["swarm_pause"], {"id": swarm_id}).fetchone())
        return (float(row[0]), row[1]) if row else (0.0, None)

    def record_incident(self, swarm_id: str, key: str) -> bool:
        """True the first time ``key`` is recorded."""

        def op(cur: C) -> bool:
            params = {"key": key, "swarm": swarm_id, "now": self.options.clock()}
            return cur.execute(self._q["record_incident"], params).rowcount > 0

        return self._write(op, notify=False)

    # -- notifications -----------------------------------------------------------------------------
    def queue_notifications(self, items: Sequence[Notification]) -> int:
        """Insert the notifications whose key is new, in one transaction; how many were new."""
        if not items:
            return 0

        def op(cur: C) -> int:
            now = self.options.clock()
            new = 0
            for item in items:
                params = {
                    "key": item.key,
                    "swarm": item.swarm_id,
                    "sink": item.sink,
                    "owner": item.owner,
                    "event": item.event,
                    "payload": item.payload,
                    "now": now,
                }
                new += max(0, cur.execute(self._q["queue_notification"], params).rowcount)
            return new

        return self._write(op, notify=False)

    def pending_notifications(self, owner: str, limit: int = 100) -> list[Notification]:
        """``owner``'s notifications not sent yet, oldest first."""
        params = {"owner": owner, "limit": limit}
        rows = self._read(lambda cur: cur.execute(self._q["pending_notifications"], params).fetchall())
        return [Notification(r[0], r[1], r[2], r[3], r[4], owner=r[6], created_at=float(r[5])) for r in rows]

    def mark_notified(self, key: str) -> None:
        """Record that ``key`` was sent (running it twice is harmless)."""
        params = {"key": key, "now": self.options.clock()}
        self._write_idempotent(lambda cur: cur.execute(self._q["mark_notified"], params))

    # -- agents ----------------------------------------------------------------------------------
    def register_agent(self, agent: AgentRecord) -> None:
        """Create or update an agent slot."""
        check_agent(agent.id)

        def op(cur: C) -> None:
            params = {
                "id": agent.id,
                "swarm_id": agent.swarm_id,
                "host": agent.host,
                "session": agent.session,
                "branch": agent.branch,
                "worktree": agent.worktree,
                "caps": self._array(sorted(set(agent.capabilities))),
                "now": self.options.clock(),
                "state": agent.state,
                "kind": agent.kind,
                "model": agent.model,
            }
            cur.execute(self._q["register_agent"], params)

        self._write(op, notify=False)

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        """Set some runtime fields of an agent; cost_usd is added to its total."""
        unknown = set(fields) - AGENT_FIELDS
        if unknown:
            raise ValueError(f"unknown agent fields: {sorted(unknown)}")
        param = self._param.format
        assignments = [f"last_seen = {param('now')}"]
        for name in fields:
            # Column names come from the fixed whitelist above, never from callers' strings.
            if name == "cost_usd":
                assignments.append(f"cost_usd = cost_usd + {param(name)}{self._float_cast}")
            else:
                assignments.append(f"{name} = {param(name)}")
        statement = f"UPDATE agents SET {', '.join(assignments)} WHERE id = {param('id')}"

        def op(cur: C) -> None:
            cur.execute(statement, {"id": agent_id, "now": self.options.clock(), **fields})

        self._write(op, notify=False)

    def list_agents(self, swarm_id: str | None = None) -> list[AgentRecord]:
        """Agents of a swarm (or all), by id."""
        rows = self._read(lambda cur: cur.execute(self._q["select_agents"], {"swarm": swarm_id}).fetchall())
        return [self._agent_of(r) for r in rows]

    # -- identity --------------------------------------------------------------------------------
    def set_token_hash(self, identity: str, token_hash: str) -> None:
        """Record an identity's secret hash."""

        def op(cur: C) -> None:
            if identity == LEAD:
                cur.execute(self._q["set_meta"], {"key": "lead_token_hash", "value": token_hash})
            elif cur.execute(self._q["set_agent_token"], {"id": identity, "hash": token_hash}).rowcount == 0:
                raise BadInput(f"no agent {identity!r} to give a token to")

        self._write(op, notify=False)

    def token_hash(self, identity: str) -> str | None:
        """An identity's secret hash."""

        def op(cur: C) -> Any:
            if identity == LEAD:
                return cur.execute(self._q["get_meta"], {"key": "lead_token_hash"}).fetchone()
            return cur.execute(self._q["agent_token"], {"id": identity}).fetchone()

        row = self._read(op)
        return str(row[0]) if row and row[0] else None

    def known_identities(self) -> set[str]:
        """Agent ids plus the lead."""
        rows = self._read(lambda cur: cur.execute(self._q["agent_ids"]).fetchall())
        return {r[0] for r in rows} | {LEAD}

    # -- threads ---------------------------------------------------------------------------------
    def append_message(
        self,
        thread: str,
        author: str,
        type_: str,
        body: str,
        *,
        recipient: str | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """Append under the next sequence number of the thread (created on first use)."""

        def op(cur: C) -> Message:
            now = self.options.clock()
            if (
                reply_to is not None
                and not cur.execute(self._q["message_exists"], {"thread": thread, "seq": reply_to}).fetchone()
            ):
                raise BadInput(
                    f"no entry {reply_to} in thread {thread!r} to reply to",
                    hint="see 'swarm msg list' for the sequence numbers",
                )
            # Bumps the thread's row, whose lock is held to COMMIT: numbers follow commit order.
            row = cur.execute(self._q["next_seq"], {"thread": thread, "now": now}).fetchone()
            message = Message(
                thread=thread,
                seq=int(row[0]),
                author=author,
                recipient=recipient,
                type=type_,
                body=body,
                reply_to=reply_to,
                created_at=now,
            )
            # The query's parameters are the message's fields.
            cur.execute(self._q["insert_message"], asdict(message))
            return message

        return self._write(op)

    def list_messages(self, thread: str, *, since: int = 0, limit: int = 10_000) -> list[Message]:
        """Entries after ``since``."""
        params = {"thread": thread, "since": since, "limit": limit}
        rows = self._read(lambda cur: cur.execute(self._q["list_messages"], params).fetchall())
        return [message_of(r) for r in rows]

    def get_message(self, thread: str, seq: int) -> Message:
        """One entry."""
        row = self._read(lambda cur: cur.execute(self._q["get_message"], {"thread": thread, "seq": seq}).fetchone())
        if row is None:
            raise BadInput(f"no entry {seq} in thread {thread!r}", hint="see 'swarm msg list' for the sequence numbers")
        return message_of(row)

    def next_message_for(
        self,
        thread: str,
        identity: str,
        *,
        after: int,
        from_author: str | None = None,
        reply_to: int | None = None,
        type_: str | None = None,
    ) -> Message | None:
        """The next entry for ``identity``."""
        params = {
            "thread": thread,
            "identity": identity,
            "after": after,
            "from_author": from_author,
            "reply_to": reply_to,
            "type": type_,
        }
        row = self._read(lambda cur: cur.execute(self._q["next_for"], params).fetchone())
        return message_of(row) if row else None

    def thread_tail(self, thread: str) -> int:
        """Last sequence number."""
        row = self._read(lambda cur: cur.execute(self._q["thread_tail"], {"thread": thread}).fetchone())
        return int(row[0]) if row else 0

    def get_cursor(self, identity: str, thread: str) -> int | None:
        """Where identity's waits left off."""
        params = {"identity": identity, "thread": thread}
        row = self._read(lambda cur: cur.execute(self._q["get_cursor"], params).fetchone())
        return int(row[0]) if row else None

    def set_cursor(self, identity: str, thread: str, seq: int) -> None:
        """Move a cursor forward (the statement never moves it back, so running it twice is harmless)."""
        params = {"identity": identity, "thread": thread, "seq": seq}
        self._write_idempotent(lambda cur: cur.execute(self._q["set_cursor"], params))

    def unanswered_questions(self, recipient: str = LEAD) -> list[Message]:
        """Open questions to ``recipient``."""
        rows = self._read(lambda cur: cur.execute(self._q["unanswered"], {"recipient": recipient}).fetchall())
        return [message_of(r) for r in rows]

    # -- tasks -----------------------------------------------------------------------------------
    def add_tasks(self, specs: Sequence[Spec], *, actor: str = "lead", swarm_id: str | None = None) -> AddResult:
        """Queue the specs that are not queued yet, in one transaction."""
        check_task_ids(specs)

        def op(cur: C) -> AddResult:
            now = self.options.clock()
            existing = self._existing_ids(cur, specs)
            ordered = new_specs_in_order(specs, existing)
            ids = [s.id for s in ordered]
            ready: set[str] = set()
            if ordered:
                cur.executemany(self._q["insert_task"], [self._task_params(s, now) for s in ordered])
                dep_rows = [{"id": s.id, "dep": dep} for s in ordered for dep in dict.fromkeys(s.depends_on)]
                if dep_rows:
                    cur.executemany(self._q["insert_dep"], dep_rows)
                ready = self._unblock(cur, ids, now)
                states = {i: TaskState.READY if i in ready else TaskState.BLOCKED for i in ids}
                cur.executemany(self._q["insert_event"], [event(i, now, actor, None, states[i], "queued") for i in ids])
            if swarm_id is not None and specs:
                cur.executemany(self._q["add_member"], [{"swarm": swarm_id, "id": s.id} for s in specs])
            self._added(cur, len(ordered))
            return AddResult(
                added=ids, existing=[s.id for s in specs if s.id in existing], ready=[i for i in ids if i in ready]
            )

        return self._write(op)

    def _task_params(self, spec: Spec, now: float) -> dict[str, Any]:
        """The ``insert_task`` row of a new spec."""
        return {
            "id": spec.id,
            "epic": spec.epic,
            "title": spec.title,
            "body": spec.body,
            "priority": spec.priority,
            "requires": self._array(sorted(set(spec.requires))),
            "max_attempts": spec.max_attempts or self.options.default_max_attempts,
            "timeout_seconds": spec.timeout_seconds,
            "source": str(spec.path) if spec.path else None,
            "now": now,
            "verify": spec.verify,
            "allow_empty": spec.allow_empty,
        }

    def claim(
        self,
        agent_id: str,
        capabilities: Sequence[str] = (),
        *,
        ttl_seconds: float,
        host: str = "",
        swarm_id: str | None = None,
    ) -> Claim | None:
        """Reap, then claim the next eligible task atomically."""
        check_agent(agent_id)
        if ttl_seconds <= 0:
            raise BadInput(f"lease TTL must be positive, got {ttl_seconds}")
        caps = sorted(set(capabilities))
        request = ClaimRequest(agent_id, caps, secrets.token_hex(16), ttl_seconds, host, swarm_id)
        seen = (agent_id, host, json.dumps(caps))
        refreshed: list[float] = []

        def refresh_due(now: float) -> bool:
            # The agent row only says "seen lately": refresh it at most every few seconds per store, which
            # keeps a row write off the hottest path.
            refreshed.clear()  # a retried transaction starts over
            if now - self._agent_seen.get(seen, float("-inf")) < AGENT_SEEN_SECONDS:
                return False
            refreshed.append(now)
            return True

        claimed = self._claim(request, refresh_due)
        if refreshed:  # only once the refresh is committed
            self._agent_seen[seen] = refreshed[0]
        return claimed

    def _claim_of(self, request: ClaimRequest, row: Sequence[Any]) -> Claim:
        """The claim handed to the agent, from ``(id, epic, title, body, attempts, lease_until, timeout, deps)``."""
        task_id, epic, title, body, attempts, lease_until, timeout, deps = row
        return Claim(
            task_id=task_id,
            title=title,
            prompt=body,
            lease_token=request.token,
            lease_until=lease_until,
            attempt=attempts,
            epic=epic,
            depends_on=self._ids(deps),
            timeout_seconds=timeout,
        )

    def _lease_lost(self, cur: C, task_id: str, agent_id: str, token: str) -> SwarmError:
        """Why a fenced write found nothing to change (the caller raises it, rolling the transaction back)."""
        return lease_lost(task_id, agent_id, token, cur.execute(self._q["fence_probe"], {"id": task_id}).fetchone())

    def heartbeat(self, task_id: str, agent_id: str, lease_token: str, *, ttl_seconds: float) -> float:
        """Extend a lease."""

        def op(cur: C) -> float:
            now = self.options.clock()
            params = {"id": task_id, "agent": agent_id, "token": lease_token, "until": now + ttl_seconds, "now": now}
            row = cur.execute(self._q["heartbeat"], params).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            return float(row[0])

        return self._write(op, notify=False)

    def record_session(self, task_id: str, agent_id: str, lease_token: str, session_id: str) -> None:
        """Note the conversation of the attempt in hand."""

        def op(cur: C) -> None:
            params = {"id": task_id, "agent": agent_id, "token": lease_token, "session": session_id}
            if cur.execute(self._q["set_session"], params).fetchone() is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)

        self._write(op, notify=False)

    def complete(
        self,
        task_id: str,
        agent_id: str,
        lease_token: str,
        *,
        commit: str | None = None,
        cost_usd: float | None = None,
        tokens: int | None = None,
    ) -> list[str]:
        """Complete once, promote dependents in the same transaction."""
        return self._complete(
            {
                "id": task_id,
                "agent": agent_id,
                "token": lease_token,
                "commit": commit,
                "cost": cost_usd,
                "tokens": tokens,
                "reason": completed_reason(commit),
                "promote_reason": promoted_reason(task_id),
            }
        )

    def fail(
        self,
        task_id: str,
        agent_id: str,
        lease_token: str,
        reason: str,
        *,
        cost_usd: float | None = None,
        tokens: int | None = None,
    ) -> TaskState:
        """Fail an attempt: retry after backoff, or dead."""

        def op(cur: C) -> TaskState:
            now = self.options.clock()
            probe = cur.execute(self._q["fence_probe"], {"id": task_id}).fetchone()
            # Only used when the fenced update below succeeds, i.e. when the task is still under this lease,
            # so its attempts cannot have changed in between.
            attempts = int(probe[3]) if probe else 0
            params = {
                "id": task_id,
                "agent": agent_id,
                "token": lease_token,
                "now": now,
                "reason": reason,
                "cost": cost_usd,
                "tokens": tokens,
                "not_before": now + self.options.retry.delay(attempts),
            }
            row = cur.execute(self._q["fail"], params).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            state = TaskState(row[0])
            why = f"failed (attempt {attempts}): {reason}"
            cur.execute(self._q["insert_event"], event(task_id, now, agent_id, TaskState.CLAIMED, state, why))
            return state

        return self._write(op)

    def return_task(self, task_id: str, agent_id: str, lease_token: str, reason: str = "returned") -> None:
        """Give a task back without spending an attempt."""

        def op(cur: C) -> None:
            now = self.options.clock()
            params = {"id": task_id, "agent": agent_id, "token": lease_token, "now": now}
            if cur.execute(self._q["return_task"], params).fetchone() is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            row = event(task_id, now, agent_id, TaskState.CLAIMED, TaskState.READY, f"returned: {reason}")
            cur.execute(self._q["insert_event"], row)

        self._write(op)

    def _locked_state(self, cur: C, task_id: str) -> TaskState:
        """The task's state, its row locked to COMMIT; UnknownTask when there is no such task."""
        row = cur.execute(self._q["task_state_for_update"], {"id": task_id}).fetchone()
        if row is None:
            raise UnknownTask(task_id)
        return TaskState(row[0])

    def cancel(self, task_id: str, *, actor: str = "lead", reason: str = "cancelled") -> TaskState:
        """Cancel a task that is not done."""

        def op(cur: C) -> TaskState:
            now = self.options.clock()
            before = self._locked_state(cur, task_id)
            if before in (TaskState.DONE, TaskState.CANCELLED):
                raise InvalidTransition(
                    f"task {task_id} is {before}, it cannot be cancelled",
                    hint="only blocked, ready, claimed or dead tasks can be cancelled",
                )
            cur.execute(self._q["cancel"], {"id": task_id, "now": now, "reason": reason})
            cur.execute(self._q["insert_event"], event(task_id, now, actor, before, TaskState.CANCELLED, reason))
            return before

        return self._write(op)

    def retry(self, task_id: str, *, actor: str = "lead") -> TaskState:
        """Requeue a dead or cancelled task with fresh attempts."""

        def op(cur: C) -> TaskState:
            now = self.options.clock()
            before = self._locked_state(cur, task_id)
            if before not in (TaskState.DEAD, TaskState.CANCELLED):
                raise InvalidTransition(
                    f"task {task_id} is {before}, only dead or cancelled tasks can be retried",
                    hint="see 'swarm queue status'",
                )
            cur.execute(self._q["recount_pending"], {"id": task_id})
            found = cur.execute(self._q["retry"], {"id": task_id, "now": now}).fetchone()
            assert found is not None  # the row is locked and dead or cancelled
            after = TaskState(found[0])
            cur.execute(self._q["insert_event"], event(task_id, now, actor, before, after, "retried by hand"))
            return after

        return self._write(op)

    def reap(self) -> list[Reaped]:
        """Take back expired leases."""
        return self._write(lambda cur: self._reap_in(cur, self.options.clock()))

    # -- reads -----------------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Task:
        """One task by id."""
        params = {"epic": None, "id": task_id, "swarm": None}
        row = self._read(lambda cur: cur.execute(self._q["select_tasks"], params).fetchone())
        if row is None:
            raise UnknownTask(task_id)
        return self._task_of(row)

    def list_tasks(self, epic: str | None = None, *, swarm_id: str | None = None) -> list[Task]:
        """Every task, oldest first."""
        params = {"epic": epic, "id": None, "swarm": swarm_id}
        rows = self._read(lambda cur: cur.execute(self._q["select_tasks"], params).fetchall())
        return [self._task_of(r) for r in rows]

    def counts(self, epic: str | None = None, *, swarm_id: str | None = None) -> dict[str, int]:
        """Tasks per state, every state present."""
        params = {"epic": epic, "swarm": swarm_id}
        rows = self._read(lambda cur: cur.execute(self._q["counts"], params).fetchall())
        found = {state: int(n) for state, n in rows}
        return {state.value: found.get(state.value, 0) for state in STATE_ORDER}

    def events(self, task_id: str | None = None, *, since: int = 0, limit: int = 10_000) -> list[Event]:
        """Event log entries after ``since``."""
        params = {"task": task_id, "since": since, "limit": limit}
        rows = self._read(lambda cur: cur.execute(self._q["select_events"], params).fetchall())
        return [
            Event(seq=r[0], task_id=r[1], at=r[2], actor=r[3], from_state=r[4], to_state=r[5], reason=r[6])
            for r in rows
        ]

    # -- row mappers -----------------------------------------------------------------------------
    def _agent_of(self, row: Sequence[Any]) -> AgentRecord:
        """An ``select_agents`` row as a record."""
        return AgentRecord(
            id=row[0],
            swarm_id=row[1],
            host=row[2] or "",
            session=row[3],
            branch=row[4],
            worktree=row[5],
            capabilities=self._strings(row[6]),
            pid=row[7],
            agent_pid=row[8],
            state=row[9],
            task_id=row[10],
            restarts=row[11],
            cost_usd=row[12] or 0.0,
            last_seen=row[13],
            last_output=row[14],
            last_output_at=row[15],
            detail=row[16],
            created_at=row[17],
            next_restart_at=row[18] or 0.0,
            kind=row[19],
            model=row[20],
        )

    def _task_of(self, row: Sequence[Any]) -> Task:
        """A ``select_tasks`` row as a task."""
        return Task(
            id=row[0],
            epic=row[1],
            title=row[2],
            body=row[3],
            state=TaskState(row[4]),
            priority=row[5],
            requires=self._strings(row[6]),
            attempts=row[7],
            max_attempts=row[8],
            owner=row[9],
            lease_until=row[10],
            not_before=row[11],
            commit=row[12],
            cost_usd=row[13],
            last_error=row[14],
            created_at=row[15],
            updated_at=row[16],
            timeout_seconds=row[17],
            tokens=row[18],
            heartbeat_at=row[19],
            verify=row[20],
            allow_empty=bool(row[21]),
            session_id=row[22],
            session_agent=row[23],
            depends_on=self._ids(row[24]),
        )


def new_swarm_id() -> str:
    """A fresh swarm id (``sw-`` and ten hex digits)."""
    return f"sw-{uuid.uuid4().hex[:10]}"


def message_of(row: Sequence[Any]) -> Message:
    """A messages row ``(thread, seq, author, recipient, type, body, reply_to, created_at)`` as a message."""
    return Message(
        thread=row[0],
        seq=int(row[1]),
        author=row[2],
        recipient=row[3],
        type=row[4],
        body=row[5],
        reply_to=None if row[6] is None else int(row[6]),
        created_at=row[7],
    )


def swarm_of(row: Sequence[Any]) -> SwarmRecord:
    """A swarms row as a record; ``settings`` is JSON text (SQLite) or already decoded (PostgreSQL jsonb), and
    ``epics`` space-separated text (SQLite) or an array (PostgreSQL)."""
    stored: Mapping[str, Any] | str | None = row[6]
    settings = json.loads(stored or "{}") if isinstance(stored, str) else stored
    listed = row[8]
    epics = tuple(listed.split()) if isinstance(listed, str) else tuple(listed or ())
    return SwarmRecord(
        id=row[0],
        epic=row[1],
        max_agents=row[2],
        created_at=row[3],
        stop_mode=row[4],
        repo=row[5] or "",
        settings=dict(settings or {}),
        epics=epics or (row[1],),
        ended_at=row[7],
    )
