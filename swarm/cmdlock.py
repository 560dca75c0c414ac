"""One command at a time per repository: ``swarm launch``, ``teardown`` and ``repair`` take ``.swarm/command.lock``.

Two of them running at once interleave their writes to worktrees, tmux and the database (a teardown between a
launch's worktrees and its sessions left agents running after "down"). The lock is ``fcntl.flock`` on an open
file descriptor: the kernel releases it when its holder exits, however it exits (SIGKILL included), so a crash
never leaves a stale lock behind. The holder writes its pid and command into the file so that a waiter can say
whom it waits for. The file itself is never deleted: unlinking a lock file while another process waits on its
descriptor would let a third process lock a new file of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from swarm.errors import SwarmError

LOCK_NAME = "command.lock"
#: How often a waiter tries again.
_POLL_SECONDS = 0.1


def lock_path(repo: Path) -> Path:
    """The lock file of a repository's main checkout."""
    return repo / ".swarm" / LOCK_NAME


def _holder(fd: int) -> tuple[str, int | None]:
    """The command and pid the current holder wrote, as far as they can be read."""
    with contextlib.suppress(OSError, ValueError):
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        data = json.loads(raw)
        pid = data.get("pid")
        return str(data.get("command") or "another swarm command"), pid if isinstance(pid, int) else None
    return "another swarm command", None


def _describe(command: str, pid: int | None) -> str:
    return f"`{command}`" + (f" (pid {pid})" if pid else "")


@contextlib.contextmanager
def command_lock(
    repo: Path,
    command: str,
    *,
    timeout: float,
    say: Callable[[str], None],
    create: bool = True,
) -> Iterator[None]:
    """Hold the repository's command lock for the ``with`` block; wait up to ``timeout`` seconds for it.

    ``say`` gets one line when the lock is taken and this command has to wait. Without ``create`` and no
    ``.swarm/`` folder, nothing is locked: no launch has begun writing (it takes the lock first), so there is
    nothing to wait for. :class:`SwarmError` (exit 1) naming the holder when the wait runs out.
    """
    path = lock_path(repo)
    if not create and not path.parent.is_dir():
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SwarmError(
            f"cannot open the command lock {path}: {exc.strerror}",
            hint="check that .swarm/ is writable by you",
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                held_by, pid = _holder(fd)
                if time.monotonic() >= deadline:
                    raise SwarmError(
                        f"{_describe(held_by, pid)} of this repository still runs after {timeout:.0f}s, "
                        f"so `{command}` did not start",
                        hint="wait for it to finish and run this again, or raise swarm.lock_timeout_seconds",
                    ) from None
                if not told:
                    say(f"waiting for {_describe(held_by, pid)} to finish (up to {timeout:.0f}s) ...")
                    told = True
                time.sleep(_POLL_SECONDS)
        # Ours now: say who holds it for the next waiter.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command}).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock
