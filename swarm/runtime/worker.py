"""``swarm worker``: the per-agent loop that launch starts inside each tmux session (docs/contract.md §6).

claim -> merge the completed dependencies' commits -> render the prompt -> run the agent command in the
worktree, in its own process group, output to the pane and the log -> heartbeat while it runs -> on exit 0,
once verified (no known failure in its output, a change unless the spec allows none, the verify command
passed: docs/contract.md §3), commit everything as ``<task-id>: <title>`` and complete with the sha, else fail
with the reason or the last lines of output -> next. It stops when the swarm's tasks are finished or when
teardown asks it to.

Nothing is dropped silently: when a lease is lost, a run fails or times out, the agent's partial changes
are stashed (``git stash``) with a message naming the task, so the next task starts clean and the work can
still be recovered; when teardown stops a run (``--now``) the changes stay in the worktree and teardown
commits them as WIP on the agent's branch.

An end that nobody asked for (SIGTERM, SIGHUP from tmux, Ctrl-C in the pane, a crash) gives the task back at
once without spending an attempt, saves the changes under ``refs/swarm/wip/<agent>/<task>``, writes the cause
to the log and the event log, and leaves the agent ``dead`` so that the monitor restarts it. A fault of the
machine rather than of the agent (disk full, a read-only file system or database, a commit git refuses, e.g.
``commit.gpgsign`` without a usable key) does the same but leaves the agent ``paused``: it stops claiming,
``swarm status`` says why, the lead gets one escalation, and ``swarm launch`` resumes it once it is fixed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from swarm.agents import (
    CLAUDE_MCP_OPTION,
    AgentCommand,
    build_command,
    echoes,
    known_failure,
    load_template,
    parse_usage,
    prompt_lines,
    render_prompt,
    tool_output,
)
from swarm.channel_client import channel_path
from swarm.errors import BadInput, LeaseLost, StoreError, SwarmError
from swarm.models import LEAD, AgentState, Claim, Message, Task
from swarm.progress import Progress, format_for
from swarm.runtime import procs, sandbox
from swarm.runtime.channel import ChannelServer, ChannelSpec
from swarm.runtime.git import TASK_REF_PREFIX, GitError, Worktree, open_repo
from swarm.runtime.runfile import AgentRun, process_record_path
from swarm.store import RetryPolicy, Store, StoreOptions, open_store
from swarm.words import all_of, plural, plural_of

log = logging.getLogger(__name__)

#: Lines of agent output kept to explain a failure.
TAIL_LINES = 20
#: How long a killed agent gets between SIGTERM and SIGKILL; also the processes it leaves running when it
#: exits (``nohup cmd &``, ``setsid cmd &``): they are stopped with the task.
KILL_GRACE_SECONDS = 5.0
#: How often a worker walks its agent's process tree while the agent runs, to record what it started.
PROCESS_WATCH_SECONDS = 0.5
#: How long the output reader may take to drain the agent's pipe once every process of the agent is gone.
READER_DRAIN_SECONDS = 10.0
#: Claims pause this long after a rate-limit message that names no reset time.
RATE_LIMIT_BACKOFF_SECONDS = 60.0
#: Shutdown requests and signals travel on the default thread.
CONTROL_THREAD = "team"
#: Do not write "last output" to the database more often than this.
OUTPUT_NOTE_SECONDS = 2.0
#: How often an idle worker looks at the database's change marker (where the backend cannot wake it).
IDLE_POLL_SECONDS = 0.2
#: Each worker adds its new commits to the repository's commit-graph after this many tasks (see
#: ``Worktree.update_commit_graph``); with many agents someone does it every few tasks.
COMMIT_GRAPH_EVERY = 20
#: An idle worker wakes when the database changes, but claims again no sooner than this after an empty claim,
#: doubling with each empty claim up to ``IDLE_BACKOFF_MAX_SECONDS`` (jittered): a hundred idle workers that
#: all claimed on every commit of the others made hundreds of write transactions a second. Together they still
#: look often: with n idle workers at the cap, one of them claims every cap/n seconds on average.
IDLE_BACKOFF_FIRST_SECONDS = 0.2
IDLE_BACKOFF_MAX_SECONDS = 2.0
#: An idle worker checks its worktree fully (git status and friends) this often; a quick look otherwise.
WORKTREE_CHECK_SECONDS = 10.0
#: Tasks returned in a row because git failed before the agent ran, before the worker stops claiming.
MAX_NOT_RUN = 3
#: An idle worker counts the swarm's tasks (a scan of the task table, to know whether the swarm is finished)
#: at most this often, not on every wake-up.
COUNTS_EVERY_SECONDS = 2.0


#: Between two tries to give a task back while the database refuses writes (read-only, disk full).
GIVE_BACK_RETRY_SECONDS = 5.0
#: Messages of faults that are the machine's, not the agent's: a full disk, a read-only file system or
#: database, a commit that git refuses to sign. They pause the agent instead of failing its task.
_HOST_FAULT = re.compile(
    r"(?i)no space left|disk is full|disk full|quota exceeded|read-only file system|readonly database|"
    r"read-only transaction|could not extend file|gpg failed|failed to sign|cannot run gpg|unable to sign"
)


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the worker (teardown's fallback, or tmux killing the session).

    A BaseException, so that no ``except Exception`` on the way mistakes it for a task's failure."""


class HostFault(SwarmError):
    """Something that is not the agent's fault kept the worker from finishing a task (the commit was refused,
    the disk is full): the task goes back without spending an attempt and the agent pauses."""


@dataclass
class RunResult:
    """How one agent run ended."""

    exit_code: int | None = None
    lease_lost: LeaseLost | None = None
    stopped: bool = False
    timed_out: bool = False
    tail: list[str] = field(default_factory=list)
    #: The last lines as a person reads them (an agent's JSON events turned into text); empty: ``tail`` is.
    said: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class Attempt:
    """What the worker knows of one attempt before the agent runs: the task as queued (its ``verify``,
    ``allow_empty`` and ``last_error``), the prompt, and where HEAD was when the agent started."""

    task: Task
    prompt: str
    prompt_file: Path
    start_sha: str


