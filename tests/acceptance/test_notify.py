"""Notifications end to end (docs/contract.md §9): a real monitor of a real swarm sends each event once to a
real loopback HTTP server and a real command; a failing or hung webhook slows nothing and is retried; a
restarted monitor resends nothing."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import DEMO_AGENT, Run, status_json
from tests.helpers import retry_until
from tests.hookserver import HookServer, hook_server

FAST = {
    "SWARM_SWARM_MONITOR_INTERVAL_SECONDS": "0.3",
    "SWARM_QUEUE_RETRY_BACKOFF_SECONDS": "0.2",
    "SWARM_QUEUE_RETRY_BACKOFF_MAX_SECONDS": "0.4",
}
SWARM = f"{sys.executable} -m swarm"


def _recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A command that appends its stdin (one event) as a line to a file: (the script, the file)."""
    out = tmp_path / "notified.jsonl"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\n{{ cat; echo; }} >> "{out}"\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, out


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _finished(run: Run) -> bool:
    counts = status_json(run)["counts"]
    return bool(counts["ready"] == 0 and counts["claimed"] == 0)


def _agent_script(tmp_path: Path) -> str:
    """The demo agent, except: task A's first run hits a rate limit, B asks the lead, C always fails."""
    flag = tmp_path / "limited-once"
    return (
        f'if [ "$SWARM_TASK_ID" = A ] && [ ! -e {flag} ]; then touch {flag}; '
        f'echo "API error: rate limit exceeded, try again in 1 seconds"; exit 1; fi; '
        f'if [ "$SWARM_TASK_ID" = B ]; then {SWARM} msg send --type question --to lead "which base, main?"; fi; '
        f'if [ "$SWARM_TASK_ID" = C ]; then echo "C cannot be done"; exit 1; fi; '
        f"{DEMO_AGENT}"
    )


def _monitor_again(run: Run, env: dict[str, str]) -> None:
    """A new monitor of the finished swarm (as after a crash): it looks once, flushes, exits."""
    again = run("monitor", env=env, timeout=60)
    assert again.returncode == 0, again.stderr


def test_each_event_is_sent_once_to_a_webhook_and_a_command(project: Path, run: Run, tmp_path: Path) -> None:
    script, out = _recorder(tmp_path)
    with hook_server() as server:
        env = {**FAST, "SWARM_NOTIFY_WEBHOOK": server.url, "SWARM_NOTIFY_COMMAND": json.dumps([str(script)])}
        launched = run("launch", "E1", "--agents", "2", "--command", _agent_script(tmp_path), env=env)
        assert launched.returncode == 0, launched.stderr
        retry_until(lambda: _finished(run), seconds=120, interval=0.3)
        expected = ["epic_done", "question", "rate_limited", "task_dead"]
        retry_until(lambda: sorted(server.events()) == expected, seconds=60, interval=0.2)
        retry_until(lambda: sorted(line["event"] for line in _lines(out)) == expected, seconds=30, interval=0.2)
        by_event = {body["event"]: body for body in server.bodies}
        dead = by_event["task_dead"]
        assert (dead["task"], dead["epic"]) == ("C", "E1")
        assert dead["text"] == dead["content"]
        assert "task C is dead" in dead["text"]
        assert by_event["question"]["agent"] in ("agent-1", "agent-2")
        assert "which base, main?" in by_event["question"]["text"]
        assert "epic E1 finished: 1 blocked, 2 done, 1 dead" in by_event["epic_done"]["text"]
        swarm_id = status_json(run)["swarm"]["id"]
        assert {body["swarm"] for body in server.bodies} == {swarm_id}
        # The command got the same bodies as the webhook (epic_done's "at" is when the monitor saw it).
        assert sorted(_lines(out), key=lambda b: str(b["event"])) == sorted(
            server.bodies, key=lambda b: str(b["event"])
        )

        # A restarted monitor finds the same events and sends none of them again.
        _monitor_again(run, env)
        assert sorted(server.events()) == expected
        assert len(_lines(out)) == len(expected)
    assert run("teardown").returncode == 0


