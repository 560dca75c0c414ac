"""Everything swarm does with git: the one module that imports GitPython.

Each agent works in its own linked worktree on its own branch. This module opens the user's repository,
creates and removes those worktrees, commits an agent's work, and merges the commits of a task's
dependencies into the agent branch.

Every git call goes through ``_Git.run``, which runs git without a shell, without a pager, editor or
terminal prompt, and translates a failure into a :class:`GitError` whose one line says what failed, git's
reason, and what to do. Nothing else in swarm sees a GitPython exception.

git's own environment variables (``GIT_DIR``, ``GIT_WORK_TREE``, ``GIT_INDEX_FILE``) are inherited: run
swarm from a normal shell, not from inside a git hook.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import git
import git.exc

from swarm.errors import BadInput, SwarmError
from swarm.words import plural

logger = logging.getLogger(__name__)

#: Identity of merge commits when the caller names none and git has none configured (a fresh machine).
DEFAULT_IDENTITY: Final = "swarm <swarm@localhost>"

# Given to every git process. No prompt may wait on a terminal nobody watches, no pager may swallow
# output, and no editor may open (every commit and merge passes its message). GIT_OPTIONAL_LOCKS=0 stops
# `git status` from taking the index lock just to refresh stat data, so read-only calls never collide with
# a concurrent writer.
_GIT_ENV: Final[Mapping[str, str]] = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_EDITOR": "true",
    "GIT_OPTIONAL_LOCKS": "0",
}

# Failures that come from another git process working at the same moment, and pass within milliseconds:
# git fails at once, rather than waiting, when another process holds a lock file (index.lock, a ref lock,
# config.lock); and `git worktree add` reads every other worktree's admin directory, which fails while a
# concurrent add is still writing one ("failed to read .git/worktrees/x/commondir"), and its own half-made
# admin directory can be deleted by a `git worktree prune` run meanwhile ("could not open
# '.git/worktrees/x/gitdir' for writing"). Retried with backoff.
_TRANSIENT_RE: Final = re.compile(
    r"\.lock\b|unable to lock|cannot lock|could not lock|(failed to read|could not open) \S*worktrees/",
    re.IGNORECASE,
)
_ATTEMPTS: Final = 10
_FIRST_DELAY: Final = 0.05
_MAX_DELAY: Final = 1.0

# `git submodule` refuses to clone a submodule given as a local path (the file transport) since git 2.38.1
# (CVE-2022-39253) unless protocol.file.allow says so. swarm clones only what the repository's own .gitmodules
# names, into the agent's worktree, so it allows it for its submodule commands (as `-c` would; the variables
# reach the clone that `git submodule` runs).
_SUBMODULE_ENV: Final[Mapping[str, str]] = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.file.allow",
    "GIT_CONFIG_VALUE_0": "always",
}

#: Where a done task's commit is kept (locally, and on the shared remote when there is one).
TASK_REF_PREFIX: Final = "refs/swarm/tasks/"
#: Commits made inside a submodule of an agent's worktree live in that worktree's own copy of the submodule
#: repository (``.git/worktrees/<name>/modules/``), which goes when the worktree is removed; a ref in the main
#: repository under this prefix (named by the commit's sha) keeps them.
SUBMODULE_REF_PREFIX: Final = "refs/swarm/submodules/"
#: Work found where the agent left HEAD that could not be brought onto the agent branch.
SAVED_REF_PREFIX: Final = "refs/swarm/saved/"

_FULL_SHA_RE: Final = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")

_IDENTITY_RE: Final = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*$")

# info/exclude is shared by every worktree of a repository, and several threads may launch agents at once.
_EXCLUDE_LOCK: Final = threading.Lock()


class GitError(SwarmError):
    """A git command failed. Carries the command and git's full stderr for the debug log."""

    def __init__(self, message: str, *, hint: str | None = None, command: Sequence[str] = (), stderr: str = "") -> None:
        self.command = list(command)
        self.stderr = stderr
        super().__init__(message, hint=hint)


@dataclass(frozen=True, slots=True)
class WorktreeInfo:
    """One entry of ``git worktree list``. ``head`` is empty for a bare main repository."""

    path: Path
    branch: str | None
    head: str
    prunable: bool


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """One commit: full sha, subject line, and author as ``Name <email>``."""

    sha: str
    subject: str
    author: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    """Outcome of :meth:`Worktree.merge`.

    ``merged`` lists the refs merged by this call, in order (refs already in HEAD are skipped). On a
    conflict ``ok`` is false, ``ref`` is the ref whose merge conflicted, ``conflicts`` its conflicting paths,
    and that merge has been aborted; merges of earlier refs in the same call stay committed.
    """

    ok: bool
    merged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    ref: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Committed:
    """Outcome of :meth:`Worktree.commit_on_branch`: the new HEAD of the branch (None: nothing to commit) and
    one sentence for each thing done besides the plain commit (the agent's HEAD brought back, submodules)."""

    sha: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Result:
    status: int
    out: str
    err: str


def _first_line(stderr: str) -> str:
    """Git's reason in one line: the first ``fatal:``/``error:`` line, else the first non-hint line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        for prefix in ("fatal: ", "error: "):
            if ln.startswith(prefix):
                return ln[len(prefix) :]
    for ln in lines:
        if not ln.startswith("hint:"):
            return ln
    return "git gave no reason"


class _Git:
    """Runs git in one directory. GitPython's ``Git`` spawns one process per call, so this is thread safe."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._git = git.Git(str(cwd))
        self._git.update_environment(**_GIT_ENV)

    def run(
        self,
        *args: str,
        what: str = "",
        hint: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        retry: bool = False,
    ) -> _Result:
        """Run ``git <args>``; with ``check``, turn a non-zero exit into a :class:`GitError`.

        ``what`` names the operation for the error message ("create worktree /x"); ``retry`` retries
        briefly while another git process is in the way (see ``_TRANSIENT_RE``).
        """
        what = what or f"run git {args[0]}"
        if not self.cwd.is_dir():
            # Popen would report a missing cwd as "git not found", which would send the user the wrong way.
            raise GitError(
                f"cannot {what}: directory {self.cwd} does not exist",
                hint="it may have been removed; an agent's worker recreates its worktree before its next task",
            )
        for attempt in range(1, _ATTEMPTS + 1):
            result = self._once(args, env=env, what=what)
            if result.status == 0 or not check:
                return result
            if retry and attempt < _ATTEMPTS and _TRANSIENT_RE.search(result.err):
                logger.debug("git %s is busy (attempt %d): %s", args[0], attempt, _first_line(result.err))
                _back_off(attempt)
                continue
            raise self.error(result, args, what=what, hint=hint)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _once(self, args: Sequence[str], *, env: Mapping[str, str] | None, what: str) -> _Result:
        subcommand, *rest = args
        try:
            status, out, err = getattr(self._git, subcommand)(
                *rest, with_extended_output=True, with_exceptions=False, env=env
            )
        except git.exc.GitCommandNotFound as exc:
            raise GitError(
                f"cannot {what}: the git program was not found",
                hint="install git and make sure it is on PATH",
            ) from exc
        except git.exc.GitCommandError as exc:  # only raised for timeouts when exceptions are off
            raise GitError(
                f"cannot {what}: {_first_line(str(exc.stderr))}",
                hint="run the same git command by hand to see what is wrong",
                command=list(args),
                stderr=str(exc.stderr),
            ) from exc
        return _Result(int(status), str(out), str(err))

    def error(self, result: _Result, args: Sequence[str], *, what: str, hint: str | None) -> GitError:
        """The one-line error for a failed command; the full stderr goes to the debug log."""
        logger.debug("git %s failed (exit %d) in %s: %s", " ".join(args), result.status, self.cwd, result.err)
        return GitError(
            f"cannot {what}: {_first_line(result.err)}",
            hint=hint or f"run 'git {args[0]}' in {self.cwd} to see what is wrong",
            command=list(args),
            stderr=result.err,
        )

    def ok(self, *args: str) -> bool:
        """True if ``git <args>`` exits 0: for the plumbing commands that answer with their exit code."""
        return self._once(args, env=None, what=f"run git {args[0]}").status == 0


