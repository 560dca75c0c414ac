"""The embedded SQLite backend: one file, WAL, ``BEGIN IMMEDIATE`` for every write.

This module is the only one that imports :mod:`sqlite3`. Why the choices:

* ``BEGIN IMMEDIATE`` takes the write lock before the first read, so a transaction that reads then writes
  never fails with SQLITE_BUSY halfway (a deferred ``BEGIN`` cannot wait for the lock once it has read).
* WAL lets readers (status, waiters) run beside the single writer. ``synchronous=NORMAL`` keeps every
  committed transaction across a process crash (SIGKILL); only a power cut may lose the last commits.
* Transactions are short and never span anything slow: each domain operation is one transaction.
* Busy waits use SQLite's own busy handler; on top of it the whole operation is retried until the busy
  deadline, so "database is locked" never reaches a caller as such (it becomes :class:`StoreBusy`).
* Wake-ups poll ``PRAGMA data_version``, which changes when another connection commits and costs no write.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from swarm.errors import (
    BadInput,
    InvalidTransition,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    SwarmError,
    UnknownTask,
)
from swarm.models import LEAD, STATE_ORDER, AgentRecord, Claim, Event, Message, Spec, Task, TaskState
from swarm.store.base import AddResult, Reaped, Store, StoreOptions, SwarmRecord
from swarm.store.common import (
    AGENT_FIELDS,
    AGENT_SEEN_SECONDS,
    check_agent,
    check_task_ids,
    lease_lost,
    new_specs_in_order,
)
from swarm.store.sqlfile import migrations, queries

log = logging.getLogger(__name__)

T = TypeVar("T")

DIALECT = "sqlite"
_Q = queries(DIALECT)
_MIN_SQLITE = (3, 35, 0)  # RETURNING


def path_from_url(url: str) -> Path:
    """``sqlite:///rel/path.db`` (relative to the cwd) or ``sqlite:////abs/path.db`` -> a path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise BadInput(f"not a SQLite URL: {url!r}", hint="use sqlite:///path/to/swarm.db")
    raw = unquote(parts.path)
    # sqlite:///x -> path "/x" means relative "x"; sqlite:////abs -> "//abs" means "/abs".
    path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
    if not str(path) or str(path) == ".":
        raise BadInput(f"SQLite URL {url!r} names no file", hint="use sqlite:///.swarm/swarm.db")
    return path


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _can_open(path: Path, flags: int) -> bool | None:
    """Whether ``path`` opens with ``flags`` (None: it does not exist); asks the kernel, not the mode bits."""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    os.close(fd)
    return True


