"""Processes of a swarm: liveness, trees, process groups, stopping, usage. The only module importing psutil.

Stopping is by pid and by process group, never by name: swarm signals only what it started or what
carries its ``SWARM_ID`` (DESIGN 6). psutil's ``Process`` objects remember each process's start time, so
a pid the kernel has reused for an unrelated process is never signalled.

Zombies count as gone: an exited process whose parent has not reaped it yet holds no resources and
cannot be stopped again. That matters in containers whose PID 1 never reaps orphans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import psutil

logger = logging.getLogger(__name__)

# psutil.wait_procs is called in slices so that zombies (which wait() cannot see go away unless they are
# our children) are dropped from the wait as soon as they appear, instead of holding it to the deadline.
_WAIT_SLICE = 0.1
# After SIGKILL the kernel needs a moment to tear processes down; SIGKILL cannot be ignored, so this
# only bounds a wait on processes stuck in uninterruptible sleep.
_KILL_WAIT = 5.0

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


@dataclass(frozen=True)
class ProcUsage:
    """Resources held by a process and its descendants."""

    rss_bytes: int
    cpu_seconds: float
    num_children: int


def _process(pid: int) -> psutil.Process | None:
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except _GONE:
        return None


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    proc = _process(pid)
    return proc is not None and _is_alive(proc)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except _GONE:
        return []
    except psutil.AccessDenied:
        logger.debug("cannot list the children of pid %s: access denied", proc.pid)
        return []


def descendants(pid: int) -> list[int]:
    """Pids of every live process below ``pid`` (children, their children, ...); ``[]`` if it is gone."""
    proc = _process(pid)
    if proc is None:
        return []
    return [child.pid for child in _children(proc) if _is_alive(child)]


def process_group(pid: int) -> int | None:
    """The process group id of ``pid``, or ``None`` if there is no such process."""
    if pid <= 0:
        return None
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _safe_group(pgid: int) -> bool:
    # killpg(0) and killpg(1) mean "my own group" and "init's group"; our own group would kill swarm.
    return pgid > 1 and pgid != os.getpgrp()


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; whether it was sent. Refuses groups <= 1 and our own."""
    if not _safe_group(pgid):
        logger.warning("refusing to signal process group %s (own group or system group)", pgid)
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("no permission to signal process group %s", pgid)
        return False
    return True


def _safe_pid(pid: int) -> bool:
    return pid > 1 and pid != os.getpid()


def _group_members(groups: set[int]) -> list[psutil.Process]:
    """Live processes in any of ``groups``: one pass over the process table."""
    if not groups:
        return []
    members: list[psutil.Process] = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) in groups and _safe_pid(proc.pid):
                members.append(proc)
    return members


def _collect(roots: Iterable[psutil.Process], groups: set[int]) -> dict[int, psutil.Process]:
    """The roots, all their descendants and every member of ``groups``, live ones only, by pid."""
    found: dict[int, psutil.Process] = {}
    for root in roots:
        for proc in (root, *_children(root)):
            if _safe_pid(proc.pid) and _is_alive(proc):
                found.setdefault(proc.pid, proc)
    for proc in _group_members(groups):
        if _is_alive(proc):
            found.setdefault(proc.pid, proc)
    return found


