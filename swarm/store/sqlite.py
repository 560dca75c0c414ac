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

The domain operations themselves are written once, for both backends, in :mod:`swarm.store.sql`; this module
adds SQLite's connection and transactions, and the operations whose SQL differs (claim, complete, reap, the
dependency bookkeeping of ``add_tasks``, teardown's return).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from swarm.errors import StoreBusy, StoreError, SwarmError
from swarm.models import Claim, Spec, TaskState
from swarm.store.base import Reaped, StoreOptions
from swarm.store.common import path_from_url
from swarm.store.sql import ClaimRequest, SqlStore, event, log_reaped
from swarm.store.sqlfile import queries
from swarm.words import plural

T = TypeVar("T")

DIALECT = "sqlite"
_Q = queries(DIALECT)
_MIN_SQLITE = (3, 35, 0)  # RETURNING


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


class SQLiteStore(SqlStore[sqlite3.Cursor]):
    """The SQLite implementation of :class:`~swarm.store.base.Store` (its shared part: :class:`SqlStore`)."""

    dialect = DIALECT
    _q = _Q
    _param = ":{}"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old (swarm needs 3.35 or newer for RETURNING)",
                hint="use a Python built against a newer SQLite, or a PostgreSQL database",
            )
        self.path = path_from_url(url)
        super().__init__(url, options, str(self.path))
        self._lock = threading.RLock()
        self._local_commits = 0
        self._conn = self._connect()
        # A migration may rebuild a table that others reference (007 rebuilds swarms): SQLite's documented
        # procedure turns foreign keys off before BEGIN (the pragma does nothing inside a transaction) and
        # checks them before COMMIT (_check_migrated).
        self._conn.execute("PRAGMA foreign_keys=OFF")
        try:
            self._write(self._migrate)
        finally:
            self._conn.execute("PRAGMA foreign_keys=ON")

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

    def _write(self, fn: Callable[[sqlite3.Cursor], T], *, notify: bool = True) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; retry the whole of it while the file is busy.

        ``notify`` means nothing here: waiters poll ``PRAGMA data_version``, which every commit moves."""
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

    def _read(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        """Run ``fn`` on a consistent read snapshot (a deferred transaction that never writes)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN")
                return fn(cur)
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

    # -- dialect hooks ---------------------------------------------------------------------------
    def _check_migrated(self, cur: sqlite3.Cursor) -> None:
        broken = cur.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(
                f"migrating {self.path} would break {plural(len(broken), 'reference')} between tables "
                f"(first: {tuple(broken[0])}); nothing was changed",
                hint="restore the database from a backup, or report this with the file",
            )

    def _run_script(self, cur: sqlite3.Cursor, script: str) -> None:
        for statement in _split_statements(script):
            cur.execute(statement)

    @staticmethod
    def _array(values: list[str]) -> str:
        return json.dumps(values)

    @staticmethod
    def _strings(value: Any) -> tuple[str, ...]:
        return _json_tuple(value)

    @staticmethod
    def _ids(value: Any) -> tuple[str, ...]:
        return _id_tuple(value)

    # -- tasks -----------------------------------------------------------------------------------
    def _existing_ids(self, cur: sqlite3.Cursor, specs: Sequence[Spec]) -> dict[str, str]:
        # Every id: one writer at a time, and reading them all is cheaper than binding a list.
        return dict(cur.execute(_Q["existing_ids"]).fetchall())

    def _unblock(self, cur: sqlite3.Cursor, ids: list[str], now: float) -> set[str]:
        ready: set[str] = set()
        for task_id in ids:
            cur.execute(_Q["recount_pending"], {"id": task_id})
            if cur.execute(_Q["unblock_if_ready"], {"id": task_id, "now": now}).fetchone():
                ready.add(task_id)
        return ready

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
            cur.execute(_Q["insert_event"], event(task_id, now, "reaper", TaskState.CLAIMED, to_state, reason))
            reaped.append(Reaped(task_id=task_id, owner=owner, to_state=to_state))
        log_reaped(len(reaped))
        return reaped

    def _claim(self, request: ClaimRequest, refresh_due: Callable[[float], bool]) -> Claim | None:
        caps = self._array(request.caps)

        def op(cur: sqlite3.Cursor) -> Claim | None:
            now = self.options.clock()
            self._reap_in(cur, now)
            if refresh_due(now):
                agent = {"agent": request.agent_id, "host": request.host, "caps": caps, "now": now}
                cur.execute(_Q["upsert_agent"], agent)
            params = {
                "agent": request.agent_id,
                "token": request.token,
                "until": now + request.ttl_seconds,
                "now": now,
                "caps": caps,
                "swarm": request.swarm_id,
            }
            row = cur.execute(_Q["claim"], params).fetchone()
            if row is None:
                return None
            claim = self._claim_of(request, row)
            why = f"attempt {claim.attempt}"
            cur.execute(
                _Q["insert_event"], event(claim.task_id, now, request.agent_id, TaskState.READY, TaskState.CLAIMED, why)
            )
            return claim

        return self._write(op)

    def _complete(self, done: dict[str, Any]) -> list[str]:
        task_id, agent_id = done["id"], done["agent"]

        def op(cur: sqlite3.Cursor) -> list[str]:
            now = self.options.clock()
            if cur.execute(_Q["complete"], {**done, "now": now}).fetchone() is None:
                raise self._lease_lost(cur, task_id, agent_id, done["token"])
            events = [event(task_id, now, agent_id, TaskState.CLAIMED, TaskState.DONE, done["reason"])]
            promoted = [
                r[0]
                for r in cur.execute(_Q["promote_dependents"], {"id": task_id, "now": now}).fetchall()
                if r[1] == TaskState.READY and r[2] <= 0
            ]
            why = done["promote_reason"]
            events.extend(event(dep, now, agent_id, TaskState.BLOCKED, TaskState.READY, why) for dep in promoted)
            cur.executemany(_Q["insert_event"], events)
            return sorted(promoted)

        return self._write(op)

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
                    why = f"{reason} (was held by {agent_id})"
                    cur.execute(_Q["insert_event"], event(task_id, now, actor, TaskState.CLAIMED, TaskState.READY, why))
                    returned.append(task_id)
            return returned

        return self._write(op)

    # -- wake-ups --------------------------------------------------------------------------------
    def change_marker(self) -> int:
        """Changes whenever any connection (this one included) commits."""
        with self._lock:
            try:
                version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            return (version << 32) | (self._local_commits & 0xFFFFFFFF)


def _json_tuple(text: str | None) -> tuple[str, ...]:
    # Most tasks have no requirements or dependencies: skip the parser for the empty array (status reads
    # 10,000 rows at a time).
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


def _id_tuple(text: str | None) -> tuple[str, ...]:
    # Dependencies come space-separated from group_concat (ids match ID_PATTERN: no spaces); NULL when none.
    return tuple(text.split(" ")) if text else ()


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
