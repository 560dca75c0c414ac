"""A throwaway PostgreSQL server for tests, and the pytest fixtures that hand out fresh databases.

PostgreSQL is part of this machine's image, so a missing binary or a server that will not start is a
failure, never a skip (in CI, ``CI=true``, and outside it alike): a silently skipped backend is an untested
backend. The server is tuned for speed, not durability (``fsync=off``), listens on loopback only, on a free
port, with its unix socket inside its own temporary folder, and is always stopped at the end of the session.

``initdb`` and ``pg_ctl`` refuse to run as root; as root they run as the ``postgres`` user (``runuser``) and
the data folder belongs to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
#: A role that must log in with a password (scram), for the tests of authentication failures.
PASSWORD_ROLE = "swarm_pw_test"
_START_TIMEOUT = 60


class PgUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the server could not start. Always a test failure."""


def find_pg_bin() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the newest ``/usr/lib/postgresql/*/bin``,
    else the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
        reverse=True,
    )
    for folder in candidates:
        if all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH; "
        "install postgresql (e.g. apt-get install postgresql-15): the PostgreSQL tests cannot be skipped"
    )


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach ``path`` (every ancestor has o+x)."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in [path, *path.parents])


class PgServer:
    """One PostgreSQL cluster in a temporary folder, owned by this test session."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "server.log"
        self.port = port
        self.host = "127.0.0.1"
        self._running = False
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def start(cls, tmp_dir: Path) -> PgServer:
        """initdb a new cluster under ``tmp_dir`` and start it; raise :class:`PgUnavailable` on failure."""
        bin_dir = find_pg_bin()
        tmp_dir = Path(tmp_dir)
        if _is_root() and not _traversable_by_others(tmp_dir):
            # pytest's temp folders are 0700 root: the postgres user could not reach a data folder in there.
            root = Path(tempfile.mkdtemp(prefix="swarm-pg-"))
        else:
            root = Path(tempfile.mkdtemp(prefix="pg-", dir=tmp_dir))
        server = cls(bin_dir, root, free_port())
        try:
            server._init_cluster()
            for attempt in range(3):
                try:
                    server._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT), "-l", str(server.log_file))
                    break
                except PgUnavailable:
                    # A port found free may be taken by the time the server binds it: try another one.
                    if attempt == 2 or "could not bind" not in server.read_log():
                        raise
                    server.port = free_port()
                    server._write_port()
            server._running = True
            atexit.register(server.stop)  # also on an aborted session; stop() is idempotent
            server._prepare()
        except BaseException:
            server.stop()
            raise
        return server

    def _as_postgres(self, argv: Sequence[str]) -> list[str]:
        if _is_root():
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                self._as_postgres(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgUnavailable(f"{Path(argv[0]).name} failed: {exc}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().replace("\n", " | ")
            raise PgUnavailable(
                f"{Path(argv[0]).name} {' '.join(argv[1:2])} failed (exit {proc.returncode}): {detail}; "
                f"server log: {self.read_log()[-2000:]!r}"
            )
        return proc

    def _init_cluster(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if _is_root():
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PgUnavailable(
                    "running as root, but there is no 'postgres' user to run initdb and pg_ctl as; "
                    "create one (useradd postgres) or run the tests as another user"
                ) from exc
            for path in (self.root, self.socket_dir):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",  # byte-order collation: the schema asks for "C" anyway
                "--no-sync",  # the cluster lives for one test session
            ]
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        hba = (
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        # Written as the postgres user would: append via a file we own, then hand it over.
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write("\n# swarm test server\n" + conf)
        (self.data_dir / "pg_hba.conf").write_text(hba, encoding="utf-8")
        self._write_port()

    def _write_port(self) -> None:
        # The last setting of a name in postgresql.conf wins, so a new port is simply appended.
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write(f"port = {self.port}\n")

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _prepare(self) -> None:
        """One-time setup: the password role used by the authentication tests."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right-password'").format(sql.Identifier(PASSWORD_ROLE))
            )

    def read_log(self) -> str:
        """The server log so far ('' when there is none)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files. Safe to call twice."""
        if self._running or (self.data_dir / "postmaster.pid").exists():  # also a half-finished start
            self._running = False
            try:
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
            except PgUnavailable as exc:
                log.warning("could not stop the test PostgreSQL: %s", exc)
        self._remove_files()

    def _remove_files(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back on the same port."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-t", str(_START_TIMEOUT), "-l", str(self.log_file))
        self._running = True

    def ensure_running(self) -> None:
        """Start the server again if a test left it stopped."""
        status = subprocess.run(
            self._as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"]),
            capture_output=True,
            check=False,
        )
        if status.returncode != 0:
            self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT), "-l", str(self.log_file))
        self._running = True

    @property
    def running(self) -> bool:
        """Whether this object started the server and has not stopped it."""
        return self._running

    # -- databases ---------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        """A ``postgresql://`` URL for ``dbname`` over loopback TCP."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A superuser connection in autocommit mode."""
        conn = psycopg.connect(self.url(dbname), autocommit=True, application_name="swarm-test-admin")
        try:
            yield conn
        finally:
            conn.close()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a copy of ``template0``) and return its URL."""
        self._counter += 1
        name = name or f"t{self._counter}_{uuid.uuid4().hex[:8]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting whatever is still connected to it."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def terminate_backends(
        self, *, dbname: str | None = None, application_name: str | None = None, query_like: str | None = None
    ) -> int:
        """``pg_terminate_backend`` every client backend matching all the given filters (database, application
        name, a LIKE pattern on the current or last query); returns how many were terminated."""
        with self.admin() as conn:
            row = conn.execute(
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
                  AND (%(db)s::text IS NULL OR datname = %(db)s::text)
                  AND (%(app)s::text IS NULL OR application_name = %(app)s::text)
                  AND (%(query)s::text IS NULL OR query LIKE %(query)s::text)
                """,
                {"db": dbname, "app": application_name, "query": query_like},
            ).fetchone()
        return int(str(row[0])) if row else 0

    def backends(self, dbname: str) -> list[tuple[int, str]]:
        """``(pid, application_name)`` of the client backends connected to ``dbname``."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pid, application_name FROM pg_stat_activity "
                "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                [dbname],
            ).fetchall()
        return [(int(str(pid)), str(app)) for pid, app in rows]


def dbname_of(url: str) -> str:
    """The database name in a URL made by :meth:`PgServer.url`."""
    return url.rsplit("/", 1)[1]


# -- pytest fixtures (import them in a conftest to use them) ------------------------------------------


#: The session's server. Test modules import the fixtures (no root conftest names them), so pytest may hold
#: one fixture definition per importing module: they all share this one server.
_shared: list[PgServer] = []


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The session's PostgreSQL server; stopped at the end of the session, also when tests fail."""
    if not _shared or not _shared[0].running:
        started = time.monotonic()
        _shared[:] = [PgServer.start(tmp_path_factory.mktemp("pg"))]
        log.info("test PostgreSQL on port %d up in %.1fs", _shared[0].port, time.monotonic() - started)
    server = _shared[0]
    try:
        yield server
    finally:
        server.stop()  # idempotent: the first teardown at session end stops it


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped after the test."""
    url = pg_server.create_database()
    yield url
    with contextlib.suppress(psycopg.Error):
        pg_server.drop_database(dbname_of(url))