def _send(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the pid still names the same process first
        except _GONE:
            pass
        except psutil.AccessDenied:
            logger.warning("no permission to send signal %s to pid %s", sig, proc.pid)


def _wait(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for ``procs`` to end; the ones still alive (zombies count as ended)."""
    pending = [p for p in procs if _is_alive(p)]
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        _gone, still = psutil.wait_procs(pending, timeout=min(_WAIT_SLICE, remaining))
        pending = [p for p in still if _is_alive(p)]
    return pending


def stop_processes(pids: Iterable[int], *, grace: float = 5.0, groups: Iterable[int] = ()) -> list[int]:
    """Stop ``pids``, their descendants and the process ``groups``: SIGTERM, ``grace`` seconds, SIGKILL.

    Returns the pids still alive at the end, which should be none. The tree is read before SIGTERM, because
    children of a process that dies are re-parented and can no longer be found from it, and again before
    SIGKILL, to catch processes started during the grace period.
    """
    roots = [p for p in (_process(pid) for pid in pids) if p is not None and _safe_pid(p.pid)]
    group_ids = {g for g in groups if _safe_group(g)}
    for refused in set(groups) - group_ids:
        logger.warning("refusing to stop process group %s (own group or system group)", refused)

    targets = _collect(roots, group_ids)
    if not targets and not group_ids:
        return []
    logger.debug("stopping pids %s and groups %s", sorted(targets), sorted(group_ids))
    _send(targets.values(), signal.SIGTERM)
    for pgid in group_ids:
        signal_group(pgid, signal.SIGTERM)
    survivors = _wait(targets.values(), grace)

    # Whatever survived, plus anything spawned meanwhile below a survivor or in one of the groups.
    late = _collect([*survivors, *(r for r in roots if _is_alive(r))], group_ids)
    if late:
        logger.info("pids %s outlived SIGTERM for %ss; sending SIGKILL", sorted(late), grace)
        _send(late.values(), signal.SIGKILL)
    for pgid in group_ids:
        signal_group(pgid, signal.SIGKILL)
    left = _wait(late.values(), _KILL_WAIT)
    if left:
        logger.warning("pids %s survived SIGKILL", sorted(p.pid for p in left))
    return sorted(p.pid for p in left)


def processes_with_env(name: str, value: str, *, among: tuple[str, Collection[str]] | None = None) -> list[int]:
    """Pids of this user's processes whose environment holds ``name=value`` (not counting our own).

    ``among=("SWARM_AGENT_ID", {"agent-1"})`` also requires that variable to hold one of those values (so a
    host tears down only its own agents when another clone on the same machine works the same swarm).
    Processes whose environment cannot be read (other users, zombies, kernel threads) are skipped.
    """
    uid = os.getuid()
    me = os.getpid()
    found: list[int] = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.uids().real != uid:
                continue
            environ = proc.environ()
            if environ.get(name) != value or not _is_alive(proc):
                continue
            if among is not None and environ.get(among[0]) not in among[1]:
                continue
            found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        except OSError as err:
            # /proc/<pid>/environ can fail oddly (e.g. ESRCH mid-exit); the process is leaving anyway.
            logger.debug("cannot read the environment of pid %s: %s", proc.pid, err)
            continue
    return sorted(found)


def _tree(pid: int) -> list[psutil.Process]:
    proc = _process(pid)
    if proc is None or not _is_alive(proc):
        return []
    return [proc, *(c for c in _children(proc) if _is_alive(c))]


def usage(pid: int) -> ProcUsage:
    """Memory (RSS) and CPU time of ``pid`` and its descendants; all zero if the process is gone.

    CPU time includes the children the processes have already reaped. RSS double counts shared pages,
    which is fine for spotting a runaway agent.
    """
    tree = _tree(pid)
    rss = 0
    cpu = 0.0
    for proc in tree:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
        except (*_GONE, psutil.AccessDenied):
            continue
    return ProcUsage(rss_bytes=rss, cpu_seconds=cpu, num_children=max(len(tree) - 1, 0))


def tree_cpu_seconds(roots: Collection[int]) -> dict[int, float]:
    """CPU time (user + system, reaped children included) of each root's process tree, from ONE pass over the
    process table: the monitor asks for every agent at once, and a scan per agent would cost agents x processes
    reads of /proc. A root that is gone maps to 0.0."""
    wanted = set(roots)
    if not wanted:
        return {}
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for proc in psutil.process_iter(["ppid", "cpu_times"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        cpu[proc.pid] = times.user + times.system + times.children_user + times.children_system
        children.setdefault(info.get("ppid") or 0, []).append(proc.pid)
    totals: dict[int, float] = {}
    for root in wanted:
        total, stack, seen = 0.0, [root], set()
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in cpu:
                continue
            seen.add(pid)
            total += cpu[pid]
            stack.extend(children.get(pid, ()))
        totals[root] = total
    return totals


def cpu_percent(pid: int, interval: float) -> float:
    """CPU use of ``pid`` and its descendants over the next ``interval`` seconds, in percent of one CPU.

    Blocks for ``interval``. Processes that end during the interval are left out; 0.0 if ``pid`` is gone.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    tree = _tree(pid)
    if not tree:
        return 0.0
    for proc in tree:
        with contextlib.suppress(*_GONE, psutil.AccessDenied):
            proc.cpu_percent(None)  # primes the counter; the next call measures from here
    time.sleep(interval)  # the measurement window itself, not a wait for a condition
    total = 0.0
    for proc in tree:
        with contextlib.suppress(*_GONE, psutil.AccessDenied):
            total += proc.cpu_percent(None)
    return total
