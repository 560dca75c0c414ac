"""Launch and teardown: the lifecycle of a swarm's worktrees, sessions and worker processes.

Launch validates everything that can be validated before it writes anything (repository, tmux, agent
kind and CLI, backlog, epic, base ref), then queues, creates worktrees in parallel, and starts one tagged
tmux session per agent. Re-running it resumes: existing tasks, worktrees, branches and sessions are kept.

Teardown asks workers to stop through the database, stops what does not, returns unfinished claims,
commits uncommitted work as WIP on each agent's branch, kills only sessions tagged with this swarm,
removes worktrees, and verifies with the process table that nothing carrying this swarm's id survives.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from swarm.agents import check_agent_cli, load_template, root_permission_problem
from swarm.backlog import Backlog, load_backlog
from swarm.cmdlock import command_lock
from swarm.config import LoadedConfig, load_config, remember
from swarm.errors import BadInput, StoreError, SwarmError
from swarm.identity import hash_token, lead_token
from swarm.models import LEAD, AgentRecord, AgentState
from swarm.queue import QueuedEpic, backlog_folder, database_exists, lead_token_path, open_queue, queue_epic
from swarm.runtime import procs
from swarm.runtime.git import GitRepo, open_repo
from swarm.runtime.runfile import AgentRun, process_record_path, read_run_file, run_file_path, write_run_file
from swarm.runtime.tmux import Tmux, tmux_available
from swarm.store import Store, SwarmRecord
from swarm.store.sqlite import path_from_url

log = logging.getLogger(__name__)

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def repo_slug(repo: Path) -> str:
    """The repository's name as it may appear in a tmux session name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", repo.name).strip("-")
    return slug or "repo"


def repo_hash(repo: Path) -> str:
    """A short hash of the repository's path: tells apart two repositories of the same name."""
    return hashlib.sha256(str(repo.resolve()).encode("utf-8")).hexdigest()[:6]


def session_name(repo: Path, agent_id: str, *, distinct: bool = False) -> str:
    """DESIGN 6: ``swarm-<repo>-<agent-id>``; ``distinct`` adds a hash of the repository's path
    (``swarm-<repo>-<hash>-<agent-id>``), used when a same-named repository holds the plain name on this
    tmux server."""
    middle = f"{repo_slug(repo)}-{repo_hash(repo)}" if distinct else repo_slug(repo)
    return f"swarm-{middle}-{re.sub(r'[^A-Za-z0-9_-]+', '-', agent_id)}"


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


def launch(request: LaunchRequest, *, cwd: Path, say: Say = _quiet, env: dict[str, str] | None = None) -> LaunchResult:
    """Validate, queue, create worktrees and sessions. Idempotent: a re-run resumes."""
    launch_env = dict(os.environ if env is None else env)
    # -- validate everything before the first write -------------------------------------------
    repo = open_repo(cwd)
    overrides: dict[str, object] = {
        "queue.database": request.db,
        "agent.model": request.model,
        "swarm.host_label": request.host_label,
    }
    if request.command is not None:
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
    loaded = load_config(repo.root, overrides=overrides, env=launch_env)
    cfg = loaded.config
    tmux_available()
    template = load_template(cfg.agent.kind)
    if template.kind == "command" and not (request.command or "").strip():
        raise BadInput("the command agent needs --command", hint='pass --command "your program"')
    check_agent_cli(template, launch_env)
    problem = root_permission_problem(template, cfg.agent.permission_mode, launch_env)
    if problem:
        raise BadInput(problem)
    backlog = load_backlog(backlog_folder(loaded))
    backlog.epic_specs(request.epic)
    base = repo.resolve(request.base or "HEAD")
    warnings: list[str] = []
    if repo.is_dirty():
        warnings.append(
            f"the main checkout has uncommitted changes; agents start from {base[:12]} without them "
            "(commit them first if the agents need them)"
        )
    for cap in request.capabilities:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", cap):
            raise BadInput(f"invalid capability {cap!r}", hint="capabilities match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")

    _refuse_emptied_database(repo, loaded)
    if not request.reuse_branches:
        _refuse_foreign_branches(repo, loaded, request)
    # .swarm/ holds the command lock from here on: excluded first, so that it never shows as a change to commit.
    repo.ensure_excluded("/.swarm/", *template.git_exclude)  # and what the agent's CLI writes (.aider*)
    with command_lock(repo.root, "swarm launch", timeout=cfg.swarm.lock_timeout_seconds, say=say):
        return _launch_locked(request, repo, loaded, backlog, template.kind, base, warnings, say, launch_env)


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
    epic = request.epic
    folder = f"refs/heads/{cfg.swarm.branch_prefix}/{epic}/"
    listed = _git(repo.root, "for-each-ref", "--format=%(refname)", folder)
    agent_name = re.compile(rf"{re.escape(host_prefix(loaded))}agent-(\d+)")
    found = {
        ref.removeprefix("refs/heads/"): int(match.group(1))
        for ref in listed.stdout.split()
        if (match := agent_name.fullmatch(ref.removeprefix(folder)))
    }
    if not found:
        return
    known: set[str] = set()
    limit = request.agents or cfg.swarm.max_agents
    if database_exists(loaded.database_url()):
        # Branches of agents this database knows are swarm's, marked or not (made before marks existed).
        with open_queue(loaded) as store:
            known = {a.branch for a in store.list_agents() if a.branch}
            current = store.current_swarm()
            if request.agents is None and current is not None and current.epic == epic and current.max_agents:
                limit = current.max_agents  # a relaunch without --agents starts as many as the first launch
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


