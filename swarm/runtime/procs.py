"""Processes of a swarm: liveness, trees, process groups, stopping, usage. The only module importing psutil.

Stopping is by pid and by process group, never by name: swarm signals only what it started, what carries
its ``SWARM_ID`` (docs/contract.md §6), and what a worker saw below itself and recorded (the end of this module).
psutil's ``Process`` objects remember each process's start time, so a pid the kernel has reused for an
unrelated process is never signalled.

Zombies count as gone: an exited process whose parent has not reaped it yet holds no resources and
cannot be stopped again. That matters in containers whose PID 1 never reaps orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# -- an agent's processes, however they detach ------------------------------------------------------------
#
# An agent may leave processes behind that are neither in its process group nor carry SWARM_ID: `setsid cmd &`
# (own session), `nohup cmd &`, `env -i setsid cmd &` (no environment at all), a daemon that double-forks.
# Three things find them:
#  - the worker is a child subreaper (Linux): an orphan below it is re-parented to the worker instead of init,
#    so it stays a descendant of the worker whatever its session, group or environment;
#  - while an agent runs, its worker walks that tree and records every process it sees, by pid and start
#    time, in ``.swarm/run/<agent>.pids``: when the worker itself is SIGKILLed its orphans go to init, and
#    teardown (or the agent's next worker) still finds them from the record;
#  - teardown also walks the tree of every live worker before stopping it.

#: linux/prctl.h
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@dataclass(frozen=True, order=True)
class ProcId:
    """A process by pid and start time (psutil's ``create_time``): a reused pid names another process."""

    pid: int
    started: float


def _prctl() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): orphans among its descendants
    are re-parented to it rather than to init. Whether it worked; False on other systems.

    Only a process that owns all of its descendants may do this (a worker, not a test runner running
    workers in threads): every process re-parented to it becomes its to reap."""
    prctl = _prctl()
    if prctl is None:
        return False
    if prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        logger.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def is_subreaper() -> bool:
    """Whether this process is a child subreaper (see :func:`become_subreaper`)."""
    prctl = _prctl()
    if prctl is None:
        return False
    flag = ctypes.c_int(0)
    if prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
        return False
    return flag.value != 0


def _started(pid: int) -> float | None:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (*_GONE, psutil.AccessDenied):
        return None


def identify(pid: int) -> ProcId | None:
    """``pid`` with its start time, or None when it is gone (or a zombie)."""
    started = _started(pid)
    return None if started is None else ProcId(pid, started)


@dataclass(frozen=True)
class Ancestor:
    """A process of the caller's lineage: itself, its parent, and so on up to init."""

    id: ProcId
    name: str
    #: The ``SWARM_*`` variables of its environment (empty when it cleared them or cannot be read).
    swarm_env: dict[str, str]


def lineage(pid: int | None = None) -> list[Ancestor]:
    """``pid`` (default: this process) and each of its ancestors, nearest first.

    A process that detaches (``setsid``, ``nohup``, a double fork) keeps an ancestor it cannot shed while that
    ancestor lives: a double fork's orphan is re-parented to the nearest subreaper (a worker is one,
    :func:`become_subreaper`), and ``setsid`` or ``env -i`` change the session and the environment of the
    process itself, never those of its ancestors."""
    found: list[Ancestor] = []
    proc = _process(os.getpid() if pid is None else pid)
    while proc is not None and proc.pid > 0:
        try:
            started, name = proc.create_time(), proc.name()
        except _GONE:
            break
        try:
            env = {k: v for k, v in proc.environ().items() if k.startswith("SWARM_")}
        except (*_GONE, psutil.AccessDenied):
            env = {}
        found.append(Ancestor(ProcId(proc.pid, started), name, env))
        try:
            proc = proc.parent()
        except _GONE:
            break
    return found


def _proc_children_files() -> bool:
    # /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN; without it, psutil scans the process table.
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


_HAS_CHILDREN_FILES = sys.platform.startswith("linux") and _proc_children_files()


