"""Notifications: the [notify] configuration, the body every hook gets, the hooks themselves (a real loopback
HTTP server, a real command), and finding each event once in a real SQLite database (docs/contract.md §9)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.config import NOTIFY_EVENTS, LoadedConfig, NotifySettings, load_config
from swarm.errors import BadInput, ConfigError
from swarm.models import LEAD, Spec
from swarm.notify import (
    MAX_TEXT,
    SINK_COMMAND,
    SINK_WEBHOOK,
    Detector,
    HookFailed,
    NotifyEvent,
    Outbox,
    check_notify,
    configured_sinks,
    payload,
    resolve_command,
    send_command,
    send_webhook,
)
from swarm.store import Store, StoreOptions, open_store
from tests.conftest import FakeClock
from tests.hookserver import closed_port_url, hook_server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


def config_error(repo: Path, toml: str) -> str:
    (repo / "swarm.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(repo, env={})
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    assert info.value.exit_code == 2
    return message


def recorder(tmp_path: Path, *, fail: bool = False, name: str = "record") -> tuple[Path, Path]:
    """A real command that appends its stdin (one JSON line) to a file; (the script, the file)."""
    out = tmp_path / f"{name}.jsonl"
    script = tmp_path / f"{name}.sh"
    script.write_text(
        f'#!/bin/sh\n{{ cat; echo; }} >> "{out}"\n' + ("echo 'desktop is locked' >&2; exit 3\n" if fail else ""),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, out


# -- configuration ---------------------------------------------------------------------------------------


def test_defaults_send_nothing_and_listen_to_every_event(repo: Path) -> None:
    settings = load_config(repo, env={}).config.notify
    assert settings == NotifySettings()
    assert settings.command == []
    assert settings.webhook == ""
    assert settings.events == list(NOTIFY_EVENTS)
    assert configured_sinks(settings) == []


def test_notify_table_and_environment(repo: Path) -> None:
    (repo / "swarm.toml").write_text(
        '[notify]\ncommand = ["notify-send", "swarm"]\nwebhook = "https://hooks.slack.com/services/T/B/x"\n'
        'events = ["question", "epic_done"]\n',
        encoding="utf-8",
    )
    loaded = load_config(repo, env={"SWARM_NOTIFY_EVENTS": "task_dead,escalation"})
    assert loaded.config.notify.command == ["notify-send", "swarm"]
    assert loaded.config.notify.events == ["task_dead", "escalation"]
    assert loaded.sources["notify.events"] == "env SWARM_NOTIFY_EVENTS"
    assert configured_sinks(loaded.config.notify) == [SINK_COMMAND, SINK_WEBHOOK]


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "hooks.slack.com/services/x", "https://", "file:///etc"])
def test_a_webhook_that_is_not_http_is_refused(repo: Path, url: str) -> None:
    message = config_error(repo, f'[notify]\nwebhook = "{url}"\n')
    assert "notify.webhook" in message
    assert "swarm.toml line 2" in message
    assert "http:// or https://" in message


def test_an_unknown_event_is_refused_with_a_suggestion(repo: Path) -> None:
    message = config_error(repo, '[notify]\nevents = ["question", "task_died"]\n')
    assert "'task_died' is not an event" in message
    assert "did you mean 'task_dead'?" in message
    assert "question, escalation, task_dead, rate_limited, epic_done" in message


def test_a_command_must_be_an_argv_list(repo: Path) -> None:
    assert "expected a list of strings" in config_error(repo, '[notify]\ncommand = "notify-send hi"\n')
    assert "must not be empty" in config_error(repo, '[notify]\ncommand = [""]\n')


def test_a_command_that_is_not_found_is_bad_input(repo: Path, tmp_path: Path) -> None:
    (repo / "swarm.toml").write_text('[notify]\ncommand = ["no-such-notifier-xyz", "-u"]\n', encoding="utf-8")
    loaded = load_config(repo, env={})  # loading works (agents load it where the program need not exist) ...
    with pytest.raises(BadInput) as info:
        check_notify(loaded)  # ... launch and `notify test` refuse it
    assert info.value.exit_code == 2
    assert "'no-such-notifier-xyz' not found" in str(info.value)
    assert "\n" not in info.value.render()
    script, _ = recorder(tmp_path)
    assert resolve_command([str(script), "x"], repo) == [str(script), "x"]
    relative = repo / "hooks" / "n.sh"
    relative.parent.mkdir()
    relative.write_bytes(script.read_bytes())
    relative.chmod(0o755)
    assert resolve_command(["hooks/n.sh"], repo) == [str(relative)]


# -- the body --------------------------------------------------------------------------------------------


def test_payload_suits_slack_discord_and_scripts() -> None:
    event = NotifyEvent("k", "task_dead", "task S3 is dead: boom", at=0.0, epic="E1", task="S3", agent="agent-2")
    body = payload(event, "sw-1")
    assert body == {
        "text": "[swarm sw-1] task S3 is dead: boom",
        "content": "[swarm sw-1] task S3 is dead: boom",
        "event": "task_dead",
        "swarm": "sw-1",
        "epic": "E1",
        "task": "S3",
        "agent": "agent-2",
        "at": "1970-01-01T00:00:00Z",
    }
    long = payload(NotifyEvent("k", "question", "x" * 5000, at=0.0), "sw-1")
    assert len(str(long["content"])) == MAX_TEXT


# -- the hooks -------------------------------------------------------------------------------------------


def test_webhook_posts_json_to_a_real_server() -> None:
    with hook_server() as server:
        send_webhook(server.url, json.dumps({"event": "test", "text": "hi"}).encode())
        assert server.bodies == [{"event": "test", "text": "hi"}]
        server.status = 500
        with pytest.raises(HookFailed, match="answered HTTP 500"):
            send_webhook(server.url, b"{}")
    with pytest.raises(HookFailed, match="unreachable") as info:
        send_webhook(closed_port_url(), b"{}")
    assert "secret" not in str(info.value), "the URL's path (the webhook's secret) is never printed"


def test_command_gets_the_event_on_stdin(tmp_path: Path) -> None:
    script, out = recorder(tmp_path)
    send_command([str(script)], b'{"event": "test"}', cwd=tmp_path)
    assert json.loads(out.read_text()) == {"event": "test"}
    failing, _ = recorder(tmp_path, fail=True, name="failing")
    with pytest.raises(HookFailed, match="exited 3: desktop is locked"):
        send_command([str(failing)], b"{}", cwd=tmp_path)
    with pytest.raises(HookFailed, match="not found"):
        send_command(["no-such-notifier-xyz"], b"{}", cwd=tmp_path)


# -- events, once ----------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/q.db")
    yield opened
    opened.close()


def _history(store: Store) -> str:
    """A swarm in which every kind of event happened once (the rate limit seen by two agents: one pause)."""
    swarm = store.ensure_swarm("E1")
    store.add_tasks(
        [Spec("S1", "E1", "one", "do", max_attempts=1), Spec("S2", "E1", "two", "do", depends_on=("S1",))],
        swarm_id=swarm.id,
    )
    claim = store.claim("agent-1", ttl_seconds=60, swarm_id=swarm.id)
    assert claim is not None
    store.fail(claim.task_id, "agent-1", claim.lease_token, "verify failed (exit 1)")
    store.append_message("team", "agent-1", "question", "which base?", recipient=LEAD)
    store.append_message("team", "monitor", "escalation", "agent-2 was stalled; restarting it", recipient=LEAD)
    store.append_message("team", "agent-1", "signal.rate_limited", "claims paused for 60s: 429", recipient=LEAD)
    store.append_message("team", "agent-2", "signal.rate_limited", "claims paused for 60s: 429", recipient=LEAD)
    store.append_message("team", "agent-1", "chat", "not for the lead's phone")
    return swarm.id


def test_each_event_is_found_once_with_stable_keys(store: Store) -> None:
    swarm_id = _history(store)
    first = Detector(store, swarm_id).scan()
    assert sorted(e.event for e in first) == sorted(NOTIFY_EVENTS)
    dead = next(e for e in first if e.event == "task_dead")
    assert (dead.task, dead.epic) == ("S1", "E1")
    assert "verify failed" in dead.text
    done = next(e for e in first if e.event == "epic_done")
    assert "epic E1 finished: 1 blocked, 1 dead" in done.text
    escalation = next(e for e in first if e.event == "escalation")
    assert escalation.agent == "agent-2"
    # A restarted monitor (a new detector) finds the same events under the same keys.
    again = Detector(store, swarm_id).scan()
    assert sorted(e.key for e in again) == sorted(e.key for e in first)


def test_the_same_detector_reports_only_what_is_new(store: Store) -> None:
    swarm_id = _history(store)
    detector = Detector(store, swarm_id)
    detector.scan()
    store.append_message("team", "monitor", "escalation", "agent-1 failed: disk full", recipient=LEAD)
    fresh = [e for e in detector.scan() if e.event != "question"]  # an open question stays open
    assert [e.event for e in fresh] == ["escalation"]


def _loaded(repo: Path, store_url: str, toml: str) -> LoadedConfig:
    (repo / "swarm.toml").write_text(f'[queue]\ndatabase = "{store_url}"\n{toml}', encoding="utf-8")
    return load_config(repo, env={})


def test_outbox_sends_once_retries_a_failing_hook_and_a_restart_resends_nothing(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    swarm_id = _history(store)
    script, out = recorder(tmp_path)
    with hook_server(status=500) as server:
        loaded = _loaded(
            repo,
            f"sqlite:///{tmp_path}/q.db",
            f'[notify]\ncommand = ["{script}"]\nwebhook = "{server.url}"\nevents = ["task_dead", "epic_done"]\n',
        )
        outbox = Outbox(store, loaded, swarm_id)
        assert outbox.collect() == 4  # two events, two hooks
        sent, retry_at = outbox.send_due()
        assert sent == 2  # the command took both
        assert retry_at is not None
        # The webhook refused the first: it backs off, the second is not even tried in this pass.
        assert len(server.attempts) == 1
        # Backing off: nothing is tried again before the retry time.
        assert outbox.send_due()[0] == 0
        assert len(server.attempts) == 1
        server.status = 200
        assert outbox.send_due(now=retry_at + 1)[0] == 2
        assert sorted(server.events()) == ["epic_done", "task_dead"]
        # A new monitor: same events, nothing queued, nothing sent again.
        restarted = Outbox(store, loaded, swarm_id)
        assert restarted.collect() == 0
        assert restarted.send_due() == (0, None)
        assert len(server.bodies) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert sorted(line["event"] for line in lines) == ["epic_done", "task_dead"]
    assert all(line["swarm"] == swarm_id for line in lines)


def test_a_notification_queued_before_a_crash_is_sent_by_the_next_monitor(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    swarm_id = _history(store)
    with hook_server() as server:
        loaded = _loaded(repo, f"sqlite:///{tmp_path}/q.db", f'[notify]\nwebhook = "{server.url}"\n')
        assert Outbox(store, loaded, swarm_id).collect() == len(NOTIFY_EVENTS)  # queued, then the monitor died
        restarted = Outbox(store, loaded, swarm_id)
        assert restarted.collect() == 0
        assert restarted.send_due()[0] == len(NOTIFY_EVENTS)
        assert sorted(server.events()) == sorted(NOTIFY_EVENTS)


def test_hooks_of_other_configurations_are_left_alone(store: Store, repo: Path, tmp_path: Path) -> None:
    swarm_id = _history(store)
    script, out = recorder(tmp_path)
    loaded = _loaded(repo, f"sqlite:///{tmp_path}/q.db", f'[notify]\ncommand = ["{script}"]\n')
    Outbox(store, loaded, swarm_id).collect()
    webhook_only = _loaded(repo, f"sqlite:///{tmp_path}/q.db", f'[notify]\nwebhook = "{closed_port_url()}"\n')
    assert Outbox(store, webhook_only, swarm_id).send_due() == (0, None)  # the command's rows are not its own
    assert not out.exists()


def test_one_notification_per_rate_limit_pause(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_store(f"sqlite:///{tmp_path}/r.db", StoreOptions(clock=clock)) as store:
        swarm = store.ensure_swarm("E1")
        clock.advance(1)

        def limited(agent: str) -> None:
            store.append_message("team", agent, "signal.rate_limited", "claims paused for 30s: 429", recipient=LEAD)

        limited("agent-1")
        clock.advance(10)
        limited("agent-2")  # the same pause, extended to t+41
        clock.advance(25)
        limited("agent-3")  # inside the extended pause (t+36 < t+41), which it extends to t+66
        clock.advance(31)
        limited("agent-1")  # after it ended (t+67): a new pause
        events = [e for e in Detector(store, swarm.id).scan() if e.event == "rate_limited"]
        assert [e.agent for e in events] == ["agent-1", "agent-1"]
        assert len({e.key for e in events}) == 2


def test_a_task_that_dies_again_after_a_retry_is_told_again(store: Store) -> None:
    swarm_id = _history(store)
    detector = Detector(store, swarm_id)
    first = [e.key for e in detector.scan() if e.event == "task_dead"]
    assert [e.key for e in detector.scan() if e.event == "task_dead"] == []  # nothing new: nothing told
    store.retry("S1")
    claim = store.claim("agent-2", ttl_seconds=60, swarm_id=swarm_id)
    assert claim is not None
    assert claim.task_id == "S1"
    store.fail("S1", "agent-2", claim.lease_token, "still broken")
    again = [e for e in detector.scan() if e.event == "task_dead"]
    assert len(again) == 1
    assert again[0].key not in first
    assert "still broken" in again[0].text


def test_an_idle_database_is_not_scanned_again(store: Store, repo: Path, tmp_path: Path) -> None:
    swarm_id = _history(store)
    loaded = _loaded(repo, f"sqlite:///{tmp_path}/q.db", f'[notify]\nwebhook = "{closed_port_url()}"\n')
    outbox = Outbox(store, loaded, swarm_id)
    scans: list[int] = []
    real_scan = outbox.detector.scan

    def counting_scan() -> list[NotifyEvent]:
        scans.append(1)
        return real_scan()

    outbox.detector.scan = counting_scan  # type: ignore[method-assign]
    assert outbox.collect() == len(NOTIFY_EVENTS)
    outbox.collect()  # its own insert changed the database once
    settled = len(scans)
    outbox.collect()
    assert len(scans) == settled, "nothing changed: nothing to scan"
    other = open_store(f"sqlite:///{tmp_path}/q.db")
    other.append_message("team", "monitor", "escalation", "agent-1 failed: disk full", recipient=LEAD)
    other.close()
    assert outbox.collect() == 1
    assert len(scans) == settled + 1


def test_questions_answered_before_the_look_are_not_sent_and_other_threads_are_swept(store: Store) -> None:
    swarm = store.ensure_swarm("E1")
    asked = store.append_message("team", "agent-1", "question", "which base?", recipient=LEAD)
    store.append_message("team", LEAD, "answer", "main", recipient="agent-1", reply_to=asked.seq)
    store.append_message("team", "agent-2", "question", "may I delete the cache?", recipient=LEAD)
    store.append_message("design", "agent-3", "question", "REST or gRPC?", recipient=LEAD)
    questions = [e for e in Detector(store, swarm.id).scan() if e.event == "question"]
    assert sorted((e.agent, e.text) for e in questions) == [
        ("agent-2", "agent-2 asks: may I delete the cache?"),
        ("agent-3", "agent-3 asks: REST or gRPC?"),
    ]