def _launch_locked(
    request: LaunchRequest,
    repo: GitRepo,
    loaded: LoadedConfig,
    backlog: Backlog,
    kind: str,
    base: str,
    warnings: list[str],
    say: Say,
    launch_env: dict[str, str],
) -> LaunchResult:
    """Everything launch writes, under the repository's command lock."""
    cfg = loaded.config
    socket_name = cfg.swarm.tmux_socket
    # -- queue ------------------------------------------------------------------------------------
    settings = {
        "kind": kind,
        "model": cfg.agent.model,
        "command": request.command,
        "base": base,
        "tmux_socket": socket_name,
        "capabilities": list(request.capabilities),
    }
    queued = queue_epic(
        loaded, backlog, request.epic, max_agents=request.agents, repo=str(repo.root), settings=settings
    )
    swarm = queued.swarm
    if request.db:
        remember(repo.root, "queue.database", request.db)  # later commands in this repository use it too
    if request.host_label:
        remember(repo.root, "swarm.host_label", request.host_label)
    if is_shared(loaded) and not repo.remote_exists(cfg.swarm.remote):
        warnings.append(
            f"no git remote {cfg.swarm.remote!r}: agents on other machines cannot get this machine's commits "
            "(set swarm.remote, or add the remote)"
        )
    with open_queue(loaded) as store:
        open_tasks = sum(
            1 for t in store.list_tasks(swarm_id=swarm.id) if t.state.value in ("ready", "blocked", "claimed")
        )
        count = request.agents or swarm.max_agents or cfg.swarm.max_agents
        if open_tasks and count > open_tasks and request.agents is None:
            say(f"starting {open_tasks} agent(s), one per open task (max_agents is {count})")
            count = open_tasks
        count = max(1, count)
        runs = _plan_agents(repo, loaded, swarm, request, count, launch_env, store)
        result = LaunchResult(swarm=swarm, queued=queued, agents=runs, warnings=warnings, tmux_socket=socket_name)
        if open_tasks == 0:
            say(f"every task of {request.epic} is already finished; no agent started")
            return result
        repo.ensure_excluded("/.swarm/", f"/{cfg.swarm.worktree_base.strip('/')}/")
        result.created_worktrees = _create_worktrees(repo, loaded, runs, base, say)
        tmux = Tmux(socket_name)
        # Every agent is registered (and its run file written) before the first session starts: once workers
        # run, each database write of launch waits its turn behind theirs, and with 100 agents the last
        # sessions started tens of seconds late. One list-sessions instead of a has-session per agent.
        existing = set(tmux.sessions())
        runs = result.agents = _own_session_names(tmux, repo.root, swarm.id, runs, existing)
        _bury_dead_agents(store, swarm, [r for r in runs if r.session not in existing], say)
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
                )
            )
            if run.session in existing:  # ours: _own_session_names renamed every other one
                result.resumed_sessions.append(run.session)
                continue
            # A resumed session keeps the token it started with; a new one gets a new token.
            store.set_token_hash(run.agent_id, hash_token(run.token))
            to_start.append((run, write_run_file(run)))
        for run, run_file in to_start:
            pid = tmux.new_session(
                run.session,
                worker_command(run_file),
                cwd=Path(run.worktree),
                env=session_env(launch_env, run),
                tag=swarm.id,
            )
            # The pid only: the worker may already have recorded a later state than "starting".
            store.update_agent(run.agent_id, pid=pid)
            result.started_sessions.append(run.session)
        monitor = _start_monitor(tmux, repo.root, swarm.id, host_prefix(loaded), launch_env)
        if monitor:
            result.started_sessions.append(monitor)
    return result


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


