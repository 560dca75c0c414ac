"""Launch and teardown: the lifecycle of a swarm's worktrees, sessions and worker processes.

Launch validates everything that can be validated before it writes anything (repository, tmux, agent
kind and CLI, backlog, epic, base ref, worktree paths, branch and session names), then creates worktrees in
parallel, queues, and starts one tagged tmux session per agent; a failure after the first write is rolled
back. Re-running it resumes: existing tasks, worktrees, branches and sessions are kept.

Teardown asks workers to stop through the database, stops what does not, returns unfinished claims,
commits uncommitted work as WIP on each agent's branch, kills only sessions tagged with this swarm,
removes worktrees, and verifies with the process table that nothing carrying this swarm's id survives.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swarm.agents import AgentTemplate, check_agent_cli, load_template, root_permission_problem
from swarm.backlog import Backlog, load_backlog
from swarm.cmdlock import command_lock
from swarm.config import LoadedConfig, load_config, remember
from swarm.errors import BadInput, StoreError, SwarmError
from swarm.fleet import Fleet, check_fleet_options, fleet_size, fleet_text, member_of
from swarm.identity import hash_token, lead_token, new_token
from swarm.models import LEAD, AgentRecord, AgentState, Task, check_id
from swarm.notify import check_notify
from swarm.queue import (
    EpicPreview,
    QueuedEpic,
    backlog_folder,
    backlog_warnings,
    database_exists,
    lead_token_path,
    open_queue,
    preview_epic,
    queue_epic,
)
from swarm.runtime import procs, sandbox
from swarm.runtime.git import GitRepo, is_inside, open_repo
from swarm.runtime.runfile import AgentRun, process_record_path, read_run_file, run_file_path, write_run_file
from swarm.runtime.sessions import monitor_sessions, session_name, start_monitor, start_worker
from swarm.runtime.tmux import Tmux, tmux_available
from swarm.store import Store, SwarmRecord, Withdrawal, path_from_url
from swarm.store.sql import new_swarm_id
from swarm.words import plural

log = logging.getLogger(__name__)

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked ``swarm launch`` for."""

    epic: str
    agents: int | None = None
    kind: str | None = None
    model: str | None = None
    command: str | None = None
    base: str | None = None
    capabilities: tuple[str, ...] = ()
    db: str | None = None
    host_label: str | None = None
    #: Use existing branches of agent-branch names that swarm did not create (otherwise launch refuses them).
    reuse_branches: bool = False
    #: ``--fleet``: agents of several kinds and models (swarm/fleet.py); replaces agents, kind and model.
    fleet: Fleet = ()

    @property
    def size(self) -> int | None:
        """How many agents were asked for: the fleet's size, else ``--agents`` (None: not said)."""
        return fleet_size(self.fleet) if self.fleet else self.agents


@dataclass
class LaunchResult:
    """What launch did."""

    swarm: SwarmRecord
    queued: QueuedEpic
    agents: list[AgentRun]
    created_worktrees: list[str] = field(default_factory=list)
    started_sessions: list[str] = field(default_factory=list)
    resumed_sessions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tmux_socket: str = ""
    #: Nothing was left to do: no agent was started or is running for this launch.
    idle: bool = False


def launch_json(result: LaunchResult) -> dict[str, Any]:
    """What ``swarm launch --json`` prints and the lead's ``swarm_launch`` tool returns (never an agent's token)."""
    queued = result.queued
    return {
        "swarm": {"id": result.swarm.id, "epic": result.swarm.epic, "epics": list(result.swarm.epics)},
        "queued": {
            "epic": queued.epic,
            "added": queued.added,
            "existing": queued.existing,
            "ready": queued.ready,
            "dependencies": [{"id": s.id, "epic": s.epic} for s in queued.dependencies],
            "already_done": queued.already_done,
            "joined": queued.joined is not None,
        },
        "agents": [
            {
                "id": run.agent_id,
                "session": run.session,
                "branch": run.branch,
                "worktree": run.worktree,
                "kind": run.kind,
                "model": run.model or None,
            }
            for run in result.agents
        ],
        "created_worktrees": result.created_worktrees,
        "started_sessions": result.started_sessions,
        "resumed_sessions": result.resumed_sessions,
        "warnings": result.warnings,
        "tmux_socket": result.tmux_socket,
        "idle": result.idle,
    }


def launch_overrides(request: LaunchRequest) -> dict[str, object]:
    """The configuration keys the request's options set (``None`` for an option not given). BadInput when
    the options contradict each other: checked before any file is read."""
    overrides: dict[str, object] = {
        "queue.database": request.db,
        "agent.model": request.model,
        "swarm.host_label": request.host_label,
    }
    if request.fleet:
        # Each agent's kind and model come from the fleet (_plan_agents); the configured ones are its fallback.
        check_fleet_options(
            request.fleet, agents=request.agents, kind=request.kind, model=request.model, command=request.command
        )
    elif request.command is not None:
        if request.kind not in (None, "command"):
            raise BadInput(
                f"--command runs any program, so --agent {request.kind} does not apply",
                hint="drop --agent, or drop --command to use that agent's template",
            )
        if not request.command.strip():
            raise BadInput("--command is empty", hint='pass the program to run, e.g. --command "make fix"')
        overrides["agent.kind"] = "command"
    elif request.kind is not None:
        overrides["agent.kind"] = request.kind
    return overrides


def load_launch_config(request: LaunchRequest, *, cwd: Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """The configuration a launch of ``request`` from ``cwd`` runs with: the repository's, with the request's
    options over it. A command loads it once and hands it to :func:`launch`."""
    repo = open_repo(cwd)
    return load_config(repo.root, overrides=launch_overrides(request), env=os.environ if env is None else env)


def launch(
    request: LaunchRequest,
    *,
    cwd: Path,
    say: Say = _quiet,
    env: dict[str, str] | None = None,
    loaded: LoadedConfig | None = None,
) -> LaunchResult:
    """Validate, queue, create worktrees and sessions. Idempotent: a re-run resumes.

    ``loaded`` is the configuration from :func:`load_launch_config`; without it, launch loads it itself."""
    launch_env = dict(os.environ if env is None else env)
    # -- validate everything before the first write -------------------------------------------
    repo = open_repo(cwd)
    overrides = launch_overrides(request)
    if loaded is None:
        loaded = load_config(repo.root, overrides=overrides, env=launch_env)
    tmux_available()
    check_notify(loaded, launch_env)  # the monitor runs the [notify] command: it must exist before anything starts
    templates = [_check_agent(request, loaded, launch_env, kind) for kind in _kinds(request, loaded)]
    template = templates[0]
    for each in templates:
        _check_sandbox(repo.root, loaded, launch_env, each)
    # Every problem of a spec the epic may need refuses the launch; other epics' broken specs are warnings.
    backlog = load_backlog(backlog_folder(loaded), epic=request.epic)
    backlog.epic_specs(request.epic)
    base = repo.resolve(request.base or "HEAD")
    # A sandboxed agent reaches the queue through its channel (its folder is bound in), on SQLite too.
    warnings = [*backlog_warnings(backlog, request.epic), *_checkout_warnings(repo, base)]
    _check_capabilities(request.capabilities)
    _refuse_emptied_database(repo, loaded)
    if not request.reuse_branches:
        _refuse_foreign_branches(repo, loaded, request)
    # .swarm/ holds the command lock from here on: excluded first, so that it never shows as a change to commit.
    # And what the agents' CLIs write (.aider*).
    repo.ensure_excluded("/.swarm/", *(pattern for each in templates for pattern in each.git_exclude))
    timeout = loaded.config.swarm.lock_timeout_seconds
    with command_lock(repo.root, "swarm launch", timeout=timeout, say=say):
        job = _Launch(request=request, repo=repo, loaded=loaded, env=launch_env, say=say)
        return _launch_locked(job, backlog, template.kind, base, warnings)


def _kinds(request: LaunchRequest, loaded: LoadedConfig) -> list[str]:
    """The agent kinds this launch starts: the fleet's, in its order, else the configured one."""
    if not request.fleet:
        return [loaded.config.agent.kind]
    return list(dict.fromkeys(member.kind for member in request.fleet))


def _check_agent(
    request: LaunchRequest, loaded: LoadedConfig, launch_env: dict[str, str], kind: str | None = None
) -> AgentTemplate:
    """The template of agent ``kind`` (default: the configured one), once its template, CLI and permission mode
    are known to work here."""
    cfg = loaded.config
    template = load_template(kind or cfg.agent.kind)
    if template.kind == "command" and not (request.command or "").strip():
        raise BadInput("the command agent needs --command", hint='pass --command "your program"')
    check_agent_cli(template, launch_env)
    problem = root_permission_problem(template, cfg.agent.permission_mode, launch_env)
    if problem:
        raise BadInput(problem)
    return template


def _check_sandbox(root: Path, loaded: LoadedConfig, launch_env: dict[str, str], template: AgentTemplate) -> None:
    """BadInput before anything starts when the configured sandbox cannot run here, or would not show the agent's
    CLI (docs/contract.md §6)."""
    cfg = loaded.config.swarm
    binary = shutil.which(template.binary, path=launch_env.get("PATH")) if template.binary else None
    sandbox.check(
        cfg.sandbox,
        home_setting=cfg.sandbox_home,
        extra=cfg.sandbox_paths,
        env=launch_env,
        repo=root,
        worktree_base=root / cfg.worktree_base,
        binary=binary,
    )


def _checkout_warnings(repo: GitRepo, base: str) -> list[str]:
    """What the user should know about the main checkout before the agents start from ``base``."""
    if not repo.is_dirty():
        return []
    return [
        f"the main checkout has uncommitted changes; agents start from {base[:12]} without them "
        "(commit them first if the agents need them)"
    ]


def _check_capabilities(capabilities: tuple[str, ...]) -> None:
    for cap in capabilities:
        check_id(cap, "capability")


#: The git config key (``branch.<name>.swarm-id``) that marks a branch as created (or adopted) by a swarm.
BRANCH_MARK = "swarm-id"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)


