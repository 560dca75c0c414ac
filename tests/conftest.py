"""Shared fixtures. Like procrastinate's conftest, drop every SWARM_* variable at import so that the
developer's own environment can never leak into a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _name in [n for n in os.environ if n.startswith("SWARM_")]:
    del os.environ[_name]


class FakeClock:
    """A clock that moves only when told: lease expiry and backoff without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME in a temp dir, so no test reads or writes the developer's dotfiles."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home
