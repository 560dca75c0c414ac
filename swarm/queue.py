"""Queue rules above the store: queueing an epic from the backlog, store options from configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.config import LoadedConfig
from swarm.errors import BadInput, SwarmError
from swarm.models import Spec, TaskState
from swarm.store import RetryPolicy, Store, StoreOptions, SwarmRecord, open_store, path_from_url

if TYPE_CHECKING:
    from swarm.backlog import Backlog

log = logging.getLogger(__name__)


def store_options(loaded: LoadedConfig) -> StoreOptions:
    """Store behaviour taken from configuration."""
    q = loaded.config.queue
    return StoreOptions(
        default_max_attempts=q.max_attempts,
        retry=RetryPolicy(q.retry_backoff_seconds, q.retry_backoff_max_seconds),
    )


def database_exists(url: str) -> bool:
    """Whether the database behind ``url`` already exists (always True for server databases)."""
    if url.startswith("sqlite:"):
        return path_from_url(url).exists()
    return True


def open_queue(loaded: LoadedConfig, *, create: bool = False) -> Store:
    """Open the configured database; refuse to create a new one unless ``create`` (reads never create)."""
    url = loaded.database_url()
    if not create and not database_exists(url):
        raise BadInput(
            f"no queue yet: the database {url} does not exist",
            hint="run 'swarm queue init --epic EPIC' (or 'swarm launch EPIC') in this repository first",
        )
    return open_store(url, store_options(loaded))


@dataclass(frozen=True)
class QueuedEpic:
    """What queueing an epic did."""

    swarm: SwarmRecord
    epic: str
    added: list[str]
    existing: list[str]
    ready: list[str]
    dependencies: list[Spec] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    #: The open swarm as it was before this epic joined it (None: a new swarm, or the epic was in it already).
    joined: SwarmRecord | None = None
    #: Every spec of the epic is done already and no swarm is open: nothing was queued and no swarm created
    #: (``swarm`` is then the last one, which has ended).
    finished: bool = False


def queued_json(result: QueuedEpic, loaded: LoadedConfig) -> dict[str, Any]:
    """What ``swarm queue init --json`` prints and the lead's ``queue_init`` tool returns."""
    return {
        "swarm": {
            "id": result.swarm.id,
            "epic": result.epic,
            "database": loaded.database_url(),
            "max_agents": result.swarm.max_agents,
        },
        "added": result.added,
        "existing": result.existing,
        "ready": result.ready,
        "dependencies": [{"id": s.id, "epic": s.epic} for s in result.dependencies],
        "already_done": result.already_done,
    }


#: Task states in which an agent may still work a task.
OPEN_STATES = frozenset({TaskState.READY, TaskState.BLOCKED, TaskState.CLAIMED})


@dataclass(frozen=True)
class EpicPreview:
    """What queueing an epic would do, read without writing anything (launch decides its agents from it
    before its first write)."""

    #: The open swarm the epic would join (None: queueing it starts a new swarm, or finds it finished).
    current: SwarmRecord | None
    #: Tasks of that swarm, and of the epic's closure, that an agent may still work once it is queued.
    open_tasks: int
    #: Every spec of the epic is done, and no swarm is open: queueing it writes nothing.
    finished: bool
    #: The tasks the open swarm has now (its members before this launch).
    members: frozenset[str] = frozenset()


def preview_epic(loaded: LoadedConfig, backlog: Backlog, epic: str) -> EpicPreview:
    """What :func:`queue_epic` would do for ``epic`` now, read-only (nothing is created)."""
    backlog.epic_specs(epic)  # raises BadInput for an unknown epic
    url = loaded.database_url()
    if not database_exists(url):
        own, deps = backlog.closure(epic, ())
        return EpicPreview(current=None, open_tasks=len(own) + len(deps), finished=False)
    with open_store(url, store_options(loaded)) as store:
        states = {t.id: t.state for t in store.list_tasks()}
        done = {i for i, state in states.items() if state == TaskState.DONE}
        own, deps = backlog.closure(epic, done)
        last = store.current_swarm()
        current = last if last is not None and not last.ended else None
        members = frozenset(t.id for t in store.list_tasks(swarm_id=current.id)) if current else frozenset()
    closure = {s.id for s in [*own, *deps] if s.id not in states or states[s.id] in OPEN_STATES}
    working = {i for i in members if states.get(i) in OPEN_STATES}
    finished = current is None and last is not None and not own and not deps
    return EpicPreview(current=current, open_tasks=len(closure | working), finished=finished, members=members)