def branch_mark(root: Path, branch: str) -> str | None:
    """The swarm id a branch was created for, or None when swarm did not create it."""
    done = _git(root, "config", "--get", f"branch.{branch}.{BRANCH_MARK}")
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _branch_marks(root: Path) -> dict[str, str]:
    """Every branch's swarm mark (``branch.<name>.swarm-id``), by branch name."""
    done = _git(root, "config", "--get-regexp", rf"^branch\..*\.{BRANCH_MARK}$")
    marks: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        marks[key.removeprefix("branch.").removesuffix(f".{BRANCH_MARK}")] = value.strip()
    return marks


def mark_branch(root: Path, branch: str, swarm_id: str) -> None:
    """Record that swarm made ``branch`` its own (``git branch -d`` removes the mark with the branch)."""
    done = _git(root, "config", f"branch.{branch}.{BRANCH_MARK}", swarm_id)
    if done.returncode != 0:
        raise SwarmError(
            f"cannot record {branch} as swarm's branch in the repository's git config: "
            + (done.stderr.strip().splitlines() or ["git config failed"])[-1],
            hint="check that .git/config is writable, then run 'swarm launch' again (it resumes)",
        )


def _refuse_emptied_database(repo: GitRepo, loaded: LoadedConfig) -> None:
    """StoreError when the SQLite database holds no swarm (0 bytes, or only a schema) while ``.swarm/`` shows
    that one ran here: the file was emptied or replaced, and taking it for a new queue would run done tasks
    again."""
    url = loaded.database_url()
    if not url.startswith("sqlite:"):
        return
    path = path_from_url(url)
    if not path.exists():
        return  # no database at all: a new queue, on purpose (the hint below says so)
    folder = repo.root / ".swarm"
    signs = {
        "lead token": lead_token_path(loaded).exists(),
        "agent logs": any((folder / "logs").glob("*.log")),
        "run files": any((folder / "run").glob("*.json")),
        "monitor state": (folder / "monitor.json").exists(),
    }
    seen = [name for name, present in signs.items() if present]
    if not seen:
        return
    if path.stat().st_size > 0:
        with open_queue(loaded) as store:
            if store.current_swarm() is not None:
                return
    raise StoreError(
        f"the database {path} holds no swarm, but .swarm/ holds a previous swarm's {', '.join(seen)}: "
        "the file was emptied or replaced, and a new queue would run done tasks again",
        hint="restore the database from a backup; or, to start over on purpose, move .swarm/ away "
        "(mv .swarm .swarm.old) and launch again",
    )


def _refuse_foreign_branches(repo: GitRepo, loaded: LoadedConfig, request: LaunchRequest) -> None:
    """BadInput when a branch named like one of the agent branches this launch may use exists and swarm did not
    create it: launch would build on its commits, and 'swarm merge' would carry them into the integration."""
    cfg = loaded.config
    epic = request.epic  # agent branches are named after the swarm's first epic (docs/contract.md §6)
    known: set[str] = set()
    limit = request.size or cfg.swarm.max_agents
    if database_exists(loaded.database_url()):
        # Branches of agents this database knows are swarm's, marked or not (made before marks existed).
        with open_queue(loaded) as store:
            known = {a.branch for a in store.list_agents() if a.branch}
            current = store.current_swarm()
        if current is not None and not current.ended:
            epic = current.epic  # the launch joins the open swarm: its agents keep their branches
            if current.max_agents:
                # A relaunch without --agents starts as many as the swarm has; --agents never shrinks it.
                limit = max(request.size or 0, current.max_agents)
    folder = f"refs/heads/{cfg.swarm.branch_prefix}/{epic}/"
    listed = _git(repo.root, "for-each-ref", "--format=%(refname)", folder)
    agent_name = re.compile(rf"{re.escape(host_prefix(loaded))}agent-(\d+)")
    found = {
        ref.removeprefix("refs/heads/"): int(match.group(1))
        for ref in listed.stdout.split()
        if (match := agent_name.fullmatch(ref.removeprefix(folder)))
    }
    # Only the agents this launch may start: a branch agent-7 is not in the way of two agents.
    candidates = sorted(b for b, n in found.items() if n <= limit)
    foreign = [b for b in candidates if b not in known and branch_mark(repo.root, b) is None]
    if foreign:
        shown = ", ".join(foreign)
        raise BadInput(
            f"the branch {shown} has the name of an agent branch of {epic} but was not created by swarm "
            "(launch would build on its commits and 'swarm merge' would carry them into the integration branch)",
            hint=f"rename it (git branch -m {foreign[0]} NEW-NAME), or pass --reuse-branches to use it as it is",
        )


@dataclass(frozen=True)
class _Launch:
    """What every step of one launch needs: the request, where, with which configuration and environment."""

    request: LaunchRequest
    repo: GitRepo
    loaded: LoadedConfig
    env: dict[str, str]
    say: Say


