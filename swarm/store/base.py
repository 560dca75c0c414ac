"""The storage seam: one interface at the level of domain operations, implemented once per backend.

Every backend must pass ``tests/contract/test_store_contract.py`` unchanged. The rules (docs/contract.md §3):
a claim is atomic and takes the highest-priority, then oldest, then smallest-id ready task whose
``requires`` the agent offers; every write after a claim carries the lease token and is rejected with
:class:`~swarm.errors.LeaseLost` when the token no longer holds the task; completing promotes dependents in
the same transaction; an expired lease returns the task to ``ready`` (attempt counted) or ``dead``; every
state change is appended to the event log.

A lease whose time has passed but that nobody has reaped yet still holds its task: the token, not the clock,
is the fence. This spares a slow-but-alive agent its work when nobody else wanted the task, and it never lets
two leases hold one task, because only the reaper (inside a write transaction) takes a task away.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm.models import AgentRecord, Claim, Event, Message, Spec, Task, TaskState

Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between failed attempts: base * 2**(attempt-1), capped."""

    base_seconds: float = 10.0
    max_seconds: float = 600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before a task that failed on ``attempt`` (1-based) may be claimed again."""
        if self.base_seconds <= 0:
            return 0.0
        return float(min(self.max_seconds, self.base_seconds * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class StoreOptions:
    """Behaviour shared by every backend; the clock is injectable so tests can move time without sleeping."""

    default_max_attempts: int = 3
    retry: RetryPolicy = RetryPolicy()
    clock: Clock = time.time
    busy_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class AddResult:
    """What ``add_tasks`` did: ids inserted (ready or blocked) and ids that were already queued."""

    added: list[str]
    existing: list[str]
    ready: list[str]


@dataclass(frozen=True)
class Reaped:
    """One expired lease the reaper took back: the task, its former holder, and where the task went."""

    task_id: str
    owner: str | None
    to_state: TaskState


@dataclass(frozen=True)
class Notification:
    """One event for one notification hook, in the outbox (docs/contract.md §9): queued once, sent once."""

    #: Unique per event and hook: queueing the same key again is a no-op.
    key: str
    swarm_id: str
    #: The hook: ``command`` or ``webhook``.
    sink: str
    event: str
    #: The event as JSON text.
    payload: str
    #: Who queued it and sends it (a monitor: its host and repository); other monitors leave it alone.
    owner: str = ""
    created_at: float = 0.0
    sent_at: float | None = None


@dataclass(frozen=True)
class SwarmRecord:
    """One swarm run registered in the database: its epics (``epic`` is the first), until it ends."""

    id: str
    epic: str
    max_agents: int | None
    created_at: float
    stop_mode: str | None = None  # None, "finish" (finish the current task) or "now"
    repo: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    #: Every epic the swarm works, in the order they were added (the first is ``epic``).
    epics: tuple[str, ...] = ()
    #: When teardown ended the swarm (None while it is open: a launch then adds to it).
    ended_at: float | None = None

    @property
    def ended(self) -> bool:
        """Whether the swarm has ended (the next launch starts a new one)."""
        return self.ended_at is not None

    @property
    def stop_requested(self) -> bool:
        """Whether teardown asked this swarm's workers to stop."""
        return self.stop_mode is not None


@dataclass(frozen=True)
class Withdrawal:
    """What a launch that failed wrote to the queue, to be taken back (docs/contract.md §5: a launch that
    fails changes nothing)."""

    swarm_id: str
    #: The swarm as it was before the launch; None when the launch created it (then it goes entirely).
    previous: SwarmRecord | None
    #: The epic the launch added to the swarm (None: the swarm worked it already).
    epic: str | None = None
    #: Tasks the launch queued (each goes unless it was claimed meanwhile).
    tasks: tuple[str, ...] = ()
    #: Tasks the launch made members of the swarm (their membership goes).
    members: tuple[str, ...] = ()
    #: Agent rows the launch created for the swarm.
    agents: tuple[str, ...] = ()