def _looks(project: Path) -> int:
    try:
        return int(json.loads((project / ".swarm" / "monitor.json").read_text())["looks"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_failing_webhook_slows_nothing_and_is_retried(project: Path, run: Run, tmp_path: Path) -> None:
    """The webhook first hangs (requests held unanswered), then answers 500: the monitor keeps looking and the
    epic finishes; the failures are logged; once the webhook works, a new monitor sends each event once.
    (A 500 itself is tested in tests/unit/test_notify.py; here the backoff may outlast the short epic.)"""
    server: HookServer
    with hook_server(status=500) as server:
        server.hold.set()
        env = {**FAST, "SWARM_NOTIFY_WEBHOOK": server.url, "SWARM_NOTIFY_EVENTS": "task_dead,epic_done"}
        # C dies (its notification is held) while B waits for the test: the swarm, and its monitor, still run.
        go = tmp_path / "go"
        agent = (
            f'if [ "$SWARM_TASK_ID" = C ]; then exit 1; fi; '
            f'if [ "$SWARM_TASK_ID" = B ]; then while [ ! -e {go} ]; do sleep 0.1; done; fi; {DEMO_AGENT}'
        )
        launched = run("launch", "E1", "--agents", "2", "--command", agent, env=env)
        assert launched.returncode == 0, launched.stderr
        retry_until(lambda: server.held > 0, seconds=120, interval=0.1)
        # While the webhook holds a request, the monitor keeps looking.
        held_at = _looks(project)
        retry_until(lambda: server.held > 0 and _looks(project) >= held_at + 3, seconds=30, interval=0.1)
        server.release()  # from now on it answers 500
        go.touch()
        retry_until(lambda: _finished(run), seconds=120, interval=0.3)
        log = project / ".swarm" / "logs" / "monitor.log"
        # The held request timed out (and, if the swarm ran long enough for a retry, one got a 500): logged.
        retry_until(lambda: log.exists() and "the webhook hook did not take" in log.read_text(), seconds=30)
        assert server.url.split("/", 3)[3] not in log.read_text(), "the webhook's secret path is not logged"
        retry_until(lambda: not _monitor_alive(project), seconds=60, interval=0.2)
        assert server.bodies == []

        # The webhook works again: the next monitor sends what was not taken, once each.
        server.status = 200
        _monitor_again(run, env)
        assert sorted(server.events()) == ["epic_done", "task_dead"]
        _monitor_again(run, env)
        assert sorted(server.events()) == ["epic_done", "task_dead"]
    assert run("teardown").returncode == 0


def _monitor_alive(project: Path) -> bool:
    from swarm.runtime import procs

    try:
        pid = int(json.loads((project / ".swarm" / "monitor.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return False
    return procs.alive(pid)


def test_notify_test_sends_a_sample_and_bad_hooks_are_refused(project: Path, run: Run, tmp_path: Path) -> None:
    script, out = _recorder(tmp_path)
    with hook_server() as server:
        env = {"SWARM_NOTIFY_WEBHOOK": server.url, "SWARM_NOTIFY_COMMAND": json.dumps([str(script)])}
        sent = run("notify", "test", env=env)
        assert sent.returncode == 0, sent.stderr
        assert "command: sent" in sent.stdout
        assert server.events() == ["test"]
        assert _lines(out)[0]["event"] == "test"
        server.status = 500
        failed = run("notify", "test", env=env)
        assert failed.returncode == 1
        assert "answered HTTP 500" in failed.stderr
    nothing = run("notify", "test")
    assert nothing.returncode == 2
    assert "[notify] sets neither command nor webhook" in nothing.stderr
    # Bad hooks stop a launch before anything starts: one line, exit 2, no .swarm/ written.
    for bad, expected in (
        ({"SWARM_NOTIFY_WEBHOOK": "ftp://example.com/x"}, "http:// or https://"),
        ({"SWARM_NOTIFY_EVENTS": "question,task_died"}, "did you mean 'task_dead'?"),
        ({"SWARM_NOTIFY_COMMAND": '["no-such-notifier-xyz"]'}, "'no-such-notifier-xyz' not found"),
    ):
        refused = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, env=bad)
        assert refused.returncode == 2, refused.stderr
        assert expected in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert not (project / ".swarm" / "swarm.db").exists()