def _launch_locked(job: _Launch, backlog: Backlog, kind: str, base: str, warnings: list[str]) -> LaunchResult:
    """Everything launch writes, under the repository's command lock.

    docs/contract.md §5, a launch that fails changes nothing: what it will do is decided first, from reads
    only (the swarm it joins or starts, its agents, their worktrees, branches and session names), and every
    check that can fail runs then. The writes follow, least visible first: worktrees and branches, then the
    queue (from then on the running agents may take the new tasks), then agents and sessions. A failure
    after the first write takes back what this launch wrote (:class:`_Undo`)."""
    socket_name = job.loaded.config.swarm.tmux_socket
    preview = preview_epic(job.loaded, backlog, job.request.epic)
    if preview.finished:
        queued = _queue(job, backlog, kind, base, warnings)  # writes nothing: it finds the epic finished
        job.say(f"every task of {job.request.epic} is already finished; no agent started")
        _remember_options(job)
        return LaunchResult(
            swarm=queued.swarm, queued=queued, agents=[], warnings=warnings, tmux_socket=socket_name, idle=True
        )
    planned = preview.current or SwarmRecord(
        id=new_swarm_id(), epic=job.request.epic, max_agents=job.request.size, created_at=0.0
    )
    if preview.open_tasks == 0:
        # Every task is done: the epic joins the open swarm (its status shows it), and no agent is started.
        queued = _queue(job, backlog, kind, base, warnings)
        _announce_join(job, queued)
        job.say(f"every task of {job.request.epic} is already finished; no agent started")
        _remember_options(job)
        return LaunchResult(
            swarm=queued.swarm, queued=queued, agents=[], warnings=warnings, tmux_socket=socket_name, idle=True
        )
    tmux = Tmux(socket_name)
    agents_before: dict[str, AgentRecord] = {}
    if database_exists(job.loaded.database_url()):  # reads only: a launch that fails must not create it
        with open_queue(job.loaded) as store:
            agents_before = {a.id: a for a in store.list_agents()}
    fleet = [a for a in agents_before.values() if a.swarm_id == planned.id]
    count = _agent_count(job, planned, preview.open_tasks, _fleet_size(fleet, host_prefix(job.loaded)))
    runs = _plan_agents(job.repo, job.loaded, planned, job.request, count, job.env, fleet)
    existing = set(tmux.sessions())
    runs = _own_session_names(tmux, job.repo.root, planned.id, runs, existing)
    _check_worktrees(job.repo, runs)
    undo = _Undo(job, planned, runs, agents_before, tmux)
    try:
        result = _launch_writes(job, backlog, kind, base, warnings, preview, planned, runs, existing, undo)
    except BaseException as exc:
        problems, kept = undo.roll_back()
        if isinstance(exc, SwarmError):
            raise _rolled_back(exc, problems, kept) from exc
        raise
    _remember_options(job)
    return result


def _launch_writes(
    job: _Launch,
    backlog: Backlog,
    kind: str,
    base: str,
    warnings: list[str],
    preview: EpicPreview,
    planned: SwarmRecord,
    runs: list[AgentRun],
    existing: set[str],
    undo: _Undo,
) -> LaunchResult:
    """The writes of a launch whose plan passed every check, each noted in ``undo`` as it is made."""
    created = _prepare_worktrees(job, runs, base)
    queued = _queue(job, backlog, kind, base, warnings, swarm_id=None if preview.current else planned.id)
    undo.queued(queued, preview.current, preview.members)
    swarm = queued.swarm
    if (swarm.id, swarm.epic) != (planned.id, planned.epic):
        # Another host (a shared database) started a swarm at the same moment: this plan is not for it.
        raise SwarmError(
            f"another launch started swarm {swarm.id} ({swarm.epic}) while this one prepared its agents",
            hint="run 'swarm launch' again: it joins that swarm",
        )
    _announce_join(job, queued)
    socket_name = job.loaded.config.swarm.tmux_socket
    result = LaunchResult(swarm=swarm, queued=queued, agents=runs, warnings=warnings, tmux_socket=socket_name)
    result.created_worktrees = created
    tmux = undo.tmux
    with open_queue(job.loaded) as store:
        # Every agent is registered (and its run file written) before the first session starts: once workers
        # run, each database write of launch waits its turn behind theirs, and with 100 agents the last
        # sessions started tens of seconds late. One list-sessions instead of a has-session per agent.
        existing -= _finished_sessions(store, tmux, swarm, runs, existing)
        _bury_dead_agents(store, swarm, [r for r in runs if r.session not in existing], job.say)
        undo.registering([r.agent_id for r in runs if r.session not in existing], store)
        to_start = _register_agents(store, swarm, runs, existing, result)
        undo.run_files = [path for _, path in to_start]
        _start_sessions(store, tmux, swarm, to_start, job.env, result, undo.sessions)
        monitor = start_monitor(tmux, job.repo.root, swarm.id, host_prefix(job.loaded), job.env)
        if monitor:
            undo.sessions.append(monitor)
            result.started_sessions.append(monitor)
    return result


def _announce_join(job: _Launch, queued: QueuedEpic) -> None:
    if queued.joined is not None:
        running = ", ".join(queued.joined.epics)
        job.say(f"added {job.request.epic} to swarm {queued.swarm.id} (running {running})")


def _remember_options(job: _Launch) -> None:
    """Later commands in this repository use the launch's --db and --host-label too (once it succeeded)."""
    if job.request.db:
        remember(job.repo.root, "queue.database", job.request.db)
    if job.request.host_label:
        remember(job.repo.root, "swarm.host_label", job.request.host_label)


def _check_worktrees(repo: GitRepo, runs: list[AgentRun]) -> None:
    """BadInput, before anything is written, when an agent's worktree cannot be made: its path is taken by
    something that is not its worktree (a file, a folder, another worktree), its branch is checked out
    elsewhere, or the branch name is invalid. What ``GitRepo.add_worktree`` would refuse, said first."""
    listed = [w for w in repo.list_worktrees() if not (w.prunable and not w.path.exists())]
    for run in runs:
        path, branch = Path(run.worktree), run.branch
        repo.check_branch_name(branch)
        mine = next((w for w in listed if w.path == path), None)
        if mine is not None:
            if mine.branch != branch:
                on = f"branch {mine.branch!r}" if mine.branch else "a detached HEAD"
                raise BadInput(
                    f"cannot create worktree {path}: it is already a worktree on {on}, not {branch!r}",
                    hint=f"remove it first (git worktree remove {path}) or use another worktree path",
                )
            continue
        elsewhere = next((w for w in listed if w.branch == branch), None)
        if elsewhere is not None:
            raise BadInput(
                f"cannot create worktree {path}: branch {branch!r} is checked out in {elsewhere.path}",
                hint=f"remove that worktree (git worktree remove {elsewhere.path}) or use another branch",
            )
        if path.exists() or path.is_symlink():
            raise BadInput(
                f"cannot create worktree {path}: the path exists and is not a worktree of {repo.root}",
                hint="move or delete it, or choose another worktree directory",
            )
        blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise BadInput(
                f"cannot create worktree {path}: {blocked} is not a folder",
                hint="move or delete it, or choose another worktree directory",
            )


def _rolled_back(exc: SwarmError, problems: list[str], kept: list[str]) -> SwarmError:
    """The launch's error, saying what its rollback left (nothing, when all went well)."""
    if problems:
        note = "rolling this launch back failed: " + "; ".join(problems)
    elif kept:
        note = f"nothing of this launch was kept but its tasks {', '.join(kept)}, claimed meanwhile"
    else:
        note = "nothing of this launch was kept"
    copy = type(exc).__new__(type(exc))
    copy.__dict__.update(exc.__dict__)
    copy.message = f"{exc.message} ({note})"
    copy.args = (copy.message,)
    return copy


