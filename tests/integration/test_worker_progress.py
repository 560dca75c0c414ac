"""What a person sees of an agent that prints JSON events: the worker writes readable lines to the pane, the log
and ``last_output``, keeps the raw events in ``.swarm/logs/<agent>.jsonl``, and still reads cost, tokens and
known failures from the raw events. Stand-in CLIs replay events the real ones printed (tests/unit/progress_samples)."""

from __future__ import annotations

import io
import json
import sys
import threading
from pathlib import Path

import pytest

from swarm.models import AgentRecord, TaskState
from swarm.runtime.worker import Worker
from swarm.store import open_store
from tests.helpers import retry_until, swarm_cli
from tests.integration.test_worker import MakeRun, MakeWorker, make_run, make_worker, queue, repo, spec, task

__all__ = ["make_run", "make_worker", "repo"]  # fixtures, imported for pytest

SAMPLES = Path(__file__).parents[1] / "unit" / "progress_samples"


def _stand_in(tmp_path: Path, name: str, sample: str, *, exit_code: int = 0, wait_for: Path | None = None) -> Path:
    """A ``name`` on PATH that changes the worktree, prints ``sample``'s events, optionally waits for a file to
    appear (so a test can look at the agent while it runs), and exits with ``exit_code``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / name
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        "sys.stdin.read()\n"
        "open('work.txt', 'w').write('done')\n"
        f"sys.stdout.write(open({str(SAMPLES / sample)!r}).read())\n"
        "sys.stdout.flush()\n"
        f"while {str(wait_for)!r} != 'None' and not os.path.exists({str(wait_for)!r}):\n"
        "    time.sleep(0.05)\n"
        f"sys.exit({exit_code})\n"
    )
    fake.chmod(0o755)
    return bin_dir


def _claude_worker(make_worker: MakeWorker, bin_dir: Path, kind: str = "claude") -> object:
    return make_worker(
        "agent-1",
        None,
        kind=kind,
        model="m",
        permission_mode="acceptEdits",
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )


def test_claude_events_are_readable_in_pane_log_and_status_and_raw_beside_the_log(
    repo: Path, make_worker: MakeWorker, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    bin_dir = _stand_in(tmp_path, "claude", "claude.jsonl", wait_for=go)
    queue(repo, spec("A"))
    worker = _claude_worker(make_worker, bin_dir)
    seen: list[str] = []

    def watch() -> None:
        # While the agent runs, status's last_output is the readable end of its run, not a JSON fragment.
        def last() -> str | None:
            with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
                agents = store.list_agents(None)
            text = agents[0].last_output if agents else None
            return text if text and text.startswith("■") else None

        try:
            seen.append(retry_until(last, seconds=60))
        finally:
            go.touch()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker.loop()  # type: ignore[attr-defined]
    watcher.join(timeout=60)
    assert seen == ["■ done: 4 turns, 0.7s, $0.0024, 480 tokens"]

    a = task(repo, "A")
    assert a.state == TaskState.DONE  # type: ignore[attr-defined]
    assert a.cost_usd == pytest.approx(0.0024)  # type: ignore[attr-defined]  # read from the raw result event
    log = (repo / ".swarm" / "logs" / "agent-1.log").read_text()
    pane = worker.out.getvalue().decode()  # type: ignore[attr-defined]
    for shown in (log, pane):
        assert "→ Bash: mkdir -p out && echo hi > out/a.txt\n  ← (Bash completed with no output)\n" in shown
        assert "■ done: 4 turns, 0.7s, $0.0024, 480 tokens\n" in shown
        assert '{"type"' not in shown
    raw = (repo / ".swarm" / "logs" / "agent-1.jsonl").read_text()
    assert raw == (SAMPLES / "claude.jsonl").read_text()  # every event, byte for byte

    # `swarm logs` prints the readable log, `--raw` the events.
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        store.register_agent(AgentRecord(id="agent-1", swarm_id=store.ensure_swarm("E").id))
    assert swarm_cli("logs", "agent-1", cwd=repo).stdout == log
    shown = swarm_cli("logs", "agent-1", "--raw", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == raw
    assert swarm_cli("logs", "agent-1", "--raw", "-n", "1", cwd=repo).stdout == raw.splitlines(keepends=True)[-1]


def test_a_known_failure_is_still_seen_in_the_raw_events(repo: Path, make_worker: MakeWorker, tmp_path: Path) -> None:
    # Older Claude Code exits 0 after giving up; its result event says "is_error": true.
    bin_dir = _stand_in(tmp_path, "claude", "claude-fail.jsonl")
    queue(repo, spec("A"))
    _claude_worker(make_worker, bin_dir).loop()  # type: ignore[attr-defined]
    a = task(repo, "A")
    assert a.state == TaskState.DEAD  # type: ignore[attr-defined]
    assert a.last_error == (  # type: ignore[attr-defined]
        "the agent exited 0 but its output shows a known failure: "
        "API Error: Unable to connect to API (ConnectionRefused)"
    )


def test_a_failed_run_is_explained_in_readable_lines(repo: Path, make_worker: MakeWorker, tmp_path: Path) -> None:
    bin_dir = _stand_in(tmp_path, "claude", "claude-fail.jsonl", exit_code=1)
    queue(repo, spec("A"))
    _claude_worker(make_worker, bin_dir).loop()  # type: ignore[attr-defined]
    error = task(repo, "A").last_error  # type: ignore[attr-defined]
    assert error.startswith("agent exited 1: "), error
    assert "■ failed: API Error: Unable to connect to API (ConnectionRefused)" in error
    assert '{"type"' not in error


def test_codex_events_are_readable_and_their_tokens_counted(
    repo: Path, make_worker: MakeWorker, tmp_path: Path
) -> None:
    bin_dir = _stand_in(tmp_path, "codex", "codex.jsonl")
    queue(repo, spec("A"))
    _claude_worker(make_worker, bin_dir, kind="codex").loop()  # type: ignore[attr-defined]
    a = task(repo, "A")
    assert a.state == TaskState.DONE  # type: ignore[attr-defined]
    assert a.tokens == 480  # type: ignore[attr-defined]  # turn.completed: 400 in + 80 out
    log = (repo / ".swarm" / "logs" / "agent-1.log").read_text()
    assert "→ run: mkdir -p out && echo hi > out/a.txt\n" in log
    assert "■ turn done: 480 tokens (400 in, 80 out)\n" in log
    events = [json.loads(line) for line in (repo / ".swarm" / "logs" / "agent-1.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events][-1] == "turn.completed"


def test_plain_output_has_no_events_file(repo: Path, make_worker: MakeWorker) -> None:
    queue(repo, spec("A"))
    make_worker("agent-1", 'echo \'{"type": "result"}\' > out.txt; echo "{\\"type\\": \\"x\\"}"').loop()
    assert '{"type": "x"}\n' in (repo / ".swarm" / "logs" / "agent-1.log").read_text()
    assert not (repo / ".swarm" / "logs" / "agent-1.jsonl").exists()
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        store.register_agent(AgentRecord(id="agent-1", swarm_id=store.ensure_swarm("E").id))
    shown = swarm_cli("logs", "agent-1", "--raw", cwd=repo)
    assert shown.returncode == 2
    assert "agent-1 printed no JSON events" in shown.stderr


def test_swarm_logs_of_an_older_swarm(repo: Path, make_run: MakeRun) -> None:
    """An agent's log holds every swarm's runs of that agent id; ``--swarm ID`` prints those of one swarm."""
    url = f"sqlite:///{repo}/.swarm/swarm.db"
    queue(repo, spec("A"))
    first_run = make_run("agent-1", 'echo "$SWARM_TASK_ID" > a.txt; echo "working on $SWARM_TASK_ID"')
    Worker(first_run, out=io.BytesIO()).loop()
    with open_store(url) as store:
        store.end_swarm(first_run.swarm_id)
        second = store.ensure_swarm("E").id
    queue(repo, spec("B"))
    Worker(first_run.model_copy(update={"swarm_id": second}), out=io.BytesIO()).loop()
    with open_store(url) as store:
        store.register_agent(AgentRecord(id="agent-1", swarm_id=second))

    everything = swarm_cli("logs", "agent-1", cwd=repo).stdout
    assert "working on A" in everything
    assert "working on B" in everything
    older = swarm_cli("logs", "agent-1", "--swarm", first_run.swarm_id, cwd=repo)
    assert older.returncode == 0, older.stderr
    assert older.stdout.startswith("[swarm ")
    assert f"(swarm {first_run.swarm_id})" in older.stdout.splitlines()[0]
    assert "working on A" in older.stdout
    assert "working on B" not in older.stdout
    newer = swarm_cli("logs", "agent-1", "--swarm", second, "-n", "2", cwd=repo)
    assert newer.stdout.splitlines()[-1].endswith("the only task of the swarm is done; exiting")
    assert len(newer.stdout.splitlines()) == 2
    assert "working on A" not in swarm_cli("logs", "agent-1", "--swarm", second, cwd=repo).stdout

    unknown = swarm_cli("logs", "agent-1", "--swarm", "sw-nope", cwd=repo)
    assert unknown.returncode == 2, unknown.stderr
    for flag in ("-f", "--raw"):
        refused = swarm_cli("logs", "agent-1", "--swarm", first_run.swarm_id, flag, cwd=repo)
        assert refused.returncode == 2, refused.stderr
        assert len(refused.stderr.strip().splitlines()) <= 2, refused.stderr
