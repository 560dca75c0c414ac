"""``swarm monitor``: health of this host's agents, from several signals together, and self-healing.

Every few seconds it reaps expired leases and classifies each agent from:
* the worker process (alive?), the agent's process tree (alive? CPU time advancing?),
* the agent's output (the log's last lines; ``last_output_at`` advancing?),
* the recorded state, heartbeat and lease.
States: starting, working, idle, waiting-for-input (the last output matches the agent kind's waiting patterns,
kept in its template), stalled (no CPU and no output for ``swarm.stall_seconds``), dead, done.

A dead or stalled worker is restarted in its tmux session with exponential backoff, up to
``swarm.max_restarts``; after that the agent is marked failed. Every incident is escalated to the lead once
(an ``escalation`` entry), never repeated: incidents are recorded in the database, so a restarted monitor
does not tell the same story twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from swarm.agents import load_template
from swarm.config import LoadedConfig, load_config
from swarm.errors import SwarmError
from swarm.models import LEAD, AgentRecord, AgentState
from swarm.notify import Notifier
from swarm.queue import open_queue
from swarm.runtime import procs
from swarm.runtime.runfile import read_run_file, run_file_path
from swarm.runtime.sessions import restart_worker
from swarm.runtime.tmux import Tmux
from swarm.store import Store
from swarm.words import plural

log = logging.getLogger(__name__)

_LIVE = {AgentState.STARTING.value, AgentState.WORKING.value, AgentState.IDLE.value, AgentState.WAITING.value}
#: Only look for a waiting prompt once the agent has been quiet this long (saves reading logs every tick).
QUIET_SECONDS = 3.0
#: Bytes of the agent's log searched for a waiting prompt.
LOG_TAIL_BYTES = 4096


@dataclass
class _Progress:
    cpu: float = -1.0
    output_at: float | None = None
    task: str | None = None
    changed_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Verdict:
    """What the monitor decided about one agent in one look."""

    agent: str
    state: str
    why: str = ""


class Monitor:
    """The health loop of one host's agents of one swarm."""

    def __init__(self, repo: Path, swarm_id: str, *, loaded: LoadedConfig | None = None) -> None:
        self.repo = repo
        self.loaded = loaded or load_config(repo)
        self.store: Store = open_queue(self.loaded)
        self.swarm_id = swarm_id
        swarm = self.store.get_swarm(swarm_id)
        self.tmux = Tmux(str(self.loaded.config.swarm.tmux_socket or swarm.settings.get("tmux_socket") or ""))
        cfg = self.loaded.config.swarm
        self.stall_seconds = cfg.stall_seconds
        self.max_restarts = cfg.max_restarts
        self.backoff = cfg.restart_backoff_seconds
        self.interval = cfg.monitor_interval_seconds
        self.progress: dict[str, _Progress] = {}
        self._patterns: dict[str, list[re.Pattern[str]]] = {}
        self._cpu: dict[int, float] = {}
        self._roots: dict[str, Path] = {}
        self._log_seen: dict[str, tuple[float, int, bool]] = {}
        #: docs/contract.md §9: [notify] hooks, in a thread of their own so a slow or failing hook costs the
        #: health loop nothing.
        self.notifier = Notifier(self.loaded, swarm_id, interval=self.interval)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Look every ``interval`` seconds until the swarm is stopped or every local agent is finished."""
        self.notifier.start()
        try:
            return self._loop()
        finally:
            # The last events (the epic that just finished) still go out; what a failing hook does not take
            # stays queued for the next monitor.
            self.notifier.stop()

    def _loop(self) -> int:
        looks = 0
        while True:
            swarm = self.store.get_swarm(self.swarm_id)
            if swarm.stop_requested:
                return 0
            verdicts = self.look()
            looks += 1
            self._report(looks, verdicts)
            if verdicts and all(v.state in (AgentState.DONE.value, AgentState.FAILED.value) for v in verdicts):
                return 0
            time.sleep(self.interval)

    def _report(self, looks: int, verdicts: list[Verdict]) -> None:
        """``.swarm/monitor.json``: when the monitor last looked and what it saw (status shows it)."""
        data = {
            "swarm_id": self.swarm_id,
            "looks": looks,
            "at": time.time(),
            "pid": os.getpid(),
            "agents": {v.agent: {"state": v.state, "why": v.why} for v in verdicts},
        }
        path = self.repo / ".swarm" / "monitor.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)

    def local_agents(self) -> list[AgentRecord]:
        """This host's agents: those whose worktrees live in this repository."""
        root = self.repo.resolve()
        mine: list[AgentRecord] = []
        for agent in self.store.list_agents(self.swarm_id):
            if not agent.worktree:
                continue
            resolved = self._roots.get(agent.worktree)
            if resolved is None:  # resolving touches the file system: once per worktree is enough
                resolved = self._roots[agent.worktree] = Path(agent.worktree).resolve()
            if resolved == root or root in resolved.parents:
                mine.append(agent)
        return mine

    def look(self) -> list[Verdict]:
        """One round: reap, classify every local agent, act on what needs it."""
        self.store.reap()
        now = time.time()
        verdicts: list[Verdict] = []
        agents = self.local_agents()
        self._cpu = procs.tree_cpu_seconds([a.agent_pid for a in agents if a.agent_pid])
        for agent in agents:
            verdict = self.classify(agent, now)
            verdicts.append(verdict)
            self.act(agent, verdict, now)
        return verdicts

    # -- classification ----------------------------------------------------------------------------
    def classify(self, agent: AgentRecord, now: float) -> Verdict:
        """Decide an agent's state from its processes, output and recorded state."""
        if agent.state not in _LIVE:
            return Verdict(agent.id, agent.state)
        if agent.pid is None or not procs.alive(agent.pid):
            return Verdict(agent.id, AgentState.DEAD.value, "its worker process is gone")
        if agent.state not in (AgentState.WORKING.value, AgentState.WAITING.value):
            self.progress.pop(agent.id, None)
            return Verdict(agent.id, agent.state)
        seen = self.progress.setdefault(agent.id, _Progress(task=agent.task_id))
        if not agent.agent_pid:
            # No agent running: the worker is on its own steps (commit, complete, claim, merge). Those are not
            # the agent's stall; on a busy machine or behind a slow hook they outlast stall_seconds, and a
            # restart then would cost the task. A worker stuck there loses its lease, which the reaper frees.
            seen.task, seen.cpu, seen.output_at, seen.changed_at = agent.task_id, -1.0, agent.last_output_at, now
            return Verdict(agent.id, AgentState.WORKING.value)
        cpu = self._cpu.get(agent.agent_pid, 0.0)
        if seen.task != agent.task_id or cpu != seen.cpu or agent.last_output_at != seen.output_at:
            seen.task, seen.cpu, seen.output_at, seen.changed_at = agent.task_id, cpu, agent.last_output_at, now
        quiet = now - seen.changed_at
        if quiet >= QUIET_SECONDS and self._waiting(agent):
            return Verdict(agent.id, AgentState.WAITING.value, "its output shows a prompt waiting for a human")
        if quiet >= self.stall_seconds:
            return Verdict(agent.id, AgentState.STALLED.value, f"no CPU and no output for {quiet:.0f}s")
        return Verdict(agent.id, AgentState.WORKING.value)

    def _waiting(self, agent: AgentRecord) -> bool:
        patterns = self._patterns_for(agent)
        if not patterns:
            return False
        log_path = self.repo / ".swarm" / "logs" / f"{agent.id}.log"
        try:
            stat = log_path.stat()
        except OSError:
            return False
        seen = self._log_seen.get(agent.id)
        if seen is not None and seen[:2] == (stat.st_mtime, stat.st_size):
            return seen[2]  # the log did not change since the last look
        try:
            with log_path.open("rb") as handle:
                handle.seek(max(0, stat.st_size - LOG_TAIL_BYTES))
                tail = handle.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        except OSError:
            return False
        text = "\n".join(tail)
        # The worker's own lines start with "[swarm"; only the agent's output can show a prompt.
        waiting = not (tail and tail[-1].startswith("[swarm ")) and any(p.search(text) for p in patterns)
        self._log_seen[agent.id] = (stat.st_mtime, stat.st_size, waiting)
        return waiting

    def _patterns_for(self, agent: AgentRecord) -> list[re.Pattern[str]]:
        if agent.id not in self._patterns:
            try:
                kind = read_run_file(run_file_path(self.repo, agent.id)).kind
                self._patterns[agent.id] = [re.compile(p) for p in load_template(kind).waiting_patterns]
            except SwarmError:
                self._patterns[agent.id] = []
        return self._patterns[agent.id]

    # -- actions -----------------------------------------------------------------------------------
    def act(self, agent: AgentRecord, verdict: Verdict, now: float) -> None:
        """Record the verdict; restart, give up or escalate as it requires."""
        if verdict.state == AgentState.WAITING.value:
            if agent.state != verdict.state:
                self.store.update_agent(agent.id, state=verdict.state, detail=verdict.why)
            self.escalate(f"{agent.id}:waiting:{agent.task_id}", f"{agent.id} is waiting for input on {agent.task_id}")
            return
        if verdict.state == AgentState.WORKING.value and agent.state == AgentState.WAITING.value:
            self.store.update_agent(agent.id, state=verdict.state, detail=None)
            return
        if verdict.state == AgentState.FAILED.value and agent.detail:
            # A worker that stopped claiming on its own (a worktree it cannot repair) says why in its detail.
            # Same key as a give-up below: an agent's failure is told once.
            self.escalate(f"{agent.id}:failed", f"{agent.id} failed: {agent.detail}")
            return
        if verdict.state not in (AgentState.DEAD.value, AgentState.STALLED.value):
            return
        incident = f"{agent.id}:{verdict.state}:{agent.task_id}:{agent.restarts}"
        if agent.restarts >= self.max_restarts:
            self._stop_agent(agent)
            self.store.return_claims([agent.id], actor="monitor", reason=f"{agent.id} {verdict.state}; given up")
            self.store.update_agent(
                agent.id,
                state=AgentState.FAILED.value,
                pid=None,
                agent_pid=None,
                detail=f"{verdict.why}; gave up after {plural(agent.restarts, 'restart')}",
            )
            self.escalate(
                f"{agent.id}:failed",
                f"{agent.id} failed: {verdict.why}; gave up after {plural(agent.restarts, 'restart')} (max_restarts)",
            )
            return
        if agent.state != verdict.state:
            self.store.update_agent(agent.id, state=verdict.state, detail=verdict.why)
        if now < agent.next_restart_at:
            return  # backing off
        self.escalate(
            incident,
            f"{agent.id} was {verdict.state} ({verdict.why}) on {agent.task_id or 'no task'}; "
            f"restarting it (restart {agent.restarts + 1} of {self.max_restarts})",
        )
        self.restart(agent, verdict)

    def escalate(self, key: str, text: str) -> None:
        """Tell the lead, once per incident."""
        if self.store.record_incident(self.swarm_id, key):
            with contextlib.suppress(SwarmError):
                self.store.append_message("team", "monitor", "escalation", text, recipient=LEAD)
            log.warning("%s", text)

    def _stop_agent(self, agent: AgentRecord) -> None:
        # The agent's own process group first (it may be stopped: SIGKILL still works), then the worker.
        mine = set(procs.processes_with_env("SWARM_ID", self.swarm_id, among=("SWARM_AGENT_ID", {agent.id})))
        if agent.agent_pid and agent.agent_pid in mine:
            procs.signal_group(agent.agent_pid, signal.SIGKILL)
        procs.stop_processes([p for p in (agent.pid,) if p and p in mine] + sorted(mine), grace=3.0)

    def restart(self, agent: AgentRecord, verdict: Verdict) -> None:
        """Stop what is left of the agent, give its task back, and start a fresh worker in its session."""
        self._stop_agent(agent)
        self.store.return_claims([agent.id], actor="monitor", reason=f"{agent.id} {verdict.state}; restarting")
        run_file = run_file_path(self.repo, agent.id)
        pid = restart_worker(self.tmux, read_run_file(run_file), run_file, session=agent.session, tag=self.swarm_id)
        restarts = agent.restarts + 1
        self.store.update_agent(
            agent.id,
            pid=pid,
            agent_pid=None,
            state=AgentState.STARTING.value,
            task_id=None,
            restarts=restarts,
            next_restart_at=time.time() + self.backoff * (2 ** (restarts - 1)),
            detail=f"restarted after it was {verdict.state}",
        )
        self.progress.pop(agent.id, None)


