"""Mixed fleets end to end: one launch runs a `command` agent and a real Claude Code agent on sonnet (against the
scripted Anthropic stand-in, no key) side by side; each runs its own template, and status shows each agent's kind
and model. A malformed ``--fleet`` is one line of bad input that writes nothing.

./scripts/test installs the Claude Code CLI into .cache/claude-code; a missing CLI fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from swarm.runtime.tmux import private_sessions as tmux_sessions
from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import Run, git
from tests.acceptance.test_claude_agent import CLAUDE_BIN, claude_env, mock_api  # noqa: F401  (mock_api: a fixture)
from tests.helpers import retry_until, swarm_cli


def test_one_launch_runs_a_command_agent_and_a_claude_agent_on_sonnet(
    tmp_path: Path,
    mock_api: tuple[int, Path],  # noqa: F811
) -> None:
    assert (CLAUDE_BIN / "claude").exists(), f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it"
    port, log = mock_api
    gate = tmp_path / "gate"
    repo = tmp_path / "proj"
    (repo / "specs").mkdir(parents=True)
    (repo / "README.md").write_text("# proj\n")
    for sid in ("T1", "T2"):
        # For the claude agent (the scripted model runs the RUN lines); the command agent runs --command instead.
        # Both wait for the gate: each agent holds one task before either finishes, so each kind does one.
        (repo / "specs" / f"{sid}.md").write_text(
            f"---\nid: {sid}\nepic: E1\ntitle: Make {sid}\n---\n"
            f"RUN: until [ -e {gate} ]; do sleep 0.1; done\n"
            f"RUN: mkdir -p out && echo claude > out/{sid}.txt\n"
        )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    home = tmp_path / "home"
    home.mkdir()
    sock = f"swarm-fleet-{os.getpid()}"
    env = {
        **claude_env(home, port, sock),
        "SWARM_QUEUE_HEARTBEAT_SECONDS": "1",
    }
    command = f'until [ -e {gate} ]; do sleep 0.1; done; mkdir -p out && echo command > "out/$SWARM_TASK_ID.txt"'

    def status() -> dict[str, Any]:
        done = swarm_cli("status", "--json", cwd=repo, env=env)
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    try:
        launched = swarm_cli(
            "launch", "E1", "--fleet", "command,claude:sonnet", "--command", command, "--json", cwd=repo, env=env
        )
        assert launched.returncode == 0, launched.stderr
        assert [a["id"] for a in json.loads(launched.stdout)["agents"]] == ["agent-1", "agent-2"]

        def both_held() -> bool:
            owners = {t["owner"] for t in status()["tasks"] if t["state"] == "claimed"}
            return owners == {"agent-1", "agent-2"}

        retry_until(both_held, seconds=90, interval=0.5)
        gate.touch()

        def all_done() -> dict[str, Any] | None:
            data = status()
            return data if all(t["state"] == "done" for t in data["tasks"]) else None

        logs = repo / ".swarm" / "logs"
        try:
            data = retry_until(all_done, seconds=120, interval=0.5)
        except AssertionError:
            raise AssertionError("\n".join(p.read_text() for p in sorted(logs.glob("*.log")))) from None
        agents = {a["id"]: (a["kind"], a["model"]) for a in data["agents"]}
        assert agents == {"agent-1": ("command", None), "agent-2": ("claude", "sonnet")}
        # Each agent ran its own template: the command agent's shell line, the claude agent's CLI on sonnet.
        made = {t["owner"]: git(repo, "show", f"{t['commit']}:out/{t['id']}.txt") for t in data["tasks"]}
        assert made == {"agent-1": "command", "agent-2": "claude"}
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert any("sonnet" in (r.get("model") or "") for r in requests)
        shown = swarm_cli("status", cwd=repo, env={**env, "COLUMNS": "200"})
        rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.startswith("agent-")}
        assert (rows["agent-1"][2], rows["agent-2"][2]) == ("command", "claude:sonnet"), shown.stdout  # kind column
        down = swarm_cli("teardown", cwd=repo, env=env)
        assert down.returncode == 0, down.stderr
        assert tmux_sessions(sock) == []
    finally:
        stop_private_server(sock)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--fleet", "claude=2,gemini=1"), "unknown agent kind 'gemini'"),
        (("--fleet", "claude=two"), "not a whole number"),
        (("--fleet", "claude,,codex"), "empty entry"),
        (("--fleet", "claude=2", "--agents", "3"), "--agents does not apply"),
        (("--fleet", "command=2"), "need --command"),
    ],
)
def test_a_malformed_fleet_is_one_line_of_bad_input_and_writes_nothing(
    run: Run, project: Path, args: tuple[str, ...], why: str
) -> None:
    before = git(project, "for-each-ref")
    done = run("launch", "E1", *args)
    assert done.returncode == 2, done.stderr
    assert why in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (project / ".swarm").exists()
    assert git(project, "for-each-ref") == before
