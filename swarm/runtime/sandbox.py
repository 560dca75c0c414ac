"""The optional per-agent sandbox (``[swarm] sandbox = "bwrap"``, docs/contract.md §6).

With bubblewrap each agent runs in its own mount, pid and IPC namespace. It sees, read-only, the system
(``/usr``, ``/bin``, ``/lib*``, ``/etc``, ``/opt``), swarm's own Python and package (so ``swarm msg`` works
inside) and ``[swarm] sandbox_paths``; read-write its worktree, the repository's ``.git`` (git works inside:
diff, log, even commit) except its hooks and config, its home directory (or ``[swarm] sandbox_home``), and the
folder of its message channel (``$SWARM_CHANNEL``); its own rendered prompts read-only. It gets a private
``/tmp``, a new ``/proc`` (only its own processes) and a minimal ``/dev``. It does not see the main checkout,
``.swarm/`` (the database, run files, every agent's token, the lead's token), the other worktrees or their
git metadata, or any process outside its sandbox.

:func:`bwrap_argv` is pure: it turns a :class:`SandboxSpec` into the argv that wraps the agent's. The
:func:`plan` that gathers the paths of one agent and :func:`check` (bad input before launch starts anything)
look at the file system.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import BadInput

#: The sandbox kinds ``[swarm] sandbox`` accepts.
KINDS = ("none", "bwrap")
#: Seen read-only by every sandboxed agent when present: the toolchain and the system's configuration
#: (resolv.conf, certificates, passwd). A symbolic link (``/bin -> usr/bin`` on merged-/usr systems) stays one.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
#: How to install bubblewrap, for the one-line errors.
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap, pacman -S bubblewrap)"
#: How long the check that bubblewrap works here may take.
CHECK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Mount:
    """One bubblewrap mount operation: ``--ro-bind``/``--bind`` ``source`` at ``dest``, or ``--tmpfs`` (a hide)."""

    op: str
    dest: str
    source: str = ""

    def args(self) -> list[str]:
        """The mount's bwrap arguments."""
        if self.op in ("--tmpfs", "--dir"):
            return [self.op, self.dest]
        return [self.op, self.source, self.dest]


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandboxed agent run sees, as absolute paths (see the module doc)."""

    worktree: str
    repo: str
    #: The repository's git folder (the worktrees' common dir) and this worktree's own (``.git/worktrees/<n>``).
    git_common_dir: str
    git_dir: str
    #: Where the worktrees live (``[swarm] worktree_base``): hidden but for this agent's.
    worktree_base: str
    #: The agent's rendered prompts (read-only).
    prompt_dir: str
    network: bool = True
    home: str | None = None
    #: Inside ``home``, read-write; empty: the whole home directory.
    home_paths: tuple[str, ...] = ()
    #: swarm's interpreter, venv, package and executable's folder (read-only).
    swarm_paths: tuple[str, ...] = ()
    #: ``[swarm] sandbox_paths`` and what the system needs beyond SYSTEM_PATHS (read-only).
    extra_paths: tuple[str, ...] = ()
    #: The folder of ``$SWARM_CHANNEL`` (read-write), when the agent has one.
    channel_dir: str | None = None
    #: Inside the read-write binds, read-only again: what git outside the sandbox reads as configuration or
    #: runs (the hooks, .git/config, submodules' git folders, the worktree's ``.git`` link), see :func:`plan`.
    readonly: tuple[str, ...] = ()
    #: SYSTEM_PATHS present here, each with its link target when it is a symbolic link.
    system: tuple[tuple[str, str | None], ...] = field(default_factory=tuple)


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def mounts(spec: SandboxSpec) -> list[Mount]:
    """The mounts of ``spec`` in the order bubblewrap must apply them.

    A later mount covers an earlier one at or above its path, so they are applied shallowest first: the home
    directory may hold the repository, which is then hidden (an empty tmpfs) before its ``.git`` and this
    agent's worktree are bound back in; at one depth a hide comes after a bind, so that a configured path can
    never uncover what is hidden.
    """
    binds: list[Mount] = []
    if spec.home:
        if spec.home_paths:
            binds.append(Mount("--tmpfs", spec.home))
            binds.extend(
                Mount("--bind", os.path.join(spec.home, p), os.path.join(spec.home, p)) for p in spec.home_paths
            )
        else:
            binds.append(Mount("--bind", spec.home, spec.home))
    binds.extend(Mount("--ro-bind", p, p) for p in (*spec.swarm_paths, *spec.extra_paths))
    # What must stay out of sight: the main checkout and .swarm/, every worktree, their git metadata.
    binds.append(Mount("--tmpfs", spec.repo))
    binds.append(Mount("--tmpfs", spec.worktree_base))
    binds.append(Mount("--bind", spec.git_common_dir, spec.git_common_dir))
    worktrees_meta = os.path.join(spec.git_common_dir, "worktrees")
    if _inside(spec.git_dir, worktrees_meta):
        binds.append(Mount("--tmpfs", worktrees_meta))
    binds.append(Mount("--bind", spec.git_dir, spec.git_dir))
    binds.append(Mount("--bind", spec.worktree, spec.worktree))
    binds.append(Mount("--ro-bind", spec.prompt_dir, spec.prompt_dir))
    if spec.channel_dir:
        binds.append(Mount("--bind", spec.channel_dir, spec.channel_dir))
    binds.extend(Mount("--ro-bind", p, p) for p in spec.readonly)
    # Stable: equal depths keep their order above, except that hides go last among them.
    return sorted(binds, key=lambda m: (_depth(m.dest), m.op == "--tmpfs"))


def bwrap_argv(spec: SandboxSpec, argv: Sequence[str], *, bwrap: str = "bwrap") -> list[str]:
    """The argv that runs ``argv`` in the sandbox of ``spec``, starting in its worktree."""
    # --cap-drop ALL: run by root, bwrap would leave the agent every capability, and CAP_SYS_ADMIN unmounts what
    # hides .swarm/ and the other worktrees. (Unprivileged, bwrap drops them anyway.)
    out = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    if not spec.network:
        out.append("--unshare-net")
    for path, link in spec.system:
        out += ["--symlink", link, path] if link is not None else ["--ro-bind", path, path]
    # The agent has no controlling terminal (the worker starts it in a session of its own), so --new-session is
    # not needed against TIOCSTI; and without it the worker's signals to the agent's process group reach inside.
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for mount in mounts(spec):
        out += mount.args()
    out += ["--chdir", spec.worktree, "--", *argv]
    return out


# ----------------------------------------------------------------------------------------------------
# The file system side: what the paths of one agent are, and whether the sandbox can run at all.


def system_paths() -> tuple[tuple[str, str | None], ...]:
    """The SYSTEM_PATHS present here, each with its link target when it is a symbolic link (else None)."""
    found: list[tuple[str, str | None]] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            found.append((path, os.readlink(path)))
        elif os.path.exists(path):
            found.append((path, None))
    return tuple(found)


def _resolver_paths() -> list[str]:
    """Where /etc/resolv.conf points when that is outside the system paths (systemd-resolved's /run/...)."""
    target = os.path.realpath("/etc/resolv.conf")
    if os.path.exists(target) and not any(_inside(target, p) for p in SYSTEM_PATHS):
        return [os.path.dirname(target)]
    return []


def _both_paths(paths: Sequence[str]) -> list[str]:
    """Each path as written (PATH may name it through a symbolic link) and where it really is (a script's
    ``#!`` line names that), once each; bwrap follows links in a bind's source."""
    both: list[str] = []
    for path in paths:
        for each in (os.path.abspath(path), os.path.realpath(path)):
            if each not in both:
                both.append(each)
    return both


def swarm_paths() -> tuple[str, ...]:
    """swarm's own interpreter, environment, package and ``swarm`` executable, for ``swarm msg`` inside."""
    import swarm

    paths = [sys.prefix, sys.base_prefix, str(Path(swarm.__file__).resolve().parent)]
    exe = os.path.realpath(sys.executable)
    paths.append(os.path.dirname(exe))
    found = shutil.which("swarm")
    if found:
        paths.append(os.path.dirname(os.path.realpath(found)))
        paths.append(os.path.dirname(os.path.abspath(found)))
    unique: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        # Inside the system paths already; else bound on its own.
        if os.path.isdir(real) and not any(_inside(real, p) for p in SYSTEM_PATHS) and real not in unique:
            unique.append(real)
    return tuple(unique)


def home_paths(home_setting: Sequence[str]) -> tuple[str, ...]:
    """``[swarm] sandbox_home`` as paths relative to the home directory."""
    return tuple(p.removeprefix("~/").rstrip("/") for p in home_setting)


def git_dirs(worktree: Path) -> tuple[str, str]:
    """The git folder of ``worktree`` and the repository's common one (``.git`` of the main checkout).

    Read from the files git keeps (``.git`` says ``gitdir: ...``, that folder's ``commondir``) rather than by
    running git, which needs 2.31 for absolute answers."""
    dot_git = worktree / ".git"
    if dot_git.is_dir():
        real = str(dot_git.resolve())
        return real, real
    text = dot_git.read_text(encoding="utf-8").strip()
    if not text.startswith("gitdir:"):
        raise BadInput(f"{dot_git} is not a git worktree link", hint="run 'swarm repair'")
    git_dir = Path(text.removeprefix("gitdir:").strip())
    if not git_dir.is_absolute():
        git_dir = worktree / git_dir
    git_dir = git_dir.resolve()
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.exists():
        common_text = commondir.read_text(encoding="utf-8").strip()
        common = (git_dir / common_text).resolve() if not Path(common_text).is_absolute() else Path(common_text)
    return str(git_dir), str(common)


def plan(
    *,
    repo: Path,
    worktree: Path,
    prompt_dir: Path,
    env: Mapping[str, str],
    network: bool,
    home_setting: Sequence[str],
    extra: Sequence[str],
) -> SandboxSpec:
    """The sandbox of one agent run. BadInput when a configured path does not exist (see :func:`check`)."""
    check_paths(home_setting, extra, env, repo=repo, worktree_base=worktree.parent)
    git_dir, common = git_dirs(worktree)
    # The worker's git and the lead's run outside the sandbox and obey what these say (hooks, core.fsmonitor,
    # a worktree link pointing elsewhere): the agent must not be able to plant anything there. Commits need
    # none of them writable. An absent hooks folder is created, so that there is one to keep read-only.
    Path(common, "hooks").mkdir(exist_ok=True)
    readonly = [os.path.join(common, "hooks"), os.path.join(common, "config"), str(worktree.resolve() / ".git")]
    readonly += [m for m in (os.path.join(common, "modules"), os.path.join(git_dir, "modules")) if os.path.isdir(m)]
    home = env.get("HOME") or None
    channel = env.get("SWARM_CHANNEL")
    return SandboxSpec(
        worktree=str(worktree.resolve()),
        repo=str(repo.resolve()),
        git_common_dir=common,
        git_dir=git_dir,
        worktree_base=str(worktree.parent.resolve()),
        prompt_dir=str(prompt_dir.resolve()),
        network=network,
        home=os.path.realpath(home) if home else None,
        home_paths=home_paths(home_setting),
        swarm_paths=swarm_paths(),
        extra_paths=(*_both_paths(extra), *_resolver_paths()),
        channel_dir=os.path.dirname(os.path.realpath(channel)) if channel else None,
        readonly=tuple(dict.fromkeys(readonly)),
        system=system_paths(),
    )


def check_paths(
    home_setting: Sequence[str], extra: Sequence[str], env: Mapping[str, str], *, repo: Path, worktree_base: Path
) -> None:
    """BadInput when a path of the sandbox settings does not exist, or would show what the sandbox hides."""
    home = env.get("HOME")
    if home_setting and not home:
        raise BadInput(
            "swarm.sandbox_home is set but HOME is not", hint="set HOME, or empty swarm.sandbox_home to drop it"
        )
    for rel in home_paths(home_setting):
        inside = Path(home or "/") / rel
        if not inside.exists():
            raise BadInput(
                f"swarm.sandbox_home names {inside}, which does not exist",
                hint="create it, or remove it from sandbox_home in swarm.toml",
            )
    hidden = [str((repo / ".swarm").resolve()), str(worktree_base.resolve())]
    for path in extra:
        if not os.path.exists(path):
            raise BadInput(
                f"swarm.sandbox_paths names {path}, which does not exist",
                hint="create it, or remove it from sandbox_paths in swarm.toml",
            )
        real = os.path.realpath(path)
        if any(_inside(real, h) for h in hidden):
            raise BadInput(
                f"swarm.sandbox_paths names {path}, which is inside what the sandbox hides (.swarm/, the worktrees)",
                hint="remove it from sandbox_paths in swarm.toml",
            )


def check_visible(
    binary: str, *, home_setting: Sequence[str], extra: Sequence[str], env: Mapping[str, str], repo: Path
) -> None:
    """BadInput when the agent CLI at ``binary`` (and where its links lead) lies outside what the sandbox shows:
    it would fail every task with "execvp: No such file or directory"."""
    home = env.get("HOME")
    shown = [*SYSTEM_PATHS, *_both_paths(extra), *swarm_paths()]
    if home:
        shown += [os.path.join(home, p) for p in home_paths(home_setting)] if home_setting else [home]
    repo_root = str(repo.resolve())
    inside_repo = [p for p in _both_paths(extra) if _inside(p, repo_root)]
    missing = []
    for path in dict.fromkeys((os.path.abspath(binary), os.path.realpath(binary))):
        # The repository is hidden but for what sandbox_paths names inside it.
        roots = inside_repo if _inside(path, repo_root) else shown
        if not any(_inside(path, root) for root in roots):
            missing.append(os.path.dirname(path))
    if missing:
        raise BadInput(
            f"the agent CLI {binary} is outside what the sandbox shows",
            hint=f"add {' and '.join(missing)} (or a folder above) to sandbox_paths in swarm.toml",
        )


def bwrap_problem(bwrap: str | None = None) -> str | None:
    """Why bubblewrap cannot sandbox agents here (missing, or the kernel refuses its namespaces); None if it can."""
    found = bwrap or shutil.which("bwrap")
    if found is None:
        return "bwrap (bubblewrap) is not on PATH"
    try:
        done = subprocess.run(
            [found, "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--dev", "/dev", "true"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CHECK_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} does not run: {exc}"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        return f"{found} cannot create a sandbox here: {lines[-1]}"
    return None


def check(
    kind: str,
    *,
    home_setting: Sequence[str],
    extra: Sequence[str],
    env: Mapping[str, str],
    repo: Path,
    worktree_base: Path,
    binary: str | None = None,
) -> None:
    """Before launch starts anything: BadInput (exit 2) when the configured sandbox cannot run, or when the agent
    CLI ``binary`` (as found on the launching PATH) would not be seen inside it."""
    if kind == "none":
        return
    if kind not in KINDS:
        raise BadInput(f"unknown sandbox kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    problem = bwrap_problem()
    if problem is not None:
        raise BadInput(
            f"swarm.sandbox is bwrap but {problem}",
            hint=f'{INSTALL_HINT}, or set sandbox = "none" in swarm.toml',
        )
    check_paths(home_setting, extra, env, repo=repo, worktree_base=worktree_base)
    if binary:
        check_visible(binary, home_setting=home_setting, extra=extra, env=env, repo=repo)
