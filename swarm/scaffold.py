"""``swarm init``: a commented ``swarm.toml``, an example backlog and the ``.gitignore`` entries swarm needs.

Nothing is written unless everything can be: existing targets are refused as a whole (unless ``force``), and
each file is written through a temporary file and ``os.replace`` so that a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from swarm.config import CONFIG_FILE_NAME
from swarm.errors import BadInput, SwarmError

#: The backlog folder ``swarm init`` creates (the default of ``queue.backlog``).
SPECS_DIR = "specs"
#: The epic of the example specs.
EXAMPLE_EPIC = "E001"
#: What swarm keeps out of git: its database and the agents' worktrees (the defaults of the config).
GITIGNORE_ENTRIES: tuple[str, ...] = (".swarm/", ".worktrees/")

# Every key with its default. tests/unit/test_scaffold.py checks that this loads back to exactly the defaults
# and names every key of swarm.config.Config, so a new setting cannot be forgotten here.
SWARM_TOML = """\
# swarm.toml: settings of swarm for this repository. Every key is shown with its default value.
#
# Precedence, later wins: these defaults < this file < environment variables < command-line flags.
# Every key has an environment variable SWARM_<SECTION>_<KEY>, e.g. SWARM_QUEUE_MAX_ATTEMPTS=5;
# lists take JSON (["a", "b"]) or comma-separated values.
# `swarm config show` prints every value and where it came from.

[queue]
# Folder of the spec files (Markdown with YAML front matter), relative to the repository root.
backlog = "specs"
# The queue's database. A relative SQLite path is relative to the repository root. Use
# "postgresql://user@host/dbname" to share one queue between machines (also: SWARM_DATABASE_URL).
database = "sqlite:///.swarm/swarm.db"
# Seconds a claimed task stays with its agent without a heartbeat; then it returns to the queue.
lease_ttl_seconds = 300.0
# Seconds between the heartbeats of a working agent. Must be less than lease_ttl_seconds.
heartbeat_seconds = 30.0
# Attempts a task gets (failures and expired leases both count) before it is marked dead.
max_attempts = 3
# Seconds before a failed task is offered again; the delay grows with each attempt ...
retry_backoff_seconds = 10.0
# ... up to this many seconds.
retry_backoff_max_seconds = 600.0

[swarm]
# Agents that `swarm launch` starts when it is not given --agents.
max_agents = 5
# Folder of the agents' git worktrees, relative to the repository root. Keep it out of git.
worktree_base = ".worktrees"
# Agent branches are named <branch_prefix>/<epic>/<agent-id>.
branch_prefix = "swarm"
# Untracked files copied from the repository root into each new worktree.
copy_files = [".env"]
# Shell commands run in each new worktree before its first task, e.g. ["uv sync", "npm ci"].
setup = []
# Initialise the repository's git submodules in each worktree; an agent's changes inside one are committed there.
submodules = true
# Seconds an agent may spend on one task before the attempt is stopped and fails.
# A spec's own timeout_seconds takes precedence.
task_timeout_seconds = 1800
# Times a crashed agent is restarted before it is given up.
max_restarts = 3
# An agent that neither uses CPU nor prints anything for this long is stalled, and restarted.
stall_seconds = 300.0
# Restarts of one agent wait 2 s, 4 s, 8 s ... (times this base) so a crash loop cannot spin.
restart_backoff_seconds = 2.0
# How often the monitor looks at every agent.
monitor_interval_seconds = 2.0
# Author of the commits the agents make, "Name <email>".
commit_author = "swarm <swarm@localhost>"
# tmux socket name (as in tmux -L); empty means your default tmux server (also: SWARM_TMUX_SOCKET).
tmux_socket = ""
# Remote that finished task commits are pushed to when several machines share a PostgreSQL queue.
remote = "origin"
# Prefix of this machine's agent ids on a shared queue (host-agent-1); empty means the hostname.
host_label = ""
# Seconds launch, teardown and repair wait for another of them running on this repository.
lock_timeout_seconds = 120.0
# An agent's log (.swarm/logs/<agent>.log) is moved to <agent>.log.1 when it reaches this size.
log_max_bytes = 10000000
# A shell command run in the worktree after an agent exits 0, e.g. "pytest -q"; if it fails, so does the task.
# A spec's own verify takes precedence; empty means no verify.
verify = ""
# "bwrap" runs each agent in a bubblewrap sandbox: it sees its worktree, the repository's .git, its home, the
# system and swarm itself, not .swarm/, the other worktrees or other processes. "none": no sandbox.
sandbox = "none"
# With the sandbox: false cuts the agent off the network (its CLI then cannot reach its API either).
sandbox_network = true
# With the sandbox: what of the home directory the agent sees, e.g. ["~/.claude", "~/.claude.json"]; [] = all.
sandbox_home = []
# With the sandbox: more absolute paths the agent sees read-only (a toolchain outside /usr and /opt).
sandbox_paths = []