def monitor_session(repo: Path, prefix: str) -> str:
    """The monitor's tmux session on this host (its plain name; see :func:`monitor_sessions`)."""
    return session_name(repo, f"{prefix}monitor")


def monitor_sessions(repo: Path, prefix: str) -> tuple[str, str]:
    """Both names the monitor's session may have: plain, and with the repository's hash when a same-named
    repository's monitor holds the plain one. Which one is this swarm's is told by the tag, never the name."""
    return session_name(repo, f"{prefix}monitor"), session_name(repo, f"{prefix}monitor", distinct=True)


def _start_monitor(tmux: Tmux, repo: Path, swarm_id: str, prefix: str, launch_env: dict[str, str]) -> str | None:
    """Start this host's monitor unless it runs already (launch restarts it when it is missing or dead); the
    name of the session started, if any."""
    plain, distinct = monitor_sessions(repo, prefix)
    tags = {name: tmux.session_tag(name) for name in (plain, distinct) if tmux.has_session(name)}
    if swarm_id in tags.values():
        return None  # a monitor's session closes when the monitor exits: a session of ours is a live one
    name = plain if plain not in tags else distinct
    if name in tags:
        raise SwarmError(
            f"the tmux sessions {plain} and {distinct} exist and do not belong to swarm {swarm_id}",
            hint="close them, or set SWARM_TMUX_SOCKET to use another tmux server",
        )
    keep = {k: v for k, v in launch_env.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "USER")}
    keep.update({"SWARM_ID": swarm_id, "SWARM_AGENT_ID": f"{prefix}monitor", "PYTHONUNBUFFERED": "1"})
    keep.update({k: v for k, v in launch_env.items() if k.startswith("SWARM_") and k not in keep})
    command = [sys.executable, "-m", "swarm.runtime.monitor", "--repo", str(repo), "--swarm-id", swarm_id]
    tmux.new_session(name, command, cwd=repo, env=keep, tag=swarm_id)
    return name


def worker_command(run_file: Path) -> list[str]:
    """The argv each agent session runs."""
    return [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(run_file)]


def session_env(launch_env: dict[str, str], run: AgentRun) -> dict[str, str]:
    """The environment of an agent's tmux session: enough to start Python, marked with the swarm's ids."""
    # The worker gets the full launching environment from its run file; the session itself needs only
    # enough to start Python and to be recognised as this swarm's (SWARM_ID marks every process we start).
    keep = {k: v for k, v in launch_env.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER")}
    keep.update({"SWARM_ID": run.swarm_id, "SWARM_AGENT_ID": run.agent_id, "PYTHONUNBUFFERED": "1"})
    return keep


def is_shared(loaded: LoadedConfig) -> bool:
    """Whether other clones may work this queue too: a server database, or any database once a host label is
    set (several clones on one machine can share one SQLite file). Shared swarms exchange task commits
    through the remote."""
    return bool(loaded.config.swarm.host_label) or not loaded.database_url().startswith("sqlite:")


def host_prefix(loaded: LoadedConfig) -> str:
    """``<label>-`` before agent ids when machines share the queue (DESIGN 6), else nothing."""
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
    store: Store,
) -> list[AgentRun]:
    cfg = loaded.config
    existing = {a.id: a for a in store.list_agents(swarm.id)}
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
                kind=cfg.agent.kind,
                model=cfg.agent.model,
                permission_mode=cfg.agent.permission_mode,
                command=request.command,
                capabilities=list(request.capabilities),
                lease_ttl_seconds=cfg.queue.lease_ttl_seconds,
                heartbeat_seconds=cfg.queue.heartbeat_seconds,
                task_timeout_seconds=float(cfg.swarm.task_timeout_seconds),
                commit_author=cfg.swarm.commit_author,
                submodules=cfg.swarm.submodules,
                tmux_socket=cfg.swarm.tmux_socket,
                token=secrets.token_urlsafe(24),
                env=env,
                push_remote=push_remote,
                retry_backoff_seconds=cfg.queue.retry_backoff_seconds,
                retry_backoff_max_seconds=cfg.queue.retry_backoff_max_seconds,
                log_max_bytes=cfg.swarm.log_max_bytes,
            )
        )
    return runs


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
        say(f"created {len(created)} worktree(s) under {cfg.swarm.worktree_base}/")
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

    @property
    def clean(self) -> bool:
        """Nothing this swarm started is left running."""
        return not self.survivors and not self.sessions_left


