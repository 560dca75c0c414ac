"""The run file: everything one agent's worker needs, written by launch, read by ``swarm worker``.

tmux sessions inherit the tmux server's environment, not the launching shell's, so the launching
environment (API keys, PATH) travels in this file rather than through tmux. It is written 0600 under
``<repo>/.swarm/run/`` and holds no identity: the agent's identity is its channel (the socket beside it,
``<repo>/.swarm/run/<agent>/channel.sock``, served by the worker), so nothing in it lets one agent write as
another. What it does hold (the launching environment, the database URL) is the same for every agent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from swarm.errors import BadInput


class AgentRun(BaseModel):
    """One agent's worker settings."""

    swarm_id: str
    epic: str
    agent_id: str
    host: str
    repo: str
    worktree: str
    branch: str
    session: str
    database_url: str
    kind: str
    model: str
    permission_mode: str
    command: str | None = None
    capabilities: list[str] = []
    lease_ttl_seconds: float
    heartbeat_seconds: float
    task_timeout_seconds: float
    commit_author: str
    tmux_socket: str = ""
    #: No longer written (an agent proves itself by its channel, docs/contract.md §7); read from older files.
    token: str = ""
    env: dict[str, str] = {}
    #: Remote that task commits are pushed to and fetched from when machines share the queue (None: one host).
    push_remote: str | None = None
    #: Initialise the repository's submodules in the worktree (swarm.submodules).
    submodules: bool = True
    idle_poll_seconds: float = 2.0
    stop_poll_seconds: float = 0.25
    #: ``[queue] retry_backoff_seconds`` / ``retry_backoff_max_seconds``: a task this worker fails is claimed
    #: again only after base * 2**(attempt-1) seconds, capped (the defaults are the configuration's).
    retry_backoff_seconds: float = 10.0
    retry_backoff_max_seconds: float = 600.0
    #: The agent's log is rotated to ``<agent>.log.1`` when it would grow past this.
    log_max_bytes: int = 10_000_000
    #: ``[swarm] verify``: run after a task whose spec names no verify of its own (empty: none).
    verify: str = ""
    #: ``[swarm] sandbox`` and its settings: "bwrap" runs the agent command in a sandbox (docs/contract.md §6).
    sandbox: str = "none"
    sandbox_network: bool = True
    sandbox_home: list[str] = []
    sandbox_paths: list[str] = []

    @property
    def swarm_dir(self) -> Path:
        """``<repo>/.swarm``."""
        return Path(self.repo) / ".swarm"

    @property
    def log_path(self) -> Path:
        """The agent's log: the worker's own lines and every byte the agent printed."""
        return self.swarm_dir / "logs" / f"{self.agent_id}.log"

    @property
    def prompt_dir(self) -> Path:
        """Rendered prompts live outside the worktree so they are never committed."""
        return self.swarm_dir / "prompts" / self.agent_id


def run_file_path(repo: Path, agent_id: str) -> Path:
    """Where launch writes the run file of ``agent_id``."""
    return repo / ".swarm" / "run" / f"{agent_id}.json"


def process_record_path(repo: Path, agent_id: str) -> Path:
    """Where the worker of ``agent_id`` records the processes its agent started (pid and start time), so
    that teardown finds them even after the worker was killed (``swarm.runtime.procs.read_records``)."""
    return repo / ".swarm" / "run" / f"{agent_id}.pids"


def write_run_file(run: AgentRun) -> Path:
    """Write the run file atomically with mode 0600."""
    path = run_file_path(Path(run.repo), run.agent_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(run.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_run_file(path: Path) -> AgentRun:
    """Load a run file; BadInput when it is missing or not one."""
    try:
        return AgentRun.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise BadInput(
            f"no run file at {path}", hint="workers are started by 'swarm launch'; run that instead"
        ) from exc
    except (OSError, ValueError, ValidationError) as exc:
        raise BadInput(f"{path} is not a valid run file: {exc}", hint="run 'swarm launch' again") from exc
