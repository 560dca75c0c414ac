"""``swarm repair``: reconcile the database, tmux and the git worktrees of the current swarm on this host.

A crash, a ``tmux kill-session`` by hand or a lost machine can leave the three out of step. Repair looks for:

1. sessions tagged with this swarm's id that no agent owns (killed; only tagged sessions, never by name);
2. live-looking agents of this host whose session or worker is gone (claims returned, agent marked dead);
3. git worktrees under ``worktree_base`` that no agent of the database owns (uncommitted work committed as
   ``WIP: saved by swarm repair`` on their branch, then removed);
4. tasks still claimed by an agent of this host that has no live worker (returned to the queue).

It starts nothing: ``swarm launch EPIC`` resumes the swarm and recreates the missing sessions. With
``dry_run`` it only reports. It waits for a ``swarm launch`` or ``teardown`` of this repository in progress
(``.swarm/command.lock``): a launch creates worktrees a moment before it registers their agents.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from swarm.cmdlock import command_lock
from swarm.config import LoadedConfig, load_config
from swarm.errors import BadInput, SwarmError
from swarm.launcher import host_prefix
from swarm.models import AgentRecord, AgentState, Task, TaskState
from swarm.queue import open_queue
from swarm.runtime import procs
from swarm.runtime.git import GitRepo, Worktree, WorktreeInfo, is_inside, open_repo
from swarm.runtime.sessions import monitor_sessions
from swarm.runtime.tmux import Tmux
from swarm.store import Store, SwarmRecord
from swarm.words import plural

log = logging.getLogger(__name__)

#: The message of the commit that saves the uncommitted work of a worktree nobody owns.
WIP_MESSAGE = "WIP: saved by swarm repair"

#: The ``kind`` of each finding, in the order they are reported.
SESSION_WITHOUT_AGENT = "session-without-agent"
AGENT_WITHOUT_SESSION = "agent-without-session"
WORKTREE_WITHOUT_AGENT = "worktree-without-agent"
CLAIM_OF_DEAD_AGENT = "claim-of-dead-agent"

#: Agent states in which a worker process and its session are expected to exist.
_LIVE = frozenset(
    {AgentState.STARTING.value, AgentState.WORKING.value, AgentState.IDLE.value, AgentState.WAITING.value}
)
#: Agent states that already say the agent is gone: nothing to mark.
_GONE = frozenset({AgentState.DEAD.value, AgentState.FAILED.value})

_AGENT_NUMBER = re.compile(r"agent-\d+$")


@dataclass
class Finding:
    """One thing out of step: what it is, what repair does (or would do) about it, and whether it did."""

    kind: str
    subject: str
    problem: str
    action: str
    done: bool = False
    error: str | None = None
    fix: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        """``{"kind", "subject", "action", "done"}`` plus ``problem`` and ``error`` (keys may be added)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "action": self.action,
            "done": self.done,
            "problem": self.problem,
            "error": self.error,
        }


@dataclass
class RepairReport:
    """What repair found in one swarm on this host, and what it did."""

    swarm: SwarmRecord
    dry_run: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> list[Finding]:
        """Findings whose fix was attempted and raised."""
        return [f for f in self.findings if f.error is not None]

    @property
    def buried(self) -> bool:
        """Whether repair marked (or would mark) agents dead: 'swarm launch' restarts them."""
        return any(f.kind in (AGENT_WITHOUT_SESSION, CLAIM_OF_DEAD_AGENT) for f in self.findings)


def _tasks_held(tasks: list[Task], agent_id: str) -> list[str]:
    return [t.id for t in tasks if t.state == TaskState.CLAIMED and t.owner == agent_id]


class _Repair:
    """The state read once (database, tmux, process table) and the findings derived from it."""

    def __init__(self, repo: GitRepo, loaded: LoadedConfig, store: Store, swarm: SwarmRecord) -> None:
        self.repo = repo
        self.loaded = loaded
        self.store = store
        self.swarm = swarm
        socket_name = str(loaded.config.swarm.tmux_socket or swarm.settings.get("tmux_socket") or "")
        self.tmux = Tmux(socket_name)
        # Worktrees may belong to an agent of any swarm of this database (an earlier epic's, say).
        self.everyone = store.list_agents()
        self.agents = [a for a in self.everyone if a.swarm_id == swarm.id]
        # This host's agents are those whose worktrees live in this repository (as in teardown and the monitor).
        self.local = [a for a in self.agents if a.worktree and is_inside(Path(a.worktree), repo.root)]
        self.tasks = store.list_tasks(swarm_id=swarm.id)
        self.tagged = set(self.tmux.tagged_sessions(swarm.id))
        self.sessions_killed = False

    # -- the findings -----------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """Every finding, database ones first so that an agent found dead is not also a session finding."""
        dead = self._agents_without_session()
        claims = self._claims_of_dead_agents({f.subject for f in dead})
        return [*self._sessions_without_agent(), *dead, *self._worktrees_without_agent(), *claims]

    def _sessions_without_agent(self) -> list[Finding]:
        # Sessions of every host's agents are kept, not only this host's: clones on this machine may share
        # the tmux server, and their monitors too (named after their own host prefix).
        registered = {a.session for a in self.agents if a.session}
        mine = {a.id for a in self.local}
        prefixes = {_AGENT_NUMBER.sub("", a.id) for a in self.agents if a.id not in mine}
        own_monitors = set(monitor_sessions(self.repo.root, host_prefix(self.loaded)))
        found: list[Finding] = []
        for name in sorted(self.tagged):
            if name in registered or name in own_monitors:
                continue
            if any(p and name.endswith(f"-{p}monitor") for p in prefixes):
                continue
            found.append(
                Finding(
                    SESSION_WITHOUT_AGENT,
                    name,
                    f"tmux session {name} is tagged with swarm {self.swarm.id} but belongs to no agent",
                    "kill the session",
                    fix=partial(self._kill, name),
                )
            )
        return found

    def _agents_without_session(self) -> list[Finding]:
        found: list[Finding] = []
        for agent in self.local:
            if agent.state not in _LIVE:
                continue
            has_session = bool(agent.session) and agent.session in self.tagged
            worker_alive = agent.pid is not None and procs.alive(agent.pid)
            # A session without a recorded pid yet is a launch in progress, not a dead agent.
            if has_session and (worker_alive or agent.pid is None):
                continue
            why = (
                f"its worker (pid {agent.pid}) is gone"
                if has_session
                else f"its tmux session {agent.session or '(none)'} is gone"
            )
            held = _tasks_held(self.tasks, agent.id)
            steps = self._cleanup_steps(agent, kill_session=has_session)
            steps.append(f"return {'its claim on ' + ', '.join(held) if held else 'any claim it holds'} to the queue")
            steps.append("mark it dead")
            found.append(
                Finding(
                    AGENT_WITHOUT_SESSION,
                    agent.id,
                    f"agent {agent.id} is {agent.state} but {why}",
                    ", ".join(steps) + f" (run 'swarm launch {self.swarm.epic}' to restart it)",
                    fix=partial(self._bury, agent, kill_session=has_session),
                )
            )
        return found

    def _claims_of_dead_agents(self, handled: set[str]) -> list[Finding]:
        local = {a.id: a for a in self.local}
        found: list[Finding] = []
        for task in self.tasks:
            if task.state != TaskState.CLAIMED or task.owner not in local or task.owner in handled:
                continue
            agent = local[task.owner]
            if agent.pid is not None and procs.alive(agent.pid):
                continue
            steps = [*self._cleanup_steps(agent, kill_session=False), f"return {task.id} to the queue"]
            if agent.state not in _GONE:
                steps.append(f"mark {agent.id} dead")
            found.append(
                Finding(
                    CLAIM_OF_DEAD_AGENT,
                    task.id,
                    f"task {task.id} is claimed by {agent.id}, whose worker is gone",
                    ", ".join(steps),
                    fix=partial(self._bury, agent, kill_session=False),
                )
            )
        return found

    def _worktrees_without_agent(self) -> list[Finding]:
        base = (self.repo.root / self.loaded.config.swarm.worktree_base).resolve()
        owned = {Path(a.worktree).resolve() for a in self.everyone if a.worktree}
        found: list[Finding] = []
        for info in self.repo.list_worktrees():
            if info.path == self.repo.root or info.path in owned or not is_inside(info.path, base):
                continue
            found.append(self._worktree_finding(info))
        return found

    def _worktree_finding(self, info: WorktreeInfo) -> Finding:
        shown = str(info.path.relative_to(self.repo.root)) if is_inside(info.path, self.repo.root) else str(info.path)
        if not info.path.exists():
            return Finding(
                WORKTREE_WITHOUT_AGENT,
                shown,
                f"worktree {shown} is registered with git but its directory is gone",
                "forget it (git worktree prune)",
                fix=partial(self.repo.remove_worktree, info.path, prune=True),
            )
        try:
            worktree = self.repo.worktree(info.path)
            dirty = worktree.has_changes()
        except SwarmError as exc:
            return Finding(
                WORKTREE_WITHOUT_AGENT,
                shown,
                f"worktree {shown} belongs to no agent and git cannot read it ({exc.render()})",
                "leave it in place (look at it by hand: its work cannot be checked)",
            )
        branch = info.branch
        if branch is None:
            # Nothing to save the work on: a commit on a detached HEAD would be lost with the worktree.
            return Finding(
                WORKTREE_WITHOUT_AGENT,
                shown,
                f"worktree {shown} belongs to no agent and its HEAD is detached",
                "leave it in place (no branch to save its work on: check out a branch there, or remove it by hand)",
            )
        what = "has uncommitted changes" if dirty else "has nothing uncommitted"
        action = (
            f"commit its changes as '{WIP_MESSAGE}' on {branch}, then remove the worktree (the branch stays)"
            if dirty
            else f"remove the worktree (the branch {branch} stays)"
        )
        return Finding(
            WORKTREE_WITHOUT_AGENT,
            shown,
            f"worktree {shown} (branch {branch}) belongs to no agent and {what}",
            action,
            fix=partial(self._save_and_remove, worktree, info.path, branch, shown),
        )

    # -- the fixes --------------------------------------------------------------------------------
    def _leftovers(self, agent: AgentRecord) -> list[int]:
        """Processes still carrying this agent's ids (its agent command can outlive a killed worker)."""
        return procs.processes_with_env("SWARM_ID", self.swarm.id, among=("SWARM_AGENT_ID", {agent.id}))

    def _cleanup_steps(self, agent: AgentRecord, *, kill_session: bool) -> list[str]:
        steps: list[str] = []
        leftovers = self._leftovers(agent)
        if leftovers:
            steps.append(f"stop its {plural(len(leftovers), 'leftover process')} {leftovers}")
        if kill_session:
            steps.append(f"kill its session {agent.session}")
        return steps

    def _save_and_remove(self, worktree: Worktree, path: Path, branch: str, shown: str) -> None:
        """Commit the changes of the worktree at ``path`` on its branch, then remove it (the branch stays)."""
        # Never lose work: commit first; only then is a forced removal (which drops ignored files) safe.
        if worktree.has_changes():
            # commit_on_branch also commits inside submodules, which a plain commit would leave behind.
            author = self.loaded.config.swarm.commit_author
            sha = worktree.commit_on_branch(branch, WIP_MESSAGE, author, allow_empty=False).sha
            log.info("saved the work of %s as %s on %s", path, sha, branch)
        left = worktree.uncommitted_paths(include_submodules=True)
        if left:
            raise SwarmError(
                f"cannot remove the worktree {shown}: uncommitted work is left in {', '.join(left[:5])}",
                hint="commit or discard it there by hand, then run 'swarm repair' again",
            )
        self.repo.remove_worktree(path, force=True, prune=True)

    def _kill(self, name: str) -> None:
        # kill_session checks the tag again inside tmux: a session renamed or recreated meanwhile is spared.
        if self.tmux.kill_session(name, self.swarm.id):
            self.sessions_killed = True

    def _bury(self, agent: AgentRecord, *, kill_session: bool) -> None:
        """Stop what is left of an agent, give its claims back and mark it dead."""
        # Leftovers first, so nothing writes to the worktree or the task after it goes back to the queue.
        # The agent's process group is signalled only while a process of this agent still leads it: after
        # a crash the number may have been reused by someone else's process.
        leftovers = self._leftovers(agent)
        groups = [agent.agent_pid] if agent.agent_pid and agent.agent_pid in leftovers else []
        if leftovers:
            procs.stop_processes(leftovers, groups=groups, grace=3.0)
        if kill_session and agent.session:
            self._kill(agent.session)
        returned = self.store.return_claims(
            [agent.id], actor="repair", reason=f"{agent.id} has no live worker; returned by swarm repair"
        )
        if agent.state not in _GONE:
            self.store.update_agent(
                agent.id,
                state=AgentState.DEAD.value,
                pid=None,
                agent_pid=None,
                task_id=None,
                detail="found without a live worker by swarm repair; 'swarm launch' restarts it",
            )
        log.info("agent %s marked dead; returned %s", agent.id, returned)


def repair(
    *,
    cwd: Path,
    dry_run: bool = False,
    db: str | None = None,
    say: Callable[[str], None] = lambda _: None,
    loaded: LoadedConfig | None = None,
) -> RepairReport:
    """Find what is out of step in the current swarm on this host and, unless ``dry_run``, fix it.

    A fix that fails is recorded on its finding (``error``) and the others still run. :class:`BadInput`
    when there is no swarm. Waits (saying so through ``say``) while a launch or teardown of this repository
    runs: their half-done work is not something to repair. ``loaded``: the configuration the command loaded
    (then ``db`` is not read), else loaded here with ``db`` over it.
    """
    repo = open_repo(cwd)
    if loaded is None:
        loaded = load_config(repo.root, overrides={"queue.database": db})
    timeout = loaded.config.swarm.lock_timeout_seconds
    with (
        command_lock(repo.root, "swarm repair", timeout=timeout, say=say, create=False),
        open_queue(loaded) as store,
    ):
        swarm = store.current_swarm()
        if swarm is None:
            raise BadInput("no swarm in this database yet", hint="start one with 'swarm launch EPIC'")
        work = _Repair(repo, loaded, store, swarm)
        report = RepairReport(swarm=swarm, dry_run=dry_run, findings=work.findings())
        if dry_run:
            return report
        for finding in report.findings:
            if finding.fix is None:
                continue  # reported only: repair cannot fix it without risking work
            try:
                finding.fix()
            except SwarmError as exc:
                log.debug("repair of %s failed", finding.subject, exc_info=True)
                finding.error = exc.render()
            else:
                finding.done = True
        if work.sessions_killed:
            work.tmux.kill_server_if_empty()  # a private server left with no session; never the default one
    return report
