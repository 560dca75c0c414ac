"""PostgreSQL failures through the real command: one clear line each, exit 2 for a bad URL, 1 otherwise."""

from __future__ import annotations

from pathlib import Path

from psycopg import sql

from tests.helpers import swarm_cli
from tests.pg import PgServer, dbname_of, free_port, pg_server, pg_url  # noqa: F401  (fixtures)


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "specs").mkdir()
    (root / "specs" / "A.md").write_text("---\nid: A\nepic: E1\n---\nbody\n")
    return root


def _one_line(result: object, code: int, *fragments: str) -> None:
    stderr: str = getattr(result, "stderr", "")
    assert getattr(result, "returncode", None) == code, stderr
    assert stderr.startswith("swarm: ")
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def test_queue_on_postgresql_end_to_end(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    repo = _repo(tmp_path)
    assert swarm_cli("queue", "init", "--epic", "E1", "--db", pg_url, cwd=repo).returncode == 0
    claimed = swarm_cli("queue", "claim", "--agent-id", "agent-1", "--db", pg_url, "--json", cwd=repo)
    assert claimed.returncode == 0, claimed.stderr
    assert '"id": "A"' in claimed.stdout


def test_bad_url_refused_connection_and_missing_permission(
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    repo = _repo(tmp_path)
    bad = swarm_cli("queue", "status", "--db", "postgresql://user@:notaport/db", cwd=repo)
    _one_line(bad, 2, "postgresql://")
    refused = swarm_cli("queue", "status", "--db", f"postgresql://swarm@127.0.0.1:{free_port()}/swarm", cwd=repo)
    _one_line(refused, 1, "127.0.0.1")
    with pg_server.admin() as admin:
        admin.execute("DROP ROLE IF EXISTS swarm_cli_noperm")
        admin.execute("CREATE ROLE swarm_cli_noperm LOGIN")
        admin.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname_of(pg_url))))
    denied = swarm_cli("queue", "status", "--db", pg_server.url(dbname_of(pg_url), user="swarm_cli_noperm"), cwd=repo)
    _one_line(denied, 1, "permission denied", "GRANT")