def queue_epic(
    loaded: LoadedConfig,
    backlog: Backlog,
    epic: str,
    *,
    max_agents: int | None = None,
    repo: str | None = None,
    settings: dict[str, Any] | None = None,
    swarm_id: str | None = None,
) -> QueuedEpic:
    """Queue ``epic``'s specs plus the undone specs they transitively depend on.

    The backlog is validated before this is called, and the epic is checked before any database is
    created, so bad input leaves nothing behind. A new swarm is named ``swarm_id`` when given.
    """
    epic_specs = backlog.epic_specs(epic)  # raises BadInput for an unknown epic, before any write
    url = loaded.database_url()
    done: set[str] = set()
    if database_exists(url):
        with open_store(url, store_options(loaded)) as existing:
            done = {t.id for t in existing.list_tasks() if t.state == TaskState.DONE}
    own, deps = backlog.closure(epic, done)
    with open_queue(loaded, create=True) as store:
        # docs/contract.md §5: one swarm at a time per repository; an epic launched while it is open joins it.
        current = store.current_swarm()
        joined: SwarmRecord | None = None
        if current is not None and not current.ended:
            if epic not in current.epics:
                joined = current
            # Never shrinks the stored fleet size: --agents below it leaves the running agents alone.
            grow = None if max_agents is None else max(max_agents, current.max_agents or 0)
            record = store.add_epic(current.id, epic, grow, repo=repo, settings=settings)
        elif current is not None and not own and not deps:
            # Nothing of the epic is left to do: a new swarm would only be an empty line in the history.
            return QueuedEpic(
                swarm=current,
                epic=epic,
                added=[],
                existing=[],
                ready=[],
                already_done=sorted(s.id for s in epic_specs if s.id in done),
                finished=True,
            )
        else:
            record = store.ensure_swarm(epic, max_agents, repo=repo, settings=settings, swarm_id=swarm_id)
        # Membership covers the whole closure, done specs included, so the swarm's status shows them.
        members = [*deps, *own, *(s for s in epic_specs if s.id in done)]
        result = store.add_tasks(members, swarm_id=record.id)
    if deps:
        log.info("queued %d dependencies from other epics", len(deps))
    return QueuedEpic(
        swarm=record,
        epic=epic,
        added=result.added,
        existing=result.existing,
        ready=result.ready,
        dependencies=deps,
        already_done=sorted(s.id for s in epic_specs if s.id in done),
        joined=joined,
    )


def backlog_folder(loaded: LoadedConfig, override: Path | None = None) -> Path:
    """The backlog folder: a flag, else ``queue.backlog`` relative to the repository."""
    folder = override or Path(loaded.config.queue.backlog)
    return folder if folder.is_absolute() else loaded.repo / folder


def backlog_warnings(backlog: Backlog, epic: str) -> list[str]:
    """One line per problem of a spec ``epic`` does not need (``load_backlog(..., epic=epic)``): a warning,
    not a refusal, since that spec is left out."""
    return [f"{problem} (a spec {epic} does not need: left out)" for problem in backlog.warnings]


def lead_token_path(loaded: LoadedConfig) -> Path:
    """The lead's token lives beside the SQLite database (``.swarm/lead.token``), else in the repo's ``.swarm``."""
    url = loaded.database_url()
    if url.startswith("sqlite:"):
        return path_from_url(url).parent / "lead.token"
    return loaded.repo / ".swarm" / "lead.token"


#: How many fresh ids ``add_task`` tries when others add tasks at the same moment.
_ADD_ATTEMPTS = 20


@dataclass(frozen=True)
class AddedTask:
    """A task added by hand or by an agent."""

    id: str
    epic: str
    state: TaskState


def add_task(
    store: Store,
    *,
    title: str,
    body: str | None = None,
    task_id: str | None = None,
    epic: str | None = None,
    depends_on: tuple[str, ...] = (),
    priority: int = 0,
    requires: tuple[str, ...] = (),
    max_attempts: int | None = None,
    actor: str = "lead",
) -> AddedTask:
    """Add one task to the current swarm (CLI ``queue add`` and MCP ``queue_add``).

    Without ``task_id`` it takes the next free ``Qnnnn``; when another writer takes that id first, it tries
    the next one, so two agents adding at once never lose a task.
    """
    clean = title.strip()
    if not clean:
        raise BadInput("the title is empty", hint="give the task a one-line title")
    current = store.current_swarm()
    chosen_epic = epic or (current.epic if current else "adhoc")
    for _ in range(_ADD_ATTEMPTS):
        known = {t.id for t in store.list_tasks()}
        candidate = task_id
        if candidate is None:
            number = len(known) + 1
            while f"Q{number:04d}" in known:
                number += 1
            candidate = f"Q{number:04d}"
        elif candidate in known:
            raise BadInput(f"task {candidate} is already queued", hint="choose another --id")
        spec = Spec(
            id=candidate,
            epic=chosen_epic,
            title=clean,
            body=(body or clean).strip() or clean,
            depends_on=depends_on,
            priority=priority,
            requires=requires,
            max_attempts=max_attempts,
        )
        result = store.add_tasks([spec], actor=actor, swarm_id=current.id if current else None)
        if candidate in result.added:
            state = TaskState.READY if candidate in result.ready else TaskState.BLOCKED
            return AddedTask(id=candidate, epic=chosen_epic, state=state)
        if task_id is not None:
            raise BadInput(f"task {candidate} is already queued", hint="choose another --id")
    raise SwarmError(
        f"could not find a free task id after {_ADD_ATTEMPTS} tries",
        hint="others are adding tasks at the same time; try again",
    )
