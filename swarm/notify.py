"""Notifications: tell the lead what needs them without anyone watching ``swarm status`` (docs/contract.md §9).

Events come from what the database already keeps durably: questions to the lead and escalations (thread
entries), rate-limit pauses (the workers' ``signal.rate_limited`` entries), dead tasks (the event log), and
epics with nothing left to run (task counts). Each event has a key derived from its source (a thread entry's
sequence number, an event-log row, the epic), so finding it again finds the same key.

Delivery goes through an outbox, the ``notifications`` table: one row per event and hook (``command``,
``webhook``), inserted only if its key is new, marked sent once the hook took it. A monitor that restarts scans
from the swarm's start again, finds every key already queued, and resends nothing; a row queued but not sent
(the hook was failing, the monitor was killed) is retried. A failing hook is logged and retried with backoff in
a background thread (:class:`Notifier`), so it never slows the monitor or the agents.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from swarm.config import NOTIFY_EVENTS, LoadedConfig, NotifySettings
from swarm.errors import BadInput, SwarmError
from swarm.models import LEAD, TaskState
from swarm.store import Notification, Store

log = logging.getLogger(__name__)

SINK_COMMAND = "command"
SINK_WEBHOOK = "webhook"
#: A hook gets this long per event; longer counts as a failure (retried later), so a hung hook costs little.
HTTP_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 10.0
#: Backoff between attempts of one notification: first, doubling, at most.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0
#: Discord refuses a ``content`` longer than 2000 characters; Slack's limit is far above.
MAX_TEXT = 1900
#: The thread the workers and the monitor write escalations and signals to (worker.CONTROL_THREAD).
TEAM_THREAD = "team"
#: How often questions on threads other than the team thread are looked for.
QUESTION_SWEEP_SECONDS = 60.0
_PAUSE_SECONDS = re.compile(r"claims paused for (\d+(?:\.\d+)?)s")


@dataclass(frozen=True)
class NotifyEvent:
    """One thing to tell the lead, before it is turned into a hook's body."""

    #: Unique per event (the hook is added to it in the outbox).
    key: str
    event: str
    text: str
    at: float
    epic: str | None = None
    task: str | None = None
    agent: str | None = None