def main(argv: list[str] | None = None) -> int:
    """``python -m swarm.runtime.monitor --repo PATH --swarm-id ID`` (started by launch in its own session)."""
    import argparse

    parser = argparse.ArgumentParser(prog="swarm-monitor", description=__doc__)
    parser.add_argument("--repo", required=True, type=Path, help="the repository (main checkout)")
    parser.add_argument("--swarm-id", required=True, help="the swarm to watch")
    args = parser.parse_args(argv)
    log_path = _log_to_file(args.repo)
    try:
        return Monitor(args.repo, args.swarm_id).run()
    except KeyboardInterrupt:
        log.info("monitor interrupted")
        return 130
    except Exception as exc:
        # Nobody watches the monitor's pane: its end is written down with the traceback, and status shows it
        # is gone (its pid is no longer alive); launch starts it again.
        text = exc.render() if isinstance(exc, SwarmError) else f"{type(exc).__name__}: {exc}"
        log.exception("monitor crashed: %s", text)
        print(f"swarm monitor: crashed: {text}; the traceback is in {log_path}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, SwarmError) else 1


def _log_to_file(repo: Path) -> Path:
    """Send this module's log (escalations, crashes) to ``.swarm/logs/monitor.log`` as well."""
    path = repo / ".swarm" / "logs" / "monitor.log"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        for logger in (log, logging.getLogger("swarm.notify")):  # notifications sent, and failing hooks
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
    return path


if __name__ == "__main__":
    sys.exit(main())