class _Undo:
    """What one launch wrote, noted as it writes, and how to take it back (docs/contract.md §5)."""

    def __init__(
        self,
        job: _Launch,
        planned: SwarmRecord,
        runs: list[AgentRun],
        agents_before: dict[str, AgentRecord],
        tmux: Tmux,
    ) -> None:
        self.job, self.planned, self.runs, self.tmux = job, planned, runs, tmux
        self.agents_before = agents_before
        repo = job.repo
        # Git's state before: a worktree, branch or mark this launch did not find is one it made.
        self.worktrees_before = {w.path for w in repo.list_worktrees()}
        # One git call each, not one per agent: a launch of 100 agents must not pay 200 processes for this.
        heads = _git(repo.root, "for-each-ref", "--format=%(refname)", "refs/heads/").stdout.split()
        self.branches_before = {r.branch for r in runs} & {h.removeprefix("refs/heads/") for h in heads}
        marks = _branch_marks(repo.root)
        self.marks_before = {r.branch: marks.get(r.branch) for r in runs}
        self.withdrawal: Withdrawal | None = None
        url = job.loaded.database_url()
        #: A SQLite file this launch creates goes with the rollback: a database without a swarm beside the logs
        #: of the agents it started would look emptied to the next launch (_refuse_emptied_database).
        self.new_database = path_from_url(url) if url.startswith("sqlite:") and not database_exists(url) else None
        self.swarm_id = planned.id
        self.registered: list[str] = []
        self.tokens: dict[str, str | None] = {}
        self.run_files: list[Path] = []
        self.sessions: list[str] = []

    def queued(self, queued: QueuedEpic, previous: SwarmRecord | None, members_before: frozenset[str]) -> None:
        """The queue step wrote ``queued``; ``previous`` is the open swarm as it was (None: the launch started
        the swarm), with ``members_before`` its tasks then."""
        self.swarm_id = queued.swarm.id
        epic = self.job.request.epic
        added_epic = epic if previous is None or epic not in previous.epics else None
        members = tuple(t for t in (*queued.added, *queued.existing) if t not in members_before)
        self.withdrawal = Withdrawal(queued.swarm.id, previous, added_epic, tuple(queued.added), members)

    def registering(self, agent_ids: list[str], store: Store) -> None:
        """These agents are about to be (re)registered with new tokens."""
        self.registered = agent_ids
        self.tokens = {a: store.token_hash(a) for a in agent_ids if a in self.agents_before}

    def roll_back(self) -> tuple[list[str], list[str]]:
        """Take back everything noted, newest first; what could not be undone, and the tasks that stay."""
        problems: list[str] = []
        kept: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:  # one failed step must not stop the others, nor hide the launch's error
                log.warning("rollback: %s failed", what, exc_info=True)
                problems.append(f"{what}: {exc}")

        step("stopping the sessions it started", self._stop_sessions)
        if self.new_database is not None:
            step("removing the database it created", self._remove_database)
        elif self.withdrawal is not None:
            step("taking its tasks back from the queue", lambda: kept.extend(self._withdraw()))
        step("removing its run files", self._remove_run_files)
        step("removing its worktrees and branches", self._remove_git_work)
        return problems, kept

    def _remove_database(self) -> None:
        assert self.new_database is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.new_database}{suffix}").unlink(missing_ok=True)

    def _remove_run_files(self) -> None:
        for path in self.run_files:
            path.unlink(missing_ok=True)  # they hold the launching environment's secrets

    def _stop_sessions(self) -> None:
        for name in reversed(self.sessions):
            self.tmux.kill_session(name, self.swarm_id)
        started = {r.agent_id for r in self.runs if r.session in self.sessions}
        if started:
            leftovers = procs.processes_with_env("SWARM_ID", self.swarm_id, among=("SWARM_AGENT_ID", started))
            if leftovers:
                procs.stop_processes(leftovers, grace=3.0)
        self.tmux.kill_server_if_empty()

    def _withdraw(self) -> list[str]:
        assert self.withdrawal is not None
        with open_queue(self.job.loaded) as store:
            started = [r.agent_id for r in self.runs if r.session in self.sessions]
            store.return_claims(started, actor="launch", reason="the launch that started its agent failed")
            new = tuple(a for a in self.registered if a not in self.agents_before)
            kept = store.withdraw(replace(self.withdrawal, agents=new))
            for agent_id in self.registered:
                before = self.agents_before.get(agent_id)
                if before is None:
                    continue
                store.register_agent(before)
                store.update_agent(
                    agent_id, state=before.state, pid=before.pid, agent_pid=before.agent_pid, task_id=before.task_id
                )
                token = self.tokens.get(agent_id)
                if token:
                    store.set_token_hash(agent_id, token)
        return kept

    def _remove_git_work(self) -> None:
        repo = self.job.repo
        made = {w.path for w in repo.list_worktrees()} - self.worktrees_before
        for run in self.runs:
            path = Path(run.worktree)
            if path in made:
                repo.remove_worktree(path, force=True, prune=False)
            elif not path.exists() and path.is_symlink():
                path.unlink()
            if path.is_dir() and path not in self.worktrees_before and not any(path.iterdir()):
                path.rmdir()  # an empty folder a failed 'git worktree add' left
        repo.prune_worktrees()
        for run in self.runs:
            if run.branch not in self.branches_before:
                repo.delete_branch(run.branch, force=True)
            mark = self.marks_before.get(run.branch)
            now = branch_mark(repo.root, run.branch)
            if now != mark and repo.branch_exists(run.branch):
                if mark is None:
                    _git(repo.root, "config", "--unset", f"branch.{run.branch}.{BRANCH_MARK}")
                else:
                    mark_branch(repo.root, run.branch, mark)
            elif now is not None and not repo.branch_exists(run.branch):
                _git(repo.root, "config", "--remove-section", f"branch.{run.branch}")


def _queue(
    job: _Launch, backlog: Backlog, kind: str, base: str, warnings: list[str], *, swarm_id: str | None = None
) -> QueuedEpic:
    """Queue the epic (a re-run finds its tasks queued already); a new swarm is named ``swarm_id``. The swarm
    keeps the options that later commands in this repository use too."""
    request, repo, cfg = job.request, job.repo, job.loaded.config
    settings = {
        "kind": kind,
        "model": cfg.agent.model,
        "command": request.command,
        "base": base,
        "tmux_socket": cfg.swarm.tmux_socket,
        "capabilities": list(request.capabilities),
        "fleet": fleet_text(request.fleet) or None,
    }
    queued = queue_epic(
        job.loaded,
        backlog,
        request.epic,
        max_agents=request.size,
        repo=str(repo.root),
        settings=settings,
        swarm_id=swarm_id,
    )
    if is_shared(job.loaded) and not repo.remote_exists(cfg.swarm.remote):
        warnings.append(
            f"no git remote {cfg.swarm.remote!r}: agents on other machines cannot get this machine's commits "
            "(set swarm.remote, or add the remote)"
        )
    return queued


def _count_open_tasks(store: Store, swarm: SwarmRecord) -> int:
    """Tasks of the swarm that an agent may still work: ready, blocked or claimed."""
    return sum(1 for t in store.list_tasks(swarm_id=swarm.id) if t.state.value in ("ready", "blocked", "claimed"))


def _fleet_size(agents: list[AgentRecord], prefix: str) -> int:
    """How many agents this host's part of the swarm has (the highest ``agent-N`` among its ``agents``)."""
    name = re.compile(rf"{re.escape(prefix)}agent-(\d+)")
    numbers = [int(m.group(1)) for a in agents if (m := name.fullmatch(a.id))]
    return max(numbers, default=0)


def _agent_count(job: _Launch, swarm: SwarmRecord, open_tasks: int, fleet: int = 0) -> int:
    """How many agents to start: as asked, else as many as the swarm's first launch, but no more than there
    are open tasks unless ``--agents`` says so. ``--agents`` grows a running fleet of ``fleet`` agents, never
    shrinks it (docs/contract.md §5)."""
    request = job.request
    count = request.size or swarm.max_agents or job.loaded.config.swarm.max_agents
    if request.size is not None and request.size < fleet:
        asked = f"--fleet {fleet_text(request.fleet)}" if request.fleet else f"--agents {request.agents}"
        job.say(
            f"swarm {swarm.id} runs {plural(fleet, 'agent')}; {asked} does not shrink it "
            "('swarm teardown' stops them all)"
        )
        count = fleet
    if open_tasks and count > open_tasks and request.size is None:
        job.say(f"starting {plural(open_tasks, 'agent')}, one per open task (max_agents is {count})")
        count = open_tasks
    return max(1, count)


