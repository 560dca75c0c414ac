"""The store contract (docs/contract.md §3 and §4). Every backend must pass this file unchanged."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from swarm.errors import BadInput, InvalidTransition, LeaseLost, UnknownTask
from swarm.models import AgentRecord, Claim, Spec, TaskState
from swarm.store import Notification, Store, Withdrawal
from tests.conftest import FakeClock
from tests.contract.conftest import StoreFactory

TTL = 60.0


def spec(
    sid: str,
    *deps: str,
    priority: int = 0,
    requires: tuple[str, ...] = (),
    max_attempts: int | None = None,
    epic: str = "E1",
) -> Spec:
    """A spec with a body that names it."""
    return Spec(
        id=sid,
        epic=epic,
        title=f"title {sid}",
        body=f"body of {sid}",
        depends_on=tuple(deps),
        priority=priority,
        requires=requires,
        max_attempts=max_attempts,
    )


def claim(store: Store, agent: str = "agent-1", caps: tuple[str, ...] = ()) -> Claim:
    """Claim and insist that something was claimed."""
    got = store.claim(agent, caps, ttl_seconds=TTL)
    assert got is not None, "expected a claim"
    return got


def states(store: Store) -> dict[str, str]:
    """Task id -> state."""
    return {t.id: t.state.value for t in store.list_tasks()}


# -- queueing ---------------------------------------------------------------------------------------


def test_new_database_is_migrated_to_latest_schema(store: Store) -> None:
    assert store.schema_version() >= 1
    assert store.counts() == dict.fromkeys(("blocked", "ready", "claimed", "done", "dead", "cancelled"), 0)


def test_reopening_keeps_data_and_schema(make_store: StoreFactory) -> None:
    first = make_store()
    first.add_tasks([spec("A")])
    version = first.schema_version()
    first.close()
    second = make_store()
    assert second.schema_version() == version
    assert [t.id for t in second.list_tasks()] == ["A"]


def test_add_sets_blocked_and_ready_from_dependencies(store: Store) -> None:
    result = store.add_tasks([spec("B", "A"), spec("A"), spec("C", "A", "B")])
    assert result.added == ["A", "B", "C"]  # dependency order
    assert result.ready == ["A"]
    assert states(store) == {"A": "ready", "B": "blocked", "C": "blocked"}
    task = store.get_task("C")
    assert task.depends_on == ("A", "B")
    assert task.title == "title C"
    assert task.body == "body of C"
    assert task.max_attempts == 3


def test_a_task_keeps_its_specs_verify_and_allow_empty(store: Store) -> None:
    """docs/contract.md §2/§3: the worker reads them back with get_task after the claim."""
    checked = Spec(
        id="V", epic="E1", title="t", body="b", verify="pytest -q 'tests/a b.py' && echo ok", allow_empty=True
    )
    unchecked = Spec(id="N", epic="E1", title="t", body="b", verify="")
    store.add_tasks([checked, unchecked, spec("D")])
    assert (store.get_task("V").verify, store.get_task("V").allow_empty) == (checked.verify, True)
    assert (store.get_task("N").verify, store.get_task("N").allow_empty) == ("", False)  # "" is "no verify"
    assert (store.get_task("D").verify, store.get_task("D").allow_empty) == (None, False)  # None: the default
    assert {t.id: t.verify for t in store.list_tasks()} == {"V": checked.verify, "N": "", "D": None}


def test_add_is_idempotent(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A")])
    again = store.add_tasks([spec("A"), spec("B", "A"), spec("C", "B")])
    assert again.added == ["C"]
    assert again.existing == ["A", "B"]
    assert len(store.list_tasks()) == 3


def test_add_depending_on_done_task_starts_ready(store: Store) -> None:
    store.add_tasks([spec("A")])
    c = claim(store)
    store.complete(c.task_id, "agent-1", c.lease_token)
    result = store.add_tasks([spec("B", "A")])
    assert result.ready == ["B"]


def test_add_rejects_unknown_dependency_and_writes_nothing(store: Store) -> None:
    with pytest.raises(BadInput, match="depends on NOPE"):
        store.add_tasks([spec("A"), spec("B", "NOPE")])
    assert store.list_tasks() == []


def test_add_rejects_cycle_and_writes_nothing(store: Store) -> None:
    with pytest.raises(BadInput, match="cycle"):
        store.add_tasks([spec("A", "B"), spec("B", "A")])
    assert store.list_tasks() == []


def test_add_rejects_invalid_id(store: Store) -> None:
    with pytest.raises(BadInput, match="invalid task id"):
        store.add_tasks([spec("-bad")])


# -- claim order and capabilities ------------------------------------------------------------------


def test_claim_on_empty_queue_returns_none(store: Store) -> None:
    assert store.claim("agent-1", ttl_seconds=TTL) is None


def test_claim_order_priority_then_age_then_id(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("old-low", priority=0)])
    clock.advance(1)
    store.add_tasks([spec("z-new-high", priority=5), spec("a-new-high", priority=5)])
    clock.advance(1)
    store.add_tasks([spec("newest-high", priority=5)])
    order = [claim(store).task_id for _ in range(4)]
    assert order == ["a-new-high", "z-new-high", "newest-high", "old-low"]


class CapCase(NamedTuple):
    test_id: str
    requires: tuple[str, ...]
    offered: tuple[str, ...]
    eligible: bool


CAP_CASES = [
    CapCase("no-requirements-any-agent", (), (), True),
    CapCase("requirement-missing", ("gpu",), (), False),
    CapCase("requirement-offered", ("gpu",), ("gpu",), True),
    CapCase("superset-offered", ("gpu",), ("gpu", "python"), True),
    CapCase("partial-offer", ("gpu", "python"), ("python",), False),
    CapCase("all-offered", ("gpu", "python"), ("python", "gpu"), True),
]


@pytest.mark.parametrize("case", CAP_CASES, ids=[c.test_id for c in CAP_CASES])
def test_claim_respects_capabilities(store: Store, case: CapCase) -> None:
    store.add_tasks([spec("A", requires=case.requires)])
    got = store.claim("agent-1", case.offered, ttl_seconds=TTL)
    assert (got is not None) == case.eligible


def test_claim_skips_ineligible_higher_priority(store: Store) -> None:
    store.add_tasks([spec("gpu-task", priority=9, requires=("gpu",)), spec("plain", priority=1)])
    assert claim(store).task_id == "plain"
    assert claim(store, "agent-2", ("gpu",)).task_id == "gpu-task"


def test_claim_returns_prompt_lease_and_dependencies(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A"), spec("B", "A")])
    a = claim(store)
    store.complete(a.task_id, "agent-1", a.lease_token, commit="abc123")
    b = claim(store, "agent-2")
    assert b.task_id == "B"
    assert b.prompt == "body of B"
    assert b.title == "title B"
    assert b.attempt == 1
    assert b.depends_on == ("A",)
    assert b.lease_until == pytest.approx(clock.now + TTL)
    assert len(b.lease_token) >= 32
    task = store.get_task("B")
    assert task.state == TaskState.CLAIMED
    assert task.owner == "agent-2"


def test_claim_rejects_invalid_agent_id(store: Store) -> None:
    with pytest.raises(BadInput, match="invalid agent id"):
        store.claim("bad agent", ttl_seconds=TTL)


def test_lease_tokens_are_unique(store: Store) -> None:
    store.add_tasks([spec(f"T{i}") for i in range(20)])
    tokens = {claim(store).lease_token for _ in range(20)}
    assert len(tokens) == 20


# -- fencing -----------------------------------------------------------------------------------------


class FenceCase(NamedTuple):
    test_id: str
    operation: str


FENCE_CASES = [FenceCase(op, op) for op in ("heartbeat", "complete", "fail", "return")]


def _write(store: Store, operation: str, task_id: str, agent: str, token: str) -> None:
    if operation == "heartbeat":
        store.heartbeat(task_id, agent, token, ttl_seconds=TTL)
    elif operation == "complete":
        store.complete(task_id, agent, token)
    elif operation == "fail":
        store.fail(task_id, agent, token, "boom")
    else:
        store.return_task(task_id, agent, token)


@pytest.mark.parametrize("case", FENCE_CASES, ids=[c.test_id for c in FENCE_CASES])
def test_stale_token_rejected_after_reclaim(store: Store, clock: FakeClock, case: FenceCase) -> None:
    store.add_tasks([spec("A")])
    old = claim(store, "agent-1")
    clock.advance(TTL + 1)
    new = claim(store, "agent-2")  # reaps the old lease, then claims again
    assert new.task_id == "A"
    assert new.attempt == 2
    with pytest.raises(LeaseLost, match="lease lost on task A"):
        _write(store, case.operation, "A", "agent-1", old.lease_token)
    task = store.get_task("A")
    assert task.state == TaskState.CLAIMED
    assert task.owner == "agent-2"
    store.heartbeat("A", "agent-2", new.lease_token, ttl_seconds=TTL)  # the live lease still works


@pytest.mark.parametrize("case", FENCE_CASES, ids=[c.test_id for c in FENCE_CASES])
def test_wrong_token_rejected(store: Store, case: FenceCase) -> None:
    store.add_tasks([spec("A")])
    claim(store)
    with pytest.raises(LeaseLost):
        _write(store, case.operation, "A", "agent-1", "0" * 32)
    assert store.get_task("A").state == TaskState.CLAIMED


@pytest.mark.parametrize("case", FENCE_CASES, ids=[c.test_id for c in FENCE_CASES])
def test_right_token_wrong_agent_rejected(store: Store, case: FenceCase) -> None:
    store.add_tasks([spec("A")])
    held = claim(store)
    with pytest.raises(LeaseLost, match="belongs to agent-1"):
        _write(store, case.operation, "A", "agent-9", held.lease_token)


@pytest.mark.parametrize("case", FENCE_CASES, ids=[c.test_id for c in FENCE_CASES])
def test_write_after_cancel_rejected(store: Store, case: FenceCase) -> None:
    store.add_tasks([spec("A")])
    held = claim(store)
    store.cancel("A")
    with pytest.raises(LeaseLost, match="cancelled"):
        _write(store, case.operation, "A", "agent-1", held.lease_token)


def test_write_on_unknown_task(store: Store) -> None:
    with pytest.raises(UnknownTask):
        store.heartbeat("NOPE", "agent-1", "x" * 32, ttl_seconds=TTL)


def test_expired_but_unreaped_lease_still_holds(store: Store, clock: FakeClock) -> None:
    # The token is the fence, not the clock: nobody took the task, so the slow agent keeps it.
    store.add_tasks([spec("A")])
    held = claim(store)
    clock.advance(TTL * 2)
    until = store.heartbeat("A", "agent-1", held.lease_token, ttl_seconds=TTL)
    assert until == pytest.approx(clock.now + TTL)
    assert store.reap() == []


def test_heartbeat_extends_and_never_shortens(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A")])
    held = claim(store)
    clock.advance(10)
    assert store.heartbeat("A", "agent-1", held.lease_token, ttl_seconds=TTL) == pytest.approx(clock.now + TTL)
    longest = clock.now + TTL
    assert store.heartbeat("A", "agent-1", held.lease_token, ttl_seconds=1) == pytest.approx(longest)
    clock.advance(TTL - 1)
    assert store.reap() == []


def test_session_kept_through_interruptions_cleared_by_failure(store: Store, clock: FakeClock) -> None:
    """docs/contract.md §3: an interrupted attempt's conversation is there for the next one; a failed one's is not."""
    store.add_tasks([spec("A", max_attempts=5)])
    held = claim(store)
    assert store.get_task("A").session_id is None
    store.record_session("A", "agent-1", held.lease_token, "sess-1")
    with pytest.raises(LeaseLost):
        store.record_session("A", "agent-2", held.lease_token, "sess-x")
    store.return_task("A", "agent-1", held.lease_token, "teardown --now")
    task = store.get_task("A")
    assert (task.session_id, task.session_agent) == ("sess-1", "agent-1")
    held = claim(store, "agent-2")
    store.record_session("A", "agent-2", held.lease_token, "sess-2")
    clock.advance(TTL + 1)
    store.reap()  # a lost lease is not the agent's fault either
    assert (store.get_task("A").session_id, store.get_task("A").session_agent) == ("sess-2", "agent-2")
    held = claim(store)
    store.fail("A", "agent-1", held.lease_token, "tests fail")
    assert (store.get_task("A").session_id, store.get_task("A").session_agent) == (None, None)


# -- completion and promotion ---------------------------------------------------------------------


def test_complete_exactly_once(store: Store) -> None:
    store.add_tasks([spec("A")])
    held = claim(store)
    store.complete("A", "agent-1", held.lease_token, commit="c0ffee", cost_usd=0.25)
    with pytest.raises(LeaseLost, match="already done"):
        store.complete("A", "agent-1", held.lease_token, commit="other")
    task = store.get_task("A")
    assert task.state == TaskState.DONE
    assert task.commit == "c0ffee"
    assert task.cost_usd == pytest.approx(0.25)
    assert task.owner == "agent-1"
    done_events = [e for e in store.events("A") if e.to_state == "done"]
    assert len(done_events) == 1


def test_completion_promotes_diamond_only_when_all_deps_done(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A"), spec("C", "A"), spec("D", "B", "C")])
    a = claim(store)
    assert store.complete("A", "agent-1", a.lease_token) == ["B", "C"]
    b = claim(store)
    c = claim(store, "agent-2")
    assert {b.task_id, c.task_id} == {"B", "C"}
    assert store.complete(b.task_id, "agent-1", b.lease_token) == []
    assert store.get_task("D").state == TaskState.BLOCKED
    assert store.claim("agent-3", ttl_seconds=TTL) is None
    assert store.complete(c.task_id, "agent-2", c.lease_token) == ["D"]
    assert claim(store).task_id == "D"


def test_promotion_is_logged(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A")])
    a = claim(store)
    store.complete("A", "agent-1", a.lease_token)
    promoted = [e for e in store.events("B") if e.to_state == "ready"]
    assert len(promoted) == 1
    assert promoted[0].from_state == "blocked"


# -- failure, retry, backoff, dead ----------------------------------------------------------------


def test_fail_backs_off_then_retries_then_dies(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A", max_attempts=3)])
    first = claim(store)
    assert store.fail("A", "agent-1", first.lease_token, "tests failed") == TaskState.READY
    task = store.get_task("A")
    assert task.last_error == "tests failed"
    assert task.not_before == pytest.approx(clock.now + 10)  # base backoff
    assert store.claim("agent-1", ttl_seconds=TTL) is None  # backing off
    clock.advance(10)
    second = claim(store)
    assert second.attempt == 2
    assert store.fail("A", "agent-1", second.lease_token, "again") == TaskState.READY
    assert store.get_task("A").not_before == pytest.approx(clock.now + 20)  # doubled
    clock.advance(20)
    third = claim(store)
    assert third.attempt == 3
    assert store.fail("A", "agent-1", third.lease_token, "last") == TaskState.DEAD
    assert store.get_task("A").state == TaskState.DEAD
    clock.advance(10_000)
    assert store.claim("agent-1", ttl_seconds=TTL) is None


def test_backoff_is_capped(make_store: StoreFactory, clock: FakeClock) -> None:
    from swarm.store import RetryPolicy

    store = make_store(retry=RetryPolicy(100.0, 150.0), default_max_attempts=5)
    store.add_tasks([spec("A")])
    for _ in range(3):
        held = claim(store)
        store.fail("A", "agent-1", held.lease_token, "x")
        assert store.get_task("A").not_before - clock.now <= 150.0
        clock.advance(150)


def test_dead_dependency_keeps_dependents_blocked(store: Store) -> None:
    store.add_tasks([spec("A", max_attempts=1), spec("B", "A")])
    held = claim(store)
    assert store.fail("A", "agent-1", held.lease_token, "broken") == TaskState.DEAD
    assert store.get_task("B").state == TaskState.BLOCKED
    assert store.claim("agent-1", ttl_seconds=TTL) is None


def test_return_does_not_spend_an_attempt(store: Store) -> None:
    store.add_tasks([spec("A", max_attempts=1)])
    held = claim(store)
    store.return_task("A", "agent-1", held.lease_token, "shutting down")
    task = store.get_task("A")
    assert task.state == TaskState.READY
    assert task.attempts == 0
    again = claim(store, "agent-2")
    assert again.attempt == 1


def test_retry_dead_task(store: Store) -> None:
    store.add_tasks([spec("A", max_attempts=1), spec("B", "A")])
    held = claim(store)
    store.fail("A", "agent-1", held.lease_token, "broken")
    assert store.retry("A") == TaskState.READY
    again = claim(store)
    assert again.task_id == "A"
    assert again.attempt == 1
    store.complete("A", "agent-1", again.lease_token)
    assert store.get_task("B").state == TaskState.READY


class BadTransition(NamedTuple):
    test_id: str
    setup: str
    operation: str


def test_retry_refuses_live_states(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A")])
    with pytest.raises(InvalidTransition, match="only dead or cancelled"):
        store.retry("A")
    with pytest.raises(InvalidTransition):
        store.retry("B")
    with pytest.raises(UnknownTask):
        store.retry("NOPE")


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_ready_blocked_and_claimed(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A"), spec("C")])
    held = claim(store)
    assert held.task_id == "A"
    assert store.cancel("A") == TaskState.CLAIMED
    assert store.cancel("B") == TaskState.BLOCKED
    assert store.cancel("C") == TaskState.READY
    assert set(states(store).values()) == {"cancelled"}
    assert store.claim("agent-2", ttl_seconds=TTL) is None


def test_cancel_refuses_done_and_cancelled(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B")])
    held = claim(store)
    store.complete("A", "agent-1", held.lease_token)
    with pytest.raises(InvalidTransition, match="done"):
        store.cancel("A")
    store.cancel("B")
    with pytest.raises(InvalidTransition, match="cancelled"):
        store.cancel("B")
    with pytest.raises(UnknownTask):
        store.cancel("NOPE")


def test_retry_cancelled_blocked_task_returns_to_blocked(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B", "A")])
    store.cancel("B")
    assert store.retry("B") == TaskState.BLOCKED
    held = claim(store)
    store.complete("A", "agent-1", held.lease_token)
    assert store.get_task("B").state == TaskState.READY


# -- reaper ---------------------------------------------------------------------------------------


def test_reaper_returns_expired_leases_and_counts_attempts(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A", max_attempts=2), spec("B")])
    a = claim(store)
    b = claim(store, "agent-2")
    clock.advance(TTL / 2)
    store.heartbeat(b.task_id, "agent-2", b.lease_token, ttl_seconds=TTL)
    clock.advance(TTL / 2 + 1)
    reaped = store.reap()
    assert [(r.task_id, r.owner, r.to_state) for r in reaped] == [("A", "agent-1", TaskState.READY)]
    assert store.get_task("B").state == TaskState.CLAIMED
    assert store.get_task("A").attempts == 1
    with pytest.raises(LeaseLost):
        store.complete("A", "agent-1", a.lease_token)
    second = claim(store, "agent-3")
    assert (second.task_id, second.attempt) == ("A", 2)
    clock.advance(TTL + 1)
    reaped = store.reap()
    assert ("A", TaskState.DEAD) in [(r.task_id, r.to_state) for r in reaped]
    assert store.get_task("A").state == TaskState.DEAD


def test_reaper_runs_on_claim(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A")])
    claim(store)
    clock.advance(TTL + 1)
    again = claim(store, "agent-2")
    assert again.task_id == "A"
    reasons = [e.reason for e in store.events("A") if e.actor == "reaper"]
    assert len(reasons) == 1
    assert "expired" in reasons[0]


# -- event log ------------------------------------------------------------------------------------


def test_every_state_change_is_logged(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A")])
    first = claim(store)
    store.fail("A", "agent-1", first.lease_token, "oops")
    clock.advance(10)
    second = claim(store)
    store.complete("A", "agent-1", second.lease_token)
    trail = [(e.from_state, e.to_state) for e in store.events("A")]
    assert trail == [
        (None, "ready"),
        ("ready", "claimed"),
        ("claimed", "ready"),
        ("ready", "claimed"),
        ("claimed", "done"),
    ]
    seqs = [e.seq for e in store.events()]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert store.events(since=seqs[-2]) == store.events()[-1:]


def test_counts_and_epic_filter(store: Store) -> None:
    store.add_tasks([spec("A", epic="E1"), spec("B", "A", epic="E1"), spec("X", epic="E2")])
    assert store.counts()["ready"] == 2
    assert store.counts("E1") == {
        "blocked": 1,
        "ready": 1,
        "claimed": 0,
        "done": 0,
        "dead": 0,
        "cancelled": 0,
    }
    assert [t.id for t in store.list_tasks("E2")] == ["X"]


def test_swarm_registration_is_idempotent(store: Store) -> None:
    first = store.ensure_swarm("E1", max_agents=3)
    again = store.ensure_swarm("E1")
    assert first.id == again.id
    assert again.max_agents == 3
    other = store.ensure_swarm("E2")
    assert other.id != first.id
    current = store.current_swarm()
    assert current is not None


def test_a_swarm_gains_epics_in_the_order_added(store: Store, clock: FakeClock) -> None:
    record = store.ensure_swarm("E1", 2)
    assert (record.epics, record.ended_at, record.ended) == (("E1",), None, False)
    clock.advance(1)
    grown = store.add_epic(record.id, "E2", 4, settings={"kind": "command"})
    assert (grown.id, grown.epic, grown.epics, grown.max_agents) == (record.id, "E1", ("E1", "E2"), 4)
    assert grown.settings == {"kind": "command"}
    again = store.add_epic(record.id, "E1")  # already there: nothing changes, it stays first
    assert again.epics == ("E1", "E2")
    assert again.max_agents == 4
    assert store.ensure_swarm("E2").id == record.id  # the open swarm that works E2
    current = store.current_swarm()
    assert current is not None
    assert current.epics == ("E1", "E2")
    # Tasks of the added epic become members and are claimed in claim order: priority, then age.
    store.add_tasks([spec("A")], swarm_id=record.id)
    clock.advance(1)
    store.add_tasks([spec("B", epic="E2"), spec("C", epic="E2", priority=5)], swarm_id=record.id)
    assert store.counts("E2", swarm_id=record.id)["ready"] == 2
    order = [store.claim(f"agent-{n}", ttl_seconds=TTL, swarm_id=record.id) for n in (1, 2, 3)]
    assert [c.task_id for c in order if c] == ["C", "A", "B"]


def test_a_failed_launch_is_withdrawn(store: Store, clock: FakeClock) -> None:
    record = store.ensure_swarm("E1", 1, settings={"kind": "command"})
    store.add_tasks([spec("A"), spec("S")], swarm_id=record.id)
    store.register_agent(AgentRecord(id="agent-1", swarm_id=record.id, state="working"))
    before = store.get_swarm(record.id)
    claimed_a = claim(store)
    assert claimed_a.task_id == "A"
    # A launch of E2 joins: E2's X and Y (Y after X and S), S becomes no new member, agent-2 registered.
    store.add_epic(record.id, "E2", 3, settings={"kind": "claude"})
    added = store.add_tasks([spec("X", epic="E2"), spec("Y", "X", "S", epic="E2")], swarm_id=record.id)
    store.register_agent(AgentRecord(id="agent-2", swarm_id=record.id))
    clock.advance(1)
    kept = store.withdraw(Withdrawal(record.id, before, "E2", tuple(added.added), tuple(added.added), ("agent-2",)))
    assert kept == []
    assert states(store) == {"A": "claimed", "S": "ready"}
    assert store.get_swarm(record.id) == before
    assert [a.id for a in store.list_agents(record.id)] == ["agent-1"]
    assert [e.to_state for e in store.events("X")] == ["ready", "withdrawn"]
    # Queued again later, as new.
    assert store.add_tasks([spec("X", epic="E2")], swarm_id=record.id).added == ["X"]
    # A task claimed meanwhile stays; a swarm the launch created goes entirely.
    store.end_swarm(record.id)
    fresh = store.ensure_swarm("E3", swarm_id="sw-planned01")
    assert fresh.id == "sw-planned01"
    store.add_tasks([spec("P", epic="E3"), spec("Q", epic="E3")], swarm_id=fresh.id)
    taken = store.claim("agent-9", ttl_seconds=TTL, swarm_id=fresh.id)
    assert taken is not None
    assert taken.task_id == "P"
    assert store.withdraw(Withdrawal(fresh.id, None, "E3", ("P", "Q"), ("P", "Q"))) == ["P"]
    assert [s.id for s in store.list_swarms()] == [record.id]
    assert "Q" not in states(store)
    assert states(store)["P"] == "claimed"


def test_an_ended_swarm_stays_in_history_and_the_next_launch_starts_a_new_one(store: Store, clock: FakeClock) -> None:
    first = store.ensure_swarm("E1")
    store.add_epic(first.id, "E2")
    store.add_tasks([spec("A")], swarm_id=first.id)
    done = claim(store)
    store.complete(done.task_id, "agent-1", done.lease_token)
    clock.advance(10)
    ended = store.end_swarm(first.id)
    assert ended.ended_at == clock.now
    assert ended.ended
    clock.advance(10)
    assert store.end_swarm(first.id).ended_at == ended.ended_at  # the first end stays
    with pytest.raises(BadInput, match="ended"):
        store.add_epic(first.id, "E3")
    with pytest.raises(BadInput, match="no swarm"):
        store.add_epic("sw-nope", "E3")
    with pytest.raises(BadInput, match="no swarm"):
        store.end_swarm("sw-nope")
    second = store.ensure_swarm("E1")  # the old one ended: a new swarm
    assert second.id != first.id
    assert (second.epics, second.ended_at) == (("E1",), None)
    store.add_tasks([spec("A")], swarm_id=second.id)  # the done task stays done
    assert store.get_task("A").state == TaskState.DONE
    listed = store.list_swarms()
    assert [(s.id, s.epics, s.ended_at) for s in listed] == [
        (first.id, ("E1", "E2"), ended.ended_at),
        (second.id, ("E1",), None),
    ]
    current = store.current_swarm()
    assert current is not None
    assert current.id == second.id


def test_two_stores_adding_epics_at_once_lose_none(make_store: StoreFactory) -> None:
    one, two = make_store(), make_store()
    record = one.ensure_swarm("E1")
    for n in range(2, 6):
        (one if n % 2 else two).add_epic(record.id, f"E{n}")
    assert two.get_swarm(record.id).epics == ("E1", "E2", "E3", "E4", "E5")


def test_change_marker_moves_on_other_connections_commit(make_store: StoreFactory) -> None:
    watcher = make_store()
    writer = make_store()
    before = watcher.change_marker()
    assert watcher.change_marker() == before
    writer.add_tasks([spec("A")])
    assert watcher.change_marker() != before


# -- swarms, membership, agents (runtime) ---------------------------------------------------------


def test_claims_are_scoped_to_the_swarms_members(store: Store) -> None:
    one = store.ensure_swarm("E1")
    two = store.ensure_swarm("E2")
    store.add_tasks([spec("SHARED"), spec("A", "SHARED")], swarm_id=one.id)
    store.add_tasks([spec("SHARED"), spec("X", epic="E2", priority=9)], swarm_id=two.id)
    assert sorted(t.id for t in store.list_tasks(swarm_id=one.id)) == ["A", "SHARED"]
    assert store.counts(swarm_id=two.id)["ready"] == 2
    got = store.claim("agent-1", ttl_seconds=TTL, swarm_id=one.id)
    assert got is not None
    assert got.task_id == "SHARED"  # X has a higher priority but belongs to E2 only
    assert store.claim("agent-2", ttl_seconds=TTL, swarm_id=one.id) is None
    assert claim(store, "agent-3").task_id == "X"  # no swarm given: any task


def test_swarm_settings_and_stop_requests(store: Store) -> None:
    record = store.ensure_swarm("E1", 3, repo="/r", settings={"kind": "command", "agents": 3})
    assert (record.repo, record.settings, record.stop_mode) == ("/r", {"kind": "command", "agents": 3}, None)
    store.request_stop(record.id, "now")
    assert store.get_swarm(record.id).stop_mode == "now"
    assert store.get_swarm(record.id).stop_requested
    relaunched = store.ensure_swarm("E1")  # a relaunch clears the stop request, keeps the rest
    assert relaunched.stop_mode is None
    assert relaunched.settings == {"kind": "command", "agents": 3}
    assert relaunched.max_agents == 3
    with pytest.raises(BadInput):
        store.request_stop(record.id, "later")
    with pytest.raises(BadInput):
        store.get_swarm("sw-nope")


def test_agents_record_their_kind_and_model(store: Store) -> None:
    """docs/contract.md §5 mixed fleets: each agent's kind and model are kept; registering it again without them
    (an agent of before v10 has none) keeps what was recorded."""
    from swarm.models import AgentRecord

    record = store.ensure_swarm("E1")
    store.register_agent(AgentRecord(id="agent-1", swarm_id=record.id, kind="claude", model="sonnet"))
    store.register_agent(AgentRecord(id="agent-2", swarm_id=record.id, kind="command"))
    store.register_agent(AgentRecord(id="agent-1", swarm_id=record.id, session="s-1"))
    agents = {a.id: (a.kind, a.model, a.session) for a in store.list_agents(record.id)}
    assert agents == {"agent-1": ("claude", "sonnet", "s-1"), "agent-2": ("command", None, None)}


def test_agents_register_update_and_list(store: Store) -> None:
    record = store.ensure_swarm("E1")
    for n in (10, 2, 1):
        store.register_agent(
            AgentRecord(
                id=f"agent-{n}",
                swarm_id=record.id,
                host="h",
                session=f"s-{n}",
                branch=f"b-{n}",
                worktree=f"/w/{n}",
                capabilities=("py",),
            )
        )
    store.update_agent("agent-1", pid=123, state="working", task_id="A", cost_usd=0.5)
    store.update_agent("agent-1", cost_usd=0.25, last_output="hello", last_output_at=5.0)
    agents = store.list_agents(record.id)
    assert [a.id for a in agents] == ["agent-1", "agent-2", "agent-10"]
    first = agents[0]
    assert (first.pid, first.state, first.task_id, first.session, first.capabilities) == (
        123,
        "working",
        "A",
        "s-1",
        ("py",),
    )
    assert first.cost_usd == pytest.approx(0.75)
    assert first.last_output == "hello"
    assert store.list_agents("sw-other") == []
    with pytest.raises(ValueError, match="unknown agent fields"):
        store.update_agent("agent-1", session="evil")


def test_return_claims_without_tokens(store: Store) -> None:
    store.add_tasks([spec("A"), spec("B"), spec("C")])
    a = claim(store, "agent-1")
    claim(store, "agent-2")
    claim(store, "agent-3")
    returned = store.return_claims(["agent-1", "agent-2"])
    assert sorted(returned) == ["A", "B"]
    assert store.get_task("A").state == TaskState.READY
    assert store.get_task("A").attempts == 0
    assert store.get_task("C").state == TaskState.CLAIMED
    with pytest.raises(LeaseLost):
        store.complete("A", "agent-1", a.lease_token)


def test_tokens_and_cost_accumulate_over_attempts(store: Store, clock: FakeClock) -> None:
    store.add_tasks([spec("A")])
    first = claim(store)
    store.fail("A", "agent-1", first.lease_token, "x", cost_usd=0.1, tokens=100)
    clock.advance(60)
    second = claim(store)
    store.complete("A", "agent-1", second.lease_token, cost_usd=0.2, tokens=50)
    task = store.get_task("A")
    assert task.cost_usd == pytest.approx(0.3)
    assert task.tokens == 150


# -- health ---------------------------------------------------------------------------------------


def test_claims_can_be_paused_and_pauses_never_shrink(store: Store, clock: FakeClock) -> None:
    record = store.ensure_swarm("E1")
    assert store.claims_paused(record.id) == (0.0, None)
    store.pause_claims(record.id, clock.now + 60, "rate limit")
    store.pause_claims(record.id, clock.now + 10, "shorter")
    until, reason = store.claims_paused(record.id)
    assert until == pytest.approx(clock.now + 60)
    assert reason == "shorter"


def test_incidents_are_recorded_once(store: Store) -> None:
    record = store.ensure_swarm("E1")
    assert store.record_incident(record.id, "agent-1 stalled on S1") is True
    assert store.record_incident(record.id, "agent-1 stalled on S1") is False
    assert store.record_incident(record.id, "agent-1 stalled on S2") is True


def test_notifications_are_queued_once_and_sent_once(store: Store, clock: FakeClock) -> None:
    record = store.ensure_swarm("E1")
    first = Notification("webhook:task_dead:S1:3", record.id, "webhook", "task_dead", '{"task": "S1"}', owner="m1")
    second = Notification("command:task_dead:S1:3", record.id, "command", "task_dead", '{"task": "S1"}', owner="m1")
    assert store.queue_notifications([first, second]) == 2
    clock.advance(1)
    # The same event again (a restarted monitor scanning from the start) adds nothing.
    assert store.queue_notifications([first]) == 0
    # Only the monitor that queued a row sends it (another host's monitor finds the same events).
    assert store.pending_notifications("m2") == []
    pending = store.pending_notifications("m1")
    assert [n.key for n in pending] == sorted([first.key, second.key])
    assert pending[0].owner == "m1"
    assert pending[0].payload == '{"task": "S1"}'
    assert pending[0].swarm_id == record.id
    store.mark_notified(first.key)
    store.mark_notified(first.key)  # twice is harmless
    assert [n.key for n in store.pending_notifications("m1")] == [second.key]
    assert store.queue_notifications([first]) == 0  # sent stays sent
    assert store.queue_notifications([]) == 0
