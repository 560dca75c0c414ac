"""Test helpers: wait on conditions with a deadline, run the real CLI, write specs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]


def retry_until(fn: Callable[[], T | None], seconds: float = 10.0, interval: float = 0.02) -> T:
    """Call ``fn`` until it returns something truthy; fail the test at the deadline (never a bare sleep)."""
    deadline = time.monotonic() + seconds
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition {getattr(fn, '__name__', fn)!r} not met within {seconds}s")
        time.sleep(interval)


def swarm_cli(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``swarm`` command in a subprocess (acceptance tests)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        check=False,
    )


def write_spec(
    folder: Path,
    spec_id: str,
    epic: str = "E1",
    *,
    title: str | None = None,
    depends_on: list[str] | None = None,
    body: str = "Do the thing.",
    extra: str = "",
    name: str | None = None,
) -> Path:
    """Write one spec file in docs/contract.md §2 format."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["---", f"id: {spec_id}", f"epic: {epic}", f"title: {title or 'Task ' + spec_id}"]
    if depends_on:
        lines.append(f"depends_on: [{', '.join(depends_on)}]")
    if extra:
        lines.append(extra.rstrip("\n"))
    lines += ["---", body, ""]
    path = folder / (name or f"{spec_id}.md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
