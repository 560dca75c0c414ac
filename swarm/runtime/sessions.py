"""The tmux sessions a swarm runs in: their names, and how an agent's worker or the monitor is started in one.

Launch starts a session per agent and one for this host's monitor; the monitor starts a worker again in its
agent's session. Both come here, so that a restarted worker runs exactly as a launched one (docs/contract.md §6).
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from swarm.errors import SwarmError
from swarm.runtime.runfile import AgentRun
from swarm.runtime.tmux import Tmux

#: What an agent's session keeps of the launching environment (the worker reads the rest from its run file).
_AGENT_SESSION_KEEPS = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER")
#: What the monitor's session keeps of the launching environment, besides every SWARM_* variable.
_MONITOR_SESSION_KEEPS = ("PATH", "HOME", "LANG", "LC_ALL", "USER")


# -- names -------------------------------------------------------------------------------------------
def repo_slug(repo: Path) -> str:
    """The repository's name as it may appear in a tmux session name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", repo.name).strip("-")
    return slug or "repo"


def repo_hash(repo: Path) -> str:
    """A short hash of the repository's path: tells apart two repositories of the same name."""
    return hashlib.sha256(str(repo.resolve()).encode("utf-8")).hexdigest()[:6]


def session_name(repo: Path, agent_id: str, *, distinct: bool = False) -> str:
    """docs/contract.md §6: ``swarm-<repo>-<agent-id>``; ``distinct`` adds a hash of the repository's path
    (``swarm-<repo>-<hash>-<agent-id>``), used when a same-named repository holds the plain name on this
    tmux server."""
    middle = f"{repo_slug(repo)}-{repo_hash(repo)}" if distinct else repo_slug(repo)
    return f"swarm-{middle}-{re.sub(r'[^A-Za-z0-9_-]+', '-', agent_id)}"


def monitor_session(repo: Path, prefix: str) -> str:
    """The monitor's tmux session on this host (its plain name; see :func:`monitor_sessions`)."""
    return session_name(repo, f"{prefix}monitor")


def monitor_sessions(repo: Path, prefix: str) -> tuple[str, str]:
    """Both names the monitor's session may have: plain, and with the repository's hash when a same-named
    repository's monitor holds the plain one. Which one is this swarm's is told by the tag, never the name."""
    return session_name(repo, f"{prefix}monitor"), session_name(repo, f"{prefix}monitor", distinct=True)


# -- an agent's worker -------------------------------------------------------------------------------
def worker_command(run_file: Path) -> list[str]:
    """The argv each agent session runs."""
    return [sys.executable, "-m", "swarm.runtime.worker", "--run-file", str(run_file)]


def session_env(launch_env: Mapping[str, str], run: AgentRun) -> dict[str, str]:
    """The environment of an agent's tmux session: enough to start Python, marked with the swarm's ids."""
    # The worker gets the full launching environment from its run file; the session itself needs only
    # enough to start Python and to be recognised as this swarm's (SWARM_ID marks every process we start).
    keep = {k: v for k, v in launch_env.items() if k in _AGENT_SESSION_KEEPS}
    keep.update({"SWARM_ID": run.swarm_id, "SWARM_AGENT_ID": run.agent_id, "PYTHONUNBUFFERED": "1"})
    return keep


def start_worker(tmux: Tmux, run: AgentRun, run_file: Path, launch_env: Mapping[str, str], *, tag: str) -> int:
    """Start the agent's worker in a new session ``run.session``, tagged ``tag`` (its swarm's id); the worker's
    pid."""
    return tmux.new_session(
        run.session, worker_command(run_file), cwd=Path(run.worktree), env=session_env(launch_env, run), tag=tag
    )


def restart_worker(tmux: Tmux, run: AgentRun, run_file: Path, *, session: str | None, tag: str) -> int:
    """Start the agent's worker again, in ``session`` when that still exists (its pane is respawned), else in a
    new session as launch would; the worker's pid. The environment is the one launch recorded in the run file."""
    if session and tmux.has_session(session):
        return tmux.respawn(session, worker_command(run_file), cwd=Path(run.worktree), env=session_env(run.env, run))
    return start_worker(tmux, run, run_file, run.env, tag=tag)


# -- the monitor -------------------------------------------------------------------------------------
def start_monitor(tmux: Tmux, repo: Path, swarm_id: str, prefix: str, launch_env: Mapping[str, str]) -> str | None:
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
    keep = {k: v for k, v in launch_env.items() if k in _MONITOR_SESSION_KEEPS}
    keep.update({"SWARM_ID": swarm_id, "SWARM_AGENT_ID": f"{prefix}monitor", "PYTHONUNBUFFERED": "1"})
    keep.update({k: v for k, v in launch_env.items() if k.startswith("SWARM_") and k not in keep})
    command = [sys.executable, "-m", "swarm.runtime.monitor", "--repo", str(repo), "--swarm-id", swarm_id]
    tmux.new_session(name, command, cwd=repo, env=keep, tag=swarm_id)
    return name