def payload(event: NotifyEvent, swarm_id: str) -> dict[str, object]:
    """The JSON body for every hook: Slack reads ``text``, Discord ``content``; scripts read the fields."""
    text = f"[swarm {swarm_id}] {event.text}"
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 3] + "..."
    return {
        "text": text,
        "content": text,
        "event": event.event,
        "swarm": swarm_id,
        "epic": event.epic,
        "task": event.task,
        "agent": event.agent,
        "at": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def configured_sinks(settings: NotifySettings) -> list[str]:
    """The hooks ``[notify]`` configures, in a fixed order."""
    return [name for name, on in ((SINK_COMMAND, bool(settings.command)), (SINK_WEBHOOK, bool(settings.webhook))) if on]


# ----------------------------------------------------------------------------------------------------
# The hooks


class HookFailed(Exception):
    """A hook did not take a notification (the message says why, in one line)."""


def resolve_command(argv: Sequence[str], repo: Path, *, path: str | None = None) -> list[str]:
    """``argv`` with its program found: on ``path`` (default ``PATH``), or a path (relative ones against the
    repository root).

    Raises :class:`~swarm.errors.BadInput` when the program is not there or not executable.
    """
    program = argv[0]
    if "/" in program:
        given = Path(program).expanduser()
        given = given if given.is_absolute() else repo / given
        found = str(given) if given.is_file() and os.access(given, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None:
        raise BadInput(
            f"[notify] command: program {program!r} not found or not executable",
            hint="install it, give its full path, or fix [notify] command in swarm.toml",
        )
    return [found, *argv[1:]]


def check_notify(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> None:
    """Refuse (exit 2, before anything starts) a ``[notify]`` whose command cannot run with ``env``'s ``PATH``
    (the monitor's); the rest the configuration itself validated. Not part of loading: agents load the
    configuration where the program need not exist."""
    if loaded.config.notify.command:
        resolve_command(loaded.config.notify.command, loaded.repo, path=(env or os.environ).get("PATH"))


def _webhook_label(url: str) -> str:
    # Incoming-webhook URLs are secrets (the token is in the path): logs name only the host.
    return url.split("://", 1)[-1].split("/", 1)[0]


def send_webhook(url: str, body: bytes, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> None:
    """POST ``body`` as JSON; any status outside 2xx, or no answer within ``timeout``, raises HookFailed."""
    import urllib.error  # here: launch imports this module for check_notify, and urllib.request is slow to load
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "swarm-notify"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # the scheme is checked in config
            response.read(4096)
    except urllib.error.HTTPError as exc:
        raise HookFailed(f"webhook {_webhook_label(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise HookFailed(f"webhook {_webhook_label(url)} unreachable: {reason}") from None


def send_command(argv: Sequence[str], body: bytes, *, cwd: Path, timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
    """Run ``argv`` with ``body`` on stdin in ``cwd``; a non-zero exit or a timeout raises HookFailed."""
    try:
        resolved = resolve_command(argv, cwd)
    except BadInput as exc:
        raise HookFailed(str(exc)) from None
    try:
        done = subprocess.run(
            resolved,
            input=body,
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            check=False,
            start_new_session=True,  # its own session: a hook cannot read the monitor's terminal
        )
    except subprocess.TimeoutExpired:
        raise HookFailed(f"command {argv[0]} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise HookFailed(f"command {argv[0]} could not start: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise HookFailed(f"command {argv[0]} exited {done.returncode}" + (f": {tail[0][:200]}" if tail[0] else ""))


def deliver(sink: str, body: bytes, settings: NotifySettings, repo: Path) -> None:
    """Hand ``body`` to one hook; HookFailed says why it did not take it."""
    if sink == SINK_COMMAND and settings.command:
        send_command(settings.command, body, cwd=repo)
    elif sink == SINK_WEBHOOK and settings.webhook:
        send_webhook(settings.webhook, body)
    else:
        raise HookFailed(f"the {sink} hook is not configured here")


def sample_event(now: float | None = None) -> NotifyEvent:
    """What ``swarm notify test`` sends."""
    return NotifyEvent(
        key="test",
        event="test",
        text="a test notification from 'swarm notify test': the hook works",
        at=time.time() if now is None else now,
    )


# ----------------------------------------------------------------------------------------------------
# Finding events


@dataclass
class _Pause:
    key: str
    until: float


@dataclass
class Detector:
    """Finds a swarm's events in the database, incrementally; the same events always get the same keys."""

    store: Store
    swarm_id: str
    _team_seq: int = 0
    _event_seq: int = 0
    _dead_count: int = 0
    _swept_at: float | None = None
    _pause: _Pause | None = None
    _done_epics: set[str] = field(default_factory=set)

    def scan(self) -> list[NotifyEvent]:
        """Every event that happened since the last scan (since the swarm started, on the first)."""
        swarm = self.store.get_swarm(self.swarm_id)
        since = swarm.created_at
        whole = self.store.counts(swarm_id=self.swarm_id)
        found: list[NotifyEvent] = []
        found += self._team(since)
        found += self._other_threads_questions(since)
        found += self._dead(since, whole["dead"])
        found += self._epics(swarm.epics or (swarm.epic,), whole)
        return found

    def _question(self, thread: str, seq: int, author: str, body: str, at: float) -> NotifyEvent:
        return NotifyEvent(
            key=f"{self.swarm_id}:question:{thread}:{seq}",
            event="question",
            text=f"{author} asks: {body}",
            at=at,
            agent=author,
            task=self._task_of(author),
        )

    def _other_threads_questions(self, since: float) -> list[NotifyEvent]:
        # `swarm msg ask` asks on the team thread, which _team reads incrementally; a question sent on another
        # thread is found by this sweep, at most every QUESTION_SWEEP_SECONDS: the query reads every thread.
        now = time.monotonic()
        if self._swept_at is not None and now - self._swept_at < QUESTION_SWEEP_SECONDS:
            return []
        self._swept_at = now
        return [
            self._question(q.thread, q.seq, q.author, q.body, q.created_at)
            for q in self.store.unanswered_questions(LEAD)
            if q.created_at >= since and q.thread != TEAM_THREAD
        ]

    def _team(self, since: float) -> list[NotifyEvent]:
        found: list[NotifyEvent] = []
        #: Questions to the lead read in this scan, until their answer shows up in it too: one answered before
        #: the monitor looked needs nobody any more.
        questions: dict[int, NotifyEvent] = {}
        while True:
            batch = self.store.list_messages(TEAM_THREAD, since=self._team_seq, limit=1000)
            for m in batch:
                self._team_seq = max(self._team_seq, m.seq)
                if m.type == "answer" and m.reply_to is not None:
                    questions.pop(m.reply_to, None)
                if m.created_at < since or m.recipient != LEAD:
                    continue
                if m.type == "question":
                    questions[m.seq] = self._question(m.thread, m.seq, m.author, m.body, m.created_at)
                elif m.type == "escalation":
                    agent = m.author if m.author != "monitor" else _agent_in(m.body)
                    found.append(
                        NotifyEvent(
                            key=f"{self.swarm_id}:escalation:{m.thread}:{m.seq}",
                            event="escalation",
                            text=m.body,
                            at=m.created_at,
                            agent=agent,
                            task=self._task_of(agent) if agent else None,
                        )
                    )
                elif m.type == "signal.rate_limited":
                    event = self._rate_limited(m.seq, m.author, m.body, m.created_at)
                    if event is not None:
                        found.append(event)
            if len(batch) < 1000:
                return found + list(questions.values())

    def _rate_limited(self, seq: int, agent: str, body: str, at: float) -> NotifyEvent | None:
        # Every worker that sees the limit says so and extends the one pause: a signal during a pause is part
        # of it. The pause is keyed by its first signal, which the same history always gives again.
        match = _PAUSE_SECONDS.search(body)
        wait = float(match.group(1)) if match else 60.0
        if self._pause is not None and at < self._pause.until:
            self._pause.until = max(self._pause.until, at + wait)
            return None
        self._pause = _Pause(f"{self.swarm_id}:rate_limited:{seq}", at + wait)
        return NotifyEvent(
            key=self._pause.key,
            event="rate_limited",
            text=f"claims paused for a rate limit ({agent}): {body}",
            at=at,
            agent=agent,
        )

    def _dead(self, since: float, dead: int) -> list[NotifyEvent]:
        # The dead tasks themselves are the source, read when the event log shows a task dying or the number of
        # dead tasks changed: on PostgreSQL event numbers may commit out of order, so a cursor over the log
        # alone could step over one. A task's row does not change while it is dead, so its key is stable.
        died = dead != self._dead_count
        self._dead_count = dead
        while True:
            batch = self.store.events(since=self._event_seq, limit=1000)
            for e in batch:
                self._event_seq = max(self._event_seq, e.seq)
                died = died or (e.to_state == TaskState.DEAD.value and e.at >= since)
            if len(batch) < 1000:
                break
        if not died:
            return []
        return [
            NotifyEvent(
                key=f"{self.swarm_id}:task_dead:{t.id}:{t.updated_at!r}",
                event="task_dead",
                text=f"task {t.id} is dead: {t.last_error or 'no attempts left'}",
                at=t.updated_at,
                epic=t.epic,
                task=t.id,
                agent=t.owner,
            )
            for t in self.store.list_tasks(swarm_id=self.swarm_id)
            if t.state == TaskState.DEAD and t.updated_at >= since
        ]

    def _epics(self, epics: Sequence[str], whole: Mapping[str, int]) -> list[NotifyEvent]:
        todo = [epic for epic in epics if epic not in self._done_epics]
        if not todo:
            return []
        swarm_idle = whole["ready"] == 0 and whole["claimed"] == 0
        found: list[NotifyEvent] = []
        for epic in todo:
            counts = self.store.counts(epic, swarm_id=self.swarm_id)
            if sum(counts.values()) == 0 or counts["ready"] or counts["claimed"]:
                continue
            # Blocked tasks may still be waiting on a dependency of another epic that is running.
            if counts["blocked"] and not swarm_idle:
                continue
            self._done_epics.add(epic)
            parts = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
            found.append(
                NotifyEvent(
                    key=f"{self.swarm_id}:epic_done:{epic}",
                    event="epic_done",
                    text=f"epic {epic} finished: {parts}",
                    at=time.time(),
                    epic=epic,
                )
            )
        return found

    def _task_of(self, agent: str | None) -> str | None:
        if not agent:
            return None
        for record in self.store.list_agents(self.swarm_id):
            if record.id == agent:
                return record.task_id
        return None


_AGENT_AT_START = re.compile(r"^((?:\S+-)?agent-\d+)\b")


def _agent_in(text: str) -> str | None:
    """The agent a monitor escalation is about: its text starts with the agent id."""
    match = _AGENT_AT_START.match(text)
    return match.group(1) if match else None


# ----------------------------------------------------------------------------------------------------
# Delivery


@dataclass
class _Retry:
    attempts: int = 0
    next_at: float = 0.0


class Outbox:
    """Queues a swarm's events for the configured hooks and sends what is due, retrying with backoff."""

    def __init__(self, store: Store, loaded: LoadedConfig, swarm_id: str) -> None:
        self.store = store
        self.settings = loaded.config.notify
        self.repo = loaded.repo
        self.swarm_id = swarm_id
        self.sinks = configured_sinks(self.settings)
        #: The rows this monitor queues are the ones it sends: on a queue several hosts share, every monitor
        #: finds the same events, and the first to queue one sends it, through its own hooks, once.
        self.owner = f"{socket.gethostname()}:{loaded.repo}"
        self.detector = Detector(store, swarm_id)
        self._retries: dict[str, _Retry] = {}
        self._marker: int | None = None
        self._queued: set[str] = set()

    def collect(self) -> int:
        """Queue the events found since the last look; how many rows were new. An idle database (nothing
        committed since the last look) is not scanned: the scan reads threads, the event log and counts."""
        marker = self.store.change_marker()  # before the scan: what commits during it is scanned next time
        if marker == self._marker:
            return 0
        self._marker = marker
        wanted = set(self.settings.events)
        rows = [
            Notification(
                key=f"{sink}:{event.key}",
                swarm_id=self.swarm_id,
                sink=sink,
                event=event.event,
                payload=json.dumps(payload(event, self.swarm_id)),
                owner=self.owner,
            )
            for event in self.detector.scan()
            if event.event in wanted
            for sink in self.sinks
            if f"{sink}:{event.key}" not in self._queued
        ]
        # Keys queued by this monitor are not offered again (an open question is found on every scan): a write
        # that changes nothing would still change the marker and cost another scan.
        new = self.store.queue_notifications(rows)
        self._queued.update(row.key for row in rows)
        return new

    def send_due(self, now: float | None = None) -> tuple[int, float | None]:
        """Send the pending notifications of every hook that is not backing off; (how many were sent, when a
        hook backing off may be tried again).

        Backoff is per hook, not per notification: a hook that failed is not tried again in this pass, so a
        hung webhook costs one timeout per pass however many events wait, and never holds up the other hook."""
        sent = 0
        clock = time.time() if now is None else now
        for item in self.store.pending_notifications(self.owner, limit=1000):
            if item.sink not in self.sinks:
                continue  # a hook of an earlier configuration: it sends it when it is configured again
            retry = self._retries.setdefault(item.sink, _Retry())
            if clock < retry.next_at:
                continue
            try:
                deliver(item.sink, item.payload.encode("utf-8"), self.settings, self.repo)
            except HookFailed as exc:
                retry.attempts += 1
                delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (retry.attempts - 1))
                retry.next_at = clock + delay
                log.warning(
                    "notify: the %s hook did not take %s (attempt %d): %s; trying again in %.0fs",
                    item.sink,
                    item.event,
                    retry.attempts,
                    exc,
                    delay,
                )
                continue
            self.store.mark_notified(item.key)
            retry.attempts, retry.next_at = 0, 0.0
            sent += 1
            log.info("notify: sent %s %s", item.sink, item.event)
        waiting = [r.next_at for r in self._retries.values() if r.next_at > clock]
        return sent, min(waiting) if waiting else None


class Notifier:
    """The monitor's notification thread: it owns its own store connection and never blocks the monitor."""

    def __init__(self, loaded: LoadedConfig, swarm_id: str, *, interval: float) -> None:
        self.loaded = loaded
        self.swarm_id = swarm_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Whether any hook is configured."""
        return bool(configured_sinks(self.loaded.config.notify))

    def start(self) -> None:
        """Start the thread (nothing when no hook is configured)."""
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="swarm-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2 * COMMAND_TIMEOUT_SECONDS) -> None:
        """Stop after one last look, which sends what is due (the epic that just finished), waiting at most
        ``timeout`` for it. What a failing hook did not take stays queued for the next monitor."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from swarm.queue import open_queue  # the store of this thread: connections are not shared across threads

        store: Store | None = None
        try:
            store = open_queue(self.loaded)
            outbox = Outbox(store, self.loaded, self.swarm_id)
            while True:
                stopping = self._stop.is_set()
                soonest = self._tick(outbox)
                if stopping:
                    return
                wait = self.interval if soonest is None else max(0.05, min(self.interval, soonest - time.time()))
                self._stop.wait(wait)
        except Exception:  # the thread must not die silently: the monitor's log says why notifications stopped
            log.exception("notify: the notification thread stopped")
        finally:
            if store is not None:
                store.close()

    def _tick(self, outbox: Outbox) -> float | None:
        try:
            outbox.collect()
            return outbox.send_due()[1]
        except SwarmError as exc:  # the database was busy or away for a moment: the next tick tries again
            log.warning("notify: %s", exc.render())
            return None


__all__ = [
    "NOTIFY_EVENTS",
    "Detector",
    "HookFailed",
    "Notifier",
    "NotifyEvent",
    "Outbox",
    "check_notify",
    "configured_sinks",
    "deliver",
    "payload",
    "resolve_command",
    "sample_event",
    "send_command",
    "send_webhook",
]
