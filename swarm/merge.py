"""``swarm merge``: bring the done tasks of a swarm together on one integration branch.

Each done task left one commit (``<task-id>: <title>``) on its agent's branch. This merges those commits, in
dependency order, into an integration branch (default ``<branch_prefix>/<epic>/integration``, created from
the swarm's base commit), one ``--no-ff`` merge commit per task so that every task stays visible in the
history. An optional test command runs after each merge; the first conflict or failing test stops the run,
and the merge that broke the tests is taken back, so the branch always holds tasks that merged and passed.

The user's checked-out working tree is never touched: the merges happen in a temporary worktree of swarm's
own (``.swarm/merge-worktree``, excluded from git), removed afterwards whatever happens. A lock serialises
merges in one repository, so a worktree left there by a killed run is known to be stale and is cleared.
Re-running continues where the last run stopped: tasks whose commit the branch already holds are skipped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Final

from swarm.config import LoadedConfig, load_config
from swarm.errors import BadInput, SwarmError
from swarm.graph import topological_order
from swarm.models import Task, TaskState
from swarm.queue import open_queue
from swarm.runtime.git import GitRepo, Worktree, open_repo
from swarm.status import check_epic, select_swarm

log = logging.getLogger(__name__)

#: The temporary worktree and the lock, relative to the repository root; ``.swarm/`` is excluded from git.
MERGE_WORKTREE: Final = Path(".swarm") / "merge-worktree"
MERGE_LOCK: Final = Path(".swarm") / "merge.lock"

#: How many lines of a failing test's output the report keeps.
TEST_TAIL_LINES: Final = 20


class Status(StrEnum):
    """What happened to one task."""

    MERGED = "merged"
    ALREADY_IN = "already in"
    NOT_DONE = "not done"
    NO_COMMIT = "no commit"
    CONFLICT = "conflict"
    TEST_FAILED = "test failed"
    MISSING = "missing commit"


@dataclass(frozen=True)
class TaskOutcome:
    """One task's line of the report.

    ``commit`` is the task's own commit, ``merge`` the merge commit made for it. A conflict carries the
    conflicting paths; a failed test its exit code and the last lines of its output.
    """

    task: str
    title: str
    status: Status
    reason: str = ""
    commit: str | None = None
    merge: str | None = None
    conflicts: list[str] = field(default_factory=list)
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)
    state: str = ""  # the task's queue state, for the tasks left out because they are not done

    @property
    def failed(self) -> bool:
        """Whether this outcome stopped the run."""
        return self.status in (Status.CONFLICT, Status.TEST_FAILED, Status.MISSING)


@dataclass
class MergeReport:
    """What ``swarm merge`` did: the branch, where it ended, and every task's outcome in order."""

    swarm_id: str
    epic: str
    branch: str
    base: str
    created: bool
    head: str = ""
    outcomes: list[TaskOutcome] = field(default_factory=list)

    @property
    def merged(self) -> list[TaskOutcome]:
        """Tasks merged by this run."""
        return [o for o in self.outcomes if o.status is Status.MERGED]

    @property
    def skipped(self) -> list[TaskOutcome]:
        """Tasks left out: already on the branch, not done, or done without a commit."""
        return [o for o in self.outcomes if o.status in (Status.ALREADY_IN, Status.NOT_DONE, Status.NO_COMMIT)]

    @property
    def failed(self) -> TaskOutcome | None:
        """The task that stopped the run, if one did."""
        return next((o for o in self.outcomes if o.failed), None)

    def to_json(self) -> dict[str, Any]:
        """``{"branch", "head", "merged", "skipped", "failed"}`` plus extra keys (swarm, epic, base, created)."""
        failed = self.failed
        return {
            "branch": self.branch,
            "head": self.head,
            "merged": [{"task": o.task, "title": o.title, "commit": o.commit, "merge": o.merge} for o in self.merged],
            "skipped": [
                {"task": o.task, "title": o.title, "reason": o.reason, **({"state": o.state} if o.state else {})}
                for o in self.skipped
            ],
            "failed": None
            if failed is None
            else {
                "task": failed.task,
                "reason": failed.reason,
                "title": failed.title,
                "kind": failed.status.value,
                "commit": failed.commit,
                "conflicts": failed.conflicts,
                "exit_code": failed.exit_code,
                "output": failed.output,
            },
            "swarm": self.swarm_id,
            "epic": self.epic,
            "base": self.base,
            "created": self.created,
        }


def _ignore(_: object) -> None:
    return None