#: How long launch waits for a worker that has just said "finished" to exit, before restarting it.
FINISHING_WORKER_SECONDS = 15.0


def _finished_sessions(
    store: Store, tmux: Tmux, swarm: SwarmRecord, runs: list[AgentRun], existing: set[str]
) -> set[str]:
    """Sessions of workers that decided the swarm was finished (state ``done``) before this launch added tasks:
    each is waited for, and its session closed once its worker has exited, so that it is started again.

    A worker records ``done`` before it counts the tasks a last time (worker.py ``_swarm_finished``), and this
    reads the states after the tasks were queued: a worker not yet ``done`` here sees the new tasks and goes on;
    one that is ``done`` either goes on too (its state changes) or exits (then it is restarted here)."""
    ours = {r.agent_id: r for r in runs if r.session in existing}
    finishing = {a.id: a for a in store.list_agents(swarm.id) if a.id in ours and a.state == AgentState.DONE.value}
    closed: set[str] = set()
    deadline = time.monotonic() + FINISHING_WORKER_SECONDS
    while finishing and time.monotonic() < deadline:
        now = {a.id: a for a in store.list_agents(swarm.id) if a.id in finishing}
        for agent_id, agent in list(finishing.items()):
            current = now.get(agent_id, agent)
            if current.state != AgentState.DONE.value:
                del finishing[agent_id]  # it saw the new tasks and works on
            elif not current.pid or not procs.alive(current.pid):
                session = ours[agent_id].session
                tmux.kill_session(session, swarm.id)  # its pane may not have closed yet
                closed.add(session)
                del finishing[agent_id]
        if finishing:
            time.sleep(0.1)
    return closed


def _prepare_worktrees(job: _Launch, runs: list[AgentRun], base: str) -> list[str]:
    """Exclude swarm's folders from git, then create the worktrees that do not exist yet; the agents created."""
    cfg = job.loaded.config
    job.repo.ensure_excluded("/.swarm/", f"/{cfg.swarm.worktree_base.strip('/')}/")
    return _create_worktrees(job.repo, job.loaded, runs, base, job.say)


def _register_agents(
    store: Store, swarm: SwarmRecord, runs: list[AgentRun], existing: set[str], result: LaunchResult
) -> list[tuple[AgentRun, Path]]:
    """Record every agent as starting; the agents whose session must be started, each with its new run file.
    An agent whose session runs already is resumed as it is (it keeps the token it started with)."""
    to_start: list[tuple[AgentRun, Path]] = []
    for run in runs:
        store.register_agent(
            AgentRecord(
                id=run.agent_id,
                swarm_id=swarm.id,
                host=run.host,
                session=run.session,
                branch=run.branch,
                worktree=run.worktree,
                capabilities=tuple(run.capabilities),
                state=AgentState.STARTING.value,
                kind=run.kind,
                model=run.model or None,
            )
        )
        if run.session in existing:  # ours: _own_session_names renamed every other one
            result.resumed_sessions.append(run.session)
            continue
        # The hash of a token nobody holds: it marks the id as a launched agent's, so that no one writes as it
        # by naming it; the agent itself writes through its worker's channel (docs/contract.md §7).
        store.set_token_hash(run.agent_id, hash_token(new_token()))
        # A new worker starts: what the row says of the last one (dead, stopped, done, its restarts) is history,
        # and the monitor must not "restart", nor --wait give up on, the worker now starting.
        store.update_agent(
            run.agent_id,
            state=AgentState.STARTING.value,
            pid=None,
            agent_pid=None,
            task_id=None,
            detail=None,
            restarts=0,
            next_restart_at=0.0,
        )
        to_start.append((run, write_run_file(run)))
    return to_start


def _start_sessions(
    store: Store,
    tmux: Tmux,
    swarm: SwarmRecord,
    to_start: list[tuple[AgentRun, Path]],
    launch_env: dict[str, str],
    result: LaunchResult,
    started: list[str],
) -> None:
    """Start each agent's worker in its tmux session, tagged with the swarm's id; each is noted in ``started``
    as soon as it may exist (before start_worker returns, which may fail after tmux made the session)."""
    for run, run_file in to_start:
        started.append(run.session)
        pid = start_worker(tmux, run, run_file, launch_env, tag=swarm.id)
        # The pid only: the worker may already have recorded a later state than "starting".
        store.update_agent(run.agent_id, pid=pid)
        result.started_sessions.append(run.session)


def _own_session_names(
    tmux: Tmux, repo: Path, swarm_id: str, runs: list[AgentRun], existing: set[str]
) -> list[AgentRun]:
    """The runs, each with a session name no other swarm holds on this tmux server.

    A same-named repository elsewhere (two ``proj`` folders) has the same plain names; a session is told to be
    ours by its tag, and an agent whose name is taken by another's gets the name with this repository's hash.
    Decided before any agent is registered, so a clash never leaves an agent 'starting' without a session.
    """
    named: list[AgentRun] = []
    for run in runs:
        if run.session in existing and tmux.session_tag(run.session) != swarm_id:
            distinct = session_name(repo, run.agent_id, distinct=True)
            if distinct in existing and tmux.session_tag(distinct) != swarm_id:
                raise SwarmError(
                    f"the tmux sessions {run.session} and {distinct} exist and do not belong to swarm {swarm_id}",
                    hint="rename or close them, or set SWARM_TMUX_SOCKET to use another tmux server",
                )
            log.info("session %s belongs to another swarm; %s uses %s", run.session, run.agent_id, distinct)
            named.append(run.model_copy(update={"session": distinct}))
        else:
            named.append(run)
    return named


def _bury_dead_agents(store: Store, swarm: SwarmRecord, runs: list[AgentRun], say: Say) -> None:
    """Before agents whose session is gone are started again: stop what is left of them and give their claims
    back, or the tasks they held would wait out their leases (an interruption: no attempt is spent)."""
    known = {a.id for a in store.list_agents(swarm.id)}
    dead = [r.agent_id for r in runs if r.agent_id in known]
    if not dead:
        return
    # Their agent commands can outlive a killed worker; they must not write to a worktree handed to a new one.
    leftovers = procs.processes_with_env("SWARM_ID", swarm.id, among=("SWARM_AGENT_ID", set(dead)))
    if leftovers:
        procs.stop_processes(leftovers, grace=3.0)
    for agent_id in dead:
        returned = store.return_claims(
            [agent_id], actor="launch", reason=f"{agent_id} was found dead; returned by launch before restarting it"
        )
        if returned:
            say(f"returned {', '.join(returned)} of {agent_id} (found dead) to the queue")


def is_shared(loaded: LoadedConfig) -> bool:
    """Whether other clones may work this queue too: a server database, or any database once a host label is
    set (several clones on one machine can share one SQLite file). Shared swarms exchange task commits
    through the remote."""
    return bool(loaded.config.swarm.host_label) or not loaded.database_url().startswith("sqlite:")


def host_prefix(loaded: LoadedConfig) -> str:
    """``<label>-`` before agent ids when machines share the queue (docs/contract.md §6), else nothing."""
    label = loaded.config.swarm.host_label
    if not label and is_shared(loaded):
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")[:31] or "host"
    return f"{label}-" if label else ""


