"""swarm.runtime.procs against real processes started by the tests themselves.

Every process a test starts is registered with the ``spawn`` fixture and SIGKILLed (by pid, through
psutil so a reused pid is never hit) at teardown, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from uuid import uuid4

import psutil
import pytest

from swarm.runtime import procs
from tests.helpers import retry_until

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a process (argv) the test owns; it and its descendants are killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    handles: list[psutil.Process] = []
    groups: list[int] = []

    def start(
        argv: list[str], *, env: Mapping[str, str] | None = None, new_group: bool = False
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            env=None if env is None else {**os.environ, **env},
            start_new_session=new_group,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        handles.append(psutil.Process(proc.pid))
        if new_group:
            groups.append(proc.pid)
        return proc

    yield start
    for handle in handles:
        try:
            victims = [handle, *handle.children(recursive=True)]
        except psutil.NoSuchProcess:
            victims = []
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.kill()
    for group in groups:
        # Groups this fixture created (start_new_session); they may hold re-parented orphans.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def _wait_children(pid: int, count: int) -> list[int]:
    """The descendants of ``pid`` once there are ``count`` of them."""

    def enough() -> list[int] | None:
        found = procs.descendants(pid)
        return found if len(found) >= count else None

    return retry_until(enough, 10)


def _ready_file(path: Path) -> bool:
    return path.exists() and path.read_text().endswith("\n")


def test_alive_false_after_exit_and_reap(spawn: Spawn) -> None:
    proc = spawn(["sleep", "60"])
    assert procs.alive(proc.pid)
    proc.terminate()
    # Before the reap it is a zombie, which already counts as not alive.
    retry_until(lambda: not procs.alive(proc.pid), 10)
    proc.wait(timeout=10)
    assert not procs.alive(proc.pid)


def test_alive_rejects_nonsense_pids() -> None:
    assert not procs.alive(0)
    assert not procs.alive(-5)
    assert procs.alive(os.getpid())


def test_descendants_and_process_group(spawn: Spawn) -> None:
    parent = spawn(["sh", "-c", "sleep 60 & sleep 60 & wait"], new_group=True)
    children = _wait_children(parent.pid, 2)
    assert len(children) == 2
    assert procs.process_group(parent.pid) == parent.pid  # start_new_session: it leads its group
    assert all(procs.process_group(c) == parent.pid for c in children)
    assert procs.process_group(os.getpid()) == os.getpgrp()
    assert procs.descendants(2**22 + 7) == []
    assert procs.process_group(2**22 + 7) is None


def test_stop_processes_kills_parent_and_children(spawn: Spawn) -> None:
    parent = spawn(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    children = _wait_children(parent.pid, 2)
    survivors = procs.stop_processes([parent.pid], grace=5.0)
    assert survivors == []
    for pid in [parent.pid, *children]:
        assert not procs.alive(pid)


def test_stop_processes_sigkills_what_ignores_sigterm(spawn: Spawn, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    # The trap is set before the marker is written, so the signal cannot arrive before it holds.
    stubborn = spawn(["sh", "-c", f"trap '' TERM; echo ok > {ready}; while :; do sleep 1; done"])
    retry_until(lambda: _ready_file(ready), 10)
    started = time.monotonic()
    survivors = procs.stop_processes([stubborn.pid], grace=0.5)
    elapsed = time.monotonic() - started
    assert survivors == []
    assert not procs.alive(stubborn.pid)
    assert elapsed >= 0.5  # it got its grace period first


def test_stop_processes_by_group_reaches_reparented_processes(spawn: Spawn, tmp_path: Path) -> None:
    pid_file = tmp_path / "orphan.pid"
    # The leader starts a background process that ignores SIGTERM, then exits: the orphan is
    # re-parented, so no tree walk finds it, but it stays in the leader's process group.
    leader = spawn(
        ["sh", "-c", f"(trap '' TERM; exec sleep 60) & echo $! > {pid_file}"],
        new_group=True,
    )
    assert leader.wait(timeout=10) == 0
    retry_until(lambda: _ready_file(pid_file), 10)
    orphan = int(pid_file.read_text())
    assert procs.alive(orphan)
    assert procs.process_group(orphan) == leader.pid
    assert orphan not in procs.descendants(os.getpid())

    survivors = procs.stop_processes([], groups=[leader.pid], grace=0.3)
    assert survivors == []
    assert not procs.alive(orphan)


def test_stop_processes_nothing_to_do() -> None:
    assert procs.stop_processes([]) == []
    assert procs.stop_processes([2**22 + 7], grace=0.1) == []


def test_stop_processes_never_signals_itself_or_its_group() -> None:
    # Our own pid and group are refused, not signalled: the test would die otherwise.
    assert procs.stop_processes([os.getpid()], groups=[os.getpgrp(), 0, 1], grace=0.1) == []
    assert procs.alive(os.getpid())


def test_signal_group(spawn: Spawn) -> None:
    leader = spawn(["sleep", "60"], new_group=True)
    assert procs.signal_group(leader.pid, signal.SIGTERM) is True
    assert leader.wait(timeout=10) == -signal.SIGTERM
    assert procs.signal_group(leader.pid, signal.SIGTERM) is False  # the group is gone
    assert procs.signal_group(os.getpgrp(), signal.SIGTERM) is False
    assert procs.signal_group(1, signal.SIGTERM) is False
    assert procs.signal_group(0, signal.SIGTERM) is False


def test_processes_with_env_finds_only_marked(spawn: Spawn) -> None:
    marker = uuid4().hex
    marked = spawn(["sleep", "60"], env={"SWARM_TEST_MARK": marker})
    other = spawn(["sleep", "60"], env={"SWARM_TEST_MARK": "something-else"})
    plain = spawn(["sleep", "60"])
    found = procs.processes_with_env("SWARM_TEST_MARK", marker)
    assert found == [marked.pid]
    assert other.pid not in found
    assert plain.pid not in found


def test_processes_with_env_skips_self_and_finds_grandchildren(spawn: Spawn, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = uuid4().hex
    # Our own environ on /proc is the one we started with, but skip ourselves regardless.
    monkeypatch.setenv("SWARM_TEST_MARK", marker)
    parent = spawn(["sh", "-c", "sleep 60 & wait"], env={"SWARM_TEST_MARK": marker})
    (child,) = _wait_children(parent.pid, 1)
    found = procs.processes_with_env("SWARM_TEST_MARK", marker)
    assert os.getpid() not in found
    assert sorted(found) == sorted([parent.pid, child])
    procs.stop_processes([parent.pid], grace=2.0)
    assert procs.processes_with_env("SWARM_TEST_MARK", marker) == []


def test_usage_of_tree(spawn: Spawn) -> None:
    parent = spawn(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    _wait_children(parent.pid, 2)
    use = procs.usage(parent.pid)
    assert use.rss_bytes > 0
    assert use.cpu_seconds >= 0.0
    assert use.num_children == 2
    own = procs.usage(os.getpid())
    assert own.rss_bytes > 0
    assert own.cpu_seconds > 0.0


def test_usage_of_gone_process_is_zero() -> None:
    assert procs.usage(2**22 + 7) == procs.ProcUsage(rss_bytes=0, cpu_seconds=0.0, num_children=0)


def test_cpu_percent(spawn: Spawn) -> None:
    busy = spawn([sys.executable, "-c", "while True: pass"])
    idle = spawn(["sleep", "60"])
    # A loaded machine may give the busy loop little of a short window: look again until it shows (generous).
    retry_until(lambda: procs.cpu_percent(busy.pid, 0.3) > 10.0, seconds=60)
    assert procs.cpu_percent(idle.pid, 0.1) < 5.0
    assert procs.cpu_percent(2**22 + 7, 0.1) == 0.0
    with pytest.raises(ValueError, match="positive"):
        procs.cpu_percent(idle.pid, 0)


def test_tree_cpu_seconds_sums_each_tree_in_one_pass() -> None:
    """CPU of a busy tree is counted for its root; a gone root maps to 0.0."""
    import subprocess
    import sys

    from swarm.runtime import procs
    from tests.helpers import retry_until

    busy = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"]
    )
    try:
        retry_until(lambda: procs.tree_cpu_seconds([busy.pid])[busy.pid] > 0.2, seconds=30)
        assert procs.tree_cpu_seconds([999_999_999]) == {999_999_999: 0.0}
        assert procs.tree_cpu_seconds([]) == {}
    finally:
        procs.stop_processes([busy.pid], grace=2)
        busy.wait(timeout=10)


# -- an agent's processes, found by tree, record and subreaper ------------------------------------------------


def test_tree_lists_every_descendant_with_its_start_time(spawn: Spawn) -> None:
    parent = spawn(["sh", "-c", "sleep 300 & sleep 300 & wait"])
    children = _wait_children(parent.pid, 2)
    found = procs.tree(parent.pid)
    assert sorted(i.pid for i in found) == sorted(children)
    assert all(i.started == psutil.Process(i.pid).create_time() for i in found)
    assert sorted(procs.child_pids(parent.pid)) == sorted(children)
    assert procs.tree(-1) == []


def test_a_reused_pid_is_neither_running_nor_stopped(spawn: Spawn) -> None:
    """A record names a process by pid AND start time: the same pid with another start time is someone else."""
    victim = spawn(["sleep", "300"])
    real = procs.identify(victim.pid)
    assert real is not None
    impostor = procs.ProcId(victim.pid, real.started - 1000.0)  # as if the pid had been reused since
    assert procs.still_running([impostor]) == []
    assert procs.stop_identified([impostor], grace=0.1) == []
    assert procs.alive(victim.pid)  # never signalled
    assert procs.still_running([real]) == [real]
    assert procs.stop_identified([real], grace=5.0) == []
    retry_until(lambda: not procs.alive(victim.pid), 60)
    assert procs.still_running([real]) == []


def test_records_round_trip_and_an_empty_record_is_removed(tmp_path: Path, spawn: Spawn) -> None:
    record = tmp_path / "run" / "agent-1.pids"
    assert procs.read_records(record) == []
    live = procs.identify(spawn(["sleep", "300"]).pid)
    assert live is not None
    gone = procs.ProcId(2**22 + 7, 12.5)
    procs.write_records(record, [live, gone])
    assert sorted(procs.read_records(record)) == sorted([live, gone])
    record.write_text(record.read_text() + "12 half a line\n")  # a record cut short by a crash
    assert sorted(procs.read_records(record)) == sorted([live, gone])
    assert procs.stop_recorded(record, grace=5.0) == [live]
    retry_until(lambda: not procs.alive(live.pid), 60)
    assert not record.exists()  # nothing it listed is left


SUBREAPER_CHILD = """
import os, subprocess, sys, time
from swarm.runtime import procs
assert not procs.is_subreaper()
assert procs.become_subreaper() and procs.is_subreaper()
watch = procs.AgentProcesses(record=None, adopt=True)
# The 'agent' starts a grandchild in its own session with no environment, then exits: an orphan.
agent = subprocess.Popen(["sh", "-c", "env -i setsid sleep 300 & echo $!"], stdout=subprocess.PIPE)
watch.attach(agent.pid)
orphan = int(agent.stdout.readline())
agent.wait()
assert orphan in procs.child_pids(os.getpid()), "the orphan came back to the subreaper"
assert orphan in [i.pid for i in watch.poll()]
assert watch.stop(grace=5.0) == []
assert not procs.alive(orphan)
print("ok", orphan)
"""


def test_a_subreaper_gets_the_agents_orphans_and_stops_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SUBREAPER_CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