class Worker:
    """One agent's loop over the queue."""

    def __init__(self, run: AgentRun, *, out: IO[bytes] | None = None) -> None:
        self.run = run
        self.out = out or sys.stdout.buffer
        self.store: Store = self._open_store()
        self.repo = open_repo(Path(run.repo))
        # Not opened through repo.worktree(), which refuses a missing or broken worktree: the check before each
        # claim (_worktree_ready) repairs it instead, and nothing runs git in it before that check.
        self.worktree: Worktree = Worktree(Path(run.worktree))
        self.template = load_template(run.kind)
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        run.prompt_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The log is rotated to <agent>.log.1 at run.log_max_bytes (see _emit); the pane and the reader thread
        # both write through _emit, so the lock keeps a rotation from splitting a write.
        self._log_lock = threading.Lock()
        self.logfile: IO[bytes] = run.log_path.open("ab", buffering=0)
        self._log_size = os.fstat(self.logfile.fileno()).st_size
        # An agent whose CLI prints JSON events (Claude Code's stream-json, codex's --json) shows readable lines
        # in the pane and the log; its raw events go to <agent>.jsonl, opened at the first one (see _keep_event).
        self._output_format = format_for(self.template.kind)
        self._events_path = run.log_path.with_suffix(".jsonl")
        self._events: IO[bytes] | None = None
        self._events_size = 0
        # The agent's last readable line, waiting for its turn to be written as last_output (see _note_output).
        self._note_lock = threading.Lock()
        self._note_pending: str | None = None
        self._note_last = 0.0
        self._state: str | None = None
        self._terminated = False
        self._signalled = False  # Terminated was raised once; later signals only set _terminated
        self._signal_name = "SIGTERM"
        self._stop: str | None = None
        self._stop_marker: int | None = None
        self._stop_request: Message | None = None
        # Shutdown requests sent before this worker started (an earlier teardown) are not for it.
        self._control_after = self.store.thread_tail(CONTROL_THREAD)
        self._outcome = "not started"
        self._current: Claim | None = None
        self._rate_patterns = [re.compile(p) for p in self.template.rate_limit_patterns]
        self._failure_patterns = [re.compile(p) for p in self.template.failure_patterns]
        # Spread the workers' commit-graph writes: they start together.
        self._graph_countdown = random.randint(1, COMMIT_GRAPH_EVERY)
        self._empty_claims = 0
        self._next_counts = 0.0
        self._next_full_check = 0.0
        self._not_run = 0
        self._final_detail: str | None = None
        # What the running agent's output reported so far (parse_usage, filled by the reader thread), and the
        # session id already recorded with its task: the conversation an interrupted attempt leaves for the next.
        self._usage: dict[str, Any] = {}
        self._session_noted: str | None = None
        # [agent] keep_context: the conversation of this agent's last run, which its next task continues.
        self._context: str | None = None
        #: The agent's channel (docs/contract.md §7), served while the loop runs.
        self.channel_path = channel_path(Path(run.repo), run.agent_id)
        self._channel: ChannelServer | None = None

    def _open_store(self) -> Store:
        # The configured retry backoff travels in the run file: a task this worker fails waits it out.
        policy = RetryPolicy(self.run.retry_backoff_seconds, self.run.retry_backoff_max_seconds)
        return open_store(self.run.database_url, StoreOptions(retry=policy))

    # -- output ----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A line of the worker's own, to the pane and the log, and as the agent's last output."""
        line = f"[swarm {datetime.now().strftime('%H:%M:%S')}] {self.run.agent_id}: {text}\n".encode()
        self._emit(line)
        with contextlib.suppress(SwarmError):
            self.store.update_agent(self.run.agent_id, last_output=text[:200], last_output_at=time.time())

    def _emit(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.out.write(data)
            self.out.flush()
        with self._log_lock, contextlib.suppress(OSError, ValueError):
            if self._log_size and self._log_size + len(data) > self.run.log_max_bytes:
                self.logfile = _rotate_log(self.logfile, self.run.log_path)
                self._log_size = 0
            self.logfile.write(data)
            self._log_size += len(data)

    def _keep_event(self, raw: bytes) -> None:
        """One raw JSON event of the agent, as it printed it, to ``<agent>.jsonl`` (rotated like the log)."""
        data = raw if raw.endswith(b"\n") else raw + b"\n"
        with self._log_lock, contextlib.suppress(OSError, ValueError):
            if self._events is None:
                self._events = self._events_path.open("ab", buffering=0)
                self._events_size = os.fstat(self._events.fileno()).st_size
            if self._events_size and self._events_size + len(data) > self.run.log_max_bytes:
                self._events = _rotate_log(self._events, self._events_path)
                self._events_size = 0
            self._events.write(data)
            self._events_size += len(data)

    def _set_state(self, state: AgentState, task_id: str | None = None, detail: str | None = None) -> bool:
        # Written once per change, never repeatedly: returns whether this was a change.
        key = f"{state}|{task_id}|{detail}"
        if key == self._state:
            return False
        self._state = key
        self.store.update_agent(self.run.agent_id, state=state.value, task_id=task_id, detail=detail)
        return True

    def _signal(self, name: str, body: str) -> None:
        """A signal.* entry to the lead (once per state change; --hide-signals hides them)."""
        with contextlib.suppress(SwarmError):
            self.store.append_message(CONTROL_THREAD, self.run.agent_id, f"signal.{name}", body, recipient=LEAD)

    # -- loop ------------------------------------------------------------------------------------
    def stop_mode(self) -> str | None:
        """``finish`` or ``now`` once a shutdown_request for this agent (or everyone) arrived, or the swarm's
        stop flag is set; None otherwise. Looks only when the database changed since the last look."""
        if self._stop is not None:
            return self._stop
        marker = self.store.change_marker()
        if marker == self._stop_marker:
            return None
        self._stop_marker = marker
        request = self.store.next_message_for(
            CONTROL_THREAD, self.run.agent_id, after=self._control_after, type_="shutdown_request"
        )
        if request is not None:
            self._stop_request = request
            self._stop = "now" if request.body.strip().lower() == "now" else "finish"
        else:
            self._stop = self.store.get_swarm(self.run.swarm_id).stop_mode
        return self._stop

    def _answer_shutdown(self, outcome: str) -> None:
        request = self._stop_request
        if request is None:
            return
        with contextlib.suppress(SwarmError):
            self.store.append_message(
                CONTROL_THREAD,
                self.run.agent_id,
                "shutdown_response",
                outcome,
                recipient=request.author,
                reply_to=request.seq,
            )

    def loop(self) -> int:
        """Work until the swarm is finished or asked to stop. Returns the process exit code."""
        self._install_signals()
        run = self.run
        self.store.update_agent(run.agent_id, pid=os.getpid(), agent_pid=None, state=AgentState.STARTING.value)
        # The swarm's id opens each run in the log, which every swarm's agent of this id shares (swarm logs --swarm).
        self.say(f"started in {run.worktree} on branch {run.branch} (swarm {run.swarm_id})")
        final = AgentState.STOPPED
        try:
            self._channel = self._serve_channel()
            final = self._claim_loop()
        except (Terminated, KeyboardInterrupt) as exc:
            name = str(exc) or "SIGINT"
            final = self._interrupted(f"terminated by {name}")
        except Exception as exc:  # a bug, or a failure nobody foresaw: the task must not wait out its lease
            self._signalled = True  # first: a signal now must not cut the clean-up short
            self._emit("".join(traceback.format_exception(exc)).encode("utf-8", "replace"))
            final = self._interrupted(f"crashed: {type(exc).__name__}: {exc}")
        finally:
            self._record_end(final)
        return 0 if final in (AgentState.DONE, AgentState.STOPPED) else 1

    def _serve_channel(self) -> ChannelServer:
        """Start serving the agent's channel: its processes (and only they, docs/contract.md §7) write through
        it as this agent, with the lease the worker holds for the task in hand."""
        run = self.run
        me = procs.identify(os.getpid())
        assert me is not None  # this very process
        spec = ChannelSpec(
            path=self.channel_path,
            agent_id=run.agent_id,
            swarm_id=run.swarm_id,
            capabilities=tuple(run.capabilities),
            lease_ttl_seconds=run.lease_ttl_seconds,
            owner=me,
            open_store=self._open_store,
            lease_for=self._lease_for,
        )
        return ChannelServer(spec).start()

    def _lease_for(self, task_id: str) -> str | None:
        """The lease token of the task in hand, for the agent's heartbeats and releases over its channel."""
        current = self._current
        return current.lease_token if current is not None and current.task_id == task_id else None

    def _claim_loop(self) -> AgentState:
        """Claim and work tasks one after the other; the agent's state once there is nothing more to do here."""
        while True:
            if self._stop_before_claim():
                return AgentState.STOPPED
            if self._wait_while_claims_paused():
                continue
            if not self._worktree_ready():
                return AgentState.FAILED
            claim = self._claim()
            if claim is None:
                if self._swarm_finished():
                    return AgentState.DONE
                self._idle_backoff()
                continue
            final = self._work_claimed(claim)
            if final is not None:
                return final

    def _stop_before_claim(self) -> bool:
        """Whether a stop was requested; then it is answered (no task in hand)."""
        mode = self.stop_mode()
        if mode is None:
            return False
        self.say(f"stop requested ({mode}); exiting")
        self._answer_shutdown(f"stopped ({mode}); no task in hand")
        return True

    def _wait_while_claims_paused(self) -> bool:
        """A provider said "slow down": nobody in the swarm claims until the stated reset. Whether claims are
        paused (then this waited a little, or until the database changed)."""
        run = self.run
        paused_until, reason = self.store.claims_paused(run.swarm_id)
        if time.time() >= paused_until:
            return False
        until = datetime.fromtimestamp(paused_until).strftime("%H:%M:%S")
        if self._set_state(AgentState.IDLE, detail=f"claims paused until {until}: {reason}"):
            self.say(f"claims paused until {until} ({reason})")
        self._wait_for_change(min(run.idle_poll_seconds, max(0.1, paused_until - time.time())))
        return True

    def _claim(self) -> Claim | None:
        """The next task this agent may work, leased to it; None when there is none (counted as empty)."""
        run = self.run
        claim = self.store.claim(
            run.agent_id, run.capabilities, ttl_seconds=run.lease_ttl_seconds, host=run.host, swarm_id=run.swarm_id
        )
        self._empty_claims = 0 if claim is not None else self._empty_claims + 1
        return claim

    def _swarm_finished(self) -> bool:
        """After an empty claim: whether the swarm has nothing left that anyone could work (then this says so).
        The first empty claim after a task always counts the tasks (the idle signal says why); later ones only
        every few seconds: whether the swarm is finished can wait that long."""
        now = time.monotonic()
        if self._empty_claims != 1 and now < self._next_counts:
            return False
        self._next_counts = now + COUNTS_EVERY_SECONDS * random.uniform(0.75, 1.25)
        counts = self.store.counts(swarm_id=self.run.swarm_id)
        if counts["ready"] == 0 and counts["claimed"] == 0:
            # "done" is recorded before one last count: a launch adding an epic now either sees this worker
            # done (and restarts it once it exited) or its tasks are in that count (launcher._finished_sessions).
            self._set_state(AgentState.DONE)
            counts = self.store.counts(swarm_id=self.run.swarm_id)
            if counts["ready"] or counts["claimed"]:
                self._set_state(AgentState.IDLE)
                return False
            self.say(self._finished_text(counts))
            return True
        if self._set_state(AgentState.IDLE):
            self._signal("idle", f"nothing to claim: {counts['ready']} ready, {counts['claimed']} claimed")
        return False

    def _idle_backoff(self) -> None:
        """Wait for the database to change, no sooner than the (jittered, doubling) backoff of empty claims."""
        poll = self.run.idle_poll_seconds
        backoff = IDLE_BACKOFF_FIRST_SECONDS * 2 ** min(self._empty_claims - 1, 8)
        backoff = min(backoff, IDLE_BACKOFF_MAX_SECONDS, poll)
        self._wait_for_change(poll, not_before=backoff * random.uniform(0.5, 1.0))

    def _work_claimed(self, claim: Claim) -> AgentState | None:
        """Work one claimed task; the agent's final state when the worker must stop after it, else None."""
        # Until the task is released, an end of this worker gives it back (see the handlers in loop).
        self._current = claim
        try:
            self.work(claim)
        except SwarmError as exc:
            fault = _host_fault(exc)
            if fault is not None:
                self._pause(claim, fault)
                return AgentState.PAUSED
            # A git or agent-setup failure fails this task, not the worker: the next task may be fine.
            self.say(f"{claim.task_id}: {exc.render()}")
            self._release_failed(claim, exc.render()[:2000], RunResult())
        except OSError as exc:
            # The worker's own files (prompts, the log, .swarm/) cannot be written: the machine's fault.
            self._pause(claim, _os_error_text(exc))
            return AgentState.PAUSED
        self._current = None
        if self.stop_mode() is not None:
            self.say("stop requested; exiting after this task")
            self._answer_shutdown(f"stopped after {claim.task_id} ({self._outcome})")
            return AgentState.STOPPED
        return None

    def _record_end(self, final: AgentState) -> None:
        """The worker's last word: its final state in the database; then the database and the log are closed."""
        fields: dict[str, Any] = {"state": final.value, "task_id": None, "agent_pid": None}
        if self._final_detail is not None:
            fields["detail"] = self._final_detail
        with contextlib.suppress(Exception):
            self.store.update_agent(self.run.agent_id, **fields)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                self._channel.close()
        with contextlib.suppress(Exception):
            self.store.close()
        self.logfile.close()
        if self._events is not None:
            self._events.close()

    def _interrupted(self, cause: str) -> AgentState:
        """The worker ends without having been asked to: give the task back (no attempt spent), keep its work,
        and say whether the monitor should restart this agent (``dead``) or teardown asked for it (``stopped``).
        """
        self._signalled = True  # a second signal during this clean-up must not cut it short
        # The interrupted call may have left the connection in the middle of something: use a fresh one.
        with contextlib.suppress(Exception):
            self.store.close()
        try:
            self.store = self._open_store()
        except SwarmError as exc:
            self.say(f"{cause}; cannot reach the database to give the task back ({exc.render()})")
            self._final_detail = f"{cause}; the database could not be reached"
            return AgentState.DEAD
        claim = self._current
        task = claim.task_id if claim else None
        self.say(f"{cause}{f' while working on {task}' if task else ''}")
        if claim is not None:
            with contextlib.suppress(SwarmError):
                self._note_session(claim)  # before the task goes back: the lease still holds it
        self._give_back(claim, f"worker {cause} (not the agent's fault: no attempt spent)")
        if claim is not None:
            self._save_wip(claim)
        self._stop = None
        self._stop_marker = None
        try:
            requested = self.stop_mode() is not None
        except SwarmError:
            requested = False
        if requested:
            self._answer_shutdown(f"stopped ({cause}){f'; returned {task}' if task else ''}")
            return AgentState.STOPPED
        self._final_detail = f"{cause}{f'; {task} went back to the queue' if task else ''}"
        self.say("not a requested stop: the monitor restarts this agent")
        return AgentState.DEAD

    def _give_back(self, claim: Claim | None, reason: str, *, retry: bool = False) -> bool:
        """Return the task in hand without spending an attempt, by its lease token; without a claim, return
        whatever this agent holds (a signal between the claim and its bookkeeping). ``retry``: keep trying
        while the database refuses (read-only, full), until it takes it or a signal ends the worker."""
        agent = self.run.agent_id
        while True:
            try:
                if claim is None:
                    returned = self.store.return_claims([agent], actor=agent, reason=reason)
                    if returned:
                        self.say(f"returned {', '.join(returned)} to the queue (no attempt spent)")
                else:
                    self.store.return_task(claim.task_id, agent, claim.lease_token, reason)
                    self.say(f"returned {claim.task_id} to the queue (no attempt spent)")
                self._current = None
                return True
            except LeaseLost as exc:
                self.say(exc.render())
                self._current = None
                return False
            except SwarmError as exc:
                if not retry:
                    self.say(f"cannot give {claim.task_id if claim else 'the task'} back: {exc.render()}")
                    return False
                self.say(
                    f"cannot give the task back yet ({exc.render()}); trying again in {GIVE_BACK_RETRY_SECONDS:.0f}s"
                )
                self._sleep(GIVE_BACK_RETRY_SECONDS)

    def _sleep(self, seconds: float) -> None:
        """Sleep in short slices; a termination ends it."""
        deadline = time.monotonic() + seconds
        while not self._terminated and time.monotonic() < deadline:
            time.sleep(min(IDLE_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if self._terminated:
            raise Terminated(self._signal_name)

    def _pause(self, claim: Claim, cause: str) -> None:
        """A fault of the machine, not of the agent: keep the work, give the task back without spending an
        attempt, stop claiming, say why in status, and tell the lead once."""
        run = self.run
        self.say(f"{claim.task_id}: {cause}")
        self.say("this is not the agent's fault: pausing this agent instead of failing the task")
        saved = self._save_wip(claim)
        self._give_back(claim, f"{cause} (not the agent's fault: no attempt spent; {run.agent_id} paused)", retry=True)
        kept = f"; its work is saved as {saved}" if saved else ""
        self._final_detail = (f"paused: {cause}{kept}; fix it, then 'swarm launch {run.epic}' resumes this agent")[
            :1000
        ]
        self.say(self._final_detail)
        with contextlib.suppress(SwarmError):
            if self.store.record_incident(run.swarm_id, f"{run.agent_id}:paused:{claim.task_id}"):
                self.store.append_message(
                    CONTROL_THREAD,
                    run.agent_id,
                    "escalation",
                    f"{run.agent_id} paused on {claim.task_id}: {cause}{kept}; {claim.task_id} went back to the "
                    f"queue without spending an attempt. Fix it, then run 'swarm launch {run.epic}' to resume.",
                    recipient=LEAD,
                )

    @staticmethod
    def _finished_text(counts: dict[str, int]) -> str:
        stuck = counts["blocked"] + counts["dead"]
        cancelled = counts.get("cancelled", 0)
        if stuck:
            return (
                f"nothing left to do: {counts['done']} done, {counts['dead']} dead, "
                f"{counts['blocked']} blocked behind them"
                f"{f', {cancelled} cancelled' if cancelled else ''}; exiting"
            )
        if cancelled:
            return f"nothing left to do: {counts['done']} done, {cancelled} cancelled; exiting"
        return f"{all_of(counts['done'], 'task')} of the swarm {plural_of('is', counts['done'])} done; exiting"

    def _wait_for_change(self, seconds: float, *, not_before: float = 0.0) -> None:
        """Return when the database changed (but not before ``not_before`` seconds), or after ``seconds``."""
        # The store's change marker: SQLite's PRAGMA data_version polled every 0.2 s (no writes, no busy loop on
        # the file); PostgreSQL wakes at once on a notification. Slices of 0.2 s notice a termination too.
        marker = self.store.change_marker()
        started = time.monotonic()
        deadline = started + seconds
        while not self._terminated:
            now = time.monotonic()
            if now >= deadline:
                break
            if now - started < not_before:
                time.sleep(min(IDLE_POLL_SECONDS, started + not_before - now))
                continue
            if (
                self.store.wait_for_change(
                    marker, min(IDLE_POLL_SECONDS, deadline - now), first=IDLE_POLL_SECONDS, most=IDLE_POLL_SECONDS
                )
                != marker
            ):
                return
        if self._terminated:
            raise Terminated(self._signal_name)

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self._terminated = True
            self._signal_name = signal.Signals(signum).name
            if self._signalled:
                return  # already ending: let the clean-up (give the task back) run to its end
            self._signalled = True
            raise Terminated(self._signal_name)

        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): only the main thread may own signal handlers
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)

    # -- one task --------------------------------------------------------------------------------
    def work(self, claim: Claim) -> None:
        """Do one claimed task from merge to release.

        ``_current`` stays set when this raises: whoever handles the exception still knows which task (and
        lease) to give back. It is cleared once the task is released."""
        self._current = claim
        self._work(claim)
        self._current = None

    def _work(self, claim: Claim) -> None:
        self._usage, self._session_noted = {}, None  # an interruption before the run must not record the last one's
        self._set_state(AgentState.WORKING, claim.task_id)
        self.say(f"claimed {claim.task_id} (attempt {claim.attempt}): {claim.title}")
        # The claim carries what the agent needs; the task row also has its verify, allow_empty and last error.
        task = self.store.get_task(claim.task_id)
        resume, interrupted = self._session_to_resume(task)
        if not self._clear_leftovers(claim):
            return
        deps = [self.store.get_task(dep) for dep in claim.depends_on]
        if not self._merge_dependencies(claim, deps):
            return
        try:
            start_sha = self.worktree.head_sha()  # after the merge: merging the dependencies is not the agent's work
        except GitError as exc:
            self._return_not_run(claim, exc)
            return
        previous = task.last_error if claim.attempt > 1 else None
        prompt, prompt_file = self._write_prompt(claim, deps, previous, interrupted=interrupted)
        self._not_run = 0
        result = self.run_agent(claim, prompt, prompt_file, resume=resume)
        self.finish(claim, result, Attempt(task, prompt, prompt_file, start_sha))

    def _session_to_resume(self, task: Task) -> tuple[str | None, bool]:
        """The conversation this attempt continues, and whether it is an interrupted attempt's: the one an
        interrupted attempt of this agent left (a failed attempt clears it in the store); else, with ``[agent]
        keep_context``, this agent's last one; else None (a fresh start). Only for a CLI that can resume, and only
        the agent that had it: a CLI keeps its conversations per machine, user and working folder."""
        if not self.template.resume_args:
            return None, False
        if task.session_id and task.session_agent == self.run.agent_id:
            self.say(f"{task.id}: resuming the interrupted conversation {task.session_id}")
            return task.session_id, True
        if self.run.keep_context and self._context:
            self.say(f"{task.id}: continuing this agent's conversation {self._context} (keep_context)")
            return self._context, False
        return None, False

    def _note_session(self, claim: Claim) -> None:
        """Record with the task the session id the agent's output reported, once per id; a lost lease is not this
        call's to report (the heartbeat does)."""
        session = self._usage.get("session_id")
        if not isinstance(session, str) or session == self._session_noted:
            return
        try:
            self.store.record_session(claim.task_id, self.run.agent_id, claim.lease_token, session)
        except SwarmError:  # a lost lease, a busy or gone database: the heartbeat reports those; try again later
            return
        self._session_noted = session

    def _clear_leftovers(self, claim: Claim) -> bool:
        """Stash changes left in the worktree by a run that crashed with the worker: kept, but not leaked into
        this task. False when git failed (the task went back without running)."""
        try:
            if self.worktree.has_changes():
                self._stash(claim, "leftovers", label=self._leftovers_label(claim))
        except GitError as exc:
            self._return_not_run(claim, exc)
            return False
        return True

    def _merge_dependencies(self, claim: Claim, deps: list[Task]) -> bool:
        """Merge the commits of the task's finished dependencies into the worktree. False when the task was
        released instead (a git failure returns it, a conflict fails it)."""
        commits = [(d.id, d.commit) for d in deps if d.commit]
        refs = [sha for _, sha in commits]
        if self.run.push_remote:
            # Dependencies done on other machines: fetch the commits this object store lacks. On one host every
            # commit is here already, so the check (a git process per dependency) is made only if a merge
            # cannot find one, to explain why.
            self._fetch_missing(commits)
        if not refs:
            return True
        try:
            # The worktree was checked (and made) clean just before: merge need not ask git again.
            merged = self.worktree.merge(
                refs, f"Merge dependencies of {claim.task_id}: {', '.join(claim.depends_on)}", known_clean=True
            )
        except BadInput:
            self._fetch_missing(commits)  # raises the explanation when a commit is missing
            raise
        except GitError as exc:
            self._return_not_run(claim, exc)
            return False
        if not merged.ok:
            reason = f"merge conflict bringing in {merged.ref}: {', '.join(merged.conflicts) or merged.detail}"
            self.say(f"{claim.task_id}: {reason}; failing the task")
            self._release_failed(claim, reason, RunResult())
            return False
        return True

    def _write_prompt(
        self, claim: Claim, deps: list[Task], previous_failure: str | None, *, interrupted: bool = False
    ) -> tuple[str, Path]:
        """Render the task's prompt (with why the previous attempt failed, if it did; that it was interrupted, when
        this run resumes it) and write it (0600) to the agent's prompt folder; the text and the file."""
        run = self.run
        prompt = render_prompt(
            task_id=claim.task_id,
            title=claim.title,
            body=claim.prompt,
            epic=claim.epic,
            attempt=claim.attempt,
            dependencies=[(d.id, d.title, d.commit) for d in deps],
            agent_id=run.agent_id,
            worktree=Path(run.worktree),
            branch=run.branch,
            previous_failure=previous_failure,
            interrupted=interrupted,
        )
        prompt_file = run.prompt_dir / f"{claim.task_id}-{claim.attempt}.md"
        fd = os.open(prompt_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(prompt)
        return prompt, prompt_file

    def _fetch_missing(self, commits: list[tuple[str, str]]) -> None:
        """Dependencies done on another machine: their commits come from the shared remote."""
        missing = [(task_id, sha) for task_id, sha in commits if not self.worktree.has_commit(sha)]
        if not missing:
            return
        if not self.run.push_remote:
            raise SwarmError(
                f"the commits of {', '.join(t for t, _ in missing)} are not in this repository",
                hint="they were made on another machine; give the swarm a shared remote (swarm.remote)",
            )
        self.say(f"fetching {', '.join(t for t, _ in missing)} from {self.run.push_remote}")
        self.worktree.fetch(self.run.push_remote, [f"+{_task_ref(t)}:{_task_ref(t)}" for t, _ in missing])

    def agent_env(self, claim: Claim, prompt_file: Path) -> dict[str, str]:
        """docs/contract.md §6: the launching environment plus the swarm's variables; ``swarm`` on PATH."""
        run = self.run
        env = dict(run.env)
        bin_dirs = [str(Path(sys.executable).parent)]
        found = shutil.which("swarm")
        if found:
            bin_dirs.append(str(Path(found).parent))
        env["PATH"] = os.pathsep.join([*dict.fromkeys(bin_dirs), env.get("PATH", os.defpath)])
        env.update(
            {
                "SWARM_ID": run.swarm_id,
                "SWARM_AGENT_ID": run.agent_id,
                # The channel is the agent's identity and its only way to the queue and the threads: no
                # token, lease token or database URL that another agent could copy (docs/contract.md §7).
                "SWARM_CHANNEL": str(self.channel_path),
                "SWARM_TASK_ID": claim.task_id,
                "SWARM_PROMPT_FILE": str(prompt_file),
                "SWARM_WORKTREE": run.worktree,
                "SWARM_EPIC": claim.epic,  # the task's: a swarm works several epics
                "SWARM_ATTEMPT": str(claim.attempt),
            }
        )
        if run.tmux_socket:
            env["SWARM_TMUX_SOCKET"] = run.tmux_socket
        return env

    def write_mcp_config(self, env: dict[str, str]) -> Path:
        """Give Claude Code the ``swarm`` MCP server: ``<worktree>/.swarm/mcp.json`` (0600, never committed:
        launch excludes ``/.swarm/`` in every worktree). The server talks to this worker over the agent's channel."""
        path = Path(self.run.worktree) / ".swarm" / "mcp.json"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = {k: env[k] for k in ("SWARM_ID", "SWARM_AGENT_ID", "SWARM_CHANNEL") if k in env}
        config = {
            "mcpServers": {
                "swarm": {"type": "stdio", "command": sys.executable, "args": ["-m", "swarm", "mcp"], "env": identity}
            }
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2)
        return path

    def run_agent(self, claim: Claim, prompt: str, prompt_file: Path, *, resume: str | None = None) -> RunResult:
        """Run the agent command for one task (continuing the conversation ``resume``, if given), heartbeating,
        watching for stop requests and the timeout, and recording the run's session id with the task."""
        run = self.run
        command, env = self._agent_command(claim, prompt_file, resume=resume)
        record = process_record_path(Path(run.repo), run.agent_id)
        # A worker killed by SIGKILL could not stop what its agent left running; it recorded it.
        _stop_leftovers(record, self.say)
        # Every process the agent starts, however it detaches, is found (and recorded) while it runs and
        # stopped when the run ends; as a subreaper (run_worker) the worker even gets the agent's orphans.
        watch = procs.AgentProcesses(record=record, adopt=procs.is_subreaper())
        try:
            proc = subprocess.Popen(  # argv from the agent template, never a shell string
                command.argv,
                cwd=run.worktree,
                env=env,
                stdin=subprocess.PIPE if command.stdin_prompt else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we can stop all of it, and only it
            )
        except OSError as exc:
            return RunResult(exit_code=127, tail=[f"cannot start {command.argv[0]}: {exc.strerror}"])
        result = RunResult()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        said: deque[str] = deque(maxlen=TAIL_LINES)
        usage: dict[str, Any] = {}
        self._usage, self._session_noted = usage, resume
        reader = threading.Thread(target=self._pump, args=(proc, tail, said, usage, prompt_lines(prompt)), daemon=True)
        self._watch_run(claim, proc, watch, result, reader, prompt if command.stdin_prompt else None)
        self._note_session(claim)
        if isinstance(usage.get("session_id"), str):
            self._context = usage["session_id"]
        result.exit_code = proc.returncode
        result.tail = list(tail)
        result.said = list(said)
        result.cost_usd = usage.get("cost_usd")
        result.tokens = usage.get("tokens")
        return result

    def _agent_command(
        self, claim: Claim, prompt_file: Path, *, resume: str | None = None
    ) -> tuple[AgentCommand, dict[str, str]]:
        """The agent's argv and environment for ``claim`` (resuming the conversation ``resume``); Claude Code also
        gets the ``swarm`` MCP server."""
        run = self.run
        command = build_command(
            self.template,
            model=run.model,
            permission_mode=run.permission_mode,
            prompt_file=prompt_file,
            worktree=Path(run.worktree),
            task_id=claim.task_id,
            command=run.command,
            session_id=resume,
        )
        env = self.agent_env(claim, prompt_file)
        env.update(command.env)
        if self.template.kind == "claude":
            command.argv.extend([CLAUDE_MCP_OPTION, str(self.write_mcp_config(env))])
        if run.sandbox == "bwrap":
            command.argv[:] = self._sandboxed(command.argv, env)
        return command, env

    def _sandboxed(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """``argv`` inside the agent's bubblewrap sandbox (docs/contract.md §6); BadInput when a configured path
        went missing since launch (the task fails saying so)."""
        run = self.run
        spec = sandbox.plan(
            repo=Path(run.repo),
            worktree=Path(run.worktree),
            prompt_dir=run.prompt_dir,
            env=env,
            network=run.sandbox_network,
            home_setting=run.sandbox_home,
            extra=run.sandbox_paths,
        )
        # The launching shell's TMPDIR is not in the sandbox; its own /tmp is. SWARM_SANDBOX tells the agent's CLI
        # it is sandboxed already (the codex template turns codex's own sandbox off, which cannot nest).
        env["TMPDIR"] = "/tmp"
        env["SWARM_SANDBOX"] = "bwrap"
        return sandbox.bwrap_argv(spec, argv, bwrap=shutil.which("bwrap", path=env.get("PATH")) or "bwrap")

    def _supervise(
        self, claim: Claim, proc: subprocess.Popen[bytes], watch: procs.AgentProcesses, result: RunResult
    ) -> None:
        """While the agent runs: record its processes, heartbeat the lease, and stop it when the lease is lost,
        teardown asks for a stop now, or the task's time is up (each said in ``result``)."""
        run = self.run
        started = time.monotonic()
        limit = float(claim.timeout_seconds or run.task_timeout_seconds)  # a spec's own timeout wins
        next_beat = started + run.heartbeat_seconds
        next_stop_check = started + run.stop_poll_seconds
        next_watch = started + PROCESS_WATCH_SECONDS
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
            now = time.monotonic()
            if now >= next_watch:
                next_watch = now + PROCESS_WATCH_SECONDS
                watch.poll()
                self._note_output()
                self._note_session(claim)  # now, not at the end: a worker killed mid-run leaves it too
            if now >= next_beat:
                next_beat = now + run.heartbeat_seconds
                if not self._heartbeat(claim, result):
                    self._kill(proc)
                    break
            if now >= next_stop_check:
                next_stop_check = now + run.stop_poll_seconds
                if self.stop_mode() == "now":
                    result.stopped = True
                    self.say(f"stop requested (now): stopping the agent on {claim.task_id}")
                    self._kill(proc)
                    break
            if now - started > limit:
                result.timed_out = True
                self.say(f"{claim.task_id} timed out after {limit:.0f}s; stopping the agent")
                self._kill(proc)
                break

    def _heartbeat(self, claim: Claim, result: RunResult) -> bool:
        """Renew the task's lease (and this agent's last_seen: other hosts judge us by it); False when the lease
        is lost, which ``result`` then says."""
        run = self.run
        try:
            self.store.heartbeat(claim.task_id, run.agent_id, claim.lease_token, ttl_seconds=run.lease_ttl_seconds)
            self.store.update_agent(run.agent_id)
        except LeaseLost as exc:
            result.lease_lost = exc
            self.say(f"{exc.render()}; stopping the agent")
            return False
        return True

    def _watch_run(
        self,
        claim: Claim,
        proc: subprocess.Popen[bytes],
        watch: procs.AgentProcesses,
        result: RunResult,
        reader: threading.Thread,
        feed: str | None = None,
    ) -> None:
        """From the moment ``proc`` exists until it is gone: watch its processes, record its pid, read its output
        (``reader``), write ``feed`` to its stdin, supervise it. A signal at any point of that (even while the pid
        is being recorded) stops it and what it detached before the worker goes on."""
        try:
            watch.attach(proc.pid)
            self.store.update_agent(self.run.agent_id, agent_pid=proc.pid)  # first: status and the monitor look
            reader.start()
            if feed is not None:
                threading.Thread(target=_feed, args=(proc, feed), daemon=True).start()
            self._supervise(claim, proc, watch, result)
        except Terminated:
            self._kill(proc)
            raise
        finally:
            self._end_run(proc, watch, reader)

    def _end_run(self, proc: subprocess.Popen[bytes], watch: procs.AgentProcesses, reader: threading.Thread) -> None:
        """However the run ended: nothing of the agent is left running, and its output is read to the end (when
        the reader was started)."""
        if proc.poll() is None:
            self._kill(proc)
        # What the agent left running (background jobs, daemons) ends with its task; then nothing holds
        # the agent's output pipe open, and the reader sees its end at once.
        _stop_agent_processes(watch, self.say)
        if reader.ident is not None:
            reader.join(timeout=READER_DRAIN_SECONDS)
        if reader.is_alive():
            self.say("the agent's output is still held open by a process swarm cannot see; not waiting for it")
        self.store.update_agent(self.run.agent_id, agent_pid=None)

    def _pump(
        self,
        proc: subprocess.Popen[bytes],
        tail: deque[str],
        said: deque[str],
        usage: dict[str, Any],
        prompt: frozenset[str],
    ) -> None:
        """Copy the agent's output to the pane and the log, its JSON events as readable lines (the raw events to
        ``<agent>.jsonl``); keep the tail; note progress, cost, rate limits (not in the lines that echo the
        ``prompt``, :func:`swarm.agents.prompt_lines`).

        Cost, tokens, rate limits and the template's ``failure_patterns`` (through ``tail``) see the raw lines,
        as the CLI printed them: the templates' patterns and usage formats are written for those. ``said`` and
        ``last_output`` get the readable lines."""
        assert proc.stdout is not None
        progress = Progress(self._output_format)  # one per run: what it remembers (paths, commands) is the run's
        for raw in iter(proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").strip()
            if progress.event(text) is None:
                self._emit(raw)  # plain text passes through byte for byte
                shown = [text] if text else []
            else:
                self._keep_event(raw)
                shown = [line for line in progress.feed(text) if line.strip()]
                if shown:
                    self._emit("".join(f"{line}\n" for line in shown).encode("utf-8", "replace"))
            if not text:
                continue
            tail.append(text)
            said.extend(shown)
            parse_usage(self.template.usage, text, usage)
            # A spec about rate limiting printed back, or a file about it the agent read, is not the provider.
            if not echoes(text, prompt) and not tool_output(self.template.usage, text):
                self._watch_rate_limit(text)
            if not shown:
                continue  # an event that says nothing to a person leaves the last output as it was
            with self._note_lock:
                self._note_pending = shown[-1].strip()
            self._note_output()
        self._note_output(force=True)

    def _note_output(self, *, force: bool = False) -> None:
        """The agent's last readable line as its ``last_output``, at most every ``OUTPUT_NOTE_SECONDS``: progress
        shows in status without a database write per output line. Called by the reader with each line and by the
        supervising loop, so that the line before a quiet spell (a long test run) shows during it, not after."""
        with self._note_lock:
            now = time.monotonic()
            text = self._note_pending
            if text is None or not (force or now - self._note_last >= OUTPUT_NOTE_SECONDS):
                return
            self._note_pending, self._note_last = None, now
        with contextlib.suppress(SwarmError):
            self.store.update_agent(self.run.agent_id, last_output=text[-200:], last_output_at=time.time())

    def _watch_rate_limit(self, text: str) -> None:
        """A provider rate-limit message pauses the swarm's claims until its stated reset (or a backoff)."""
        if not self._rate_patterns or not any(p.search(text) for p in self._rate_patterns):
            return
        wait = _reset_seconds(text) or RATE_LIMIT_BACKOFF_SECONDS
        with contextlib.suppress(SwarmError):
            self.store.pause_claims(self.run.swarm_id, time.time() + wait, f"rate limit seen by {self.run.agent_id}")
            self._signal("rate_limited", f"claims paused for {wait:.0f}s: {text[:200]}")

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        # The agent leads its own process group: TERM the group, give it the grace period, then KILL whatever
        # of the group is left. (What left the group is stopped after this, by _stop_agent_processes.)
        procs.signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.say("the agent ignored SIGTERM; killing it")
        procs.signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    # -- the worktree --------------------------------------------------------------------------
    def _worktree_ready(self) -> bool:
        """Before each claim: check the worktree and repair it; False (the agent is failed, the reason in its
        detail) when it cannot be repaired. A quick look without git while idle; a full check after a task,
        after a git failure, and every ``WORKTREE_CHECK_SECONDS``."""
        run = self.run
        now = time.monotonic()
        if self._empty_claims and now < self._next_full_check and self.worktree.looks_healthy(run.branch):
            return True
        self._next_full_check = now + WORKTREE_CHECK_SECONDS
        reason = None
        if self._not_run >= MAX_NOT_RUN:
            reason = f"git failed {self._not_run} times in a row before the agent could run"
        else:
            # Found before any claim: not the next task's work. They most likely come from the last task this
            # agent ran (a run that ended without a commit); its newest prompt file names it, across restarts.
            last = _last_prompt(run.prompt_dir)
            source = f"the last task this agent ran was {last[0]} (attempt {last[1]})" if last else "no task ran yet"
            leftovers = f"swarm: changes left in the worktree of {run.agent_id} outside any task ({source})"
            try:
                for action in self.repo.heal_worktree(
                    Path(run.worktree), run.branch, leftovers=leftovers, submodules=run.submodules
                ):
                    self.say(action)
            except SwarmError as exc:
                reason = exc.render()
        if reason is None:
            return True
        detail = f"worktree {run.worktree} cannot be used: {reason}"
        self.say(f"{detail}; not claiming any more tasks (fix it, then run 'swarm launch' again)")
        with contextlib.suppress(SwarmError):
            self.store.update_agent(run.agent_id, state=AgentState.FAILED.value, detail=detail[:1000])
        return False

    def _return_not_run(self, claim: Claim, exc: GitError) -> None:
        """A git failure before the agent ran is not the task's fault: give it back without spending an
        attempt, and have the worktree checked before the next claim."""
        self._not_run += 1
        self._next_full_check = 0.0
        self.say(f"{claim.task_id}: {exc.render()}")
        try:
            self.store.return_task(claim.task_id, self.run.agent_id, claim.lease_token, f"not run: {exc.message}")
        except LeaseLost as lost:
            self.say(lost.render())
            return
        self.say(f"returned {claim.task_id} without running it; checking the worktree")

    def _commit_task(self, claim: Claim) -> str | None:
        """Commit the task's work on the agent branch (wherever the agent left HEAD) and keep the commit at
        ``refs/swarm/tasks/<task>``, whatever the agent does to the branch later."""
        run = self.run
        committed = self.worktree.commit_on_branch(run.branch, f"{claim.task_id}: {claim.title}", run.commit_author)
        for note in committed.notes:
            self.say(f"{claim.task_id}: {note}")
        if committed.sha:
            self.worktree.keep_ref(_task_ref(claim.task_id), committed.sha)
        return committed.sha

    # -- release ---------------------------------------------------------------------------------
    def finish(self, claim: Claim, result: RunResult, attempt: Attempt) -> None:
        """Commit and complete, or fail, or return; keep every change somewhere."""
        self._outcome = _outcome_of(result)
        if self._release_unfinished(claim, result):
            return
        changed = self._changed(attempt)
        earlier = None if changed else self._already_on_branch(claim)
        if not self._verified(claim, result, attempt, changed=changed or earlier is not None):
            return
        # A verify may leave files behind; they are the task's, so they are committed as usual.
        sha = earlier if earlier and not self.worktree.has_changes() else self._commit_finished(claim)
        self._count_for_commit_graph()
        if not self._share_commit(claim, sha, result):
            return
        self._complete(claim, sha, result)

    def _release_unfinished(self, claim: Claim, result: RunResult) -> bool:
        """A run that did not finish its task (lease lost, stopped, timed out, failed): its changes are kept
        (stashed, or left for teardown) and the task is returned or failed. Whether it was such a run."""
        run = self.run
        if result.lease_lost is not None:
            self._stash(claim, "lease lost")
        elif result.stopped:
            try:
                self.store.return_task(claim.task_id, run.agent_id, claim.lease_token, "stopped by teardown --now")
            except LeaseLost as exc:
                self.say(exc.render())
            self.say(f"returned {claim.task_id}; its uncommitted work stays in the worktree for teardown to save")
        elif result.timed_out:
            self._stash(claim, "timed out")
            limit = claim.timeout_seconds or run.task_timeout_seconds
            self._release_failed(claim, f"timed out after {limit:.0f}s", result)
        elif result.exit_code != 0:
            self._stash(claim, f"exit {result.exit_code}")
            last = " | ".join((result.said or result.tail)[-5:]) or "(no output)"
            self._release_failed(claim, f"agent exited {result.exit_code}: {last}"[:2000], result)
        else:
            return False
        return True

    def _verified(self, claim: Claim, result: RunResult, attempt: Attempt, *, changed: bool) -> bool:
        """docs/contract.md §3: a run that exited 0 is done only if its output shows no known failure, it changed
        something (``changed``; or the spec allows none, or the task's commit is already on the branch) and its
        verify passes. Otherwise the task is failed (its changes stashed) or, when the verify run was stopped or
        lost the lease, released; then False."""
        reason = known_failure(self._failure_patterns, result.tail, attempt.prompt)
        if reason is not None:
            reason = f"the agent exited 0 but its output shows a known failure: {reason}"
        elif not (attempt.task.allow_empty or changed):
            reason = "the agent changed nothing (no change in the worktree, no new commit); a spec that expects "
            reason += "no change says 'allow_empty: true'"
        else:
            command = attempt.task.verify if attempt.task.verify is not None else self.run.verify
            if command.strip():
                checked = self._run_verify(claim, command, attempt)
                if checked.lease_lost is not None or checked.stopped:
                    self._outcome = _outcome_of(checked)
                    self._release_unfinished(claim, checked)
                    return False
                reason = self._verify_failure(claim, checked)
        if reason is None:
            return True
        self._outcome = "failed"
        self._stash(claim, "not verified")
        self._release_failed(claim, reason[:2000], result)
        return False

    def _already_on_branch(self, claim: Claim) -> str | None:
        """The commit that did this task before, when the branch already holds it (the queue started over beside
        a kept branch, docs/contract.md §3): the agent found its work done. None otherwise."""
        earlier = self.worktree.ref_sha(_task_ref(claim.task_id))
        if earlier is None or not self.worktree.contains(earlier):
            return None
        where = f"the task's commit {earlier[:12]} is already on {self.run.branch}"
        self.say(f"{claim.task_id}: the agent changed nothing; {where}")
        return earlier

    def _changed(self, attempt: Attempt) -> bool:
        """Whether the agent changed the worktree or committed since it started (HEAD wherever it left it)."""
        return self.worktree.has_changes() or self.worktree.head_sha() != attempt.start_sha

    def _verify_failure(self, claim: Claim, checked: RunResult) -> str | None:
        """Why a verify run failed, with the tail of its output; None when it passed (then this says so)."""
        last = " | ".join(checked.tail[-5:]) or "(no output)"
        if checked.timed_out:
            limit = claim.timeout_seconds or self.run.task_timeout_seconds
            return f"verify timed out after {limit:.0f}s: {last}"
        if checked.exit_code != 0:
            return f"verify failed (exit {checked.exit_code}): {last}"
        self.say(f"{claim.task_id}: verify passed")
        return None

    def _run_verify(self, claim: Claim, command: str, attempt: Attempt) -> RunResult:
        """Run the task's verify command as the agent ran: ``/bin/sh -c`` in the worktree with the agent's
        environment, in its own process group, output to the pane and the log, heartbeating the lease, bounded
        by the task's timeout (docs/contract.md §3)."""
        run = self.run
        self.say(f"{claim.task_id}: the agent exited 0; verifying: {command}")
        env = self.agent_env(claim, attempt.prompt_file)
        env.update(self.template.env)
        record = process_record_path(Path(run.repo), run.agent_id)
        watch = procs.AgentProcesses(record=record, adopt=procs.is_subreaper())
        argv = ["/bin/sh", "-c", command]
        if run.sandbox == "bwrap":
            # In the agent's sandbox too: verify runs what the agent wrote (tests, conftest.py, a Makefile).
            argv = self._sandboxed(argv, env)
        try:
            proc = subprocess.Popen(  # the spec's own shell code, as one argument of sh -c
                argv,
                cwd=run.worktree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return RunResult(exit_code=127, tail=[f"cannot start /bin/sh: {exc.strerror}"])
        result = RunResult()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        reader = threading.Thread(target=self._copy_output, args=(proc, tail), daemon=True)
        self._watch_run(claim, proc, watch, result, reader)
        result.exit_code = proc.returncode
        result.tail = list(tail)
        return result

    def _copy_output(self, proc: subprocess.Popen[bytes], tail: deque[str]) -> None:
        """Copy a verify run's output to the pane and the log, keeping its last lines."""
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._emit(raw)
            text = raw.decode("utf-8", "replace").strip()
            if text:
                tail.append(text)

    def _commit_finished(self, claim: Claim) -> str | None:
        """Commit the work of a run that exited 0; HostFault when the machine refuses the commit."""
        try:
            return self._commit_task(claim)
        except SwarmError as exc:
            # The agent did its part; a commit refused by the machine (a signing key missing, a full disk) is not
            # its fault. Any other failure (the agent deleted its worktree) fails the task as usual.
            if _host_fault(exc) is None:
                raise
            raise HostFault(f"git refused the commit of {claim.task_id}: {exc.message}") from exc

    def _count_for_commit_graph(self) -> None:
        """Every ``COMMIT_GRAPH_EVERY`` tasks, add this worker's new commits to the repository's commit-graph."""
        self._graph_countdown -= 1
        if self._graph_countdown <= 0:
            self._graph_countdown = COMMIT_GRAPH_EVERY
            self.worktree.update_commit_graph()

    def _share_commit(self, claim: Claim, sha: str | None, result: RunResult) -> bool:
        """On a shared queue, push the task's commit to its ref on the remote: other machines fetch it there
        before they merge it. False when it could not be shared (then the task is failed)."""
        remote = self.run.push_remote
        if not remote or not sha:
            return True
        try:
            self.worktree.push(remote, [f"+{sha}:{_task_ref(claim.task_id)}"])
        except SwarmError as exc:
            self._release_failed(claim, f"could not share the commit {sha[:12]}: {exc.render()}", result)
            return False
        return True

    def _complete(self, claim: Claim, sha: str | None, result: RunResult) -> None:
        """Mark the task done with its commit; say which tasks it made ready."""
        run = self.run
        try:
            promoted = self.store.complete(
                claim.task_id,
                run.agent_id,
                claim.lease_token,
                commit=sha,
                cost_usd=result.cost_usd,
                tokens=result.tokens,
            )
        except LeaseLost as exc:
            self.say(f"{exc.render()}; the commit {sha} stays on {run.branch}")
            return
        if result.cost_usd:
            self.store.update_agent(run.agent_id, cost_usd=result.cost_usd)
        more = f"; now ready: {', '.join(promoted)}" if promoted else ""
        self.say(f"{claim.task_id} done at {(sha or '')[:12]}{more}")

    def _release_failed(self, claim: Claim, reason: str, result: RunResult) -> None:
        self._context = None  # a failed task ends the conversation keep_context continues: the next starts afresh
        try:
            state = self.store.fail(
                claim.task_id,
                self.run.agent_id,
                claim.lease_token,
                reason,
                cost_usd=result.cost_usd,
                tokens=result.tokens,
            )
        except LeaseLost as exc:
            self.say(exc.render())
            return
        if result.cost_usd:
            self.store.update_agent(self.run.agent_id, cost_usd=result.cost_usd)
        self.say(f"{claim.task_id} failed ({reason.splitlines()[0][:200]}); task is now {state.value}")

    def _stash(self, claim: Claim, why: str, *, label: str | None = None) -> None:
        """Stash the worktree's changes: by default as the partial work of ``claim``; ``label`` names changes
        that are not its work (leftovers found before it started)."""
        if not self.worktree.has_changes():
            return
        message = label or f"swarm: {claim.task_id} attempt {claim.attempt} ({why})"
        ref = self.worktree.stash(message)
        what = "the changes left in the worktree" if label else f"the partial changes of {claim.task_id}"
        self.say(f"saved {what} in {ref} as '{message}' ('git stash list' shows them)")

    def _leftovers_label(self, claim: Claim) -> str:
        """An honest name for changes found in the worktree before ``claim`` started: they are not its work.
        They most likely come from the last task this agent ran (whose run ended without a commit): the newest
        prompt file in the agent's prompt folder names it, across worker restarts."""
        last = _last_prompt(self.run.prompt_dir)
        source = (
            f"the last task this agent ran was {last[0]} (attempt {last[1]})"
            if last
            else "this agent ran no task before"
        )
        return f"swarm: leftovers found before {claim.task_id} started (not its work; {source})"

    def _save_wip(self, claim: Claim) -> str | None:
        """Keep the worktree's changes under ``refs/swarm/wip/<agent>/<task>`` without touching the worktree,
        its index or the branch (a second copy: the changes also stay where they are). None when there was
        nothing to save or git could not save it (a full disk), which is said in the log."""
        ref = f"refs/swarm/wip/{self.run.agent_id}/{claim.task_id}"
        try:
            sha = self.worktree.save_wip(ref, f"WIP {claim.task_id}: {claim.title} (attempt {claim.attempt})")
        except SwarmError as exc:
            self.say(
                f"could not save the work of {claim.task_id} as {ref} ({exc.render()}); it stays in {self.run.worktree}"
            )
            return None
        if sha is None:
            return None
        self.say(f"saved the uncommitted work of {claim.task_id} as {ref} ({sha[:12]}); it also stays in the worktree")
        return ref


def _outcome_of(result: RunResult) -> str:
    """How a run ended, in the words of the shutdown response."""
    if result.lease_lost:
        return "lease lost"
    if result.stopped:
        return "returned"
    if result.exit_code == 0 and not result.timed_out:
        return "done"
    return "failed"


_RESET = re.compile(
    r"(?i)(?:try again|retry|resets?|available again)\D{0,20}?in\s+(\d+(?:\.\d+)?)\s*"
    r"(s|sec|secs|seconds?|m|mins?|minutes?|h|hours?)\b"
)


def _reset_seconds(text: str) -> float | None:
    """ "try again in 30 seconds" / "resets in 2 min" -> seconds; None when the message names no delay."""
    match = _RESET.search(text)
    if not match:
        return None
    amount = float(match.group(1))
    unit = match.group(2).lower()
    return amount * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1)


def _host_fault(exc: SwarmError) -> str | None:
    """The cause when ``exc`` is the machine's fault rather than the agent's (see :class:`HostFault`)."""
    if isinstance(exc, HostFault):
        return exc.message
    if isinstance(exc, StoreError | GitError):
        text = f"{exc.message} {getattr(exc, 'stderr', '')}"
        if _HOST_FAULT.search(text):
            return exc.message
    return None


def _os_error_text(exc: OSError) -> str:
    """``cannot write /path: No space left on device`` from an OSError."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"the worker cannot write{where}: {exc.strerror or exc}"


def _last_prompt(folder: Path) -> tuple[str, str] | None:
    """``(task id, attempt)`` of the newest ``<task>-<attempt>.md`` prompt in ``folder``, or None."""
    try:
        found = [(entry.stat().st_mtime, entry.name) for entry in folder.iterdir()]
    except OSError:
        return None
    for _, name in sorted(found, reverse=True):
        task, sep, attempt = name.removesuffix(".md").rpartition("-")
        if sep and task and attempt.isdigit():
            return task, attempt
    return None


def _task_ref(task_id: str) -> str:
    """Where a finished task's commit is kept locally, and published on the shared remote."""
    return f"{TASK_REF_PREFIX}{task_id}"


def _feed(proc: subprocess.Popen[bytes], prompt: str) -> None:
    """Write the prompt to the agent's stdin and close it (an agent may exit before reading it all)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.write(prompt.encode("utf-8"))
    with contextlib.suppress(OSError):
        proc.stdin.close()


def _rotate_log(handle: IO[bytes], path: Path) -> IO[bytes]:
    """Move the log at ``path`` to ``<path>.1`` (replacing an older one) and open a new one."""
    handle.close()
    os.replace(path, path.with_name(path.name + ".1"))
    return path.open("ab", buffering=0)


def _stop_leftovers(record: Path, say: Callable[[str], None]) -> None:
    """Stop what an earlier run of this agent recorded and left alive (its worker was killed)."""
    try:
        stopped = procs.stop_recorded(record, grace=KILL_GRACE_SECONDS)
    except OSError as exc:
        say(f"cannot read or update the process record {record}: {exc}")
        return
    if stopped:
        pids = ", ".join(str(p.pid) for p in stopped)
        say(f"stopped {plural(len(stopped), 'process')} left by an earlier run of this agent (pids {pids})")


def _stop_agent_processes(watch: procs.AgentProcesses, say: Callable[[str], None]) -> None:
    """Stop every process of the agent run that is still alive, and say so."""
    try:
        leftover = [p.pid for p in watch.poll()]
        if leftover:
            pids = ", ".join(map(str, leftover))
            say(f"the agent left {plural(len(leftover), 'process')} running (pids {pids}); stopping them")
        left = watch.stop(grace=KILL_GRACE_SECONDS)
    except Terminated:
        # A signal during the grace period: no more grace, but nothing is left behind either.
        watch.stop(grace=0.0)
        raise
    if left:
        say(f"pids {', '.join(map(str, left))} survived SIGKILL; teardown will look for them again")


def run_worker(run: AgentRun) -> int:
    """Entry point of ``swarm worker``."""
    # A worker process runs one agent at a time and nothing else: as a child subreaper it gets the agent's
    # orphans (a daemon that double-forks, `setsid cmd &` from a shell that exits) and can stop them all.
    procs.become_subreaper()
    worker = Worker(run)
    return worker.loop()


def main(argv: list[str] | None = None) -> int:
    """``python -m swarm.runtime.worker --run-file F``: what launch starts in each tmux session.

    The same loop as ``swarm worker``, without loading the command-line stack (typer, rich, the MCP SDK):
    a worker idles for hours, so every megabyte counts times the number of agents.
    """
    import argparse

    from swarm.runtime.runfile import read_run_file

    parser = argparse.ArgumentParser(prog="swarm-worker", description=main.__doc__)
    parser.add_argument("--run-file", required=True, type=Path, help="the agent's run file, written by launch")
    args = parser.parse_args(argv)
    try:
        return run_worker(read_run_file(args.run_file))
    except SwarmError as exc:
        print(f"swarm worker: {exc.render()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