def damaged_database(path: Path, exc: BaseException) -> StoreError | None:
    """The one-line error for a database file that cannot be used as it is: corrupt, not readable by this user,
    or read-only; None when ``exc`` says none of these (a busy or a programming error)."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.DatabaseError) and any(
        word in text for word in ("not a database", "malformed", "corrupt", "file is encrypted")
    ):
        return StoreError(
            f"the database {path} is corrupt or not a swarm database ({exc}): swarm cannot read its queue",
            hint=f"restore it from a backup, or move it away (mv {path} {path}.broken) and launch again "
            "to start a new queue (done tasks then run again)",
        )
    readable = _can_open(path, os.O_RDONLY)
    if readable is False:
        return StoreError(
            f"cannot read the database {path}: permission denied",
            hint=f"run swarm as the file's owner, or give your user access (chmod u+rw {path})",
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        folder_writable = os.access(path.parent, os.W_OK)
        writable = _can_open(path, os.O_RDWR)
        if writable is False or not folder_writable or "readonly" in text:
            where = path if writable is False else path.parent
            return StoreError(
                f"the database {path} is read-only ({'the file' if writable is False else 'its folder'} cannot be "
                "written): swarm reads it but cannot change the queue",
                hint=f"make it writable (chmod u+w {where}; the -wal and -shm files beside it too), "
                "or use a copy with --db",
            )
    return None


class SQLiteStore(Store):
    """The SQLite implementation of :class:`~swarm.store.base.Store`."""

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old (swarm needs 3.35 or newer for RETURNING)",
                hint="use a Python built against a newer SQLite, or a PostgreSQL database",
            )
        self.url = url
        self.options = options or StoreOptions()
        self.path = path_from_url(url)
        self._lock = threading.RLock()
        self._local_commits = 0
        self._agent_seen: dict[tuple[str, str, str], float] = {}
        self._conn = self._connect()
        self._run_write(self._migrate)

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Create the file ourselves so it is 0600 from its first byte; SQLite gives the -wal and
                # -shm files the same mode as the database file.
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
        except OSError as exc:
            raise damaged_database(self.path, exc) or StoreError(
                f"cannot create the database {self.path}: {exc.strerror}",
                hint="check that the folder is writable or pass another --db",
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.options.busy_timeout_seconds,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock; the worker heartbeats from a thread
            )
        except sqlite3.Error as exc:
            raise damaged_database(self.path, exc) or StoreError(
                f"cannot open the database {self.path}: {exc}", hint="check the path given by --db or queue.database"
            ) from exc
        deadline = time.monotonic() + self.options.busy_timeout_seconds
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                break
            except sqlite3.OperationalError as exc:
                # Switching to WAL needs a moment of exclusive access; several processes opening a new
                # database at once can collide here.
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                conn.close()
                raise self._translate(exc) from exc
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise damaged_database(self.path, exc) or StoreError(
                    f"{self.path} is not a swarm database: {exc}",
                    hint="point --db at another file or move this one away",
                ) from exc
        return conn

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _translate(self, exc: sqlite3.Error) -> SwarmError:
        if _is_busy(exc):
            return StoreBusy(
                f"the database {self.path} stayed locked for {self.options.busy_timeout_seconds:.0f}s",
                hint="another process holds a long write; retry, or check 'swarm doctor'",
            )
        return damaged_database(self.path, exc) or StoreError(
            f"database error on {self.path}: {exc}", hint="run with SWARM_DEBUG=1 for details"
        )

    def _run_write(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; retry the whole of it while the file is busy."""
        deadline = time.monotonic() + self.options.busy_timeout_seconds
        delay = 0.001
        with self._lock:
            while True:
                cur = self._conn.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(cur)
                        cur.execute("COMMIT")
                    except BaseException:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        raise
                    self._local_commits += 1
                    return result
                except sqlite3.OperationalError as exc:
                    if _is_busy(exc) and time.monotonic() < deadline:
                        time.sleep(delay)
                        delay = min(delay * 2, 0.05)
                        continue
                    raise self._translate(exc) from exc
                except sqlite3.Error as exc:
                    raise self._translate(exc) from exc
                finally:
                    cur.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        """A consistent read snapshot (a deferred transaction that never writes)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            finally:
                try:
                    if self._conn.in_transaction:
                        self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._translate(exc) from exc
                finally:
                    cur.close()

    # -- schema ----------------------------------------------------------------------------------
    def _migrate(self, cur: sqlite3.Cursor) -> None:
        has_meta = cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        version = 0
        if has_meta:
            row = cur.execute(_Q["get_meta"], {"key": "schema_version"}).fetchone()
            version = int(row[0]) if row else 0
        known = migrations(DIALECT)
        latest = known[-1][0] if known else 0
        if version > latest:
            raise SchemaTooNew(
                f"the database {self.path} is at schema version {version}, this swarm knows up to {latest}",
                hint="upgrade swarm, or use another database",
            )
        for number, sql in known:
            if number <= version:
                continue
            log.info("migrating %s to schema version %d", self.path, number)
            for statement in _split_statements(sql):
                cur.execute(statement)
            cur.execute(_Q["set_meta"], {"key": "schema_version", "value": str(number)})

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._read() as cur:
            row = cur.execute(_Q["get_meta"], {"key": "schema_version"}).fetchone()
            return int(row[0]) if row else 0

    # -- swarms ----------------------------------------------------------------------------------
    def ensure_swarm(
        self,
        epic: str,
        max_agents: int | None = None,
        *,
        repo: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> SwarmRecord:
        """Return the swarm of ``epic``, creating it the first time; given values replace stored ones."""
        now = self.options.clock()

        def op(cur: sqlite3.Cursor) -> SwarmRecord:
            row = cur.execute(_Q["get_swarm"], {"epic": epic}).fetchone()
            if row is None:
                swarm_id = f"sw-{uuid.uuid4().hex[:10]}"
                cur.execute(_Q["insert_swarm"], {"id": swarm_id, "epic": epic, "max_agents": max_agents, "now": now})
            cur.execute(
                _Q["update_swarm"],
                {
                    "epic": epic,
                    "max_agents": max_agents,
                    "repo": repo,
                    "settings": None if settings is None else json.dumps(settings, sort_keys=True),
                },
            )
            return _swarm(cur.execute(_Q["get_swarm"], {"epic": epic}).fetchone())

        return self._run_write(op)

    def current_swarm(self) -> SwarmRecord | None:
        """The most recently created swarm."""
        with self._read() as cur:
            row = cur.execute(_Q["latest_swarm"]).fetchone()
            return _swarm(row) if row else None

    def get_swarm(self, swarm_id: str) -> SwarmRecord:
        """One swarm by id."""
        with self._read() as cur:
            row = cur.execute(_Q["swarm_by_id"], {"id": swarm_id}).fetchone()
        if row is None:
            raise BadInput(f"no swarm {swarm_id!r} in {self.path}", hint="run 'swarm status' to see the swarm")
        return _swarm(row)

    def request_stop(self, swarm_id: str, mode: str) -> None:
        """Set the stop request that workers poll."""
        if mode not in ("finish", "now"):
            raise BadInput(f"unknown stop mode {mode!r}", hint="use 'finish' or 'now'")
        self._run_write(lambda cur: cur.execute(_Q["request_stop"], {"id": swarm_id, "mode": mode}))

    def pause_claims(self, swarm_id: str, until: float, reason: str) -> None:
        """Pause claims until ``until``."""
        self._run_write(lambda cur: cur.execute(_Q["pause_claims"], {"id": swarm_id, "until": until, "reason": reason}))

    def claims_paused(self, swarm_id: str) -> tuple[float, str | None]:
        """The pause of a swarm's claims."""
        with self._read() as cur:
            row = cur.execute(_Q["swarm_pause"], {"id": swarm_id}).fetchone()
        return (float(row[0]), row[1]) if row else (0.0, None)

    def record_incident(self, swarm_id: str, key: str) -> bool:
        """True the first time ``key`` is recorded."""
        now = self.options.clock()
        return bool(
            self._run_write(
                lambda cur: cur.execute(_Q["record_incident"], {"key": key, "swarm": swarm_id, "now": now}).rowcount
            )
        )

    # -- agents ----------------------------------------------------------------------------------
    def register_agent(self, agent: AgentRecord) -> None:
        """Create or update an agent slot."""
        check_agent(agent.id)
        params = {
            "id": agent.id,
            "swarm_id": agent.swarm_id,
            "host": agent.host,
            "session": agent.session,
            "branch": agent.branch,
            "worktree": agent.worktree,
            "caps": json.dumps(sorted(set(agent.capabilities))),
            "now": self.options.clock(),
            "state": agent.state,
        }
        self._run_write(lambda cur: cur.execute(_Q["register_agent"], params))

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        """Set some runtime fields of an agent; cost_usd is added to its total."""
        unknown = set(fields) - AGENT_FIELDS
        if unknown:
            raise ValueError(f"unknown agent fields: {sorted(unknown)}")
        assignments = ["last_seen = :now"]
        params: dict[str, Any] = {"id": agent_id, "now": self.options.clock()}
        for name, value in fields.items():
            # Column names come from the fixed whitelist above, never from callers' strings.
            assignments.append(f"{name} = {name} + :{name}" if name == "cost_usd" else f"{name} = :{name}")
            params[name] = value
        sql = f"UPDATE agents SET {', '.join(assignments)} WHERE id = :id"
        self._run_write(lambda cur: cur.execute(sql, params))

    def list_agents(self, swarm_id: str | None = None) -> list[AgentRecord]:
        """Agents of a swarm (or all), by id."""
        with self._read() as cur:
            rows = cur.execute(_Q["select_agents"], {"swarm": swarm_id}).fetchall()
        return [_agent(r) for r in rows]

    def return_claims(
        self, agent_ids: Sequence[str], *, actor: str = "lead", reason: str = "returned by teardown"
    ) -> list[str]:
        """Return what these agents hold, without their tokens (their leases become stale)."""

        def op(cur: sqlite3.Cursor) -> list[str]:
            now = self.options.clock()
            returned: list[str] = []
            for agent_id in agent_ids:
                for (task_id,) in cur.execute(_Q["claims_of_agent"], {"agent": agent_id}).fetchall():
                    cur.execute(_Q["admin_return"], {"id": task_id, "now": now})
                    cur.execute(
                        _Q["insert_event"],
                        {
                            "task": task_id,
                            "now": now,
                            "actor": actor,
                            "from_state": "claimed",
                            "to_state": "ready",
                            "reason": f"{reason} (was held by {agent_id})",
                        },
                    )
                    returned.append(task_id)
            return returned

        return self._run_write(op)

    # -- identity --------------------------------------------------------------------------------
    def set_token_hash(self, identity: str, token_hash: str) -> None:
        """Record an identity's secret hash."""

        def op(cur: sqlite3.Cursor) -> None:
            if identity == LEAD:
                cur.execute(_Q["set_meta"], {"key": "lead_token_hash", "value": token_hash})
            elif cur.execute(_Q["set_agent_token"], {"id": identity, "hash": token_hash}).rowcount == 0:
                raise BadInput(f"no agent {identity!r} to give a token to")

        self._run_write(op)

    def token_hash(self, identity: str) -> str | None:
        """An identity's secret hash."""
        with self._read() as cur:
            if identity == LEAD:
                row = cur.execute(_Q["get_meta"], {"key": "lead_token_hash"}).fetchone()
            else:
                row = cur.execute(_Q["agent_token"], {"id": identity}).fetchone()
        return row[0] if row and row[0] else None

    def known_identities(self) -> set[str]:
        """Agent ids plus the lead."""
        with self._read() as cur:
            return {r[0] for r in cur.execute(_Q["agent_ids"])} | {LEAD}

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
        """Append under the next sequence number of the thread."""

        def op(cur: sqlite3.Cursor) -> Message:
            now = self.options.clock()
            cur.execute(_Q["ensure_thread"], {"thread": thread, "now": now})
            if (
                reply_to is not None
                and not cur.execute(_Q["message_exists"], {"thread": thread, "seq": reply_to}).fetchone()
            ):
                raise BadInput(
                    f"no entry {reply_to} in thread {thread!r} to reply to",
                    hint="see 'swarm msg list' for the sequence numbers",
                )
            seq = cur.execute(_Q["next_seq"], {"thread": thread}).fetchone()[0]
            cur.execute(
                _Q["insert_message"],
                {
                    "thread": thread,
                    "seq": seq,
                    "author": author,
                    "recipient": recipient,
                    "type": type_,
                    "body": body,
                    "reply_to": reply_to,
                    "now": now,
                },
            )
            return Message(
                thread=thread,
                seq=seq,
                author=author,
                recipient=recipient,
                type=type_,
                body=body,
                reply_to=reply_to,
                created_at=now,
            )

        return self._run_write(op)

    def list_messages(self, thread: str, *, since: int = 0, limit: int = 10_000) -> list[Message]:
        """Entries after ``since``."""
        with self._read() as cur:
            rows = cur.execute(_Q["list_messages"], {"thread": thread, "since": since, "limit": limit}).fetchall()
        return [_message(r) for r in rows]

    def get_message(self, thread: str, seq: int) -> Message:
        """One entry."""
        with self._read() as cur:
            row = cur.execute(_Q["get_message"], {"thread": thread, "seq": seq}).fetchone()
        if row is None:
            raise BadInput(f"no entry {seq} in thread {thread!r}", hint="see 'swarm msg list' for the sequence numbers")
        return _message(row)

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
        with self._read() as cur:
            row = cur.execute(
                _Q["next_for"],
                {
                    "thread": thread,
                    "identity": identity,
                    "after": after,
                    "from_author": from_author,
                    "reply_to": reply_to,
                    "type": type_,
                },
            ).fetchone()
        return _message(row) if row else None

    def thread_tail(self, thread: str) -> int:
        """Last sequence number."""
        with self._read() as cur:
            row = cur.execute(_Q["thread_tail"], {"thread": thread}).fetchone()
        return int(row[0]) if row else 0

    def get_cursor(self, identity: str, thread: str) -> int | None:
        """Where identity's waits left off."""
        with self._read() as cur:
            row = cur.execute(_Q["get_cursor"], {"identity": identity, "thread": thread}).fetchone()
        return int(row[0]) if row else None

    def set_cursor(self, identity: str, thread: str, seq: int) -> None:
        """Move a cursor forward."""
        self._run_write(lambda cur: cur.execute(_Q["set_cursor"], {"identity": identity, "thread": thread, "seq": seq}))

    def unanswered_questions(self, recipient: str = LEAD) -> list[Message]:
        """Open questions to ``recipient``."""
        with self._read() as cur:
            rows = cur.execute(_Q["unanswered"], {"recipient": recipient}).fetchall()
        return [_message(r) for r in rows]

    # -- tasks -----------------------------------------------------------------------------------
    def add_tasks(self, specs: Sequence[Spec], *, actor: str = "lead", swarm_id: str | None = None) -> AddResult:
        """Queue the specs that are not queued yet, in one transaction."""
        now = self.options.clock()
        default_attempts = self.options.default_max_attempts

        def op(cur: sqlite3.Cursor) -> AddResult:
            check_task_ids(specs)
            existing = dict(cur.execute(_Q["existing_ids"]).fetchall())
            ordered = new_specs_in_order(specs, existing)
            cur.executemany(
                _Q["insert_task"],
                [
                    {
                        "id": s.id,
                        "epic": s.epic,
                        "title": s.title,
                        "body": s.body,
                        "priority": s.priority,
                        "requires": json.dumps(sorted(set(s.requires))),
                        "max_attempts": s.max_attempts or default_attempts,
                        "timeout_seconds": s.timeout_seconds,
                        "source": str(s.path) if s.path else None,
                        "now": now,
                    }
                    for s in ordered
                ],
            )
            cur.executemany(
                _Q["insert_dep"],
                [{"id": s.id, "dep": dep} for s in ordered for dep in dict.fromkeys(s.depends_on)],
            )
            ready: list[str] = []
            events: list[dict[str, Any]] = []
            for spec in ordered:
                cur.execute(_Q["recount_pending"], {"id": spec.id})
                became_ready = cur.execute(_Q["unblock_if_ready"], {"id": spec.id, "now": now}).fetchone()
                state = TaskState.READY if became_ready else TaskState.BLOCKED
                if became_ready:
                    ready.append(spec.id)
                events.append(
                    {
                        "task": spec.id,
                        "now": now,
                        "actor": actor,
                        "from_state": None,
                        "to_state": state.value,
                        "reason": "queued",
                    }
                )
            cur.executemany(_Q["insert_event"], events)
            if swarm_id is not None:
                cur.executemany(_Q["add_member"], [{"swarm": swarm_id, "id": s.id} for s in specs])
            return AddResult(
                added=[s.id for s in ordered], existing=[s.id for s in specs if s.id in existing], ready=ready
            )

        return self._run_write(op)

    def _reap_in(self, cur: sqlite3.Cursor, now: float) -> list[Reaped]:
        reaped: list[Reaped] = []
        for task_id, owner, attempts, max_attempts in cur.execute(_Q["expired_leases"], {"now": now}).fetchall():
            if attempts >= max_attempts:
                cur.execute(_Q["expire_to_dead"], {"id": task_id, "now": now})
                to_state = TaskState.DEAD
                reason = f"lease of {owner} expired on attempt {attempts} of {max_attempts}"
            else:
                cur.execute(_Q["expire_to_ready"], {"id": task_id, "now": now})
                to_state = TaskState.READY
                reason = f"lease of {owner} expired (attempt {attempts} of {max_attempts})"
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": "reaper",
                    "from_state": "claimed",
                    "to_state": to_state.value,
                    "reason": reason,
                },
            )
            reaped.append(Reaped(task_id=task_id, owner=owner, to_state=to_state))
        if reaped:
            log.info("reaped %d expired lease(s)", len(reaped))
        return reaped

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
        caps = json.dumps(sorted(set(capabilities)))
        token = secrets.token_hex(16)

        seen = (agent_id, host, caps)
        refreshed: list[float] = []

        def op(cur: sqlite3.Cursor) -> Claim | None:
            refreshed.clear()  # a retried transaction starts over
            now = self.options.clock()
            self._reap_in(cur, now)
            # The agent row only says "seen lately": refresh it at most every few seconds per connection,
            # which keeps a statement (and, every few seconds, a page) off the hottest path.
            if now - self._agent_seen.get(seen, float("-inf")) >= AGENT_SEEN_SECONDS:
                cur.execute(_Q["upsert_agent"], {"agent": agent_id, "host": host, "caps": caps, "now": now})
                refreshed.append(now)
            row = cur.execute(
                _Q["claim"],
                {
                    "agent": agent_id,
                    "token": token,
                    "until": now + ttl_seconds,
                    "now": now,
                    "caps": caps,
                    "swarm": swarm_id,
                },
            ).fetchone()
            if row is None:
                return None
            task_id, epic, title, body, attempts, lease_until, timeout, deps_text = row
            deps = _id_tuple(deps_text)
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": agent_id,
                    "from_state": "ready",
                    "to_state": "claimed",
                    "reason": f"attempt {attempts}",
                },
            )
            return Claim(
                task_id=task_id,
                title=title,
                prompt=body,
                lease_token=token,
                lease_until=lease_until,
                attempt=attempts,
                epic=epic,
                depends_on=deps,
                timeout_seconds=timeout,
            )

        claimed = self._run_write(op)
        if refreshed:  # only once the refresh is committed
            self._agent_seen[seen] = refreshed[0]
        return claimed

    def _lease_lost(self, cur: sqlite3.Cursor, task_id: str, agent_id: str, token: str) -> SwarmError:
        return lease_lost(task_id, agent_id, token, cur.execute(_Q["fence_probe"], {"id": task_id}).fetchone())

    def heartbeat(self, task_id: str, agent_id: str, lease_token: str, *, ttl_seconds: float) -> float:
        """Extend a lease."""

        def op(cur: sqlite3.Cursor) -> float:
            now = self.options.clock()
            row = cur.execute(
                _Q["heartbeat"],
                {
                    "id": task_id,
                    "agent": agent_id,
                    "token": lease_token,
                    "until": now + ttl_seconds,
                    "now": now,
                },
            ).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            return float(row[0])

        return self._run_write(op)

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

        def op(cur: sqlite3.Cursor) -> list[str]:
            now = self.options.clock()
            row = cur.execute(
                _Q["complete"],
                {
                    "id": task_id,
                    "agent": agent_id,
                    "token": lease_token,
                    "now": now,
                    "commit": commit,
                    "cost": cost_usd,
                    "tokens": tokens,
                },
            ).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            events: list[dict[str, Any]] = [
                {
                    "task": task_id,
                    "now": now,
                    "actor": agent_id,
                    "from_state": "claimed",
                    "to_state": "done",
                    "reason": f"completed{f' at {commit}' if commit else ''}",
                }
            ]
            promoted = [
                r[0]
                for r in cur.execute(_Q["promote_dependents"], {"id": task_id, "now": now}).fetchall()
                if r[1] == TaskState.READY and r[2] <= 0
            ]
            events.extend(
                {
                    "task": dep,
                    "now": now,
                    "actor": agent_id,
                    "from_state": "blocked",
                    "to_state": "ready",
                    "reason": f"dependencies done (last: {task_id})",
                }
                for dep in promoted
            )
            cur.executemany(_Q["insert_event"], events)
            return sorted(promoted)

        return self._run_write(op)

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

        def op(cur: sqlite3.Cursor) -> TaskState:
            now = self.options.clock()
            probe = cur.execute(_Q["fence_probe"], {"id": task_id}).fetchone()
            attempts = probe[3] if probe else 0
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
            if cur.execute(_Q["fail_to_ready"], params).fetchone():
                state = TaskState.READY
            elif cur.execute(_Q["fail_to_dead"], params).fetchone():
                state = TaskState.DEAD
            else:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": agent_id,
                    "from_state": "claimed",
                    "to_state": state.value,
                    "reason": f"failed (attempt {attempts}): {reason}",
                },
            )
            return state

        return self._run_write(op)

    def return_task(self, task_id: str, agent_id: str, lease_token: str, reason: str = "returned") -> None:
        """Give a task back without spending an attempt."""

        def op(cur: sqlite3.Cursor) -> None:
            now = self.options.clock()
            row = cur.execute(
                _Q["return_task"], {"id": task_id, "agent": agent_id, "token": lease_token, "now": now}
            ).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": agent_id,
                    "from_state": "claimed",
                    "to_state": "ready",
                    "reason": f"returned: {reason}",
                },
            )

        self._run_write(op)

    def cancel(self, task_id: str, *, actor: str = "lead", reason: str = "cancelled") -> TaskState:
        """Cancel a task that is not done."""

        def op(cur: sqlite3.Cursor) -> TaskState:
            now = self.options.clock()
            row = cur.execute(_Q["task_state"], {"id": task_id}).fetchone()
            if row is None:
                raise UnknownTask(task_id)
            before = TaskState(row[0])
            if before in (TaskState.DONE, TaskState.CANCELLED):
                raise InvalidTransition(
                    f"task {task_id} is {before}, it cannot be cancelled",
                    hint="only blocked, ready, claimed or dead tasks can be cancelled",
                )
            cur.execute(_Q["cancel"], {"id": task_id, "now": now, "reason": reason})
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": actor,
                    "from_state": before.value,
                    "to_state": "cancelled",
                    "reason": reason,
                },
            )
            return before

        return self._run_write(op)

    def retry(self, task_id: str, *, actor: str = "lead") -> TaskState:
        """Requeue a dead or cancelled task with fresh attempts."""

        def op(cur: sqlite3.Cursor) -> TaskState:
            now = self.options.clock()
            row = cur.execute(_Q["task_state"], {"id": task_id}).fetchone()
            if row is None:
                raise UnknownTask(task_id)
            before = TaskState(row[0])
            if before not in (TaskState.DEAD, TaskState.CANCELLED):
                raise InvalidTransition(
                    f"task {task_id} is {before}, only dead or cancelled tasks can be retried",
                    hint="see 'swarm queue status'",
                )
            cur.execute(_Q["recount_pending"], {"id": task_id})
            after = TaskState(cur.execute(_Q["retry"], {"id": task_id, "now": now}).fetchone()[0])
            cur.execute(
                _Q["insert_event"],
                {
                    "task": task_id,
                    "now": now,
                    "actor": actor,
                    "from_state": before.value,
                    "to_state": after.value,
                    "reason": "retried by hand",
                },
            )
            return after

        return self._run_write(op)

    def reap(self) -> list[Reaped]:
        """Take back expired leases."""
        return self._run_write(lambda cur: self._reap_in(cur, self.options.clock()))

    # -- reads -----------------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Task:
        """One task by id."""
        with self._read() as cur:
            row = cur.execute(_Q["select_tasks"], {"epic": None, "id": task_id, "swarm": None}).fetchone()
        if row is None:
            raise UnknownTask(task_id)
        return _task(row)

    def list_tasks(self, epic: str | None = None, *, swarm_id: str | None = None) -> list[Task]:
        """Every task, oldest first."""
        with self._read() as cur:
            rows = cur.execute(_Q["select_tasks"], {"epic": epic, "id": None, "swarm": swarm_id}).fetchall()
        return [_task(r) for r in rows]

    def counts(self, epic: str | None = None, *, swarm_id: str | None = None) -> dict[str, int]:
        """Tasks per state, every state present."""
        with self._read() as cur:
            found = dict(cur.execute(_Q["counts"], {"epic": epic, "swarm": swarm_id}).fetchall())
        return {state.value: int(found.get(state.value, 0)) for state in STATE_ORDER}

    def events(self, task_id: str | None = None, *, since: int = 0, limit: int = 10_000) -> list[Event]:
        """Event log entries after ``since``."""
        with self._read() as cur:
            rows = cur.execute(_Q["select_events"], {"task": task_id, "since": since, "limit": limit})
            return [
                Event(seq=r[0], task_id=r[1], at=r[2], actor=r[3], from_state=r[4], to_state=r[5], reason=r[6])
                for r in rows
            ]

    def change_marker(self) -> int:
        """Changes whenever any connection (this one included) commits."""
        with self._lock:
            try:
                version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            return (version << 32) | (self._local_commits & 0xFFFFFFFF)