def _plan_agents(
    repo: GitRepo,
    loaded: LoadedConfig,
    swarm: SwarmRecord,
    request: LaunchRequest,
    count: int,
    launch_env: dict[str, str],
    agents: list[AgentRecord],
) -> list[AgentRun]:
    """The ``count`` agents of ``swarm`` on this host, as a launch starts them; ``agents`` are the swarm's
    registered ones (a resumed agent keeps its session name)."""
    cfg = loaded.config
    existing = {a.id: a for a in agents}
    host = socket.gethostname()
    env = {k: v for k, v in launch_env.items() if not k.startswith("SWARM_")}
    prefix = host_prefix(loaded)
    shared = is_shared(loaded)
    push_remote = cfg.swarm.remote if shared and repo.remote_exists(cfg.swarm.remote) else None
    runs: list[AgentRun] = []
    for n in range(1, count + 1):
        agent_id = f"{prefix}agent-{n}"
        worktree = (repo.root / cfg.swarm.worktree_base / agent_id).resolve()
        previous = existing.get(agent_id)
        kind, model, command = _kind_of(repo.root, loaded, request, n, existing, prefix)
        runs.append(
            AgentRun(
                swarm_id=swarm.id,
                epic=swarm.epic,
                agent_id=agent_id,
                host=host,
                repo=str(repo.root),
                worktree=str(worktree),
                branch=f"{cfg.swarm.branch_prefix}/{swarm.epic}/{agent_id}",
                session=previous.session if previous and previous.session else session_name(repo.root, agent_id),
                database_url=loaded.database_url(),
                kind=kind,
                model=model,
                permission_mode=cfg.agent.permission_mode,
                keep_context=cfg.agent.keep_context,
                command=command,
                capabilities=list(request.capabilities),
                lease_ttl_seconds=cfg.queue.lease_ttl_seconds,
                heartbeat_seconds=cfg.queue.heartbeat_seconds,
                task_timeout_seconds=float(cfg.swarm.task_timeout_seconds),
                commit_author=cfg.swarm.commit_author,
                submodules=cfg.swarm.submodules,
                tmux_socket=cfg.swarm.tmux_socket,
                env=env,
                push_remote=push_remote,
                retry_backoff_seconds=cfg.queue.retry_backoff_seconds,
                retry_backoff_max_seconds=cfg.queue.retry_backoff_max_seconds,
                log_max_bytes=cfg.swarm.log_max_bytes,
                verify=cfg.swarm.verify,
                sandbox=cfg.swarm.sandbox,
                sandbox_network=cfg.swarm.sandbox_network,
                sandbox_home=list(cfg.swarm.sandbox_home),
                sandbox_paths=list(cfg.swarm.sandbox_paths),
            )
        )
    return runs


def _kind_of(
    root: Path, loaded: LoadedConfig, request: LaunchRequest, number: int, existing: dict[str, AgentRecord], prefix: str
) -> tuple[str, str, str | None]:
    """Kind, model and command of agent ``<prefix>agent-<number>`` (docs/contract.md §5 "Mixed fleets").

    An agent the swarm has keeps the kind and model it was started with; a new one takes its slot of
    ``--fleet``, else the launch's ``--agent`` / ``--command``, else the slot of the swarm's own fleet (the
    pattern of its agents repeats, so a fleet grown by a later launch keeps its mix), else the configured kind."""
    cfg = loaded.config
    # A command agent runs any program: a model means nothing to it (swarm.toml's model is for the agent CLIs).
    default = (cfg.agent.kind, "" if cfg.agent.kind == "command" else cfg.agent.model, request.command)
    previous = existing.get(f"{prefix}agent-{number}")
    if previous is None or not previous.kind:
        if request.fleet:
            member = member_of(request.fleet, number)
            # agent.model is the configured kind's: another kind gets its CLI's own default ("sonnet" means
            # nothing to codex), and a command agent has no model.
            own = member.kind == cfg.agent.kind and member.kind != "command"
            model = member.model or (cfg.agent.model if own else "")
            return member.kind, model, request.command if member.kind == "command" else None
        if request.kind is not None or request.command is not None:
            # The built-in default model ("sonnet") is Claude's: another kind named by --agent, with no model
            # given anywhere, uses its CLI's own default (codex would be asked for a model named "sonnet").
            built_in = loaded.sources.get("agent.model", "default") == "default"
            if cfg.agent.kind not in ("claude",) and request.model is None and built_in:
                return cfg.agent.kind, "", request.command
            return default
        name = re.compile(rf"{re.escape(prefix)}agent-(\d+)")
        known = {int(m.group(1)): a for a in existing.values() if a.kind and (m := name.fullmatch(a.id))}
        if not known:
            return default
        previous = known.get((number - 1) % max(known) + 1)
        if previous is None or not previous.kind:
            return default
    command = request.command
    if previous.kind == "command" and command is None:
        try:  # the command it ran: its run file keeps it while the swarm is open
            command = read_run_file(run_file_path(root, previous.id)).command
        except SwarmError:
            command = None
        if not command:
            return default  # nothing to run it with: it takes the launch's kind
    return previous.kind, previous.model or "", command if previous.kind == "command" else None


def _create_worktrees(repo: GitRepo, loaded: LoadedConfig, runs: list[AgentRun], base: str, say: Say) -> list[str]:
    """Create the agents' worktrees in parallel; copy files and run setup in the new ones."""
    cfg = loaded.config

    def one(run: AgentRun) -> str | None:
        path = Path(run.worktree)
        if not repo.add_worktree(path, run.branch, base):
            return None
        if cfg.swarm.submodules:
            repo.init_submodules(path)
        for name in cfg.swarm.copy_files:
            source = repo.root / name
            if source.is_file():
                target = path / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        for command in cfg.swarm.setup:
            done = subprocess.run(  # setup commands are the user's own shell lines from swarm.toml
                command, shell=True, cwd=path, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise SwarmError(
                    f"setup command {command!r} failed in {path} (exit {done.returncode}): {last[0]}",
                    hint="fix swarm.setup in swarm.toml, then run 'swarm launch' again (it resumes)",
                )
        return run.agent_id

    # Marked before they are made, one at a time (git config takes a lock of its own): a branch exists
    # only once it is marked, so a concurrent look never sees one of ours unmarked.
    for run in runs:
        if branch_mark(repo.root, run.branch) != run.swarm_id:
            mark_branch(repo.root, run.branch, run.swarm_id)
    with ThreadPoolExecutor(max_workers=min(8, len(runs))) as pool:
        created = [agent for agent in pool.map(one, runs) if agent]
    if created:
        say(f"created {plural(len(created), 'worktree')} under {cfg.swarm.worktree_base}/")
    return created


# -- teardown ---------------------------------------------------------------------------------------

#: Agent states in which a worker is expected to run.
_LIVE_STATES = frozenset(
    {AgentState.STARTING.value, AgentState.WORKING.value, AgentState.IDLE.value, AgentState.WAITING.value}
)


def _remove_run_files(repo: Path, swarm_id: str) -> None:
    """Every run file of this swarm, also of an agent the database never heard of (a launch stopped between
    writing a run file and starting its session): they hold the launching environment's secrets."""
    folder = repo / ".swarm" / "run"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            owner = read_run_file(path).swarm_id
        except SwarmError:
            continue  # not a run file swarm can read: not known to be this swarm's
        if owner == swarm_id:
            path.unlink(missing_ok=True)
    for tmp in sorted(folder.glob("*.tmp")) if folder.is_dir() else []:
        tmp.unlink(missing_ok=True)  # half-written by a launch that was killed


@dataclass(frozen=True)
class _Saved:
    """What teardown's save did in one worktree; ``problem`` says why the worktree must stay."""

    sha: str | None
    notes: list[str]
    problem: str | None


@dataclass
class TeardownReport:
    """What teardown did and what it verified."""

    swarm_id: str | None = None
    stopped_gracefully: list[str] = field(default_factory=list)
    responses: dict[str, str] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)
    returned_tasks: list[str] = field(default_factory=list)
    wip_commits: dict[str, str] = field(default_factory=dict)
    sessions_killed: list[str] = field(default_factory=list)
    worktrees_removed: list[str] = field(default_factory=list)
    worktrees_kept: list[str] = field(default_factory=list)
    branches_deleted: list[str] = field(default_factory=list)
    branches_kept: list[str] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    sessions_left: list[str] = field(default_factory=list)
    #: Nothing of the swarm ran on this host when teardown began (a second teardown finds it so).
    already_down: bool = False
    #: The swarm ended with this teardown (the next launch starts a new one).
    ended: bool = False

    @property
    def clean(self) -> bool:
        """Nothing this swarm started is left running."""
        return not self.survivors and not self.sessions_left


