"""The demo's hints name the swarm command the way the user can type it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from swarm.demo import swarm_command

BIN = Path(sys.executable).parent


def test_an_installed_swarm_on_path_is_typed_bare(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}/usr/bin:/bin")
    assert swarm_command() == "swarm"


def test_a_swarm_that_is_not_on_path_is_typed_by_its_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    assert swarm_command() == str(BIN / "swarm")
    monkeypatch.chdir(BIN.parent.parent)  # in the checkout too: the hints are run from the demo's repository
    assert swarm_command() == str(BIN / "swarm")