[agent]
# The agent program: a template of templates/agents/ (claude, codex, aider, command).
kind = "claude"
# The model the agent is asked to use.
model = "sonnet"
# Claude Code permission mode. Agents work unattended, so they must not stop to ask for approval.
permission_mode = "bypassPermissions"
# Each task continues the agent's conversation of its previous task (claude only); a failed task starts afresh.
keep_context = false

[notify]
# A program told about each event (its JSON on stdin), e.g. ["notify-send", "swarm"]; empty means none.
command = []
# A URL each event is POSTed to as JSON (Slack and Discord incoming webhooks accept it); empty means none.
webhook = ""
# Which events to send: question, escalation, task_dead, rate_limited, epic_done.
events = ["question", "escalation", "task_dead", "rate_limited", "epic_done"]
"""

# Documentation tasks suit any repository, whatever its language, so `swarm launch E001` works right after
# `swarm init` and shows the dependency handling: S002 and S003 wait for S001, then run in parallel.
EXAMPLE_SPECS: dict[str, str] = {
    "S001-project-overview.md": """\
---
id: S001
epic: E001
title: Write a project overview
priority: 1
---
Read this repository (README, build files, the source tree and the tests) and write `docs/OVERVIEW.md`
for a developer who has never seen the project:

- one paragraph on what the project does and for whom;
- the main components, one short paragraph each, naming the directories and files they live in;
- how a typical request or command flows through those components.

Describe only what the code actually does; do not invent features. Keep it under 150 lines.
Change no other file.
""",
    "S002-development-guide.md": """\
---
id: S002
epic: E001
title: Document how to build and test
depends_on: [S001]
---
Write `docs/DEVELOPMENT.md`: how to set up a development environment, build the project, run the tests
and the linters, and the conventions a contribution must follow (formatting, commit messages, branches).

Take every command from the repository's own files (build files, CI configuration, scripts) and run the
ones that are safe to run to check that they work; say which command is the quickest full check.
Link it from `docs/OVERVIEW.md`. Change no other file.
""",
    "S003-glossary.md": """\
---
id: S003
epic: E001
title: Add a glossary of project terms
depends_on: [S001]
---
Write `docs/GLOSSARY.md`: the terms a newcomer meets in this code base (domain words, abbreviations,
names of important classes or modules), in alphabetical order, each with a one or two sentence
definition and the file where it is defined or mostly used.

Use `docs/OVERVIEW.md` as the starting point and link the glossary from it. Change no other file.
""",
}


#: Where ``swarm init --claude`` writes the lead's Claude Code slash command (``/swarm``).
CLAUDE_COMMAND = Path(".claude") / "commands" / "swarm.md"


def claude_command_text() -> str:
    """The slash command's text: ``templates/claude/swarm.md``."""
    from swarm.agents import templates_dir

    return (templates_dir() / "claude" / "swarm.md").read_text(encoding="utf-8")


