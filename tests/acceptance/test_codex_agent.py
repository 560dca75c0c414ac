"""The `codex` template end to end: the real Codex CLI, run by a real swarm on a diamond epic, against the
scripted stand-in for the OpenAI Responses API from the shared tools (no API key). It proves the template's
flags, the prompt on stdin, the sandbox letting the agent edit its worktree and reach the swarm's database
(`swarm msg send` from inside codex lands in the thread), the token count codex reports, and its --json events
shown as readable lines with the raw events beside the log.

./scripts/test installs the CLI into .cache/codex (npm); a missing CLI fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from swarm.agents import load_template, parse_usage
from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import git
from tests.acceptance.openai_agents import (
    agent_log_lines,
    check_task_commits,
    diamond_project,
    launch_diamond,
    mock_openai,
    teardown_leaves_nothing,
)
from tests.helpers import REPO_ROOT, swarm_cli
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures: a throwaway PostgreSQL and its databases)

__all__ = ["mock_openai"]  # the fixture, imported for pytest

CODEX_BIN = REPO_ROOT / ".cache" / "codex" / "node_modules" / ".bin"

#: Each body scripts the stand-in model: RUN lines go through codex's shell tool, WRITE lines become files.
BODIES = {
    "S1": "RUN: mkdir -p out && echo S1 > out/S1.txt\n",
    # The dependency's file must be in the worktree: cat fails (and the model says FAILED) without it.
    "S2": "RUN: cat out/S1.txt > out/S2.txt && echo S2 >> out/S2.txt\n",
    "S3": "RUN: test -f out/S1.txt\nWRITE: out/S3.txt :: S3\n",
    "S4": 'RUN: cat out/S2.txt out/S3.txt > out/S4.txt\nRUN: swarm msg send "hello from codex" --to lead\n',
}


def _codex_home(tmp_path: Path, port: int) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    # exclude_slash_tmp / exclude_tmpdir_env_var: the sandbox no longer lets commands write in /tmp, as for a
    # repository outside /tmp, so the swarm's database (in the repository's .swarm/) is writable only
    # because the template makes it so.
    (home / "config.toml").write_text(
        f"""model_provider = "mock"
[model_providers.mock]
name = "mock"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "MOCK_OPENAI_KEY"
wire_api = "responses"
[features]
plugins = false
[sandbox_workspace_write]
exclude_slash_tmp = true
exclude_tmpdir_env_var = true
"""
    )
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def queue_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The queue the swarm uses: the default SQLite file, or a real PostgreSQL (the agent reaches neither: its
    worker's channel serves it, so codex's sandbox needs no database access)."""
    if request.param == "postgresql":
        return ("--db", str(request.getfixturevalue("pg_url")))
    return ()


def test_codex_template_runs_the_real_cli(
    tmp_path: Path, mock_openai: tuple[int, Path], queue_args: tuple[str, ...]
) -> None:
    assert (CODEX_BIN / "codex").exists(), (
        f"Codex CLI not found in {CODEX_BIN}; ./scripts/test installs it (npm install @openai/codex@0.171.0)"
    )
    port, log = mock_openai
    repo = diamond_project(tmp_path / "proj", BODIES)
    home, private_tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    private_tmp.mkdir()  # codex's sandbox helpers cannot start from a HOME and CODEX_HOME both under /tmp
    sock = f"swarm-codex-{os.getpid()}"
    env = {
        "PATH": f"{CODEX_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "TMPDIR": str(private_tmp),
        "CODEX_HOME": str(_codex_home(tmp_path, port)),
        "MOCK_OPENAI_KEY": "not-a-real-key",
        "SWARM_TMUX_SOCKET": sock,
    }
    try:
        tasks = launch_diamond(repo, "codex", "gpt-5", env, *queue_args)
        check_task_commits(repo, tasks)
        by_id: dict[str, dict[str, Any]] = {t["id"]: t for t in tasks}
        # Each dependent saw its dependencies' files: S2 copied S1's, S4 copied S2's and S3's.
        assert git(repo, "show", f"{by_id['S2']['commit']}:out/S2.txt") == "S1\nS2"
        assert git(repo, "show", f"{by_id['S4']['commit']}:out/S4.txt") == "S1\nS2\nS3"
        # `swarm msg send`, run by codex's shell tool inside its sandbox, wrote on the thread as the agent.
        entries = [
            json.loads(line) for line in swarm_cli("msg", "list", "--json", cwd=repo, env=env).stdout.splitlines()
        ]
        hello = [e for e in entries if e["body"] == "hello from codex"]
        assert [(e["author"].split("-")[-2], e["to"]) for e in hello] == [("agent", "lead")], entries
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert requests, "codex never reached the stand-in"
        # The logs read as what codex did (its --json events as lines a person reads) ...
        shown = agent_log_lines(repo)
        assert "→ run: mkdir -p out && echo S1 > out/S1.txt" in shown, shown
        assert '→ run: swarm msg send "hello from codex" --to lead' in shown, shown
        assert any(line.startswith("■ turn done: ") for line in shown), shown
        assert not [line for line in shown if line.startswith("{")]
        # ... and the raw events are kept beside them; each turn's tokens, read by the template's usage parser.
        raw = [line for path in sorted((repo / ".swarm" / "logs").glob("*agent-*.jsonl")) for line in path.open()]
        assert all(json.loads(line)["type"] for line in raw)
        usage: dict[str, Any] = {}
        for line in raw:
            parse_usage(load_template("codex").usage, line.strip(), usage)
        assert (usage.get("tokens") or 0) > 0
        # ... and the worker records them with each task, so `swarm status` shows them.
        assert all((t["tokens"] or 0) > 0 for t in tasks), tasks
        teardown_leaves_nothing(repo, env, sock)
    finally:
        stop_private_server(sock)
