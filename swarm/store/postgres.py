"""The PostgreSQL backend: one shared queue for swarms that span several machines.

This module is the only one that imports :mod:`psycopg`. Same semantics, errors and messages as the SQLite
backend (the contract suite runs on both): the domain operations are written once, in :mod:`swarm.store.sql`;
this module adds connections, transactions and retries, the server-side claim/complete/reap calls, the locks
and batching of ``add_tasks``, teardown's return, and wake-ups. Why the choices:

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
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from swarm.errors import BadInput, StoreBusy, StoreError, SwarmError
from swarm.models import Claim, Spec, TaskState
from swarm.store.base import Reaped, StoreOptions
from swarm.store.sql import ClaimRequest, SqlStore, log_reaped
from swarm.store.sqlfile import queries

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
        #: LISTEN connections made so far: a new one asks change_marker() for one snapshot poll.
        self.connects = 0
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
                # Commits between the last poll and this LISTEN were announced to nobody: the next
                # change_marker() looks at the server's snapshot once (the marker moves only if one was made),
                # and every waiter is woken to make that call.
                self.connects += 1
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


@dataclass
class _Try:
    """One attempt of an operation: its connection, how far it got, what it computed and its transaction id."""

    conn: Conn | None = None
    phase: str = "connect"  # then "statements", then "commit"
    result: Any = None
    xid: str | None = None


class PostgresStore(SqlStore[Cursor]):
    """The PostgreSQL implementation of :class:`~swarm.store.base.Store` (its shared part: :class:`SqlStore`)."""

    dialect = DIALECT
    _q = _Q
    _param = "%({})s"
    _float_cast = "::float8"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        self.display_url = mask_url(url)
        super().__init__(url, options, self.display_url)
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
        self._listener: _Listener | None = None
        self._marker_lock = threading.Lock()
        self._marker = 0
        self._marker_state: tuple[int, str, int] | None = None
        self._snapshot = ""
        self._polled_at = float("-inf")
        self._seen_connects = 0
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
        """Run ``fn`` (``mode``: "read", "write" or "call") until it commits, retrying while that may help."""
        deadline = time.monotonic() + self.options.busy_timeout_seconds
        delay = _RETRY_FIRST
        while True:
            run = _Try()
            try:
                return self._once(run, fn, mode=mode, notify=notify)
            except _ConnectFailed as failed:
                if not failed.retryable:
                    raise failed.error from failed.__cause__
                last: SwarmError = failed.error
            except SwarmError:
                self._checkin(run.conn)  # a refusal of the domain (LeaseLost, BadInput): rolled back, conn is fine
                raise
            except psycopg.Error as exc:
                if self._outcome_stands(run, exc, deadline):
                    return run.result
                last = self._translate(exc)
            except BaseException:
                if run.conn is not None:
                    run.conn.close()
                raise
            delay = self._back_off(last, delay, deadline)

    def _once(self, run: _Try, fn: Callable[[Cursor], Any], *, mode: str, notify: bool) -> Any:
        """One attempt on one connection; ``run`` records how far it got for the error handling."""
        conn = run.conn = self._checkout()
        run.phase = "statements"
        with conn.cursor() as cur:
            if mode == "call":
                self._once_call(run, cur, fn)
            elif mode == "write":
                with conn.transaction():
                    run.result = fn(cur)
                    row = cur.execute(_Q["finish_write" if notify else "finish_quietly"]).fetchone()
                    run.xid = row[0] if row else None
                    run.phase = "commit"
            else:
                run.result = fn(cur)
        self._checkin(conn)
        if run.xid is not None:
            _bump_local(self.url)
        return run.result

    @staticmethod
    def _once_call(run: _Try, cur: Cursor, fn: Callable[[Cursor], Any]) -> None:
        """The statements and COMMIT of a ``call`` (see :meth:`_write_call`)."""
        try:
            run.result, run.xid = fn(cur)  # the transaction is open from here on
        except BaseException:
            _rollback(cur.connection)
            raise
        run.phase = "commit"  # the next thing that can fail is the COMMIT
        cur.execute(b"COMMIT")

    def _outcome_stands(self, run: _Try, exc: psycopg.Error, deadline: float) -> bool:
        """After a driver error: True when the result stands anyway (the broken COMMIT had nothing to commit,
        or committed), False when the operation must run again; raises when running it again cannot help."""
        conn = run.conn
        broken = conn is None or conn.closed or conn.broken
        self._checkin(conn)
        if broken:
            self._drop_idle()
        if run.phase == "commit" and broken:
            if run.xid is None:
                return True  # nothing was written, so there is nothing to lose: the reads stand
            if self._committed(run.xid, deadline):
                _bump_local(self.url)
                return True
            log.info("transaction %s was rolled back by the lost connection; running it again", run.xid)
        elif not self._retryable(exc, broken):
            raise self._translate(exc) from exc
        return False

    def _back_off(self, last: SwarmError, delay: float, deadline: float) -> float:
        """Sleep ``delay`` before the next attempt and return the next delay; give up (StoreError saying
        ``last``) when the busy deadline would pass first."""
        if time.monotonic() + delay >= deadline:
            raise StoreError(
                f"gave up after {self.options.busy_timeout_seconds:.0f}s: {last.message}",
                hint=last.hint,
            )
        log.warning("database operation failed, retrying in %.2fs: %s", delay, last.message)
        time.sleep(delay)
        return min(delay * 2, _RETRY_MAX)

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
        """One autocommit read (a single statement costs one round trip)."""
        return self._run(fn, write=False)

    def _write_idempotent(self, fn: Callable[[Cursor], T]) -> T:
        """One autocommit statement, not a write transaction: it may run twice after a lost connection (a
        cursor only moves forward) and nobody waits on it, so it sends no notification that would wake every
        waiter of the database for nothing."""
        return self._read(fn)

    # -- dialect hooks ---------------------------------------------------------------------------
    def _lock_schema(self, cur: Cursor) -> None:
        # Held to COMMIT: a second process opening a new database waits here, then finds it migrated.
        cur.execute(_Q["migration_lock"], {"key": _MIGRATION_LOCK})

    def _run_script(self, cur: Cursor, script: str) -> None:
        cur.execute(script)  # no parameters: several statements in one go

    @staticmethod
    def _array(values: list[str]) -> list[str]:
        return values

    @staticmethod
    def _strings(value: Any) -> tuple[str, ...]:
        return tuple(value or ())

    @staticmethod
    def _ids(value: Any) -> tuple[str, ...]:
        return tuple(value or ())

    # -- tasks -----------------------------------------------------------------------------------
    def _existing_ids(self, cur: Cursor, specs: Sequence[Spec]) -> dict[str, str]:
        dependencies = sorted({d for s in specs for d in s.depends_on})
        cur.execute(_Q["add_tasks_lock"], {"key": _ADD_TASKS_LOCK})
        if dependencies:
            cur.execute(_Q["lock_dependencies"], {"ids": dependencies})
        wanted = sorted({s.id for s in specs} | set(dependencies))
        return dict(cur.execute(_Q["existing_ids"], {"ids": wanted}).fetchall())

    def _unblock(self, cur: Cursor, ids: list[str], now: float) -> set[str]:
        cur.execute(_Q["recount_pending_many"], {"ids": ids})
        return {r[0] for r in cur.execute(_Q["unblock_many"], {"ids": ids, "now": now}).fetchall()}

    def _added(self, cur: Cursor, count: int) -> None:
        if count >= _ANALYZE_AFTER:
            # Until autovacuum gets to it (a minute or more), the planner knows nothing of these rows and
            # may sort every ready task for each claim instead of walking the claim index: measured 0.49
            # ms per claim before, 0.15 ms after, on 800 tasks. Sampling costs a few ms, once per batch.
            cur.execute(_Q["analyze_tasks"])

    def _reap_in(self, cur: Cursor, now: float) -> list[Reaped]:
        rows = cur.execute(_Q["reap"], {"now": now}).fetchall()
        reaped = [Reaped(task_id=task_id, owner=owner, to_state=TaskState(state)) for task_id, owner, state in rows]
        log_reaped(len(reaped))
        return reaped

    def _claim(self, request: ClaimRequest, refresh_due: Callable[[float], bool]) -> Claim | None:
        def op(cur: Cursor) -> tuple[Claim | None, str | None]:
            now = self.options.clock()
            params = {
                "agent": request.agent_id,
                "token": request.token,
                "until": now + request.ttl_seconds,
                "now": now,
                "caps": request.caps,
                "swarm": request.swarm_id,
                "host": request.host,
                "refresh": refresh_due(now),
            }
            reaped, *picked, xid = self._call(cur, "claim", params)
            log_reaped(len(reaped or ()))
            return (None if picked[0] is None else self._claim_of(request, picked)), xid

        return self._write_call(op)

    def _complete(self, done: dict[str, Any]) -> list[str]:
        def op(cur: Cursor) -> tuple[list[str], str | None]:
            completed, promoted, xid = self._call(cur, "complete", {**done, "now": self.options.clock()})
            if not completed:
                raise self._lease_lost(cur, done["id"], done["agent"], done["token"])
            return list(promoted), xid

        return self._write_call(op)

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
            # A LISTEN (re)connected since the last call: what was committed before it is seen by one poll.
            connected = listener is not None and healthy and listener.connects != self._seen_connects
            if connected and listener is not None:
                self._seen_connects = listener.connects
            due = connected or not healthy or now - self._polled_at >= POLL_SECONDS
            if due and now >= self._poll_retry_at:
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
