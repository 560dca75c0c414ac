"""The one error boundary: one line on stderr, the right exit code, no traceback unless SWARM_DEBUG."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.cli import main as cli_main
from swarm.errors import BadInput, LeaseLost


def _fail_with(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_usage_error_exits_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.run(["queue", "claim", "--no-such-flag"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_missing_required_option_exits_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.run(["queue", "claim"]) == 2
    assert "--agent-id" in capsys.readouterr().err


def test_help_exits_0(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.run(["--help"]) == 0
    assert "queue" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("swarm ")


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (BadInput("bad thing", hint="do this"), 2, "swarm: bad thing; do this\n"),
        (LeaseLost("S1", "the task is already done"), 1, "lease lost on task S1"),
        (RuntimeError("kaboom"), 1, "internal error: RuntimeError: kaboom"),
    ],
    ids=["bad-input", "lease-lost", "unexpected"],
)
def test_errors_become_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception, code: int, text: str
) -> None:
    monkeypatch.setattr(cli_main, "build_app", lambda _only=None: lambda **_: _fail_with(exc))
    monkeypatch.delenv("SWARM_DEBUG", raising=False)
    assert cli_main.run(["x"]) == code
    err = capsys.readouterr().err
    assert text in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_debug_shows_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_main, "build_app", lambda _only=None: lambda **_: _fail_with(BadInput("bad thing")))
    monkeypatch.setenv("SWARM_DEBUG", "1")
    assert cli_main.run(["x"]) == 2
    assert "Traceback" in capsys.readouterr().err
