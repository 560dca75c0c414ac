"""The PostgreSQL backend: one shared queue for swarms that span several machines.

This module is the only one that imports :mod:`psycopg`. Same semantics, errors and messages as the SQLite
backend (the contract suite runs on both). Why the choices:

* **One transaction per domain operation.** Connections run in driver autocommit mode: a single-statement
  read costs one round trip and never leaves a session idle in a transaction; every write is one explicit
  ``conn.transaction()`` block (BEGIN ... COMMIT) at READ COMMITTED, kept short.
* **Claims** pick with ``FOR UPDATE SKIP LOCKED`` in a materialized CTE, so concurrent claimers never wait
  for each other's pick and never take the same row; the reaper runs first in the same transaction and
  re-checks ``state = 'claimed' AND lease_until < now`` under the row lock, so two reapers never count one
  expiry twice. Every write after a claim is fenced by owner AND lease token.
* **Writers run concurrently** (SQLite has one at a time), so every read-then-write is guarded by a row lock
  or an advisory lock: ``add_tasks`` serializes with itself (transaction advisory lock) and holds FOR SHARE on
  the unfinished dependencies it links to, and a completion promotes dependents in a second statement whose
  snapshot is taken once it holds the completed row, so a dependent added meanwhile is never left blocked.
  Dependents are locked in id order (no deadlocks between completions); a deadlock or serialization failure
  anyway is retried like a lost connection.
* **Threads**: a message's sequence number is allocated by bumping its thread row (``last_seq + 1``) inside
  the appending transaction; the row lock is held to COMMIT, so numbers follow commit order and readers never
  see a gap.
* **Connections** come from a tiny per-store cache (no pool threads): at most a few idle connections, a new
  one when none is idle. A connection that broke is discarded and the whole operation is retried on a fresh
  one with backoff until ``busy_timeout_seconds`` (a server restart, a failover), then :class:`StoreError`.
  An operation is retried only when it certainly did not commit: the failure happened while connecting or
  before COMMIT, or the server answered COMMIT with an error. When the connection is lost *during* COMMIT
  the outcome is uncertain; the transaction's id (taken just before COMMIT) is then looked up on a new
  connection with ``pg_xact_status``: committed -> the operation's result is returned, aborted -> it is run
  again, unknown -> :class:`StoreError` saying so. A non-idempotent write is never blindly repeated.
  The *first* connection of a store is not retried: a wrong URL or a server that is not there fails at once.
* **Wake-ups**: every write transaction that changed something and may end somebody's wait sends
  ``NOTIFY swarm_changes`` (delivered only on commit). Claims (unless they reaped), heartbeats and agent rows
  do not: a notifying COMMIT takes the server's single notification-queue lock, so notifying commits run one
  at a time across the server, and nobody waits for those writes (the snapshot poll below still sees them).
  A daemon thread holds a ``LISTEN`` connection and counts notifications, so
  :meth:`change_marker` is a memory read while the listener is healthy. The fallback, used always while the
  listener is down (``pg_terminate_backend``, a restart) and every 0.25 s otherwise, polls
  ``pg_current_snapshot()``, which changes whenever a writing transaction ends; a sequence bumped before
  COMMIT would not do: a waiter could see the bump, query before the commit is visible and then sleep
  through the change. Commits made by this process are counted in memory too, so they wake its own waiters
  without any round trip. The listener starts on the first ``change_marker()`` call (CLI commands that never
  wait never open it) and reconnects with backoff.
* **Schema** files ``sql/postgresql/NNN_*.sql`` mirror SQLite's, applied in one transaction under
  ``pg_advisory_xact_lock``, so several processes opening a new database at once are safe. Times are epoch
  seconds in ``double precision`` passed from the injectable clock, never ``now()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

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

# The id checks, the agent-field whitelist and the batch ordering are backend-independent; sharing them keeps
# both backends' rules and messages identical.
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
Conn = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]

DIALECT = "postgresql"
_Q = queries(DIALECT)

#: The NOTIFY channel every write transaction signals (channels are per database).
CHANNEL = "swarm_changes"
#: Advisory lock keys ("Swarm" + a number), scoped to the current database.
_MIGRATION_LOCK = 0x5377_6172_6D00_0001
_ADD_TASKS_LOCK = 0x5377_6172_6D00_0002
#: pg_current_xact_id / pg_xact_status appeared in PostgreSQL 13.
_MIN_SERVER_VERSION = 130000
#: A batch of at least this many new tasks refreshes the planner's statistics of the task tables.
_ANALYZE_AFTER = 50
#: Idle connections kept per store; more threads than this simply open (and later close) extra ones.
_MAX_IDLE = 4
#: How often change_marker() asks the server while the listener is healthy (a safety net only).
POLL_SECONDS = 0.25
#: Connect timeout (seconds) unless the URL sets one.
_CONNECT_TIMEOUT = 5
#: Backoff between retries of an operation whose connection dropped.
_RETRY_FIRST = 0.02
_RETRY_MAX = 1.0
#: Listener reconnect backoff.
_LISTEN_FIRST = 0.05
_LISTEN_MAX = 2.0

#: Write commits made by this process, per database URL: a store sees its siblings' commits at once.
_local_commits: dict[str, int] = {}
_local_lock = threading.Lock()


#: Waiters of this process block on this condition; it is notified on every local commit and on every
#: notification a listener receives (a generation counter, so a wake-up between a waiter's look at the marker
#: and its wait is not lost). Shared by all stores: a spurious wake-up only costs a marker read.
_changed = threading.Condition()
_generation = 0


def _announce() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def _current_generation() -> int:
    with _changed:
        return _generation


def _bump_local(key: str) -> None:
    with _local_lock:
        _local_commits[key] = _local_commits.get(key, 0) + 1
    _announce()


def _local_count(key: str) -> int:
    with _local_lock:
        return _local_commits.get(key, 0)


def mask_url(url: str) -> str:
    """The URL with its password (user-info or ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostinfo}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _ConnectFailed(Exception):
    """Internal: connecting failed; ``retryable`` says whether waiting could help (server down / starting)."""

    def __init__(self, error: SwarmError, *, retryable: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable


class _Listener:
    """A daemon thread holding a LISTEN connection and counting notifications; reconnects with backoff."""

    def __init__(self, connect: Callable[[], Conn], name: str) -> None:
        self._connect = connect
        self.count = 0
        self.healthy = False
        self._stop = threading.Event()
        self._conn_lock = threading.Lock()
        self._conn: Conn | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = _LISTEN_FIRST
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # any failure: wait and try again; the poll fallback covers the gap
                log.debug("listener cannot connect (retrying in %.2fs): %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _LISTEN_MAX)
                continue
            with self._conn_lock:
                if self._stop.is_set():
                    conn.close()
                    return
                self._conn = conn
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                self.healthy = True
                # Commits between the last poll and this LISTEN were announced to nobody: wake everyone once.
                self.count += 1
                _announce()
                backoff = _LISTEN_FIRST
                while not self._stop.is_set():
                    # The timeout only bounds how long a stop can go unnoticed if the wake-up below fails.
                    for _ in conn.notifies(timeout=30.0):
                        self.count += 1
                        _announce()
            except Exception as exc:  # the connection died (terminated, restart) or was shut down by stop()
                if not self._stop.is_set():
                    log.info("LISTEN connection lost, polling until it is back: %s", _one_line(str(exc)))
            finally:
                self.healthy = False
                with self._conn_lock:
                    self._conn = None
                conn.close()
            if not self._stop.is_set():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _LISTEN_MAX)

    def stop(self) -> None:
        """Stop the thread: shut its socket down so the blocked wait returns at once, then join it."""
        self._stop.set()
        with self._conn_lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                with contextlib.suppress(OSError, psycopg.Error):
                    # A dup of the descriptor: shutdown() acts on the shared socket, close() only on the dup.
                    dup = socket.fromfd(conn.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        dup.shutdown(socket.SHUT_RDWR)
                    finally:
                        dup.close()
        self._thread.join(timeout=5)


class PostgresStore(Store):
    """The PostgreSQL implementation of :class:`~swarm.store.base.Store`."""

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        self.url = url
        self.options = options or StoreOptions()
        self.display_url = mask_url(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise BadInput(
                f"cannot use database URL {self.display_url}: {_one_line(str(exc))}",
                hint="check the URL (postgresql://user:password@host:port/dbname)",
            ) from exc
        self._password = str(params.get("password") or "")
        host = str(params.get("host") or "localhost")
        port = str(params.get("port") or "5432")
        self._where = f"{host}:{port}"
        self._user = str(params.get("user") or "")
        self._app = str(params.get("application_name") or "swarm")
        self._extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = _CONNECT_TIMEOUT
        if "keepalives" not in params:
            # A dead peer on a quiet connection (the listener's, above all) is noticed within ~30 s.
            self._extra.update(keepalives=1, keepalives_idle=15, keepalives_interval=5, keepalives_count=3)
        self._idle: list[Conn] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        self._agent_seen: dict[tuple[str, str, str], float] = {}
        self._listener: _Listener | None = None
        self._marker_lock = threading.Lock()
        self._marker = 0
        self._marker_state: tuple[int, str, int] | None = None
        self._snapshot = ""
        self._polled_at = float("-inf")
        self._poll_retry_at = float("-inf")
        self.polls = 0  # how many times change_marker() asked the server (tests check waits stay cheap)

        # The first connection is not retried: a wrong URL, a refused connection or a bad password is
        # reported now instead of after the busy deadline.
        try:
            first = self._connect()
        except _ConnectFailed as failed:
            raise failed.error from failed.__cause__
        self._checkin(first)
        self._run(self._migrate, write=True)

    # -- connections -----------------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        text = _one_line(text)
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _connect(self, application_name: str | None = None) -> Conn:
        """A new autocommit connection; failures become :class:`_ConnectFailed`."""
        extra = dict(self._extra)
        extra["application_name"] = application_name or self._app
        try:
            conn: Conn = psycopg.connect(self.url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise self._connect_failure(exc) from exc
        if conn.info.server_version < _MIN_SERVER_VERSION:
            version = conn.info.server_version
            conn.close()
            raise _ConnectFailed(
                StoreError(
                    f"PostgreSQL at {self._where} is version {version // 10000}, swarm needs 13 or newer",
                    hint="upgrade the server or use the default SQLite database",
                ),
                retryable=False,
            )
        if self.options.busy_timeout_seconds > 0:
            # Like SQLite's busy timeout: a write stuck behind another session's lock (someone's open psql
            # transaction) fails with StoreBusy at the busy deadline instead of hanging forever.
            try:
                conn.execute(_Q["set_lock_timeout"], {"ms": f"{int(self.options.busy_timeout_seconds * 1000)}ms"})
            except psycopg.Error as exc:
                conn.close()
                raise self._connect_failure(exc) from exc
        return conn

    def _connect_failure(self, exc: psycopg.Error) -> _ConnectFailed:
        """Sort a connection failure into bad input, a permission problem, or an unreachable server."""
        text = self._mask(str(exc))
        lower = text.lower()
        unreachable = StoreError(
            f"cannot reach PostgreSQL at {self._where}: {text}",
            hint="check that the server is running and accepts connections from this machine",
        )
        if any(word in lower for word in ("too many", "starting up", "shutting down", "recovery")):
            return _ConnectFailed(unreachable, retryable=True)
        if "resolve host" in lower or "translate host name" in lower:
            # At the first open (never retried) this is a wrong URL; later, a name server's hiccup.
            return _ConnectFailed(
                BadInput(f"cannot use database URL {self.display_url}: {text}", hint="check the URL"),
                retryable=True,
            )
        if (
            "connection is bad" in lower
            or ("invalid" in lower and "connection option" in lower)
            or isinstance(exc, psycopg.ProgrammingError)
        ):
            return _ConnectFailed(
                BadInput(f"cannot use database URL {self.display_url}: {text}", hint="check the URL"),
                retryable=False,
            )
        if "database" in lower and "does not exist" in lower:
            return _ConnectFailed(
                BadInput(
                    f"cannot use database URL {self.display_url}: {text}",
                    hint="check the URL, or create the database first (createdb)",
                ),
                retryable=False,
            )
        if any(
            word in lower
            for word in ("password", "authentication", "pg_hba.conf", "permission denied", "privilege", "role ")
        ):
            return _ConnectFailed(
                StoreError(
                    f"PostgreSQL at {self._where} refused the connection for user {self._user or '(default)'}: {text}",
                    hint="check the user and password in the URL, pg_hba.conf, and the role's GRANTs "
                    "(CONNECT on the database; USAGE and CREATE on the schema for the first run)",
                ),
                retryable=False,
            )
        # Refused, timed out, no route: waiting may help (a restart, a failover).
        return _ConnectFailed(unreachable, retryable=True)

    def _checkout(self) -> Conn:
        with self._idle_lock:
            if self._closed:
                raise StoreError(f"the store on {self.display_url} is closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, conn: Conn | None) -> None:
        """Keep a healthy idle connection for the next operation; close anything else."""
        if conn is None:
            return
        healthy = not conn.closed and not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with self._idle_lock:
            if healthy and not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _drop_idle(self) -> None:
        """After a broken connection the others are most likely dead too (server restart): drop them all."""
        with self._idle_lock:
            stale, self._idle = self._idle, []
        for conn in stale:
            conn.close()

    def close(self) -> None:
        """Stop the listener and close every connection. The store must not be used afterwards."""
        with self._idle_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        with self._marker_lock:  # change_marker() starts the listener under this lock, never after close
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        for conn in idle:
            conn.close()

    # -- running operations ----------------------------------------------------------------------
    @staticmethod
    def _retryable(exc: psycopg.Error, broken: bool) -> bool:
        """Whether an error raised before COMMIT means "try again": the transaction cannot have committed
        and a new attempt may succeed (lost connection, server restart, deadlock, serialization)."""
        if broken:
            return True
        if isinstance(
            exc,
            pg_errors.TransactionRollback
            | pg_errors.SerializationFailure
            | pg_errors.DeadlockDetected
            | pg_errors.AdminShutdown
            | pg_errors.CrashShutdown
            | pg_errors.CannotConnectNow
            | pg_errors.IdleSessionTimeout
            | pg_errors.TooManyConnections
            | pg_errors.ConnectionException,
        ):
            return True
        return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None

    def _translate(self, exc: psycopg.Error) -> SwarmError:
        """One psycopg error -> one swarm error, with a one-line message and no password in it."""
        text = self._mask(str(exc))
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StoreError(
                f"PostgreSQL at {self._where} denied user {self._user or '(default)'}: {text}",
                hint="GRANT the role USAGE and CREATE on the schema (first run) and SELECT, INSERT, UPDATE on "
                "swarm's tables and USAGE on its sequences, or use the database owner",
            )
        if isinstance(exc, psycopg.DataError):
            return BadInput(f"the database refused a value: {text}", hint="remove NUL characters or odd values")
        if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
            return StoreBusy(
                f"the database {self.display_url} stayed locked too long: {text}",
                hint="another process holds a long transaction; retry, or check 'swarm doctor'",
            )
        if isinstance(exc, psycopg.OperationalError) and (exc.sqlstate is None or exc.sqlstate[:2] in ("08", "57")):
            return StoreError(
                f"lost the connection to PostgreSQL at {self._where}: {text}",
                hint="check that the server is running and reachable",
            )
        return StoreError(f"database error on {self.display_url}: {text}", hint="run with SWARM_DEBUG=1 for details")

    def _run(self, fn: Callable[[Cursor], T], *, write: bool, notify: bool = True) -> T:
        """Run ``fn`` as one transaction (``write``) or one autocommit read, retrying on a lost connection.

        ``fn`` may run several times: it must compute everything (the clock included) inside. A write with
        ``notify=False`` wakes no listener (see :meth:`_write`).
        """
        return cast(T, self._attempt(fn, mode="write" if write else "read", notify=notify))

    def _write_call(self, fn: Callable[[Cursor], tuple[T, str | None]]) -> T:
        """Run a write made of one call of a server-side function (``005_functions.sql``) that ends the way
        every write transaction ends. ``fn`` opens the transaction and calls the function with :meth:`_call`,
        and returns its result and the transaction id the function reported (None when it wrote nothing).
        Two round trips: BEGIN with the call, then COMMIT once the transaction id is known."""
        return cast(T, self._attempt(fn, mode="call"))

    @staticmethod
    def _call(cur: Cursor, name: str, params: dict[str, Any]) -> tuple[Any, ...]:
        """``BEGIN`` and the named query, sent as one query string: the simple query protocol runs several
        statements in one round trip where the extended one (server-side parameters) takes one each; the
        parameters are bound client-side by psycopg, quoted as literals, never pasted by hand."""
        client: psycopg.ClientCursor[tuple[Any, ...]] = psycopg.ClientCursor(cur.connection)
        client.execute(f"BEGIN; {_Q[name]}", params)
        client.nextset()  # past BEGIN's empty result
        row = client.fetchone()
        if row is None:
            raise StoreError(f"the server-side function of {name} returned no row", hint="run 'swarm doctor'")
        return row

    def _attempt(self, fn: Callable[[Cursor], Any], *, mode: str, notify: bool = True) -> Any:
        deadline = time.monotonic() + self.options.busy_timeout_seconds
        delay = _RETRY_FIRST
        while True:
            conn: Conn | None = None
            phase = "connect"
            xid: str | None = None
            try:
                conn = self._checkout()
                phase = "statements"
                with conn.cursor() as cur:
                    if mode == "call":
                        try:
                            result, xid = fn(cur)  # the transaction is open from here on
                        except BaseException:
                            _rollback(conn)
                            raise
                        phase = "commit"  # the next thing that can fail is the COMMIT
                        cur.execute(b"COMMIT")
                    elif mode == "write":
                        with conn.transaction():
                            result = fn(cur)
                            row = cur.execute(_Q["finish_write" if notify else "finish_quietly"]).fetchone()
                            xid = row[0] if row else None
                            phase = "commit"
                    else:
                        result = fn(cur)
                self._checkin(conn)
                if xid is not None:
                    _bump_local(self.url)
                return result
            except _ConnectFailed as failed:
                if not failed.retryable:
                    raise failed.error from failed.__cause__
                last: SwarmError = failed.error
            except SwarmError:
                self._checkin(conn)  # a refusal of the domain (LeaseLost, BadInput): rolled back, conn is fine
                raise
            except psycopg.Error as exc:
                broken = conn is None or conn.closed or conn.broken
                self._checkin(conn)
                if broken:
                    self._drop_idle()
                if phase == "commit" and broken:
                    if xid is None:
                        # Nothing was written, so there is nothing to lose: the reads stand.
                        return result
                    if self._committed(xid, deadline):
                        _bump_local(self.url)
                        return result
                    log.info("transaction %s was rolled back by the lost connection; running it again", xid)
                elif not self._retryable(exc, broken):
                    raise self._translate(exc) from exc
                last = self._translate(exc)
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            if time.monotonic() + delay >= deadline:
                raise StoreError(
                    f"gave up after {self.options.busy_timeout_seconds:.0f}s: {last.message}",
                    hint=last.hint,
                )
            log.warning("database operation failed, retrying in %.2fs: %s", delay, last.message)
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def _committed(self, xid: str, deadline: float) -> bool:
        """Whether transaction ``xid``, whose COMMIT lost its connection, committed (asks a new connection)."""
        delay = _RETRY_FIRST
        while True:
            conn: Conn | None = None
            try:
                conn = self._connect()
                row = conn.execute(_Q["xact_status"], {"xid": xid}).fetchone()
                status = row[0] if row else None
                self._checkin(conn)
                conn = None
                if status == "committed":
                    return True
                if status == "aborted":
                    return False
                if status is None:
                    raise StoreError(
                        f"lost the connection to PostgreSQL at {self._where} while committing, and the server no "
                        f"longer knows transaction {xid}: the last change may or may not have been saved",
                        hint="check the task with 'swarm queue status' before retrying",
                    )
                # "in progress": the old session is still finishing; ask again shortly.
            except _ConnectFailed as failed:
                if not failed.retryable:
                    raise failed.error from failed.__cause__
            except psycopg.Error as exc:
                log.debug("cannot check transaction %s yet: %s", xid, exc)
            finally:
                if conn is not None:
                    conn.close()
            if time.monotonic() + delay >= deadline:
                raise StoreError(
                    f"lost the connection to PostgreSQL at {self._where} while committing and could not find out "
                    f"within {self.options.busy_timeout_seconds:.0f}s whether the change was saved",
                    hint="check that the server is running, then look at 'swarm queue status'",
                )
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def _write(self, fn: Callable[[Cursor], T], *, notify: bool = True) -> T:
        """A write transaction. ``notify=False`` for writes that cannot end anybody's wait (a heartbeat, an
        agent's row): every notifying COMMIT takes PostgreSQL's one notification-queue lock, so notifying
        commits of the whole server run one at a time; waiters still see such writes within POLL_SECONDS
        through the snapshot poll."""
        return self._run(fn, write=True, notify=notify)

    def _read(self, fn: Callable[[Cursor], T]) -> T:
        return self._run(fn, write=False)

    # -- schema ----------------------------------------------------------------------------------
    def _migrate(self, cur: Cursor) -> None:
        # Held to COMMIT: a second process opening a new database waits here, then finds it migrated.
        cur.execute(_Q["migration_lock"], {"key": _MIGRATION_LOCK})
        row = cur.execute(_Q["has_meta"]).fetchone()
        version = 0
        if row and row[0]:
            found = cur.execute(_Q["get_meta"], {"key": "schema_version"}).fetchone()
            version = int(found[0]) if found else 0
        known = migrations(DIALECT)
        latest = known[-1][0] if known else 0
        if version > latest:
            raise SchemaTooNew(
                f"the database {self.display_url} is at schema version {version}, this swarm knows up to {latest}",
                hint="upgrade swarm, or use another database",
            )
        for number, script in known:
            if number <= version:
                continue
            log.info("migrating %s to schema version %d", self.display_url, number)
            cur.execute(script)  # no parameters: several statements in one go
            cur.execute(_Q["set_meta"], {"key": "schema_version", "value": str(number)})

    def schema_version(self) -> int:
        """The schema version recorded in the database."""

        def op(cur: Cursor) -> int:
            row = cur.execute(_Q["get_meta"], {"key": "schema_version"}).fetchone()
            return int(row[0]) if row else 0

        return self._read(op)

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

        def op(cur: Cursor) -> SwarmRecord:
            now = self.options.clock()
            swarm_id = f"sw-{uuid.uuid4().hex[:10]}"
            cur.execute(_Q["insert_swarm"], {"id": swarm_id, "epic": epic, "max_agents": max_agents, "now": now})
            row = cur.execute(
                _Q["update_swarm"],
                {
                    "epic": epic,
                    "max_agents": max_agents,
                    "repo": repo,
                    "settings": None if settings is None else json.dumps(settings, sort_keys=True),
                },
            ).fetchone()
            assert row is not None  # inserted or already there, in this transaction
            return _swarm(row)

        return self._write(op)

    def current_swarm(self) -> SwarmRecord | None:
        """The most recently created swarm."""
        row = self._read(lambda cur: cur.execute(_Q["latest_swarm"]).fetchone())
        return _swarm(row) if row else None

    def get_swarm(self, swarm_id: str) -> SwarmRecord:
        """One swarm by id."""
        row = self._read(lambda cur: cur.execute(_Q["swarm_by_id"], {"id": swarm_id}).fetchone())
        if row is None:
            raise BadInput(f"no swarm {swarm_id!r} in {self.display_url}", hint="run 'swarm status' to see the swarm")
        return _swarm(row)

    def request_stop(self, swarm_id: str, mode: str) -> None:
        """Set the stop request that workers poll."""
        if mode not in ("finish", "now"):
            raise BadInput(f"unknown stop mode {mode!r}", hint="use 'finish' or 'now'")
        self._write(lambda cur: cur.execute(_Q["request_stop"], {"id": swarm_id, "mode": mode}))

    def pause_claims(self, swarm_id: str, until: float, reason: str) -> None:
        """Pause claims until ``until`` (a longer pause already set stays)."""
        self._write(lambda cur: cur.execute(_Q["pause_claims"], {"id": swarm_id, "until": until, "reason": reason}))

    def claims_paused(self, swarm_id: str) -> tuple[float, str | None]:
        """The pause of a swarm's claims."""
        row = self._read(lambda cur: cur.execute(_Q["swarm_pause"], {"id": swarm_id}).fetchone())
        return (float(row[0]), row[1]) if row else (0.0, None)

    def record_incident(self, swarm_id: str, key: str) -> bool:
        """True the first time ``key`` is recorded."""

        def op(cur: Cursor) -> bool:
            now = self.options.clock()
            return cur.execute(_Q["record_incident"], {"key": key, "swarm": swarm_id, "now": now}).rowcount > 0

        return self._write(op, notify=False)

    # -- agents ----------------------------------------------------------------------------------
    def register_agent(self, agent: AgentRecord) -> None:
        """Create or update an agent slot."""
        check_agent(agent.id)

        def op(cur: Cursor) -> None:
            cur.execute(
                _Q["register_agent"],
                {
                    "id": agent.id,
                    "swarm_id": agent.swarm_id,
                    "host": agent.host,
                    "session": agent.session,
                    "branch": agent.branch,
                    "worktree": agent.worktree,
                    "caps": sorted(set(agent.capabilities)),
                    "now": self.options.clock(),
                    "state": agent.state,
                },
            )

        self._write(op, notify=False)

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        """Set some runtime fields of an agent; cost_usd is added to its total."""
        unknown = set(fields) - AGENT_FIELDS
        if unknown:
            raise ValueError(f"unknown agent fields: {sorted(unknown)}")
        assignments: list[sql.Composable] = [sql.SQL("last_seen = %(now)s")]
        for name in fields:
            # Column names come from the fixed whitelist above, never from callers' strings.
            column = sql.Identifier(name)
            if name == "cost_usd":
                assignments.append(sql.SQL("{} = {} + %(cost_usd)s::float8").format(column, column))
            else:
                assignments.append(sql.SQL("{} = {}").format(column, sql.Placeholder(name)))
        statement = sql.SQL("UPDATE agents SET {} WHERE id = %(id)s").format(sql.SQL(", ").join(assignments))

        def op(cur: Cursor) -> None:
            cur.execute(statement, {"id": agent_id, "now": self.options.clock(), **fields})

        self._write(op, notify=False)

    def list_agents(self, swarm_id: str | None = None) -> list[AgentRecord]:
        """Agents of a swarm (or all), by id."""
        rows = self._read(lambda cur: cur.execute(_Q["select_agents"], {"swarm": swarm_id}).fetchall())
        return [_agent(r) for r in rows]

    def return_claims(
        self, agent_ids: Sequence[str], *, actor: str = "lead", reason: str = "returned by teardown"
    ) -> list[str]:
        """Return what these agents hold, without their tokens (their leases become stale)."""

        def op(cur: Cursor) -> list[str]:
            rows = cur.execute(
                _Q["admin_return"],
                {"agents": list(agent_ids), "now": self.options.clock(), "actor": actor, "reason": reason},
            ).fetchall()
            # Same order as the SQLite backend: agent by agent as given.
            order = {agent: i for i, agent in enumerate(agent_ids)}
            return [task for task, owner in sorted(rows, key=lambda r: (order.get(r[1], 0), r[0]))]

        return self._write(op)

    # -- identity --------------------------------------------------------------------------------
    def set_token_hash(self, identity: str, token_hash: str) -> None:
        """Record an identity's secret hash."""

        def op(cur: Cursor) -> None:
            if identity == LEAD:
                cur.execute(_Q["set_meta"], {"key": "lead_token_hash", "value": token_hash})
            elif cur.execute(_Q["set_agent_token"], {"id": identity, "hash": token_hash}).rowcount == 0:
                raise BadInput(f"no agent {identity!r} to give a token to")

        self._write(op, notify=False)

    def token_hash(self, identity: str) -> str | None:
        """An identity's secret hash."""

        def op(cur: Cursor) -> tuple[Any, ...] | None:
            if identity == LEAD:
                return cur.execute(_Q["get_meta"], {"key": "lead_token_hash"}).fetchone()
            return cur.execute(_Q["agent_token"], {"id": identity}).fetchone()

        row = self._read(op)
        return row[0] if row and row[0] else None

    def known_identities(self) -> set[str]:
        """Agent ids plus the lead."""
        rows = self._read(lambda cur: cur.execute(_Q["agent_ids"]).fetchall())
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
        """Append under the next sequence number of the thread."""

        def op(cur: Cursor) -> Message:
            now = self.options.clock()
            if (
                reply_to is not None
                and not cur.execute(_Q["message_exists"], {"thread": thread, "seq": reply_to}).fetchone()
            ):
                raise BadInput(
                    f"no entry {reply_to} in thread {thread!r} to reply to",
                    hint="see 'swarm msg list' for the sequence numbers",
                )
            row = cur.execute(_Q["next_seq"], {"thread": thread, "now": now}).fetchone()
            assert row is not None
            seq = int(row[0])
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

        return self._write(op)

    def list_messages(self, thread: str, *, since: int = 0, limit: int = 10_000) -> list[Message]:
        """Entries after ``since``."""
        rows = self._read(
            lambda cur: cur.execute(_Q["list_messages"], {"thread": thread, "since": since, "limit": limit}).fetchall()
        )
        return [_message(r) for r in rows]

    def get_message(self, thread: str, seq: int) -> Message:
        """One entry."""
        row = self._read(lambda cur: cur.execute(_Q["get_message"], {"thread": thread, "seq": seq}).fetchone())
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
        params = {
            "thread": thread,
            "identity": identity,
            "after": after,
            "from_author": from_author,
            "reply_to": reply_to,
            "type": type_,
        }
        row = self._read(lambda cur: cur.execute(_Q["next_for"], params).fetchone())
        return _message(row) if row else None

    def thread_tail(self, thread: str) -> int:
        """Last sequence number."""
        row = self._read(lambda cur: cur.execute(_Q["thread_tail"], {"thread": thread}).fetchone())
        return int(row[0]) if row else 0

    def get_cursor(self, identity: str, thread: str) -> int | None:
        """Where identity's waits left off."""
        row = self._read(lambda cur: cur.execute(_Q["get_cursor"], {"identity": identity, "thread": thread}).fetchone())
        return int(row[0]) if row else None

    def set_cursor(self, identity: str, thread: str, seq: int) -> None:
        """Move a cursor forward.

        One autocommit statement, not a write transaction: it only moves forward (so running it again after a
        lost connection is harmless) and nobody waits on cursors, so it sends no notification that would wake
        every waiter of the database for nothing."""
        self._read(lambda cur: cur.execute(_Q["set_cursor"], {"identity": identity, "thread": thread, "seq": seq}))

    def unanswered_questions(self, recipient: str = LEAD) -> list[Message]:
        """Open questions to ``recipient``."""
        rows = self._read(lambda cur: cur.execute(_Q["unanswered"], {"recipient": recipient}).fetchall())
        return [_message(r) for r in rows]

    # -- tasks -----------------------------------------------------------------------------------
    def add_tasks(self, specs: Sequence[Spec], *, actor: str = "lead", swarm_id: str | None = None) -> AddResult:
        """Queue the specs that are not queued yet, in one transaction."""
        default_attempts = self.options.default_max_attempts
        check_task_ids(specs)
        dependencies = sorted({d for s in specs for d in s.depends_on})
        wanted = sorted({s.id for s in specs} | set(dependencies))

        def op(cur: Cursor) -> AddResult:
            now = self.options.clock()
            cur.execute(_Q["add_tasks_lock"], {"key": _ADD_TASKS_LOCK})
            if dependencies:
                cur.execute(_Q["lock_dependencies"], {"ids": dependencies})
            existing: dict[str, str] = dict(cur.execute(_Q["existing_ids"], {"ids": wanted}).fetchall())
            ordered = new_specs_in_order(specs, existing)
            ids = [s.id for s in ordered]
            ready_set: set[str] = set()
            if ordered:
                cur.executemany(
                    _Q["insert_task"],
                    [
                        {
                            "id": s.id,
                            "epic": s.epic,
                            "title": s.title,
                            "body": s.body,
                            "priority": s.priority,
                            "requires": sorted(set(s.requires)),
                            "max_attempts": s.max_attempts or default_attempts,
                            "timeout_seconds": s.timeout_seconds,
                            "source": str(s.path) if s.path else None,
                            "now": now,
                        }
                        for s in ordered
                    ],
                )
                dep_rows = [{"id": s.id, "dep": dep} for s in ordered for dep in dict.fromkeys(s.depends_on)]
                if dep_rows:
                    cur.executemany(_Q["insert_dep"], dep_rows)
                cur.execute(_Q["recount_pending_many"], {"ids": ids})
                ready_set = {r[0] for r in cur.execute(_Q["unblock_many"], {"ids": ids, "now": now}).fetchall()}
                cur.executemany(
                    _Q["insert_event"],
                    [
                        {
                            "task": s.id,
                            "now": now,
                            "actor": actor,
                            "from_state": None,
                            "to_state": (TaskState.READY if s.id in ready_set else TaskState.BLOCKED).value,
                            "reason": "queued",
                        }
                        for s in ordered
                    ],
                )
            if swarm_id is not None and specs:
                cur.executemany(_Q["add_member"], [{"swarm": swarm_id, "id": s.id} for s in specs])
            if len(ordered) >= _ANALYZE_AFTER:
                # Until autovacuum gets to it (a minute or more), the planner knows nothing of these rows and
                # may sort every ready task for each claim instead of walking the claim index: measured 0.49
                # ms per claim before, 0.15 ms after, on 800 tasks. Sampling costs a few ms, once per batch.
                cur.execute(_Q["analyze_tasks"])
            return AddResult(
                added=ids,
                existing=[s.id for s in specs if s.id in existing],
                ready=[i for i in ids if i in ready_set],
            )

        return self._write(op)

    def _reap_in(self, cur: Cursor, now: float) -> list[Reaped]:
        rows = cur.execute(_Q["reap"], {"now": now}).fetchall()
        reaped = [Reaped(task_id=task_id, owner=owner, to_state=TaskState(state)) for task_id, owner, state in rows]
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
        caps = sorted(set(capabilities))
        token = secrets.token_hex(16)
        seen = (agent_id, host, json.dumps(caps))
        refreshed: list[float] = []

        def op(cur: Cursor) -> tuple[Claim | None, str | None]:
            refreshed.clear()  # a retried transaction starts over
            now = self.options.clock()
            # The agent row only says "seen lately": refresh it at most every few seconds per store, which
            # keeps a row write (and a notification) off the hottest path.
            refresh = now - self._agent_seen.get(seen, float("-inf")) >= AGENT_SEEN_SECONDS
            row = self._call(
                cur,
                "claim",
                {
                    "agent": agent_id,
                    "token": token,
                    "until": now + ttl_seconds,
                    "now": now,
                    "caps": caps,
                    "swarm": swarm_id,
                    "host": host,
                    "refresh": refresh,
                },
            )
            reaped, task_id, epic, title, body, attempts, lease_until, timeout, deps, xid = row
            if refresh:
                refreshed.append(now)
            if reaped:
                log.info("reaped %d expired lease(s)", len(reaped))
            if task_id is None:
                return None, xid
            claim = Claim(
                task_id=task_id,
                title=title,
                prompt=body,
                lease_token=token,
                lease_until=lease_until,
                attempt=attempts,
                epic=epic,
                depends_on=tuple(deps or ()),
                timeout_seconds=timeout,
            )
            return claim, xid

        claimed = self._write_call(op)
        if refreshed:  # only once the refresh is committed
            self._agent_seen[seen] = refreshed[0]
        return claimed

    def _lease_lost(self, cur: Cursor, task_id: str, agent_id: str, token: str) -> SwarmError:
        return lease_lost(task_id, agent_id, token, cur.execute(_Q["fence_probe"], {"id": task_id}).fetchone())

    def heartbeat(self, task_id: str, agent_id: str, lease_token: str, *, ttl_seconds: float) -> float:
        """Extend a lease."""

        def op(cur: Cursor) -> float:
            now = self.options.clock()
            row = cur.execute(
                _Q["heartbeat"],
                {"id": task_id, "agent": agent_id, "token": lease_token, "until": now + ttl_seconds, "now": now},
            ).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            return float(row[0])

        return self._write(op, notify=False)

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

        def op(cur: Cursor) -> tuple[list[str], str | None]:
            now = self.options.clock()
            row = self._call(
                cur,
                "complete",
                {
                    "id": task_id,
                    "agent": agent_id,
                    "token": lease_token,
                    "now": now,
                    "commit": commit,
                    "cost": cost_usd,
                    "tokens": tokens,
                    "reason": f"completed{f' at {commit}' if commit else ''}",
                    "promote_reason": f"dependencies done (last: {task_id})",
                },
            )
            done, promoted, xid = row
            if not done:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            return list(promoted), xid

        return self._write_call(op)

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

        def op(cur: Cursor) -> TaskState:
            now = self.options.clock()
            probe = cur.execute(_Q["fence_probe"], {"id": task_id}).fetchone()
            # Only used when the fenced update below succeeds, i.e. when the task is still under this lease,
            # so its attempts cannot have changed in between.
            attempts = int(probe[3]) if probe else 0
            row = cur.execute(
                _Q["fail"],
                {
                    "id": task_id,
                    "agent": agent_id,
                    "token": lease_token,
                    "now": now,
                    "reason": reason,
                    "cost": cost_usd,
                    "tokens": tokens,
                    "not_before": now + self.options.retry.delay(attempts),
                },
            ).fetchone()
            if row is None:
                raise self._lease_lost(cur, task_id, agent_id, lease_token)
            state = TaskState(row[0])
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

        return self._write(op)

    def return_task(self, task_id: str, agent_id: str, lease_token: str, reason: str = "returned") -> None:
        """Give a task back without spending an attempt."""

        def op(cur: Cursor) -> None:
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

        self._write(op)

    def cancel(self, task_id: str, *, actor: str = "lead", reason: str = "cancelled") -> TaskState:
        """Cancel a task that is not done."""

        def op(cur: Cursor) -> TaskState:
            now = self.options.clock()
            row = cur.execute(_Q["task_state_for_update"], {"id": task_id}).fetchone()
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

        return self._write(op)

    def retry(self, task_id: str, *, actor: str = "lead") -> TaskState:
        """Requeue a dead or cancelled task with fresh attempts."""

        def op(cur: Cursor) -> TaskState:
            now = self.options.clock()
            row = cur.execute(_Q["task_state_for_update"], {"id": task_id}).fetchone()
            if row is None:
                raise UnknownTask(task_id)
            before = TaskState(row[0])
            if before not in (TaskState.DEAD, TaskState.CANCELLED):
                raise InvalidTransition(
                    f"task {task_id} is {before}, only dead or cancelled tasks can be retried",
                    hint="see 'swarm queue status'",
                )
            cur.execute(_Q["recount_pending"], {"id": task_id})
            found = cur.execute(_Q["retry"], {"id": task_id, "now": now}).fetchone()
            assert found is not None  # the row is locked and dead or cancelled
            after = TaskState(found[0])
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

        return self._write(op)

    def reap(self) -> list[Reaped]:
        """Take back expired leases."""
        return self._write(lambda cur: self._reap_in(cur, self.options.clock()))

    # -- reads -----------------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Task:
        """One task by id."""
        row = self._read(
            lambda cur: cur.execute(_Q["select_tasks"], {"epic": None, "id": task_id, "swarm": None}).fetchone()
        )
        if row is None:
            raise UnknownTask(task_id)
        return _task(row)

    def list_tasks(self, epic: str | None = None, *, swarm_id: str | None = None) -> list[Task]:
        """Every task, oldest first."""
        rows = self._read(
            lambda cur: cur.execute(_Q["select_tasks"], {"epic": epic, "id": None, "swarm": swarm_id}).fetchall()
        )
        return [_task(r) for r in rows]

    def counts(self, epic: str | None = None, *, swarm_id: str | None = None) -> dict[str, int]:
        """Tasks per state, every state present."""
        rows = self._read(lambda cur: cur.execute(_Q["counts"], {"epic": epic, "swarm": swarm_id}).fetchall())
        found = {state: int(n) for state, n in rows}
        return {state.value: found.get(state.value, 0) for state in STATE_ORDER}

    def events(self, task_id: str | None = None, *, since: int = 0, limit: int = 10_000) -> list[Event]:
        """Event log entries after ``since``."""
        rows = self._read(
            lambda cur: cur.execute(_Q["select_events"], {"task": task_id, "since": since, "limit": limit}).fetchall()
        )
        return [
            Event(seq=r[0], task_id=r[1], at=r[2], actor=r[3], from_state=r[4], to_state=r[5], reason=r[6])
            for r in rows
        ]

    # -- wake-ups --------------------------------------------------------------------------------
    def change_marker(self) -> int:
        """Changes whenever any connection commits a write; a memory read while the listener is healthy."""
        with self._marker_lock:
            if self._listener is None and not self._closed:
                self._listener = _Listener(
                    lambda: self._connect(f"{self._app}-listen"), name=f"swarm-listen-{self._where}"
                )
            listener = self._listener
            healthy = listener is not None and listener.healthy
            now = time.monotonic()
            if (not healthy or now - self._polled_at >= POLL_SECONDS) and now >= self._poll_retry_at:
                self._poll(now)
            state = (listener.count if listener else 0, self._snapshot, _local_count(self.url))
            if state != self._marker_state:
                self._marker_state = state
                self._marker += 1
            return self._marker

    def wait_for_change(self, marker: int, timeout: float, *, first: float = 0.01, most: float = 0.05) -> int:
        """Block until the marker moves: woken at once by a notification or a commit of this process.

        While the listener is down (a restart, a killed LISTEN connection) the server's snapshot is polled
        instead, ``first`` seconds apart and backing off to ``most``, as the default does.
        """
        deadline = time.monotonic() + timeout
        interval = first
        while True:
            generation = _current_generation()
            current = self.change_marker()
            remaining = deadline - time.monotonic()
            if current != marker or remaining <= 0:
                return current
            listener = self._listener
            if listener is not None and listener.healthy:
                # Only the safety-net poll of the snapshot is timed; a notification ends the wait at once.
                step = min(remaining, max(0.0, self._polled_at + POLL_SECONDS - time.monotonic()) + 0.001)
            else:
                step = min(remaining, interval)
                interval = min(most, interval * 1.15)
            with _changed:
                if _generation == generation:
                    _changed.wait(step)

    def _poll(self, now: float) -> None:
        """One look at the server's snapshot; a failure keeps the old value (waiters sleep on) for a while."""
        self.polls += 1
        conn: Conn | None = None
        try:
            conn = self._checkout()
            row = conn.execute(_Q["poll_marker"]).fetchone()
            self._snapshot = str(row[0]) if row else ""
            self._polled_at = now
            self._checkin(conn)
        except (_ConnectFailed, psycopg.Error, StoreError) as exc:
            log.debug("change poll failed: %s", exc)
            if conn is not None:
                conn.close()
                self._drop_idle()
            self._poll_retry_at = now + POLL_SECONDS


def _rollback(conn: Conn) -> None:
    """End a transaction opened by hand (a refusal, an error); a connection that broke needs nothing."""
    if not conn.closed and not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            conn.execute(b"ROLLBACK")


def _message(row: Sequence[Any]) -> Message:
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


def _swarm(row: Sequence[Any]) -> SwarmRecord:
    settings = row[6]
    if isinstance(settings, str):
        settings = json.loads(settings or "{}")
    return SwarmRecord(
        id=row[0],
        epic=row[1],
        max_agents=row[2],
        created_at=row[3],
        stop_mode=row[4],
        repo=row[5] or "",
        settings=dict(settings or {}),
    )


def _agent(row: Sequence[Any]) -> AgentRecord:
    return AgentRecord(
        id=row[0],
        swarm_id=row[1],
        host=row[2] or "",
        session=row[3],
        branch=row[4],
        worktree=row[5],
        capabilities=tuple(row[6] or ()),
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


def _task(row: Sequence[Any]) -> Task:
    return Task(
        id=row[0],
        epic=row[1],
        title=row[2],
        body=row[3],
        state=TaskState(row[4]),
        priority=row[5],
        requires=tuple(row[6] or ()),
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
        depends_on=tuple(row[20] or ()),
    )