def scaffold_targets(repo: Path, claude: bool = False) -> list[Path]:
    """The files ``swarm init`` creates or overwrites (``.gitignore`` is only ever appended to).

    With ``claude`` the slash command too; in a repository that has a ``swarm.toml`` already, only that."""
    base = [repo / CONFIG_FILE_NAME, *(repo / SPECS_DIR / name for name in EXAMPLE_SPECS)]
    if not claude:
        return base
    if (repo / CONFIG_FILE_NAME).exists():
        return [repo / CLAUDE_COMMAND]
    return [*base, repo / CLAUDE_COMMAND]


def write_scaffold(repo: Path, force: bool = False, claude: bool = False) -> list[Path]:
    """Write ``swarm.toml``, the example specs and the ``.gitignore`` entries into ``repo``; with ``claude``
    also the lead's slash command (only that when ``swarm.toml`` exists: the repository is set up already).

    Returns the files written, in order. Raises :class:`BadInput` (having written nothing) when a target
    exists and ``force`` is false; with ``force`` the targets are overwritten and nothing else is touched.
    """
    targets = scaffold_targets(repo, claude)
    existing = [path for path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        names = ", ".join(str(path.relative_to(repo)) for path in existing)
        raise BadInput(
            f"swarm init would overwrite {names} in {repo}",
            hint="run 'swarm init --force' to overwrite them (no other file is touched)",
        )
    command = claude_command_text() if claude else ""  # read before the first write: a missing template stops here
    written: list[Path] = []
    try:
        if repo / CONFIG_FILE_NAME in targets:
            (repo / SPECS_DIR).mkdir(parents=True, exist_ok=True)
            for name, text in EXAMPLE_SPECS.items():
                written.append(atomic_write_text(repo / SPECS_DIR / name, text))
            written.append(atomic_write_text(repo / CONFIG_FILE_NAME, SWARM_TOML))
        if claude:
            (repo / CLAUDE_COMMAND).parent.mkdir(parents=True, exist_ok=True)
            written.append(atomic_write_text(repo / CLAUDE_COMMAND, command))
        if repo / CONFIG_FILE_NAME in targets:
            gitignore = update_gitignore(repo)
            if gitignore is not None:
                written.append(gitignore)
    except OSError as exc:
        where = exc.filename or repo
        raise SwarmError(
            f"swarm init could not write {where}: {exc.strerror or exc}",
            hint="check the permissions of the repository folder",
        ) from exc
    return written


def _is_ignored(lines: list[str], entry: str) -> bool:
    """True when ``.gitignore`` already holds a plain rule equivalent to ``entry`` (``.swarm/``)."""
    name = entry.strip("/")
    forms = {name, f"{name}/", f"{name}/*", f"{name}/**"}
    return any(line.strip().lstrip("/") in forms for line in lines)


def update_gitignore(repo: Path) -> Path | None:
    """Append missing :data:`GITIGNORE_ENTRIES` to ``repo/.gitignore`` (creating it); None if unchanged."""
    path = repo / ".gitignore"
    # surrogateescape keeps whatever bytes the file holds, so appending never fails on a non-UTF-8 file.
    current = path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""
    missing = [entry for entry in GITIGNORE_ENTRIES if not _is_ignored(current.splitlines(), entry)]
    if not missing:
        return None
    prefix = current if not current or current.endswith("\n") else current + "\n"
    addition = "# swarm: its database and the agents' worktrees\n" + "".join(f"{entry}\n" for entry in missing)
    separator = "\n" if prefix else ""
    return atomic_write_text(path, prefix + separator + addition)


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back; init is single-threaded.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old content or the new one, never a mix. The file gets the mode of the file it replaces,
    or the usual ``0666 & ~umask`` when it is new (``mkstemp`` alone would make it private).
    """
    target = path.resolve() if path.is_symlink() else path  # write through a symlink, do not replace it
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path