class Store(ABC):
    """A task queue with leases, dependencies and an event log, behind one backend."""

    url: str
    options: StoreOptions

    # -- lifecycle -------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version this database is at."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- swarms ----------------------------------------------------------------------------------
    @abstractmethod
    def ensure_swarm(
        self,
        epic: str,
        max_agents: int | None = None,
        *,
        repo: str | None = None,
        settings: dict[str, Any] | None = None,
        swarm_id: str | None = None,
    ) -> SwarmRecord:
        """Return the open (not ended) swarm that works ``epic``, creating it (with the id ``swarm_id``, else
        a fresh one) when there is none (idempotent while it is open).

        Given values (max_agents, repo, settings) replace the stored ones; a relaunch also clears a
        stop request left by an earlier teardown.
        """

    @abstractmethod
    def add_epic(
        self,
        swarm_id: str,
        epic: str,
        max_agents: int | None = None,
        *,
        repo: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> SwarmRecord:
        """Add ``epic`` to the open swarm ``swarm_id`` (after its other epics; nothing when it works it already).
        Given values replace the stored ones and the stop request is cleared, as in :meth:`ensure_swarm`.
        BadInput when the swarm does not exist or has ended."""

    @abstractmethod
    def withdraw(self, withdrawal: Withdrawal, *, actor: str = "launch") -> list[str]:
        """Take back, in one transaction, what a failed launch queued: its tasks (an event ``withdrawn``
        each), the swarm's new memberships and epic, its agent rows, the swarm's previous settings, or the
        whole swarm when the launch created it. Returns the tasks that stay because they were claimed (or a
        task queued since depends on them) meanwhile."""

    @abstractmethod
    def end_swarm(self, swarm_id: str) -> SwarmRecord:
        """Record the swarm's end (teardown); the first end stays. BadInput when absent."""

    @abstractmethod
    def list_swarms(self) -> list[SwarmRecord]:
        """Every swarm of the database, oldest first."""

    @abstractmethod
    def current_swarm(self) -> SwarmRecord | None:
        """The most recently created swarm, if any."""

    @abstractmethod
    def get_swarm(self, swarm_id: str) -> SwarmRecord:
        """One swarm by id; BadInput when absent."""

    @abstractmethod
    def request_stop(self, swarm_id: str, mode: str) -> None:
        """Ask the swarm's workers to stop: ``finish`` their task first, or stop ``now``."""

    @abstractmethod
    def pause_claims(self, swarm_id: str, until: float, reason: str) -> None:
        """Pause the swarm's claims until ``until`` (never shortening a longer pause), e.g. on a rate limit."""

    @abstractmethod
    def claims_paused(self, swarm_id: str) -> tuple[float, str | None]:
        """``(paused_until, reason)``; claims are paused while the clock is before ``paused_until``."""

    @abstractmethod
    def record_incident(self, swarm_id: str, key: str) -> bool:
        """Remember an incident; True the first time ``key`` is seen (escalate once per incident)."""

    # -- notifications -----------------------------------------------------------------------------
    @abstractmethod
    def queue_notifications(self, items: Sequence[Notification]) -> int:
        """Add the notifications whose key is new (``created_at`` is set here); how many were new."""

    @abstractmethod
    def pending_notifications(self, owner: str, limit: int = 100) -> list[Notification]:
        """``owner``'s notifications not sent yet, oldest first, of every swarm (a previous monitor may have
        left some)."""

    @abstractmethod
    def mark_notified(self, key: str) -> None:
        """Record that the notification ``key`` was sent (it is never sent again)."""

    # -- agents ----------------------------------------------------------------------------------
    @abstractmethod
    def register_agent(self, agent: AgentRecord) -> None:
        """Create or update an agent slot (id, swarm, host, session, branch, worktree, capabilities, kind, model;
        an agent registered again keeps its kind and model when none is given)."""

    @abstractmethod
    def update_agent(self, agent_id: str, **fields: Any) -> None:
        """Set some of: pid, agent_pid, state, task_id, detail, last_output, last_output_at, cost_usd
        (added to the total), restarts, next_restart_at. ``last_seen`` is set to now on every update."""

    @abstractmethod
    def list_agents(self, swarm_id: str | None = None) -> list[AgentRecord]:
        """Agents (of one swarm), by id."""

    @abstractmethod
    def return_claims(
        self, agent_ids: Sequence[str], *, actor: str = "lead", reason: str = "returned by teardown"
    ) -> list[str]:
        """Return every task these agents hold to the queue without spending an attempt (their leases
        become stale). Used by teardown, which has no lease tokens. Returns the task ids."""

    # -- identity --------------------------------------------------------------------------------
    @abstractmethod
    def set_token_hash(self, identity: str, token_hash: str) -> None:
        """Record the hash of an identity's secret: an agent id (must exist) or ``lead``."""

    @abstractmethod
    def token_hash(self, identity: str) -> str | None:
        """The recorded hash of an identity's secret, or None when it has none."""

    @abstractmethod
    def known_identities(self) -> set[str]:
        """Every agent id the database knows, plus ``lead``: the possible authors and recipients."""

    # -- threads ---------------------------------------------------------------------------------
    @abstractmethod
    def append_message(
        self,
        thread: str,
        author: str,
        type_: str,
        body: str,
        *,
        recipient: str | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """Append to a thread (created on first use) under the next sequence number, in commit order.

        ``reply_to`` must name an entry of the same thread (BadInput otherwise)."""

    @abstractmethod
    def list_messages(self, thread: str, *, since: int = 0, limit: int = 10_000) -> list[Message]:
        """Entries after ``since``, in sequence order."""

    @abstractmethod
    def get_message(self, thread: str, seq: int) -> Message:
        """One entry; BadInput when absent."""

    @abstractmethod
    def next_message_for(
        self,
        thread: str,
        identity: str,
        *,
        after: int,
        from_author: str | None = None,
        reply_to: int | None = None,
        type_: str | None = None,
    ) -> Message | None:
        """The first entry after ``after`` that ``identity`` did not write and that is addressed to it or to
        all (optionally from one author, or replying to one entry)."""

    @abstractmethod
    def thread_tail(self, thread: str) -> int:
        """The last sequence number of a thread (0 when empty or absent)."""

    @abstractmethod
    def get_cursor(self, identity: str, thread: str) -> int | None:
        """Where ``identity``'s waits left off in ``thread``."""

    @abstractmethod
    def set_cursor(self, identity: str, thread: str, seq: int) -> None:
        """Move the cursor forward (never back)."""

    @abstractmethod
    def unanswered_questions(self, recipient: str = "lead") -> list[Message]:
        """Questions to ``recipient`` that have no answer yet, oldest first."""

    # -- tasks -----------------------------------------------------------------------------------
    @abstractmethod
    def add_tasks(self, specs: Sequence[Spec], *, actor: str = "lead", swarm_id: str | None = None) -> AddResult:
        """Queue specs not yet queued, in one transaction. Dependencies must be queued or in ``specs``.

        Tasks whose dependencies are all done start ``ready``; the others ``blocked``. Specs already
        queued are left as they are and reported in ``existing``. With ``swarm_id``, every spec given
        (new or already queued) becomes a member of that swarm.
        """

    @abstractmethod
    def claim(
        self,
        agent_id: str,
        capabilities: Sequence[str] = (),
        *,
        ttl_seconds: float,
        host: str = "",
        swarm_id: str | None = None,
    ) -> Claim | None:
        """Reap expired leases, then atomically claim the next eligible task (only the swarm's members
        when ``swarm_id`` is given), or return None."""

    @abstractmethod
    def heartbeat(self, task_id: str, agent_id: str, lease_token: str, *, ttl_seconds: float) -> float:
        """Extend the lease to now + ttl (never shorten it); returns the new lease end. LeaseLost if stale."""

    @abstractmethod
    def complete(
        self,
        task_id: str,
        agent_id: str,
        lease_token: str,
        *,
        commit: str | None = None,
        cost_usd: float | None = None,
        tokens: int | None = None,
    ) -> list[str]:
        """Mark the task done exactly once and promote dependents; returns the ids that became ready."""

    @abstractmethod
    def fail(
        self,
        task_id: str,
        agent_id: str,
        lease_token: str,
        reason: str,
        *,
        cost_usd: float | None = None,
        tokens: int | None = None,
    ) -> TaskState:
        """Record a failed attempt: back to ``ready`` after the retry backoff, or ``dead`` when no
        attempts are left. Returns the new state."""

    @abstractmethod
    def record_session(self, task_id: str, agent_id: str, lease_token: str, session_id: str) -> None:
        """Note the agent CLI's conversation of the attempt in hand (docs/contract.md §3): a failed attempt clears
        it, an interrupted one (returned, reaped) keeps it for the next attempt to resume. Fenced by the lease."""

    @abstractmethod
    def return_task(self, task_id: str, agent_id: str, lease_token: str, reason: str = "returned") -> None:
        """Give the task back unfinished without spending an attempt (shutdown, lost interest)."""

    @abstractmethod
    def cancel(self, task_id: str, *, actor: str = "lead", reason: str = "cancelled") -> TaskState:
        """Cancel a task that is not done; a live lease on it becomes stale. Returns the previous state."""

    @abstractmethod
    def retry(self, task_id: str, *, actor: str = "lead") -> TaskState:
        """Put a dead or cancelled task back in the queue with fresh attempts; returns the new state."""

    @abstractmethod
    def reap(self) -> list[Reaped]:
        """Take back every expired lease: ``ready`` with attempts left, else ``dead``."""

    # -- reads -----------------------------------------------------------------------------------
    @abstractmethod
    def get_task(self, task_id: str) -> Task:
        """One task; UnknownTask when absent."""

    @abstractmethod
    def list_tasks(self, epic: str | None = None, *, swarm_id: str | None = None) -> list[Task]:
        """Every task (of one epic, of one swarm), oldest first."""

    @abstractmethod
    def counts(self, epic: str | None = None, *, swarm_id: str | None = None) -> dict[str, int]:
        """Number of tasks in each state (of one epic, of one swarm); every state is present."""

    @abstractmethod
    def events(self, task_id: str | None = None, *, since: int = 0, limit: int = 10_000) -> list[Event]:
        """Event log entries after ``since``, oldest first."""

    @abstractmethod
    def change_marker(self) -> int:
        """A cheap number that changes when another connection commits; waiters poll it to wake up."""

    def wait_for_change(self, marker: int, timeout: float, *, first: float = 0.01, most: float = 0.05) -> int:
        """Block until :meth:`change_marker` differs from ``marker`` or ``timeout`` seconds pass; return it.

        This default polls the marker, ``first`` seconds apart after a change and backing off to ``most``
        while nothing happens (so an idle waiter stays cheap). A backend that is told of commits overrides it
        to wake at once (PostgreSQL: LISTEN/NOTIFY); ``first`` and ``most`` then only pace its fallback.
        """
        deadline = time.monotonic() + timeout
        interval = first
        while True:
            current = self.change_marker()
            remaining = deadline - time.monotonic()
            if current != marker or remaining <= 0:
                return current
            time.sleep(min(interval, remaining))
            interval = min(most, interval * 1.15)