@dataclass(frozen=True)
class TeardownOptions:
    """How far teardown goes (the ``swarm teardown`` flags)."""

    now: bool = False
    force: bool = False
    keep_worktrees: bool = False
    delete_branches: bool = False
    grace: float | None = None
    all_hosts: bool = False


def teardown_json(report: TeardownReport) -> dict[str, Any]:
    """What ``swarm teardown --json`` prints and the lead's ``swarm_teardown`` tool returns."""
    return {
        "swarm": report.swarm_id,
        "stopped_gracefully": report.stopped_gracefully,
        "shutdown_responses": report.responses,
        "killed": report.killed,
        "returned_tasks": report.returned_tasks,
        "wip_commits": report.wip_commits,
        "sessions_killed": report.sessions_killed,
        "worktrees_removed": report.worktrees_removed,
        "worktrees_kept": report.worktrees_kept,
        "branches_deleted": report.branches_deleted,
        "branches_kept": report.branches_kept,
        "survivors": report.survivors,
        "sessions_left": report.sessions_left,
        "clean": report.clean,
        "already_down": report.already_down,
        "ended": report.ended,
    }


def teardown(
    *,
    cwd: Path,
    options: TeardownOptions | None = None,
    db: str | None = None,
    say: Say = _quiet,
    loaded: LoadedConfig | None = None,
) -> TeardownReport:
    """Stop everything the current swarm owns on this host (and ask every host's workers with
    ``options.all_hosts``), and lose nothing; ``options`` default to those of a plain ``swarm teardown``.
    ``loaded``: the configuration the command loaded (then ``db`` is not read), else loaded here with ``db``
    over it."""
    repo = open_repo(cwd)
    if loaded is None:
        loaded = load_config(repo.root, overrides={"queue.database": db})
    if options is None:
        options = TeardownOptions()
    timeout = loaded.config.swarm.lock_timeout_seconds
    # Never beside a launch or repair of this repository: a launch between its worktrees and its sessions
    # would start agents after this teardown said "down".
    with command_lock(repo.root, "swarm teardown", timeout=timeout, say=say, create=False):
        return _teardown_locked(repo, loaded, options, say)


def _teardown_locked(repo: GitRepo, loaded: LoadedConfig, options: TeardownOptions, say: Say) -> TeardownReport:
    report = TeardownReport()
    with open_queue(loaded) as store:
        swarm = store.current_swarm()
        if swarm is None:
            say("no swarm in this repository; nothing to tear down")
            return report
        report.swarm_id = swarm.id
        down = _Teardown(repo, loaded, store, swarm, options, say, report)
        down.check_already_down()
        down.stop_monitor()
        down.remember_agent_processes()
        down.ask_workers_to_stop()
        down.wait_for_workers()
        down.stop_what_is_left()
        down.return_claims()
        present, unsafe = down.save_uncommitted_work()
        down.stop_sessions()
        down.remove_worktrees(present, unsafe)
        down.delete_branches()
        down.forget_agents()
        down.verify()
        down.end_swarm()
    return report


