"""The `aider` template end to end: the real Aider, run by a real swarm on a diamond epic, against the scripted
stand-in for the OpenAI Chat Completions API from the shared tools (no API key). It proves the template's flags,
the prompt through --message-file, task commits free of aider's own files and of any .gitignore change, and
the session cost aider prints.

./scripts/test installs aider into its own venv, .cache/aider-venv (pip); a missing aider fails this test,
never skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
from tests.helpers import REPO_ROOT

__all__ = ["mock_openai"]  # the fixture, imported for pytest

AIDER_BIN = REPO_ROOT / ".cache" / "aider-venv" / "bin"

#: Aider offers the model no shell: `RUN: echo TEXT > FILE` and WRITE lines come back as file edits.
BODIES = {
    "S1": "RUN: echo S1 > out/S1.txt\n",
    "S2": "WRITE: out/S2.txt :: S2\n",
    "S3": "RUN: echo S3 > out/S3.txt\n",
    "S4": "WRITE: out/S4.txt :: S4\n",
}

#: A price for the stand-in model, so that aider reports a cost (its cache file must be under a day old and
#: not empty, or aider downloads the real one).
PRICES = {
    "openai/mock": {
        "input_cost_per_token": 0.000002,
        "output_cost_per_token": 0.00001,
        "litellm_provider": "openai",
        "mode": "chat",
        "max_input_tokens": 128000,
        "max_tokens": 4096,
    }
}


def test_aider_template_runs_the_real_cli(tmp_path: Path, mock_openai: tuple[int, Path]) -> None:
    assert (AIDER_BIN / "aider").exists(), (
        f"aider not found in {AIDER_BIN}; ./scripts/test installs it (pip install aider-chat==0.86.2 into its venv)"
    )
    port, log = mock_openai
    repo = diamond_project(tmp_path / "proj", BODIES)
    home = tmp_path / "home"
    (home / ".aider" / "caches").mkdir(parents=True)
    (home / ".aider" / "caches" / "model_prices_and_context_window.json").write_text(json.dumps(PRICES))
    dumps = tmp_path / "requests"
    dumps.mkdir()
    sock = f"swarm-aider-{os.getpid()}"
    env = {
        "PATH": f"{AIDER_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "OPENAI_API_BASE": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "not-a-real-key",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "SWARM_TMUX_SOCKET": sock,
    }
    try:
        tasks = launch_diamond(repo, "aider", "openai/mock", env)
        # Only out/<id>.txt in each commit: not .aider.chat.history.md, not a .gitignore with ".aider*" added.
        check_task_commits(repo, tasks)
        by_id: dict[str, dict[str, Any]] = {t["id"]: t for t in tasks}
        assert git(repo, "show", f"{by_id['S4']['commit']}:.gitignore") == "__pycache__/"
        assert git(repo, "diff", "--quiet", "HEAD", "--", ".gitignore") == ""  # the user's file is untouched
        assert ".aider*" in (repo / ".git" / "info" / "exclude").read_text()
        # The dependents were built on their dependencies: S4's tree holds every file of the diamond.
        tree = git(repo, "ls-tree", "-r", "--name-only", by_id["S4"]["commit"], "out").splitlines()
        assert tree == ["out/S1.txt", "out/S2.txt", "out/S3.txt", "out/S4.txt"]
        assert git(repo, "show", f"{by_id['S4']['commit']}:out/S1.txt") == "S1"
        assert log.read_text().strip(), "aider never reached the stand-in"
        # aider prints "Tokens: N sent, M received. Cost: $X message, $Y session."; the usage parser reads it.
        usage: dict[str, Any] = {}
        for line in agent_log_lines(repo):
            parse_usage(load_template("aider").usage, line, usage)
        assert (usage.get("cost_usd") or 0) > 0
        assert (usage.get("tokens") or 0) > 0
        # ... and the worker records them with each task, so `swarm status` shows them.
        assert all((t["cost_usd"] or 0) > 0 and (t["tokens"] or 0) > 0 for t in tasks), tasks
        teardown_leaves_nothing(repo, env, sock)
    finally:
        stop_private_server(sock)