def dependency_order(tasks: Sequence[Task]) -> list[Task]:
    """A topological order of ``tasks`` (dependencies first), ties broken by id.

    Only dependencies among ``tasks`` count: one on a task outside the set (not done, or of another swarm)
    cannot be merged here anyway, and must not hold the others back.
    """
    by_id = {t.id: t for t in tasks}
    # The queue refuses dependency cycles, so nothing is stuck; if something were, merge it last, by id,
    # rather than silently leave it out.
    order, stuck = topological_order({t.id: [d for d in t.depends_on if d != t.id] for t in tasks})
    return [by_id[tid] for tid in [*order, *stuck]]


def merge_swarm(
    cwd: Path,
    *,
    into: str | None = None,
    test: str | None = None,
    db: str | None = None,
    on_task: Callable[[TaskOutcome], None] = _ignore,
    say: Callable[[str], None] = _ignore,
    loaded: LoadedConfig | None = None,
    epic: str | None = None,
    swarm_id: str | None = None,
) -> MergeReport:
    """Merge the current swarm's done tasks into the integration branch; see the module docstring.

    ``epic``: only that epic's tasks, into ``<branch_prefix>/<epic>/integration`` by default (BadInput when
    the swarm has no such epic). ``swarm_id``: that swarm instead of the current one (BadInput when absent).

    ``on_task`` hears each task's outcome as it happens (so a long run shows progress), ``say`` the notes.
    ``loaded``: the configuration the command loaded (then ``db`` is not read), else loaded here with ``db``
    over it. Raises :class:`BadInput` when there is no swarm or ``into`` is not a valid branch name. A
    conflict or a failing test does not raise: it is the report's ``failed`` outcome.
    """
    if test is not None and not test.strip():
        raise BadInput("--test is empty", hint='give the command to run, e.g. --test "make test"')
    repo = open_repo(cwd)
    if loaded is None:
        loaded = load_config(repo.root, overrides={"queue.database": db})
    if into is not None:
        repo.check_branch_name(into)  # bad input is refused before anything is read or written
    with open_queue(loaded) as store:
        swarm = select_swarm(store, swarm_id)
        tasks = store.list_tasks(swarm_id=swarm.id)
    if epic is not None:
        check_epic(swarm, tasks, epic)
        # The epic's own tasks. What their commits are built on (the dependencies from other epics they
        # needed, an agent branch's earlier tasks) comes along as the merged commits' ancestry.
        tasks = [t for t in tasks if t.epic == epic]
    branch = into or f"{loaded.config.swarm.branch_prefix}/{epic or swarm.epic}/integration"
    repo.check_branch_name(branch)
    base_ref = str(swarm.settings.get("base") or "")
    if not base_ref:
        # A swarm queued by hand ('swarm queue init') has no recorded base; its agents started from HEAD too.
        say("this swarm has no recorded base commit; a new integration branch starts from HEAD")
    base = repo.resolve(base_ref or "HEAD")
    report = MergeReport(
        swarm_id=swarm.id, epic=epic or swarm.epic, branch=branch, base=base, created=not repo.branch_exists(branch)
    )

    done = [t for t in tasks if t.state is TaskState.DONE and t.commit]
    left_out = _left_out(tasks)
    with _merge_lock(repo), _temporary_worktree(repo, branch, base, say) as worktree:
        for task in dependency_order(done):
            outcome = _merge_one(repo, loaded, worktree, task, test, say)
            report.outcomes.append(outcome)
            on_task(outcome)
            if outcome.failed:
                break
        report.head = worktree.head_sha()
    for outcome in left_out:
        report.outcomes.append(outcome)
        on_task(outcome)
    return report


def _left_out(tasks: Sequence[Task]) -> list[TaskOutcome]:
    """The tasks there is nothing to merge of: those not done, then those done without a commit, by id."""
    ordered = sorted(tasks, key=lambda t: t.id)
    return [
        TaskOutcome(t.id, t.title, Status.NOT_DONE, reason=f"not done ({t.state.value})", state=t.state.value)
        for t in ordered
        if t.state is not TaskState.DONE
    ] + [
        TaskOutcome(t.id, t.title, Status.NO_COMMIT, reason="done without a commit")
        for t in ordered
        if t.state is TaskState.DONE and not t.commit
    ]