class _Teardown:
    """One teardown of one swarm on this host: what it found when it began, and its steps, in the order
    :func:`_teardown_locked` takes them."""

    def __init__(
        self,
        repo: GitRepo,
        loaded: LoadedConfig,
        store: Store,
        swarm: SwarmRecord,
        options: TeardownOptions,
        say: Say,
        report: TeardownReport,
    ) -> None:
        self.repo, self.loaded, self.store, self.swarm = repo, loaded, store, swarm
        self.options, self.say, self.report = options, say, report
        everyone = store.list_agents(swarm.id)
        # This host's agents are those whose worktrees live in this repository; other clones (other machines,
        # or another checkout on this one) tear down their own.
        self.agents = [a for a in everyone if a.worktree and is_inside(Path(a.worktree), repo.root)]
        self.others = [a for a in everyone if a not in self.agents]
        socket_name = str(loaded.config.swarm.tmux_socket or swarm.settings.get("tmux_socket") or "")
        self.tmux = Tmux(socket_name)
        self.local_ids = {a.id for a in self.agents} | {f"{host_prefix(loaded)}monitor"}
        self.local_sessions = {a.session for a in self.agents if a.session}
        self.monitors = set(monitor_sessions(repo.root, host_prefix(loaded)))
        self.live = {a.id: a.pid for a in self.agents if a.pid and procs.alive(a.pid)}
        self.tagged = set(self.tmux.tagged_sessions(swarm.id))
        self.records = [process_record_path(repo.root, a.id) for a in self.agents]
        # An agent's process may carry neither SWARM_ID nor its group (`env -i setsid cmd &`). A worker is a
        # subreaper, so its agent's orphans are its descendants: read them before the workers stop, because
        # once a worker is gone they belong to init. What a killed worker can no longer show, it recorded in
        # .swarm/run/<agent>.pids (read in stop_what_is_left).
        self.owned: set[procs.ProcId] = set()
        self.requests: dict[str, int] = {}

    def _carriers(self) -> list[int]:
        """Processes of this host's agents and monitor that carry this swarm's id."""
        return procs.processes_with_env("SWARM_ID", self.swarm.id, among=("SWARM_AGENT_ID", self.local_ids))

    def check_already_down(self) -> None:
        """Down already (a second teardown, or one that waited for another): say so, and still do the rest,
        which only finds nothing to do (claims, worktrees, run files)."""
        agents = self.agents
        self.report.already_down = (
            not self.live
            and not self.tagged & (self.local_sessions | self.monitors)
            and all(a.state not in _LIVE_STATES for a in agents)
            and (self.options.keep_worktrees or not any(a.worktree and Path(a.worktree).exists() for a in agents))
            and not self._carriers()
        )

    def stop_monitor(self) -> None:
        """The monitor goes first, or it would restart the workers teardown is stopping. It is found by this
        swarm's tag, under either of the names launch gives it."""
        for monitor in sorted(self.monitors & self.tagged):
            if self.tmux.kill_session(monitor, self.swarm.id):
                self.report.sessions_killed.append(monitor)

    def remember_agent_processes(self) -> None:
        """Note every process the live workers' agents run (see ``owned``), before the workers stop."""
        self.owned = {ident for pid in self.live.values() for ident in procs.tree(pid)}

    def return_claims(self) -> None:
        """Give every claim of this host's agents back to the queue (no attempt spent)."""
        ids = [a.id for a in self.agents]
        self.report.returned_tasks = self.store.return_claims(ids, reason="returned by teardown")

    def ask_workers_to_stop(self) -> None:
        """Ask through the thread first (each worker answers with a shutdown_response). The swarm-wide stop flag
        also stops a worker started late or one that misses the message, but it stops every host: it is set
        only when this host is the whole swarm, or with --all-hosts."""
        store, mode = self.store, "now" if self.options.now else "finish"
        lead_token(store, lead_token_path(self.loaded))
        all_hosts = self.options.all_hosts
        asked = [*self.live, *(a.id for a in self.others)] if all_hosts else list(self.live)
        self.requests = {
            agent_id: store.append_message("team", LEAD, "shutdown_request", mode, recipient=agent_id).seq
            for agent_id in asked
        }
        if all_hosts or not self.others:
            store.request_stop(self.swarm.id, mode)

    def wait_for_workers(self) -> None:
        """Give the asked workers the grace period; note who stopped and what each answered."""
        live, now = self.live, self.options.now
        if not live:
            return
        grace = self.options.grace
        wait = grace if grace is not None else (15.0 if now else 30.0)
        self.say(
            f"asked {plural(len(live), 'worker')} to stop ({'now' if now else 'after their current task'}); "
            f"waiting up to {wait:.0f}s"
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(procs.alive(pid) for pid in live.values()):
            time.sleep(0.1)
        self.report.stopped_gracefully = [a for a, pid in live.items() if not procs.alive(pid)]
        for agent_id, seq in ((a, q) for a, q in self.requests.items() if a in live):
            answer = self.store.next_message_for("team", LEAD, after=seq, from_author=agent_id, reply_to=seq)
            if answer is not None:
                self.report.responses[agent_id] = answer.body

    def stop_what_is_left(self) -> None:
        """Whatever is still running now is stopped by PID and process group, never by name."""
        report = self.report
        pids = [pid for pid in self.live.values() if procs.alive(pid)]
        stragglers = self._carriers()
        # A recorded agent process group is signalled only while a process of this swarm still leads it:
        # after a crash the number may have been reused by someone else's process.
        agents = self.store.list_agents(self.swarm.id)
        groups = [a.agent_pid for a in agents if a.agent_pid and a.agent_pid in stragglers]
        targets = sorted(set(pids) | set(stragglers))
        if targets or groups:
            report.killed = targets
            procs.stop_processes(targets, groups=groups, grace=5.0)
        self.owned |= {ident for path in self.records for ident in procs.read_records(path)}
        leftovers = procs.still_running(self.owned)
        if leftovers:
            report.killed = sorted({*report.killed, *(i.pid for i in leftovers)})
            procs.stop_identified(leftovers, grace=5.0)

    def save_uncommitted_work(self) -> tuple[list[AgentRecord], list[AgentRecord]]:
        """Never lose work: commit whatever is uncommitted on each agent's branch before anything is removed.
        The agents whose worktree exists, and those of them whose worktree must stay (saving left work there)."""
        tasks = {t.id: t for t in self.store.list_tasks(swarm_id=self.swarm.id)}
        author = self.loaded.config.swarm.commit_author
        present = [a for a in self.agents if a.worktree and Path(a.worktree).exists()]
        # Worktrees are independent: check and commit them in parallel (git status is the slow part).
        with ThreadPoolExecutor(max_workers=min(8, len(present) or 1)) as pool:
            saved = list(pool.map(lambda agent: _save_worktree(self.repo, agent, tasks, author), present))
        unsafe: list[AgentRecord] = []
        for agent, outcome in zip(present, saved, strict=True):
            for note in outcome.notes:
                self.say(f"{agent.id}: {note}")
            if outcome.sha:
                self.report.wip_commits[agent.id] = outcome.sha
                self.say(f"saved uncommitted work of {agent.id} as {outcome.sha[:12]} on {agent.branch}")
            if outcome.problem:
                # Removing it would delete that work: the worktree stays, whatever the flags say.
                unsafe.append(agent)
                self.say(
                    f"kept the worktree {agent.worktree} of {agent.id}: {outcome.problem}; commit or remove it by hand"
                )
        return present, unsafe

    def stop_sessions(self) -> None:
        """Kill this host's agent sessions: only those tagged with this swarm, never by name alone."""
        for name in self.tmux.tagged_sessions(self.swarm.id):
            if name in self.local_sessions and self.tmux.kill_session(name, self.swarm.id):
                self.report.sessions_killed.append(name)

    def remove_worktrees(self, present: list[AgentRecord], unsafe: list[AgentRecord]) -> None:
        """Remove the worktrees whose work is saved (unless ``keep_worktrees``); prune git's list of them."""
        report = self.report
        if self.options.keep_worktrees:
            report.worktrees_kept = [str(a.worktree) for a in present]
        else:
            removable = [a for a in present if a not in unsafe]
            # The work is committed above, so a forced removal drops only ignored files (builds, caches).
            # One at a time: parallel `git worktree remove` races on .git/worktrees ("Invalid path") at scale.
            for agent in removable:
                self.repo.remove_worktree(Path(agent.worktree or ""), force=True, prune=False)
            report.worktrees_removed = [str(a.worktree) for a in removable]
            report.worktrees_kept = [str(a.worktree) for a in unsafe]
        self.repo.prune_worktrees()

    def delete_branches(self) -> None:
        """With ``delete_branches``: the agents' branches go too (unmerged ones only with ``force``)."""
        if not self.options.delete_branches:
            return
        for agent in self.agents:
            if agent.branch and self.repo.branch_exists(agent.branch):
                if self.repo.delete_branch(agent.branch, force=self.options.force):
                    self.report.branches_deleted.append(agent.branch)
                else:
                    self.report.branches_kept.append(agent.branch)

    def forget_agents(self) -> None:
        """Mark every agent of this host stopped and remove the swarm's run files."""
        for agent in self.agents:
            self.store.update_agent(agent.id, state=AgentState.STOPPED.value, pid=None, agent_pid=None, task_id=None)
            # The run file holds the launching environment (API keys): gone with the agent.
            run_file_path(self.repo.root, agent.id).unlink(missing_ok=True)
        _remove_run_files(self.repo.root, self.swarm.id)

    def end_swarm(self) -> None:
        """Once everything of the swarm is stopped, it ends (docs/contract.md §5): it stays in 'swarm history',
        and the next launch starts a new swarm. Not while other hosts' agents may still work it."""
        if self.report.clean and (self.options.all_hosts or not self.others):
            self.store.end_swarm(self.swarm.id)
            self.report.ended = True

    def verify(self) -> None:
        """Nothing that carries this swarm's id, or that its workers saw or recorded, is alive, and no session
        of ours remains. A process record is kept only while something it lists still runs."""
        report = self.report
        report.survivors = sorted({*self._carriers(), *(i.pid for i in procs.still_running(self.owned))})
        for path in self.records:
            try:
                procs.write_records(path, procs.still_running(procs.read_records(path)))
            except OSError as exc:
                # A stale record is harmless (entries are checked by start time) but it should not pass unsaid.
                self.say(f"cannot update the process record {path}: {exc}")
        report.sessions_left = [n for n in self.tmux.tagged_sessions(self.swarm.id) if n in self.local_sessions]
        self.tmux.kill_server_if_empty()


def _save_worktree(repo: GitRepo, agent: AgentRecord, tasks: dict[str, Task], author: str) -> _Saved:
    """Commit the uncommitted work of an agent's worktree on its branch; what is left says if it must stay."""
    try:
        worktree = repo.worktree(Path(agent.worktree or ""))
        task = tasks.get(agent.task_id or "")
        label = f"WIP {task.id}: {task.title}" if task else "WIP: uncommitted work saved by swarm teardown"
        if agent.branch:
            committed = worktree.commit_on_branch(agent.branch, label, author, allow_empty=False)
            sha, notes = committed.sha, committed.notes
        else:
            sha, notes = worktree.commit_all(label, author, allow_empty=False), []
        left = worktree.uncommitted_paths(include_submodules=True)
    except SwarmError as exc:
        return _Saved(None, [], exc.render())
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        return _Saved(sha, notes, f"uncommitted work is left in {shown}")
    return _Saved(sha, notes, None)
