"""``swarm msg`` through the real command, and agents that ask the lead during a real swarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swarm.runtime import procs
from swarm.runtime.tmux import private_sessions as tmux_sessions
from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until


def _entries(run: Run, *args: str) -> list[dict[str, Any]]:
    result = run("msg", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _launch_idle_swarm(run: Run, tmp_path: Path) -> dict[str, Any]:
    """A one-agent swarm whose agent blocks on a flag file, so agents exist and hold tokens."""
    flag = tmp_path / "release"
    launched = run("launch", "E1", "--agents", "1", "--command", f"while [ ! -e {flag} ]; do sleep 0.2; done; false")
    assert launched.returncode == 0, launched.stderr
    return status_json(run)


def test_agent_asks_the_lead_and_gets_the_answer(project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
    answer_file = tmp_path / "answer.txt"
    # The agent asks, writes the answer it got into its work, and finishes.
    agent = (
        f'if [ "$SWARM_TASK_ID" = A ]; then swarm msg ask "which base?" --timeout 30 > {answer_file} || exit 1; fi; '
        f'mkdir -p out && echo "$SWARM_TASK_ID" > out/"$SWARM_TASK_ID".txt'
    )
    launched = run("launch", "E1", "--agents", "1", "--command", agent)
    assert launched.returncode == 0, launched.stderr

    def question() -> dict[str, Any] | None:
        open_questions = status_json(run)["questions"]
        return open_questions[0] if open_questions else None

    asked = retry_until(question, seconds=120, interval=0.2)
    assert asked["from"] == "agent-1"
    assert asked["body"] == "which base?"
    replied = run("msg", "reply", str(asked["seq"]), "use main")
    assert replied.returncode == 0, replied.stderr
    retry_until(lambda: answer_file.exists() and answer_file.read_text().strip() == "use main", seconds=120)

    entries = _entries(run)
    exchange = [(e["author"], e["to"], e["type"], e["body"]) for e in entries if not e["type"].startswith("signal.")]
    assert ("agent-1", "lead", "question", "which base?") in exchange
    assert ("lead", "agent-1", "answer", "use main") in exchange
    answer = next(e for e in entries if e["type"] == "answer")
    assert answer["reply_to"] == asked["seq"]
    assert set(answer) == {"seq", "thread", "author", "to", "type", "body", "reply_to", "created_at"}
    assert status_json(run)["questions"] == []
    assert run("teardown").returncode == 0


def test_teardown_goes_through_shutdown_request_and_response(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    data = _launch_idle_swarm(run, tmp_path)
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120)
    down = run("teardown", "--now", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["shutdown_responses"].keys() == {"agent-1"}
    assert report["stopped_gracefully"] == ["agent-1"]
    assert report["killed"] == []
    entries = _entries(run)
    request = next(e for e in entries if e["type"] == "shutdown_request")
    response = next(e for e in entries if e["type"] == "shutdown_response")
    assert (request["author"], request["to"], request["body"]) == ("lead", "agent-1", "now")
    assert (response["author"], response["to"], response["reply_to"]) == ("agent-1", "lead", request["seq"])
    assert procs.processes_with_env("SWARM_ID", data["swarm"]["id"]) == []


def test_a_worker_that_ignores_shutdown_is_still_stopped(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    # An agent that ignores SIGTERM keeps its worker busy past the grace period, so the worker never gets
    # to answer. (SIGSTOP cannot stand in for this: tmux sends SIGCONT to a stopped pane at once.)
    stubborn = "trap '' TERM; while true; do sleep 0.2; done"
    launched = run("launch", "E1", "--agents", "1", "--command", stubborn)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120)
    data = status_json(run)
    worker = data["agents"][0]["pid"]
    down = run("teardown", "--now", "--grace", "1", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["shutdown_responses"] == {}
    assert worker in report["killed"]
    assert report["clean"] is True
    assert not procs.alive(worker)
    assert procs.processes_with_env("SWARM_ID", data["swarm"]["id"]) == []
    assert tmux_sessions(tmux_socket) == []
    assert any(e["type"] == "shutdown_request" for e in _entries(run))
    tasks = {t["id"]: t for t in status_json(run)["tasks"]}
    assert tasks["A"]["state"] == "ready"  # its claim went back to the queue


def test_forged_author_unknown_recipient_empty_and_huge_bodies(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    _launch_idle_swarm(run, tmp_path)
    cases = [
        (["msg", "send", "hi"], {"SWARM_AGENT_ID": "agent-1", "SWARM_TOKEN": "forged"}, "wrong token for agent-1"),
        (["msg", "send", "hi"], {"SWARM_AGENT_ID": "agent-1"}, "writing as agent-1 needs its SWARM_TOKEN"),
        (["msg", "send", "hi", "--to", "agent-42"], {}, "unknown recipient 'agent-42'"),
        (["msg", "send", "   "], {}, "the message is empty"),
        (["msg", "send", "hello", "--type", "gossip"], {}, "unknown message type"),
        (
            ["queue", "heartbeat", "--agent-id", "agent-1", "--task-id", "A", "--lease-token", "t"],
            {},
            "needs its SWARM_TOKEN",
        ),
    ]
    before = len(_entries(run))
    for args, env, message in cases:
        result = run(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    from tests.helpers import swarm_cli

    # Past the 128 KiB argv limit, a body comes on stdin with TEXT "-".
    env = {"SWARM_TMUX_SOCKET": tmux_socket}
    huge = swarm_cli("msg", "send", "-", cwd=project, env=env, input_text="x" * (1024 * 1024 + 1))
    assert huge.returncode == 2
    assert "more than the 1 MiB" in huge.stderr
    fine = swarm_cli("msg", "send", "-", cwd=project, env=env, input_text="y" * (200 * 1024))
    assert fine.returncode == 0, fine.stderr
    assert len(_entries(run)) == before + 1  # only the valid "-" message was written
    assert run("teardown", "--now").returncode == 0


def test_wait_times_out_with_124_and_list_filters(project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
    _launch_idle_swarm(run, tmp_path)
    waited = run("msg", "wait", "--timeout", "0.3")
    assert waited.returncode == 124
    assert "no message within 0.3s" in waited.stderr
    assert run("msg", "send", "to everyone").returncode == 0
    assert run("msg", "send", "a signal", "--type", "signal.test").returncode == 0
    bodies = [e["body"] for e in _entries(run, "--hide-signals")]
    assert "to everyone" in bodies
    assert "a signal" not in bodies
    assert [e["body"] for e in _entries(run, "--type", "signal.test")] == ["a signal"]
    last = _entries(run)[-1]["seq"]
    assert _entries(run, "--since", str(last)) == []
    human = run("msg", "list")
    assert "#" in human.stdout
    assert "lead [chat]: to everyone" in human.stdout
    assert run("teardown", "--now").returncode == 0


def test_lead_waits_for_an_agent_message(project: Path, run: Run, tmux_socket: str, tmp_path: Path) -> None:
    """`msg wait` as the lead returns an agent's entry (the agent found `swarm` on its PATH)."""
    agent = "swarm msg send 'progress: half way' --to lead && mkdir -p out && echo A > out/$SWARM_TASK_ID.txt"
    assert run("queue", "init", "--epic", "E1").returncode == 0
    assert run("msg", "wait", "--timeout", "0.01").returncode == 124  # places the lead's cursor at the end
    launched = run("launch", "E1", "--agents", "1", "--command", agent)
    assert launched.returncode == 0, launched.stderr
    got = run("msg", "wait", "--from", "agent-1", "--timeout", "30", "--json")
    assert got.returncode == 0, got.stderr
    entry = json.loads(got.stdout)
    assert (entry["author"], entry["body"]) == ("agent-1", "progress: half way")
    assert run("teardown").returncode == 0