def teardown(
    *,
    cwd: Path,
    now: bool = False,
    force: bool = False,
    keep_worktrees: bool = False,
    delete_branches: bool = False,
    grace: float | None = None,
    db: str | None = None,
    all_hosts: bool = False,
    say: Say = _quiet,
) -> TeardownReport:
    """Stop everything the current swarm owns on this host (and ask every host's workers with ``all_hosts``),
    and lose nothing."""
    repo = open_repo(cwd)
    loaded = load_config(repo.root, overrides={"queue.database": db})
    timeout = loaded.config.swarm.lock_timeout_seconds
    # Never beside a launch or repair of this repository: a launch between its worktrees and its sessions
    # would start agents after this teardown said "down".
    with command_lock(repo.root, "swarm teardown", timeout=timeout, say=say, create=False):
        return _teardown_locked(
            repo,
            loaded,
            now=now,
            force=force,
            keep_worktrees=keep_worktrees,
            delete_branches=delete_branches,
            grace=grace,
            all_hosts=all_hosts,
            say=say,
        )


def _teardown_locked(
    repo: GitRepo,
    loaded: LoadedConfig,
    *,
    now: bool,
    force: bool,
    keep_worktrees: bool,
    delete_branches: bool,
    grace: float | None,
    all_hosts: bool,
    say: Say,
) -> TeardownReport:
    report = TeardownReport()
    with open_queue(loaded) as store:
        swarm = store.current_swarm()
        if swarm is None:
            say("no swarm in this repository; nothing to tear down")
            return report
        report.swarm_id = swarm.id
        everyone = store.list_agents(swarm.id)
        # This host's agents are those whose worktrees live in this repository; other clones (other machines,
        # or another checkout on this one) tear down their own.
        agents = [a for a in everyone if a.worktree and _inside(Path(a.worktree), repo.root)]
        others = [a for a in everyone if a not in agents]
        socket_name = str(loaded.config.swarm.tmux_socket or swarm.settings.get("tmux_socket") or "")
        tmux = Tmux(socket_name)
        mode = "now" if now else "finish"
        local_ids = {a.id for a in agents} | {f"{host_prefix(loaded)}monitor"}
        local_sessions = {a.session for a in agents if a.session}
        monitors = set(monitor_sessions(repo.root, host_prefix(loaded)))
        live = {a.id: a.pid for a in agents if a.pid and procs.alive(a.pid)}
        # Down already (a second teardown, or one that waited for another): say so, and still do the rest,
        # which only finds nothing to do (claims, worktrees, run files).
        tagged = set(tmux.tagged_sessions(swarm.id))
        report.already_down = (
            not live
            and not tagged & (local_sessions | monitors)
            and all(a.state not in _LIVE_STATES for a in agents)
            and (keep_worktrees or not any(a.worktree and Path(a.worktree).exists() for a in agents))
            and not procs.processes_with_env("SWARM_ID", swarm.id, among=("SWARM_AGENT_ID", local_ids))
        )
        # The monitor goes first, or it would restart the workers teardown is stopping. It is found by this
        # swarm's tag, under either of the names launch gives it.
        for monitor in sorted(monitors & tagged):
            if tmux.kill_session(monitor, swarm.id):
                report.sessions_killed.append(monitor)
        # An agent's process may carry neither SWARM_ID nor its group (`env -i setsid cmd &`). A worker is a
        # subreaper, so its agent's orphans are its descendants: read them now, because once the worker is gone
        # they belong to init. What a killed worker can no longer show, it recorded in .swarm/run/<agent>.pids.
        owned = {ident for pid in live.values() for ident in procs.tree(pid)}
        # Ask through the thread first (each worker answers with a shutdown_response). The swarm-wide stop flag
        # also stops a worker started late or one that misses the message, but it stops every host: it is set
        # only when this host is the whole swarm, or with --all-hosts.
        lead_token(store, lead_token_path(loaded))
        asked = [*live, *(a.id for a in others)] if all_hosts else list(live)
        requests = {
            agent_id: store.append_message("team", LEAD, "shutdown_request", mode, recipient=agent_id).seq
            for agent_id in asked
        }
        if all_hosts or not others:
            store.request_stop(swarm.id, mode)
        if live:
            wait = grace if grace is not None else (15.0 if now else 30.0)
            say(
                f"asked {len(live)} worker(s) to stop ({'now' if now else 'after their current task'}); "
                f"waiting up to {wait:.0f}s"
            )
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(procs.alive(pid) for pid in live.values()):
                time.sleep(0.1)
            report.stopped_gracefully = [a for a, pid in live.items() if not procs.alive(pid)]
            for agent_id, seq in ((a, q) for a, q in requests.items() if a in live):
                answer = store.next_message_for("team", LEAD, after=seq, from_author=agent_id, reply_to=seq)
                if answer is not None:
                    report.responses[agent_id] = answer.body
        # Whatever is still running now is stopped by PID and process group, never by name.
        pids = [pid for pid in live.values() if procs.alive(pid)]
        stragglers = procs.processes_with_env("SWARM_ID", swarm.id, among=("SWARM_AGENT_ID", local_ids))
        # A recorded agent process group is signalled only while a process of this swarm still leads it:
        # after a crash the number may have been reused by someone else's process.
        groups = [a.agent_pid for a in store.list_agents(swarm.id) if a.agent_pid and a.agent_pid in stragglers]
        targets = sorted(set(pids) | set(stragglers))
        if targets or groups:
            report.killed = targets
            procs.stop_processes(targets, groups=groups, grace=5.0)
        records = [process_record_path(repo.root, a.id) for a in agents]
        owned |= {ident for path in records for ident in procs.read_records(path)}
        leftovers = procs.still_running(owned)
        if leftovers:
            report.killed = sorted({*report.killed, *(i.pid for i in leftovers)})
            procs.stop_identified(leftovers, grace=5.0)
        report.returned_tasks = store.return_claims([a.id for a in agents], reason="returned by teardown")
        tasks = {t.id: t for t in store.list_tasks(swarm_id=swarm.id)}
        author = loaded.config.swarm.commit_author

        def save(agent: AgentRecord) -> _Saved:
            # Never lose work: commit whatever is uncommitted on the agent's branch before anything is removed.
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

        present = [a for a in agents if a.worktree and Path(a.worktree).exists()]
        # Worktrees are independent: check and commit them in parallel (git status is the slow part).
        with ThreadPoolExecutor(max_workers=min(8, len(present) or 1)) as pool:
            saved = list(pool.map(save, present))
        unsafe: list[AgentRecord] = []
        for agent, outcome in zip(present, saved, strict=True):
            for note in outcome.notes:
                say(f"{agent.id}: {note}")
            if outcome.sha:
                report.wip_commits[agent.id] = outcome.sha
                say(f"saved uncommitted work of {agent.id} as {outcome.sha[:12]} on {agent.branch}")
            if outcome.problem:
                # Removing it would delete that work: the worktree stays, whatever the flags say.
                unsafe.append(agent)
                say(f"kept the worktree {agent.worktree} of {agent.id}: {outcome.problem}; commit or remove it by hand")
        removable = [a for a in present if a not in unsafe]
        for name in tmux.tagged_sessions(swarm.id):
            if name in local_sessions and tmux.kill_session(name, swarm.id):
                report.sessions_killed.append(name)
        if keep_worktrees:
            report.worktrees_kept = [str(a.worktree) for a in present]
        else:
            # The work is committed above, so a forced removal drops only ignored files (builds, caches).
            # One at a time: parallel `git worktree remove` races on .git/worktrees ("Invalid path") at scale.
            for agent in removable:
                repo.remove_worktree(Path(agent.worktree or ""), force=True, prune=False)
            report.worktrees_removed = [str(a.worktree) for a in removable]
            report.worktrees_kept = [str(a.worktree) for a in unsafe]
        repo.prune_worktrees()
        if delete_branches:
            for agent in agents:
                if agent.branch and repo.branch_exists(agent.branch):
                    if repo.delete_branch(agent.branch, force=force):
                        report.branches_deleted.append(agent.branch)
                    else:
                        report.branches_kept.append(agent.branch)
        for agent in agents:
            store.update_agent(agent.id, state=AgentState.STOPPED.value, pid=None, agent_pid=None, task_id=None)
            # The run file holds the launching environment (API keys) and the agent's token: gone with the agent.
            run_file_path(repo.root, agent.id).unlink(missing_ok=True)
        _remove_run_files(repo.root, swarm.id)
        # Verify: nothing that carries this swarm's id, or that its workers saw or recorded, is alive, and no
        # session of ours remains. A record is kept only while something it lists still runs.
        carriers = procs.processes_with_env("SWARM_ID", swarm.id, among=("SWARM_AGENT_ID", local_ids))
        report.survivors = sorted({*carriers, *(i.pid for i in procs.still_running(owned))})
        for path in records:
            try:
                procs.write_records(path, procs.still_running(procs.read_records(path)))
            except OSError as exc:
                # A stale record is harmless (entries are checked by start time) but it should not pass unsaid.
                say(f"cannot update the process record {path}: {exc}")
        report.sessions_left = [n for n in tmux.tagged_sessions(swarm.id) if n in local_sessions]
        tmux.kill_server_if_empty()
    return report