def _back_off(attempt: int) -> None:
    """Back off exponentially, with jitter so that threads that collided once do not collide again."""
    delay = min(_FIRST_DELAY * 2 ** (attempt - 1), _MAX_DELAY)
    time.sleep(delay * (1 + random.random()))


def _identity_env(author: str) -> dict[str, str]:
    """Author and committer variables for ``Name <email>``: works with no git identity configured."""
    m = _IDENTITY_RE.match(author)
    if m is None or not m["name"]:
        raise BadInput(
            f"invalid git identity {author!r}",
            hint="give it as 'Name <email>', for example 'swarm agent-1 <agent-1@swarm.local>'",
        )
    name, email = m["name"], m["email"]
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _check_ref_text(ref: str, kind: str = "ref") -> None:
    """Refuse text git would read as an option: refs are passed as arguments, and '-x' is not a ref."""
    if not ref or ref.startswith("-") or "\0" in ref:
        raise BadInput(f"invalid git {kind} {ref!r}", hint=f"give a {kind} name that does not start with '-'")


def _parse_worktrees(porcelain: str) -> list[WorktreeInfo]:
    """Parse ``git worktree list --porcelain``: blank-line separated blocks of ``key [value]`` lines."""
    infos: list[WorktreeInfo] = []
    for block in porcelain.strip().split("\n\n"):
        path: str | None = None
        branch: str | None = None
        head = ""
        prunable = False
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key == "worktree":
                path = value
            elif key == "HEAD":
                head = value
            elif key == "branch":
                branch = value.removeprefix("refs/heads/")
            elif key == "prunable":
                prunable = True
        if path is not None:
            infos.append(WorktreeInfo(Path(path).resolve(), branch, head, prunable))
    return infos


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies under it, both resolved (an agent's worktree in this repository,
    say: that is how teardown and repair tell this host's agents from other clones')."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def open_repo(path: Path) -> GitRepo:
    """Open the repository that holds ``path``; its root is the top level of the main work tree.

    Raises :class:`BadInput` when ``path`` is not inside a git work tree or the repository has no commit
    yet (worktrees need a commit to branch from).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise BadInput(f"no such directory: {path}", hint="give the path of your repository")
    probe = _Git(path)
    inside = probe._once(["rev-parse", "--is-inside-work-tree"], env=None, what="open repository")
    if inside.status != 0 or inside.out.strip() != "true":
        raise BadInput(f"not a git repository: {path}", hint="run 'git init' or cd into your repository")
    toplevel = Path(probe.run("rev-parse", "--show-toplevel", what="open repository").out.strip()).resolve()
    # From inside a linked worktree (an agent's, say) the main work tree is still the root: worktrees are
    # created beside it, never nested in another worktree.
    listed = _parse_worktrees(
        _Git(toplevel).run("worktree", "list", "--porcelain", what="open repository", retry=True).out
    )
    root = listed[0].path if listed and listed[0].head and listed[0].path.is_dir() else toplevel
    repo = GitRepo(root)
    if not repo._git.ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
        raise BadInput(
            f"repository {root} has no commits yet",
            hint="make a first commit (for example: git commit --allow-empty -m 'initial') and try again",
        )
    return repo


class GitRepo:
    """The user's repository, seen from its main work tree. Safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._git = _Git(self.root)
        common = self._git.run("rev-parse", "--git-common-dir", what="open repository").out.strip()
        # Relative (".git") from the main worktree; joining leaves an absolute answer unchanged.
        self._common_dir = (self.root / common).resolve()

    def __repr__(self) -> str:
        return f"GitRepo({str(self.root)!r})"

    def _abs(self, path: Path) -> Path:
        """Relative paths are relative to the root, not to the process's cwd."""
        path = Path(path).expanduser()
        return (path if path.is_absolute() else self.root / path).resolve()

    def head_sha(self) -> str:
        """Full sha of HEAD in the main work tree."""
        return self._git.run("rev-parse", "--verify", "HEAD^{commit}", what="read HEAD").out.strip()

    def resolve(self, ref: str) -> str:
        """Full sha of the commit ``ref`` names (branch, tag, sha, ``HEAD~2``); BadInput if unknown."""
        _check_ref_text(ref)
        result = self._git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if result.status != 0:
            raise BadInput(
                f"unknown git ref {ref!r} in {self.root}",
                hint="give a branch, tag or commit sha that exists ('git log --oneline' lists commits)",
            )
        return result.out.strip()

    def current_branch(self) -> str | None:
        """Branch checked out in the main work tree, or None when HEAD is detached."""
        return _branch_of(self._git)

    def is_dirty(self) -> bool:
        """True if the main work tree has tracked changes or untracked files that are not ignored."""
        return _has_changes(self._git)

    def ensure_excluded(self, *patterns: str) -> None:
        """Add each pattern missing from ``<git common dir>/info/exclude``.

        info/exclude, unlike .gitignore, is not part of the tree, so this never leaves the user with a change
        to commit; and it is shared by every worktree of the repository.
        """
        exclude = self._common_dir / "info" / "exclude"
        with _EXCLUDE_LOCK:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
            present = {line.strip() for line in text.splitlines()}
            missing = [p for p in dict.fromkeys(patterns) if p.strip() and p.strip() not in present]
            if not missing:
                return
            prefix = "" if not text or text.endswith("\n") else "\n"
            with exclude.open("a", encoding="utf-8") as fh:
                fh.write(prefix + "".join(f"{p.strip()}\n" for p in missing))
            logger.debug("added %s to %s", missing, exclude)

    def remote_exists(self, name: str) -> bool:
        """Whether ``git remote get-url name`` works."""
        return self._git.run("remote", "get-url", name, check=False).status == 0

    def branch_exists(self, name: str) -> bool:
        """True if the local branch ``name`` exists."""
        _check_ref_text(name, "branch")
        return self._git.ok("show-ref", "--verify", "--quiet", f"refs/heads/{name}")

    def add_worktree(self, path: Path, branch: str, base: str) -> bool:
        """Make ``path`` a worktree on ``branch``; True if created, False if it already was one.

        An existing branch is checked out as it is (it may hold an agent's earlier work); a missing one is
        created from ``base``. Raises :class:`SwarmError` when the path is taken by something else or the
        branch is checked out in another worktree. Threads may call this at once for different paths.
        """
        path = self._abs(path)
        self._check_branch_name(branch)
        for info in self.list_worktrees():
            if info.path != path and info.branch != branch:
                continue
            if info.prunable and not info.path.exists():
                # Registered, but its directory was deleted by hand: it would block both its path and its
                # branch. Forget this one entry only: `git worktree prune` could also delete the admin
                # directory of a worktree another thread is creating at this moment.
                self._forget(info.path)
                continue
            if info.path == path:
                if info.branch == branch:
                    return False
                on = f"branch {info.branch!r}" if info.branch else "a detached HEAD"
                raise GitError(
                    f"cannot create worktree {path}: it is already a worktree on {on}, not {branch!r}",
                    hint=f"remove it first (git worktree remove {path}) or use another worktree path",
                )
            raise GitError(
                f"cannot create worktree {path}: branch {branch!r} is checked out in {info.path}",
                hint=f"remove that worktree (git worktree remove {info.path}) or use another branch",
            )
        if path.exists() or path.is_symlink():
            raise GitError(
                f"cannot create worktree {path}: the path exists and is not a worktree of {self.root}",
                hint="move or delete it, or choose another worktree directory",
            )
        base_sha = None if self.branch_exists(branch) else self.resolve(base)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._worktree_add(path, branch, base_sha)
        logger.info("created worktree %s on %s", path, branch)
        return True

    def check_branch_name(self, name: str) -> None:
        """Raise :class:`BadInput` unless ``name`` is a valid branch name (``git check-ref-format --branch``).

        ``@{-N}`` is refused too: check-ref-format would expand it to the previous branch's name, but the
        caller means a branch literally called that, and no valid ref name contains ``@{``.
        """
        if "@{" in name:
            raise BadInput(f"invalid branch name {name!r}", hint="a branch name cannot contain '@{'")
        self._check_branch_name(name)

    def _check_branch_name(self, name: str) -> None:
        _check_ref_text(name, "branch")
        if not self._git.ok("check-ref-format", "--branch", name):
            raise BadInput(f"invalid branch name {name!r}", hint="see 'git help check-ref-format' for the rules")

    def _worktree_add(self, path: Path, branch: str, base_sha: str | None) -> None:
        """``git worktree add``, retried while another git process is in the way.

        A failed attempt can leave half a worktree behind (registered, or with its branch created), so each
        retry first clears what the failed attempt made; the path was checked free before the first one.
        """
        args = ["worktree", "add"]
        args += [str(path), branch] if base_sha is None else ["-b", branch, str(path), base_sha]
        what = f"create worktree {path} on branch {branch!r}"
        for attempt in range(1, _ATTEMPTS + 1):
            result = self._git.run(*args, what=what, check=False)
            if result.status == 0:
                return
            if attempt == _ATTEMPTS or not _TRANSIENT_RE.search(result.err):
                raise self._git.error(result, args, what=what, hint=None)
            logger.debug("worktree add %s is busy (attempt %d): %s", path, attempt, result.err.strip())
            self._clear_failed_add(path)
            if base_sha is not None and self.branch_exists(branch):
                # The failed attempt created the branch at base_sha already: check it out next time.
                args = ["worktree", "add", str(path), branch]
            _back_off(attempt)

    def _clear_failed_add(self, path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        if any(w.path == path for w in self.list_worktrees()):
            self._forget(path)

    def _forget(self, path: Path) -> None:
        """Unregister a worktree whose directory is gone (plain ``worktree remove`` accepts a missing one)."""
        self._git.run(
            "worktree",
            "remove",
            str(path),
            what=f"forget the deleted worktree {path}",
            hint=f"if it is locked, run 'git worktree unlock {path}' and try again",
            retry=True,
        )
        logger.info("forgot deleted worktree %s", path)

    def init_submodules(self, path: Path) -> bool:
        """Initialise and check out the submodules of the worktree at ``path`` (recursively); True if it has any.

        A new linked worktree has none checked out: without this an agent finds empty submodule folders.
        """
        path = self._abs(path)
        if not (path / ".gitmodules").is_file():
            return False
        _Git(path).run(
            "submodule",
            "update",
            "--init",
            "--recursive",
            "--quiet",
            what=f"initialise the submodules of {path}",
            hint="check that the submodules' URLs in .gitmodules are reachable, or set swarm.submodules = false",
            env=_SUBMODULE_ENV,
            retry=True,
        )
        return True

    def heal_worktree(self, path: Path, branch: str, *, leftovers: str, submodules: bool = True) -> list[str]:
        """Make the agent worktree at ``path`` fit for its next task; return one sentence per repair made.

        Checked, in this order, and repaired: the directory is there and registered with git (else recreated
        from ``branch``, which holds every task commit), it is the top of a linked worktree (else ``git worktree
        repair``), no ``index.lock`` is left by a git process that is gone (removed; one whose holder still runs
        is an error), no change is left from outside a task (saved: committed inside submodules, then stashed
        as ``leftovers``), HEAD is on ``branch`` (the agent's commits are brought back onto it), and with
        ``submodules`` the submodules are initialised. Raises :class:`GitError` saying why when it cannot.
        """
        path = self._abs(path)
        self._check_branch_name(branch)
        actions: list[str] = []
        info = next((w for w in self.list_worktrees() if w.path == path), None)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # emptied by hand (rm -rf ./* .git): nothing in it to keep
        if not path.exists():
            if info is not None:
                self._forget(path)
            if not self.branch_exists(branch):
                if info is None or not info.head:
                    raise GitError(
                        f"cannot recreate the deleted worktree {path}: its branch {branch!r} is gone too",
                        hint="relaunch to start the agent from the swarm's base again",
                    )
                self._git.run("branch", branch, info.head, what=f"recreate branch {branch!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._worktree_add(path, branch, None)
            if submodules:
                self.init_submodules(path)
            actions.append(f"the worktree {path} was deleted; recreated it from {branch}")
            return actions
        if not self._is_top(path):
            if info is not None:
                self._git.run("worktree", "repair", str(path), what=f"repair the worktree {path}", check=False)
            if info is None or not self._is_top(path):
                raise GitError(
                    f"{path} is no longer a git worktree of {self.root}",
                    hint=f"move its files away and run 'git worktree prune', then relaunch to recreate {path}",
                )
            actions.append(f"the worktree {path} had lost its link to the repository; repaired it")
        worktree = Worktree(path)
        actions += worktree.clear_stale_locks()
        stashed = worktree.stash(leftovers)
        if stashed:
            actions.append(f"saved the changes left in {path} outside any task as stash {stashed[:12]} ({leftovers!r})")
        actions += worktree.return_to_branch(branch)
        if submodules and worktree.uninitialised_submodules():
            self.init_submodules(path)
            actions.append(f"initialised the submodules of {path}")
        return actions

    def _is_top(self, path: Path) -> bool:
        top = _Git(path).run("rev-parse", "--show-toplevel", check=False)
        return top.status == 0 and Path(top.out.strip()).resolve() == path

    def list_worktrees(self) -> list[WorktreeInfo]:
        """Every worktree of the repository, the main one first; paths are resolved."""
        out = self._git.run("worktree", "list", "--porcelain", what="list worktrees", retry=True).out
        return _parse_worktrees(out)

    def remove_worktree(self, path: Path, *, force: bool = False, prune: bool = True) -> None:
        """Remove the worktree at ``path`` (its branch stays); nothing happens if it is already gone.

        Without ``force`` git refuses a worktree with uncommitted changes, and so does this. Then prunes
        every worktree whose directory is gone.
        """
        path = self._abs(path)
        if any(w.path == path for w in self.list_worktrees()):
            # Plain `remove` also unregisters a worktree whose directory is gone; --force would refuse that.
            force = force and path.exists()
            args = ["worktree", "remove", *(["--force"] if force else []), str(path)]
            result = self._git.run(*args, check=False, retry=True)
            if result.status != 0:
                if "locked" in result.err:
                    hint = f"unlock it first (git worktree unlock {path})"
                else:
                    hint = "commit or discard its changes, or remove it with force"
                raise self._git.error(result, args, what=f"remove worktree {path}", hint=hint)
            logger.info("removed worktree %s", path)
        if prune:  # callers removing several worktrees at once prune once at the end
            self.prune_worktrees()

    def prune_worktrees(self) -> None:
        """Forget registered worktrees whose directories no longer exist."""
        self._git.run("worktree", "prune", what="prune worktrees", retry=True)

    def delete_branch(self, name: str, *, force: bool = False) -> bool:
        """Delete a local branch; True if deleted.

        Without ``force`` a branch not merged into the main work tree's HEAD (or its upstream) is kept and
        False returned (git's ``-d``); False too if the branch does not exist. A branch checked out in a
        worktree raises :class:`SwarmError`.
        """
        if not self.branch_exists(name):
            return False
        args = ["branch", "-D" if force else "-d", name]
        result = self._git.run(*args, check=False, retry=True)
        if result.status == 0:
            logger.info("deleted branch %s", name)
            return True
        if not force and "not fully merged" in result.err:
            return False
        raise self._git.error(
            result,
            args,
            what=f"delete branch {name!r}",
            hint="if it is checked out in a worktree, remove that worktree first",
        )

    def is_merged(self, branch: str, into: str) -> bool:
        """True if every commit of ``branch`` is already in ``into``."""
        branch_sha, into_sha = self.resolve(branch), self.resolve(into)
        return _is_ancestor(self._git, branch_sha, into_sha)

    def commits_between(self, base: str, ref: str) -> list[CommitInfo]:
        """Commits reachable from ``ref`` but not from ``base``, newest first."""
        base_sha, ref_sha = self.resolve(base), self.resolve(ref)
        # Unit and record separators cannot appear in a subject or a name, so the split is unambiguous.
        out = self._git.run(
            "log", "--format=%H%x1f%s%x1f%an <%ae>%x1e", f"{base_sha}..{ref_sha}", what="list commits"
        ).out
        commits = []
        for record in out.split("\x1e"):
            if record.strip():
                sha, subject, author = record.strip().split("\x1f", 2)
                commits.append(CommitInfo(sha, subject, author))
        return commits

    def worktree(self, path: Path) -> Worktree:
        """The worktree at ``path``; :class:`SwarmError` if ``path`` is not the top of a work tree.

        Checked here because git run in a plain subdirectory would act on the enclosing work tree, and
        ``commit_all`` there would commit the user's own changes.
        """
        path = self._abs(path)
        if path == self.root:
            raise GitError(
                f"not a worktree: {path} is the main work tree",
                hint="agents work in linked worktrees; give the path of one (see 'git worktree list')",
            )
        top = _Git(path).run("rev-parse", "--show-toplevel", what=f"open worktree {path}", check=False)
        if top.status != 0 or Path(top.out.strip()).resolve() != path:
            raise GitError(
                f"not a worktree: {path}",
                hint="create it with add_worktree first (relaunching the agent does this)",
            )
        return Worktree(path)


class Worktree:
    """One linked worktree, where one agent works. Use it from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._git = _Git(self.path)
        self._identity: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"Worktree({str(self.path)!r})"

    def head_sha(self) -> str:
        """Full sha of the worktree's HEAD."""
        return self._git.run("rev-parse", "--verify", "HEAD^{commit}", what=f"read HEAD of {self.path}").out.strip()

    def branch(self) -> str | None:
        """Branch checked out here, or None when HEAD is detached."""
        return _branch_of(self._git)

    def has_changes(self) -> bool:
        """True if there is any tracked change or untracked file that is not ignored."""
        return _has_changes(self._git)

    def has_commit(self, sha: str) -> bool:
        """Whether the object store (shared by every worktree) holds this commit."""
        return self._git.run("cat-file", "-e", f"{sha}^{{commit}}", check=False).status == 0

    def push(self, remote: str, refspecs: Sequence[str]) -> None:
        """``git push <remote> <refspecs>`` (how task commits reach the other machines of a shared swarm)."""
        self._with_remote("push", "to", remote, refspecs, "accepts pushes")

    def fetch(self, remote: str, refspecs: Sequence[str]) -> None:
        """``git fetch <remote> <refspecs>`` (bring in the commits of tasks done on other machines)."""
        self._with_remote("fetch", "from", remote, refspecs, "the task was pushed")

    def _with_remote(self, verb: str, preposition: str, remote: str, refspecs: Sequence[str], check: str) -> None:
        """``git <verb> --quiet <remote> <refspecs>``; a failure names the refs, and says to check ``check``
        of the remote besides that it is reachable."""
        self._git.run(
            verb,
            "--quiet",
            remote,
            *refspecs,
            what=f"{verb} {', '.join(refspecs)} {preposition} {remote}",
            hint=f"check that the remote {remote!r} is reachable and {check}",
        )

    def commit_all(self, message: str, author: str, *, allow_empty: bool = True) -> str | None:
        """Stage everything and commit as ``author`` (``Name <email>``, also the committer); return the sha.

        Returns None when there is nothing to commit and ``allow_empty`` is false. Hooks are skipped
        (``--no-verify``): a pre-commit hook waiting for input would hang the worker, and an agent's work is
        checked by its task, not by the user's local hooks.
        """
        env = _identity_env(author)
        what = f"commit in {self.path}"
        self._git.run("add", "-A", what=what, retry=True)
        args = ["commit", "--no-verify", "--quiet", "-m", message]
        if allow_empty:
            # --allow-empty commits staged changes too: no need to ask git first whether there are any.
            args.append("--allow-empty")
        elif self._git.ok("diff", "--cached", "--quiet"):
            return None
        self._git.run(*args, what=what, env=env, retry=True)
        sha = self.head_sha()
        logger.info("committed %s in %s", sha[:12], self.path)
        return sha

    def stash(self, message: str) -> str | None:
        """Save every change, untracked files included, with ``git stash``; return the stash commit's sha.

        Leaves the worktree clean, so the next task starts from the last commit. Returns None if there was
        nothing to save. Changes inside submodules are committed in them first (see :meth:`commit_on_branch`).
        The sha, not ``stash@{n}``, names the entry: all worktrees share one stash list, and
        other agents' entries push ours down.
        """
        if not self.has_changes():
            return None
        what = f"stash the changes in {self.path}"
        env = self._fallback_identity()  # a stash is a commit: it needs an identity
        # `git stash` does not look inside submodules: their changes are committed in them first (kept by a ref
        # of the main repository), so the stash holds the new submodule commits, and the submodules are then
        # checked out at the recorded commits again, or the worktree would stay dirty.
        if self._commit_submodules(message, env, keeper=self._git):
            return self._stash_with_submodules(message, env)
        self._git.run("stash", "push", "--include-untracked", "-m", message, what=what, env=env, retry=True)
        # Newest first; another agent may have stashed since, so find ours by its message.
        out = self._git.run("reflog", "show", "--format=%H%x1f%gs", "refs/stash", "--", what=what).out
        for line in out.splitlines():
            sha, _, subject = line.partition("\x1f")
            if subject.endswith(f": {message}"):
                logger.info("stashed the changes of %s as %s", self.path, sha[:12])
                return sha
        raise GitError(
            f"cannot {what}: git stored the stash, but its entry was not found",
            hint=f"run 'git stash list' in {self.path} to find it",
        )

    def _stash_with_submodules(self, message: str, env: Mapping[str, str]) -> str:
        """``git stash`` ignores submodule pointers, so build the stash entry by hand: a commit of the whole
        tree with HEAD and an index commit as parents (the shape ``git stash apply`` expects), stored with
        ``git stash store``; then check out HEAD and the recorded submodule commits again."""
        what = f"stash the changes in {self.path}"
        self._git.run("add", "-A", what=what, retry=True)
        tree = self._git.run("write-tree", what=what).out.strip()
        head = self.head_sha()
        index = self._git.run("commit-tree", tree, "-p", head, "-m", f"index on {head[:12]}", what=what, env=env)
        stash = self._git.run(
            "commit-tree", tree, "-p", head, "-p", index.out.strip(), "-m", message, what=what, env=env
        ).out.strip()
        self._git.run("stash", "store", "-m", message, stash, what=what, env=env, retry=True)
        # Everything, untracked files included, is in the stash commit now: nothing of it is lost here.
        self._git.run("reset", "--hard", "--quiet", "HEAD", what=what, retry=True)
        self._git.run("clean", "-fd", "--quiet", what=what)
        self._update_submodules()
        logger.info("stashed the changes of %s (submodules included) as %s", self.path, stash[:12])
        return stash

    def commit_on_branch(self, branch: str, message: str, author: str, *, allow_empty: bool = True) -> Committed:
        """Commit every change on ``branch``, wherever the agent left HEAD; the result says what was done.

        Like :meth:`commit_all`, plus: a stale ``index.lock`` is removed first; changes inside initialised
        submodules are committed in each submodule (with the same message, kept reachable by
        ``refs/swarm/submodules/<sha>`` in the main repository) so that the commit here records the new
        pointers; and when HEAD is not on ``branch`` (the agent ran ``git checkout -b other``, ``git switch``
        or a detached checkout), the commit is made where HEAD is and then brought onto ``branch``:
        fast-forwarded when ``branch`` is behind it, merged when they diverged, and HEAD is put back on
        ``branch``. A merge that conflicts raises :class:`GitError` (the work stays at ``refs/swarm/saved/``).
        ``sha`` is None only when nothing was committed and ``branch`` did not move.
        """
        _check_ref_text(branch, "branch")
        env = _identity_env(author)
        what = f"commit in {self.path}"
        notes = self.clear_stale_locks()
        notes += self._commit_submodules(message, env, keeper=self._git)
        self._git.run("add", "-A", what=what, retry=True)
        nothing_staged = not allow_empty and self._git.ok("diff", "--cached", "--quiet")
        current = self.branch()
        if current == branch:
            if nothing_staged:
                return Committed(None, notes)
            args = ["commit", "--no-verify", "--quiet", "-m", message]
            if allow_empty:
                args.append("--allow-empty")
            self._git.run(*args, what=what, env=env, retry=True)
            sha = self.head_sha()
            logger.info("committed %s in %s", sha[:12], self.path)
            return Committed(sha, notes)
        # Plumbing, not `git commit`: HEAD may be on a branch that is not the agent's (the user's main, even),
        # and that branch must not move.
        head = self.head_sha()
        if not nothing_staged:
            tree = self._git.run("write-tree", what=what).out.strip()
            head = self._git.run("commit-tree", tree, "-p", head, "-m", message, what=what, env=env).out.strip()
        where = f"branch {current!r}" if current else f"a detached HEAD at {head[:12]}"
        moved = self._bring_back(branch, head, where, notes, merge_message=message, author=author)
        sha = self.head_sha()
        return Committed(sha if moved or not nothing_staged else None, notes)

    def return_to_branch(self, branch: str) -> list[str]:
        """Put HEAD of a clean worktree back on ``branch``; one sentence per thing done (none if it was there).

        Commits made elsewhere since are brought along when ``branch`` is behind them; commits that diverged
        from it are not merged (they were made outside any task) but kept at ``refs/swarm/saved/<sha>``.
        """
        _check_ref_text(branch, "branch")
        current = self.branch()
        if current == branch:
            return []
        notes: list[str] = []
        head = self.head_sha()
        where = f"branch {current!r}" if current else f"a detached HEAD at {head[:12]}"
        self._bring_back(branch, head, where, notes, merge_message=None, author=None)
        return notes

    def _bring_back(
        self,
        branch: str,
        head: str,
        where: str,
        notes: list[str],
        *,
        merge_message: str | None,
        author: str | None,
    ) -> bool:
        """Move ``branch`` to include ``head`` (the commit HEAD is on) and check it out; True if it moved."""
        what = f"bring the work on {where} back onto {branch} in {self.path}"
        ref = f"refs/heads/{branch}"
        found = self._git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        tip = found.out.strip() if found.status == 0 else None
        log_message = f"swarm: bring back the agent's work from {where}"
        if tip is None or tip == head or _is_ancestor(self._git, tip, head):
            if tip != head:
                count = self._git.run("rev-list", "--count", head, *([f"^{tip}"] if tip else []), what=what).out
                self._git.run("update-ref", "-m", log_message, ref, head, *([tip] if tip else []), what=what)
                notes.append(
                    f"the agent left {branch} for {where}; brought its {plural(int(count), 'commit')} onto {branch}"
                )
            else:
                notes.append(f"the agent left {branch} for {where}; put HEAD back on {branch}")
            # HEAD's commit is now the branch's: pointing HEAD at the branch changes no file and no index entry.
            self._git.run("symbolic-ref", "-m", log_message, "HEAD", ref, what=what)
            return tip != head
        if _is_ancestor(self._git, head, tip):
            # Nothing there that the branch lacks (an older commit was checked out): just go back.
            self._git.run("checkout", "--quiet", "--force", branch, what=what, retry=True)
            notes.append(f"the agent left {branch} for {where} (already in {branch}); put HEAD back on {branch}")
            return False
        saved = f"{SAVED_REF_PREFIX}{head}"
        self._git.run("update-ref", "-m", log_message, saved, head, what=what)
        # The tree is all in `head` (committed above, or clean): --force loses nothing.
        self._git.run("checkout", "--quiet", "--force", branch, what=what, retry=True)
        if merge_message is None:
            notes.append(f"the agent left {branch} for {where}, which diverged from it; kept that at {saved}")
            return False
        merged = self.merge([head], merge_message, author=author, known_clean=True)
        if not merged.ok:
            raise GitError(
                f"cannot bring the agent's work back onto {branch}: it left HEAD on {where}, which diverged "
                f"from {branch}, and merging it conflicts in {', '.join(merged.conflicts)}",
                hint=f"the work is kept at {saved}; merge it into {branch} by hand",
            )
        notes.append(f"the agent left {branch} for {where}, which diverged from it; merged its work into {branch}")
        return True

    def keep_ref(self, ref: str, sha: str) -> None:
        """Point ``ref`` (``refs/swarm/tasks/<task>``, say) at ``sha``: the commit stays reachable whatever
        happens to the branches."""
        _check_ref_text(ref)
        _check_ref_text(sha, "commit")
        self._git.run("update-ref", ref, sha, what=f"keep {sha[:12]} at {ref}", retry=True)

    def submodule_paths(self) -> list[str]:
        """Paths, relative to the worktree, of the submodules ``.gitmodules`` declares (not nested ones)."""
        if not (self.path / ".gitmodules").is_file():
            return []
        result = self._git.run(
            "config", "--file", ".gitmodules", "-z", "--get-regexp", r"^submodule\..*\.path$", check=False
        )
        paths = []
        for record in result.out.split("\0"):
            _key, _, value = record.partition("\n")
            if value:
                paths.append(value)
        return paths

    def uninitialised_submodules(self) -> list[str]:
        """Declared submodules that are not checked out here."""
        return [rel for rel in self.submodule_paths() if not (self.path / rel / ".git").exists()]

    def uncommitted_paths(self, *, include_submodules: bool = True) -> list[str]:
        """Every path with a change not committed (untracked files included, ignored ones not).

        With ``include_submodules``, changes inside a submodule are listed as ``<submodule>/<path>`` (and the
        submodule itself when its checked-out commit is not the one recorded here); without, a changed
        submodule is listed by its path.
        """
        out = self._git.run(
            "status",
            "--porcelain=v2",
            "-z",
            "--untracked-files=normal",
            "--ignore-submodules=none",
            what=f"read status of {self.path}",
        ).out
        entries = out.split("\0")
        paths: list[str] = []
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            kind = entry[:1]
            if kind == "?":
                paths.append(entry[2:])
                continue
            splits = {"1": 8, "2": 9, "u": 10}.get(kind)
            if splits is None:
                continue  # "!" (ignored), "#" headers, the empty end
            fields = entry.split(" ", splits)
            if kind == "2":
                i += 1  # a rename's original path follows as its own entry
            xy, sub, path = fields[1], fields[2], fields[splits]
            if not sub.startswith("S") or not include_submodules:
                paths.append(path)
                continue
            inner: list[str] = []
            if sub[2] == "M" or sub[3] == "U":
                inner = [f"{path}/{p}" for p in Worktree(self.path / path).uncommitted_paths()]
            if sub[1] == "C" or xy[0] != "." or not inner:
                paths.append(path)
            paths.extend(inner)
        return paths

    def clear_stale_locks(self) -> list[str]:
        """Remove the ``index.lock`` files of this worktree and its submodules whose git process is gone.

        git leaves one behind when it is killed; every later git command that writes the index then fails.
        A lock that a running process still holds open raises :class:`GitError` naming that process.
        """
        gitdir = Path(
            self._git.run("rev-parse", "--absolute-git-dir", what=f"read the git dir of {self.path}").out.strip()
        )
        locks = [gitdir / "index.lock", *sorted((gitdir / "modules").glob("**/index.lock"))]
        notes = []
        for lock in locks:
            if not lock.exists():
                continue
            holders = _lock_holders(lock)
            if holders:
                raise GitError(
                    f"{lock} is held by the running process {holders[0]}",
                    hint=f"let it finish or stop it (kill {holders[0]}), then try again",
                )
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            notes.append(f"removed a stale {lock} (the git process that left it is gone)")
            logger.info("removed stale lock %s", lock)
        return notes

    def _commit_submodules(self, message: str, env: Mapping[str, str], *, keeper: _Git) -> list[str]:
        """Commit the changes inside each initialised submodule (nested ones first); one note per commit.

        Each commit is fetched into ``keeper``'s repository as ``refs/swarm/submodules/<sha>``: the
        submodule's own repository here lives in this worktree's admin directory and goes with it.
        """
        notes = []
        for rel in self.submodule_paths():
            path = self.path / rel
            if not (path / ".git").exists():
                continue
            sub = Worktree(path)
            what = f"commit the changes in submodule {rel} of {self.path}"
            try:
                notes += [f"{rel}/ {n}" for n in sub._commit_submodules(message, env, keeper=keeper)]
                if not sub.has_changes():
                    continue
                sub._git.run("add", "-A", what=what, retry=True)
                if sub._git.ok("diff", "--cached", "--quiet"):
                    continue  # only a nested pointer that was already staged... nothing of its own
                # No identity given (a stash): the submodule's own git config may lack one the main one has.
                sub_env = env or sub._fallback_identity()
                sub._git.run("commit", "--no-verify", "--quiet", "-m", message, what=what, env=sub_env, retry=True)
                sha = sub.head_sha()
            except GitError as exc:
                raise GitError(
                    f"cannot commit the changes in submodule {rel} of {self.path}: {exc.message}",
                    hint=f"the changes stay in {path}; commit them there by hand",
                    command=exc.command,
                    stderr=exc.stderr,
                ) from exc
            keeper.run(
                "fetch",
                "--quiet",
                "--no-tags",
                str(path),
                f"+HEAD:{SUBMODULE_REF_PREFIX}{sha}",
                what=f"keep the commit {sha[:12]} of submodule {rel}",
                env=_SUBMODULE_ENV,
                retry=True,
            )
            notes.append(
                f"committed the changes in submodule {rel} as {sha[:12]} (kept at {SUBMODULE_REF_PREFIX}{sha})"
            )
            logger.info("committed %s in submodule %s of %s", sha[:12], rel, self.path)
        return notes

    def _update_submodules(self) -> None:
        """Check every submodule out at the commit recorded here (after a stash took their new pointers)."""
        self._git.run(
            "submodule",
            "update",
            "--recursive",
            "--quiet",
            what=f"check out the submodules of {self.path}",
            env=_SUBMODULE_ENV,
            retry=True,
        )

    def looks_healthy(self, branch: str) -> bool:
        """A quick look with no git process: the worktree's ``.git`` file, HEAD on ``branch``, no index.lock.

        True says only that nothing is visibly wrong; false means :meth:`GitRepo.heal_worktree` should look.
        """
        try:
            link = (self.path / ".git").read_text(encoding="utf-8").strip()
        except OSError:
            return False
        if not link.startswith("gitdir: "):
            return False
        gitdir = Path(link.removeprefix("gitdir: "))
        gitdir = gitdir if gitdir.is_absolute() else self.path / gitdir
        try:
            head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return False
        return head == f"ref: refs/heads/{branch}" and not (gitdir / "index.lock").exists()

    def merge(
        self, refs: Sequence[str], message: str, *, author: str | None = None, known_clean: bool = False
    ) -> MergeResult:
        """Merge each ref into the current branch (``--no-ff``), skipping refs HEAD already contains.

        Stops at the first conflict: that merge is aborted, so the tree is clean and HEAD is where that merge
        started, and the result names the ref and the conflicting paths. ``author`` is the identity of the
        merge commits; by default git's configured one, or :data:`DEFAULT_IDENTITY` if there is none.
        Raises :class:`SwarmError` if the worktree has uncommitted changes (a merge could mix them in, and
        aborting it could lose them); ``known_clean`` skips that check for a caller that has just made it.

        When HEAD and the ref have several merge bases (criss-cross merges: agents that keep merging each
        other's commits make a dense history where this is the rule), the three-way merge uses one of them,
        the first ``git merge-base --all`` lists, as git's ``resolve`` strategy would, rather than git's
        default of merging all the bases into a virtual one first: that merge is recursive, and on a history
        of thousands of cross-merges one ``git merge`` ran hundreds of thousands of inner merges and seconds
        of CPU, growing with the history. The merge commit is the same (parents HEAD and the ref). When that
        one-base merge conflicts, git's full merge runs before a conflict is reported: a single base can
        see an add/add conflict that the virtual base does not.
        """
        if not known_clean and self.has_changes():
            raise GitError(
                f"cannot merge into {self.path}: the worktree has uncommitted changes",
                hint="commit or discard them first",
            )
        env = _identity_env(author) if author else self._fallback_identity()
        merged: list[str] = []
        skipped = 0
        for ref in refs:
            _check_ref_text(ref)
            # A full sha (what the queue stores) needs no rev-parse: merge-base rejects an unknown one.
            sha = ref.lower() if _FULL_SHA_RE.fullmatch(ref) else self._resolve(ref)
            bases = self._merge_bases(ref, sha)
            if sha in bases:  # the ref is its own merge base with HEAD: HEAD contains it
                skipped += 1
                continue
            # `git merge --abort` is `git reset --merge` while a merge is in progress; merge-recursive leaves
            # no MERGE_HEAD, so reset directly. The worktree was clean: nothing of the agent's is lost.
            abort = ["reset", "--merge", "--quiet", "HEAD"]
            if len(bases) > 1:
                args = ["merge-recursive", bases[0], "--", "HEAD", sha]
                result = self._git.run(*args, env=env, check=False, retry=True)
                if result.status == 0:
                    self._commit_merge(sha, message, env)
                    merged.append(ref)
                    continue
                # One base alone can see a conflict that is not there (each side changed a file the other
                # base lacks): undo it and let git's own merge decide on the virtual base, the slow but
                # exact answer, before anything is reported as a conflict.
                self._git.run(*abort, what=f"undo the one-base merge in {self.path}")
            args = ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", message, sha]
            result = self._git.run(*args, env=env, check=False, retry=True)
            if result.status == 0:
                merged.append(ref)
                continue
            conflicts = self._conflicts()
            if not conflicts:
                # Not a conflict (unrelated histories, a lock that would not clear...): nothing to report.
                self._git.run(*abort, check=False)
                raise self._git.error(result, args, what=f"merge {ref} into {self.path}", hint=None)
            self._git.run(*abort, what=f"abort the conflicting merge in {self.path}")
            logger.info("merge of %s into %s conflicts in %s", ref, self.path, conflicts)
            return MergeResult(
                ok=False,
                merged=merged,
                conflicts=conflicts,
                ref=ref,
                detail=f"merging {ref} conflicts in {', '.join(conflicts)}",
            )
        detail = f"merged {plural(len(merged), 'commit')}" + (f", {skipped} already present" if skipped else "")
        return MergeResult(ok=True, merged=merged, detail=detail)

    def _merge_bases(self, ref: str, sha: str) -> list[str]:
        """Every merge base of HEAD and ``sha`` (``merge-base --all``; exit 1 with none: unrelated histories)."""
        result = self._git.run("merge-base", "--all", "HEAD", sha, check=False)
        if result.status not in (0, 1):
            raise BadInput(f"unknown git ref {ref!r} in {self.path}", hint="give a commit that exists")
        return result.out.split()

    def _commit_merge(self, sha: str, message: str, env: Mapping[str, str]) -> None:
        """Record the merged index as a merge commit of HEAD and ``sha`` and move the branch to it."""
        what = f"commit the merge of {sha[:12]} in {self.path}"
        tree = self._git.run("write-tree", what=what).out.strip()
        commit = self._git.run("commit-tree", tree, "-p", "HEAD", "-p", sha, "-m", message, what=what, env=env)
        new = commit.out.strip()
        self._git.run("update-ref", "-m", f"merge {sha}: Merge made by swarm", "HEAD", new, what=what, retry=True)

    def update_commit_graph(self) -> bool:
        """Add the commits made since the last call to the repository's commit-graph; True if written.

        The commit-graph file gives git generation numbers and the parents of each commit without reading
        the commit objects, which keeps ``merge-base`` (every merge asks it) cheap as the history grows:
        measured at 3,000 commits, 40 ms without and 4 ms with. ``--split`` writes only the new commits as
        a small layer (git merges the layers as they pile up), ``--reachable`` finds them from every
        branch. All worktrees share the object store and the graph: git takes a lock file to write it, and
        when another worker holds it this returns False at once (that writer covers our commits too).
        """
        result = self._git.run("commit-graph", "write", "--reachable", "--split", "--no-progress", check=False)
        if result.status != 0:
            logger.debug("commit-graph not written in %s: %s", self.path, _first_line(result.err))
        return result.status == 0

    def save_wip(self, ref: str, message: str) -> str | None:
        """Commit every change (untracked files included) to ``ref`` without touching the worktree, its index
        or its branch; return the commit's sha, or None when there is nothing to save.

        The commit's parent is HEAD; an earlier commit at ``ref`` becomes its second parent, so saving twice
        loses nothing. It is never signed (``--no-gpg-sign``): it is a private safety copy, and a missing
        signing key is one of the faults it saves work from.
        """
        _check_ref_text(ref)
        if not self.has_changes():
            return None
        what = f"save the work in {self.path} as {ref}"
        git_dir = Path(self._git.run("rev-parse", "--absolute-git-dir", what=what).out.strip())
        index = git_dir / f"swarm-wip-{os.getpid()}-{threading.get_ident()}.index"
        env = {**self._fallback_identity(), "GIT_INDEX_FILE": str(index)}
        try:
            head = self.head_sha()
            self._git.run("read-tree", head, what=what, env=env)
            self._git.run("add", "-A", what=what, env=env)
            tree = self._git.run("write-tree", what=what, env=env).out.strip()
            parents = ["-p", head]
            previous = self._git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
            if previous.status == 0 and previous.out.strip():
                parents += ["-p", previous.out.strip()]
            sha = self._git.run(
                "commit-tree", "--no-gpg-sign", tree, *parents, "-m", message, what=what, env=env
            ).out.strip()
            self._git.run("update-ref", "-m", message, ref, sha, what=what)
        finally:
            index.unlink(missing_ok=True)
        logger.info("saved the work of %s as %s (%s)", self.path, ref, sha[:12])
        return sha

    def contains(self, sha: str) -> bool:
        """Whether HEAD already holds the commit ``sha`` (it is HEAD or one of HEAD's ancestors)."""
        _check_ref_text(sha, "commit")
        return _is_ancestor(self._git, sha, "HEAD")

    def ref_sha(self, ref: str) -> str | None:
        """The commit ``ref`` points at, or None when there is no such ref."""
        result = self._git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return result.out.strip() if result.status == 0 else None

    def reset_hard(self, sha: str) -> None:
        """Point the checked-out branch at ``sha`` and make the tree match it exactly.

        Drops every change, untracked files included (``git clean -fd``); ignored files stay, so build caches
        survive. For a worktree swarm owns and nobody edits by hand, such as the merge command's temporary
        one: it undoes a merge that broke the tests and whatever the test command left behind.
        """
        _check_ref_text(sha, "commit")
        what = f"reset {self.path} to {sha[:12]}"
        self._git.run("reset", "--hard", "--quiet", sha, what=what, retry=True)
        self._git.run("clean", "-fd", "--quiet", what=what)

    def _resolve(self, ref: str) -> str:
        result = self._git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if result.status != 0:
            raise BadInput(f"unknown git ref {ref!r} in {self.path}", hint="give a commit that exists")
        return result.out.strip()

    def _conflicts(self) -> list[str]:
        out = self._git.run("diff", "--name-only", "--diff-filter=U", "-z", what="list conflicts").out
        return sorted({p for p in out.split("\0") if p})

    def _fallback_identity(self) -> dict[str, str]:
        """Nothing if git has a committer identity; else :data:`DEFAULT_IDENTITY`, so merges still work.

        Asked once per Worktree (a worker's lifetime): it is a git process per merge otherwise.
        """
        if self._identity is None:
            self._identity = {} if self._git.ok("var", "GIT_COMMITTER_IDENT") else _identity_env(DEFAULT_IDENTITY)
        return self._identity


def _branch_of(runner: _Git) -> str | None:
    result = runner.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if result.status != 0:  # exit 1: HEAD is detached
        return None
    return result.out.strip() or None


def _lock_holders(lock: Path) -> list[int]:
    """Processes that have ``lock`` open (git holds its lock files open until it renames them).

    Read from ``/proc/<pid>/fd`` (Linux); processes of other users cannot be read and are not listed. Where
    there is no /proc, a lock younger than ten minutes counts as held by an unknown process (pid 0).
    """
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        try:
            young = time.time() - lock.stat().st_mtime < 600
        except OSError:
            return []
        return [0] if young else []
    target = str(lock.resolve())
    holders = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    holders.append(int(entry.name))
                    break
            except OSError:
                continue
    return holders


def _has_changes(runner: _Git) -> bool:
    out = runner.run("status", "--porcelain", "--untracked-files=normal", what=f"read status of {runner.cwd}").out
    return bool(out.strip())


def _is_ancestor(runner: _Git, ancestor: str, descendant: str) -> bool:
    """``merge-base --is-ancestor``: exit 0 yes, 1 no, anything else is an error."""
    args = ["merge-base", "--is-ancestor", ancestor, descendant]
    result = runner.run(*args, check=False)
    if result.status in (0, 1):
        return result.status == 0
    raise runner.error(result, args, what=f"compare {ancestor} with {descendant}", hint=None)