def _message(row: Sequence[Any]) -> Message:
    return Message(
        thread=row[0],
        seq=row[1],
        author=row[2],
        recipient=row[3],
        type=row[4],
        body=row[5],
        reply_to=row[6],
        created_at=row[7],
    )


def _swarm(row: Sequence[Any]) -> SwarmRecord:
    return SwarmRecord(
        id=row[0],
        epic=row[1],
        max_agents=row[2],
        created_at=row[3],
        stop_mode=row[4],
        repo=row[5] or "",
        settings=json.loads(row[6] or "{}"),
    )


def _agent(row: Sequence[Any]) -> AgentRecord:
    return AgentRecord(
        id=row[0],
        swarm_id=row[1],
        host=row[2] or "",
        session=row[3],
        branch=row[4],
        worktree=row[5],
        capabilities=tuple(json.loads(row[6] or "[]")),
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
    )


def _json_tuple(text: str | None) -> tuple[str, ...]:
    # Most tasks have no requirements or dependencies: skip the parser for the empty array (status reads
    # 10,000 rows at a time).
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


def _id_tuple(text: str | None) -> tuple[str, ...]:
    # Dependencies come space-separated from group_concat (ids match ID_PATTERN: no spaces); NULL when none.
    return tuple(text.split(" ")) if text else ()


def _task(row: Sequence[Any]) -> Task:
    return Task(
        id=row[0],
        epic=row[1],
        title=row[2],
        body=row[3],
        state=TaskState(row[4]),
        priority=row[5],
        requires=_json_tuple(row[6]),
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
        depends_on=_id_tuple(row[20]),
    )


def _split_statements(script: str) -> list[str]:
    """Split a migration script into statements (trigger bodies hold semicolons, so ask SQLite)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