def child_pids(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (zombies included); ``[]`` if it is gone.

    On Linux this reads ``/proc/<pid>/task/*/children``, a few small files, instead of the whole process
    table: a worker asks several times a second while its agent runs."""
    if not _HAS_CHILDREN_FILES:
        proc = _process(pid)
        if proc is None:
            return []
        try:
            return [child.pid for child in proc.children()]
        except (*_GONE, psutil.AccessDenied):
            return []
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found.extend(int(word) for word in handle.read().split())
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return found


def tree(pid: int) -> list[ProcId]:
    """Every live descendant of ``pid`` (not ``pid`` itself), with start times."""
    found: list[ProcId] = []
    seen: set[int] = set()
    stack = child_pids(pid)
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        ident = identify(child)
        if ident is not None:
            found.append(ident)
        stack.extend(child_pids(child))  # a zombie has no children left, so this is empty for it
    return found


def still_running(ids: Iterable[ProcId]) -> list[ProcId]:
    """The ones of ``ids`` that are alive and still the same process (same start time)."""
    return sorted(i for i in set(ids) if _started(i.pid) == i.started)


def _handles(ids: Iterable[ProcId]) -> list[psutil.Process]:
    handles: list[psutil.Process] = []
    for ident in set(ids):
        proc = _process(ident.pid)
        if proc is None or not _safe_pid(proc.pid):
            continue
        try:
            if proc.create_time() != ident.started:
                continue  # the pid was reused: not ours
        except (*_GONE, psutil.AccessDenied):
            continue
        handles.append(proc)
    return handles


def stop_identified(ids: Iterable[ProcId], *, grace: float = 5.0) -> list[int]:
    """Like :func:`stop_processes`, for processes known by pid and start time: those whose pid now names
    another process are left alone. Their descendants are stopped too. Returns the pids still alive."""
    roots = _handles(ids)
    if not roots:
        return []
    targets = _collect(roots, set())
    logger.debug("stopping recorded pids %s", sorted(targets))
    _send(targets.values(), signal.SIGTERM)
    survivors = _wait(targets.values(), grace)
    late = _collect(survivors, set())
    if late:
        logger.info("pids %s outlived SIGTERM for %ss; sending SIGKILL", sorted(late), grace)
        _send(late.values(), signal.SIGKILL)
    left = _wait(late.values(), _KILL_WAIT)
    if left:
        logger.warning("pids %s survived SIGKILL", sorted(p.pid for p in left))
    return sorted(p.pid for p in left)


def read_records(path: Path) -> list[ProcId]:
    """The processes recorded in ``path`` (one ``pid start-time`` a line); ``[]`` without the file.

    Lines that do not parse (a file cut short by a crash) are skipped."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the process record %s: %s", path, exc)
        return []
    found: list[ProcId] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 2:
            continue
        with contextlib.suppress(ValueError):
            found.append(ProcId(int(words[0]), float(words[1])))
    return found


def write_records(path: Path, ids: Iterable[ProcId]) -> None:
    """Replace the record at ``path`` with ``ids`` (atomically; an empty set removes the file)."""
    wanted = sorted(set(ids))
    if not wanted:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # repr() of a float round-trips exactly: the start time read back compares equal to psutil's.
    tmp.write_text("".join(f"{i.pid} {i.started!r}\n" for i in wanted), encoding="ascii")
    os.replace(tmp, path)


def _reap(pid: int) -> None:
    # An orphan re-parented to a subreaper is its child: once it exits, only waitpid removes the zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class AgentProcesses:
    """Every process of one agent run, found however it detached, and stopped when the run ends.

    ``root`` (see :meth:`attach`) is the agent's own process, a child of this one. With ``adopt`` (this
    process is a subreaper that runs nothing else while the agent runs), every new child of this process
    other than ``root`` is an orphan of the agent's and belongs to it. Everything seen is kept in ``record`` (see
    :func:`read_records`), so that it can be found after this process dies.
    """

    def __init__(self, *, record: Path | None, adopt: bool) -> None:
        """Made BEFORE the agent starts: children this process has now are not the agent's; an orphan of an
        agent that exits at once may be re-parented here before the agent's Popen even returns."""
        self.record = record
        self.adopt = adopt
        self.me = os.getpid()
        self.root = 0
        self._before = {i for pid in child_pids(self.me) if (i := identify(pid)) is not None}
        self.seen: set[ProcId] = set()

    def attach(self, root: int) -> None:
        """The agent's own process has started as ``root``."""
        self.root = root
        self.poll()

    def _roots(self) -> list[int]:
        roots = [self.root] if self.root else []
        if self.adopt:
            for pid in child_pids(self.me):
                if pid == self.root:
                    continue
                ident = identify(pid)
                if ident is None:
                    if not any(i.pid == pid for i in self._before):
                        _reap(pid)  # an orphan of the agent's that has exited
                    continue
                if ident not in self._before:
                    roots.append(pid)
        return roots

    def poll(self) -> list[ProcId]:
        """Look for the agent's processes now; record new ones. Returns the live ones."""
        live: set[ProcId] = set()
        for pid in self._roots():
            root = identify(pid)
            if root is not None:
                live.add(root)
            live.update(tree(pid))
        new = live - self.seen
        if new:
            self.seen |= new
            # Dead ones are dropped from the record whenever it is written, so it does not grow with every
            # short-lived command the agent ran.
            self.seen = set(still_running(self.seen))
            self._write()
        return sorted(live)

    def _write(self) -> None:
        if self.record is None:
            return
        try:
            write_records(self.record, self.seen)
        except OSError as exc:
            logger.warning("cannot record the agent's processes in %s: %s", self.record, exc)

    def stop(self, *, grace: float) -> list[int]:
        """Stop every process of the run that is still alive (SIGTERM, ``grace``, SIGKILL), until none is
        left; returns the pids that survived even SIGKILL. The record then keeps only those."""
        left: list[int] = []
        for _round in range(3):
            # A process started during the grace period of the previous round is found in the next one.
            targets = set(self.poll()) | set(still_running(self.seen))
            if not targets:
                break
            left = stop_identified(targets, grace=grace)
            for ident in targets:
                if ident.pid != self.root:  # the agent itself is reaped by its Popen
                    _reap(ident.pid)
            if left:
                break  # they outlived SIGKILL (uninterruptible sleep): another round would not help
        self.seen = set(still_running(self.seen))
        self._write()
        return left


def stop_recorded(record: Path, *, grace: float = 5.0) -> list[ProcId]:
    """Stop the processes recorded in ``record`` that still run (an agent's leftovers whose worker died
    before it could stop them); the record then keeps only what survived. Returns the ones it stopped."""
    alive = still_running(read_records(record))
    if alive:
        stop_identified(alive, grace=grace)
    write_records(record, still_running(alive))
    return alive


def descends_from(pid: int, ancestor: ProcId) -> bool:
    """Whether process ``pid`` is a descendant of ``ancestor`` (pid and start time, so a reused pid does not
    count), not ``ancestor`` itself. An agent's channel (``swarm.runtime.channel``) serves only the processes
    below its worker: a worker is a subreaper, so an agent's detached processes stay below it."""
    proc = _process(pid)
    if proc is None:
        return False
    try:
        proc = proc.parent()
        while proc is not None and proc.pid > 0:
            if proc.pid == ancestor.pid:
                return proc.create_time() == ancestor.started
            proc = proc.parent()
    except _GONE:
        return False
    return False