def _merge_one(
    repo: GitRepo, loaded: LoadedConfig, worktree: Worktree, task: Task, test: str | None, say: Callable[[str], None]
) -> TaskOutcome:
    """Merge one task's commit (then test it); the outcome says what happened."""
    commit = str(task.commit)
    outcome = partial(TaskOutcome, task.id, task.title, commit=commit)
    if not _commit_available(repo, loaded, worktree, task, commit, say):
        reason = f"its commit {commit[:12]} is not in this repository (made on another machine?)"
        return outcome(Status.MISSING, reason=reason)
    if worktree.contains(commit):
        return outcome(Status.ALREADY_IN, reason="already in")
    before = worktree.head_sha()
    result = worktree.merge([commit], f"Merge {task.id}: {task.title}", author=loaded.config.swarm.commit_author)
    if not result.ok:
        reason = f"merging it conflicts in {', '.join(result.conflicts)}"
        return outcome(Status.CONFLICT, reason=reason, conflicts=list(result.conflicts))
    merge_sha = worktree.head_sha()
    if test is not None:
        code, tail = _run_test(test, worktree.path)
        if code != 0:
            # Take the merge back: the branch keeps only tasks that passed, and a re-run tries this one again.
            worktree.reset_hard(before)
            how = f"exit {code}" if code > 0 else f"killed by signal {-code}"
            reason = f"the test failed after merging it ({how})"
            return outcome(Status.TEST_FAILED, reason=reason, exit_code=code, output=tail)
        # Whatever the test wrote (reports, generated files) must not block the next merge.
        worktree.reset_hard(merge_sha)
    return outcome(Status.MERGED, reason="merged", merge=merge_sha)


def _commit_available(
    repo: GitRepo, loaded: LoadedConfig, worktree: Worktree, task: Task, commit: str, say: Callable[[str], None]
) -> bool:
    """Whether the task's commit is here; a task done on another machine is fetched from the shared remote."""
    if worktree.has_commit(commit):
        return True
    remote = loaded.config.swarm.remote
    if not repo.remote_exists(remote):
        return False
    # Workers push each finished task's commit to this ref (README: several machines, one queue).
    ref = f"refs/swarm/tasks/{task.id}"
    say(f"fetching {task.id} from {remote}")
    try:
        worktree.fetch(remote, [f"+{ref}:{ref}"])
    except SwarmError as exc:
        log.debug("fetching %s failed: %s", ref, exc)
        return False
    return worktree.has_commit(commit)


def _run_test(command: str, cwd: Path) -> tuple[int, list[str]]:
    """Run the user's test command through the shell in ``cwd``; its exit code and last lines of output.

    stdin is closed so that a test asking a question fails instead of hanging the merge.
    """
    log.debug("running %r in %s", command, cwd)
    try:
        done = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as exc:  # no shell at all: report it as the test failing, with the reason
        return 127, [f"cannot run the test command: {exc}"]
    text = done.stdout.decode("utf-8", errors="replace")
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return done.returncode, lines[-TEST_TAIL_LINES:]


@contextmanager
def _merge_lock(repo: GitRepo) -> Iterator[None]:
    """One ``swarm merge`` at a time per repository: both would use the same temporary worktree."""
    path = repo.root / MERGE_LOCK
    repo.ensure_excluded("/.swarm/")  # creating .swarm/ must not show up in the user's `git status`
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SwarmError(
                "another 'swarm merge' is running in this repository",
                hint="wait for it to finish, then run 'swarm merge' again",
            ) from None
        yield  # the lock goes with the descriptor, also when the process dies
    finally:
        os.close(fd)


@contextmanager
def _temporary_worktree(repo: GitRepo, branch: str, base: str, say: Callable[[str], None]) -> Iterator[Worktree]:
    """A worktree on ``branch`` (created from ``base`` if missing) under ``.swarm/``, removed on the way out."""
    path = (repo.root / MERGE_WORKTREE).resolve()
    for info in repo.list_worktrees():
        if info.branch != branch or info.path == path:
            continue
        where = "your working tree" if info.path == repo.root else "the worktree"
        raise BadInput(
            f"the branch {branch!r} is checked out in {where} {info.path}",
            hint="swarm merge never touches a checked-out branch: switch that checkout to another branch, "
            "or merge into another one with --into",
        )
    # Under the lock, anything at our path was left by a run that was killed: it holds nothing to keep (every
    # merge it made is committed on the branch).
    _remove_worktree(repo, path)
    created = not repo.branch_exists(branch)
    repo.add_worktree(path, branch, base)
    say(f"{'created' if created else 'continuing'} branch {branch}" + (f" from {base[:12]}" if created else ""))
    try:
        yield repo.worktree(path)
    finally:
        _remove_worktree(repo, path)


def _remove_worktree(repo: GitRepo, path: Path) -> None:
    """Remove swarm's temporary worktree, changes and all; fall back to deleting the directory."""
    try:
        repo.remove_worktree(path, force=True)
    except SwarmError as exc:
        log.warning("could not remove the merge worktree %s cleanly (%s); deleting it", path, exc)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        repo.prune_worktrees()
