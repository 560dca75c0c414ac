"""``swarm doctor``: the JSON shape and the exit code when a required tool is missing."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from swarm.agents import templates_dir
from swarm.cli.main import run


@pytest.fixture
def outside_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder so the developer's swarm.toml is not read."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding symlinks to only these tools (the ones found on the real PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        if real is not None:
            (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run(["doctor", *args])
    return code, capsys.readouterr().out


def test_json_shape(outside_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _doctor(capsys, "--json", "--agent", "command")
    data = json.loads(out)
    assert set(data) == {"checks", "ok"}
    assert isinstance(data["ok"], bool)
    assert code == (0 if data["ok"] else 1)
    names = [c["name"] for c in data["checks"]]
    for expected in ("python", "git", "tmux", "sqlite", "agent claude", "agent command", "postgresql"):
        assert expected in names
    for check in data["checks"]:
        assert {"name", "status", "version", "detail"} <= set(check)
        assert check["status"] in ("ok", "missing", "warn", "fail")
    python = next(c for c in data["checks"] if c["name"] == "python")
    assert python["status"] == "ok"
    assert python["version"].startswith("3.")


def test_missing_tmux_exits_1(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, "git"))
    code, out = _doctor(capsys, "--json", "--agent", "command")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    tmux = next(c for c in data["checks"] if c["name"] == "tmux")
    assert tmux["status"] == "missing"


def test_missing_tmux_text_says_so(
    outside_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_which = shutil.which

    def which(name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        return None if name == "tmux" else real_which(name, mode, path)

    monkeypatch.setattr(shutil, "which", which)
    code, out = _doctor(capsys, "--agent", "command")
    assert code == 1
    assert "tmux" in out
    assert "missing" in out
    assert "not ready: tmux" in out


def test_missing_agent_cli_fails_only_for_the_configured_kind(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, "git", "tmux"))
    code, out = _doctor(capsys, "--json", "--agent", "command")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["agent aider"]["status"] == "missing"
    assert checks["agent aider"]["required"] is False
    assert "pip install aider-chat" in checks["agent aider"]["detail"]
    assert code == 0, out

    code, out = _doctor(capsys, "--json", "--agent", "aider")
    assert code == 1
    assert json.loads(out)["ok"] is False


def test_configured_kind_comes_from_swarm_toml(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (outside_repo / "swarm.toml").write_text('[agent]\nkind = "codex"\n', encoding="utf-8")
    monkeypatch.setenv("PATH", _path_with(tmp_path, "git", "tmux"))
    code, out = _doctor(capsys, "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["agent codex"]["required"] is True
    assert checks["agent claude"]["required"] is False
    assert code == 1


def test_unknown_agent_is_bad_input(outside_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["doctor", "--agent", "claud"])
    assert code == 2
    assert "did you mean 'claude'" in capsys.readouterr().err


def test_claude_root_warning(
    outside_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    _, out = _doctor(capsys, "--json", "--agent", "command")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["claude as root"]["status"] == "warn"
    assert "IS_SANDBOX=1" in checks["claude as root"]["detail"]

    monkeypatch.setenv("IS_SANDBOX", "1")
    _, out = _doctor(capsys, "--json", "--agent", "command")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["claude as root"]["status"] == "ok"


#: The options each built-in template passes its CLI, as that CLI's --help lists them.
CLAUDE_HELP = (
    "  -p, --print\n  --model <model>\n  --permission-mode <mode>\n  --output-format <format>\n  --verbose\n"
    "  --mcp-config <configs...>\n"  # the worker adds it
)
CODEX_EXEC_HELP = (
    "  -c, --config <key=value>\n  --json\n  -m, --model <MODEL>\n  -s, --sandbox <MODE>\n  --skip-git-repo-check\n"
)


def _fake_cli(bin_dir: Path, name: str, version: str, helps: dict[str, str]) -> None:
    """A stand-in for an agent CLI: ``--version`` prints ``version``; ``<args> --help`` prints ``helps[args]``."""
    # printf is a shell builtin: the PATH of these tests holds only git, tmux and the fakes.
    cases = "".join(f"  '{args}') printf '%s' {shlex.quote(text)} ;;\n" for args, text in helps.items())
    script = f'#!/bin/sh\ncase "$*" in\n  --version) echo "{version}" ;;\n{cases}  *) exit 3 ;;\nesac\n'
    (bin_dir / name).write_text(script, encoding="utf-8")
    (bin_dir / name).chmod(0o755)


def test_a_flag_the_installed_cli_does_not_accept_fails_with_the_line_to_fix(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = Path(_path_with(tmp_path, "git", "tmux"))
    # This claude knows every option of the template but --disallowedTools.
    _fake_cli(bin_dir, "claude", "2.0.1 (Claude Code)", {"--help": CLAUDE_HELP})
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out = _doctor(capsys, "--json", "--agent", "claude")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    flags = checks["flags claude"]
    assert (flags["status"], flags["required"], flags["version"]) == ("fail", True, "2.0.1 (Claude Code)")
    template = str(templates_dir() / "agents" / "claude.toml")
    assert flags["detail"] == (
        f"{template} passes --disallowedTools, which claude 2.0.1 (Claude Code) does not accept (claude --help); "
        "remove it from the template's argv or install the version the template names"
    )
    assert code == 1
    # For a kind that is not the configured one, the same finding informs and does not fail the doctor.
    code, out = _doctor(capsys, "--json", "--agent", "command")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert (checks["flags claude"]["status"], checks["flags claude"]["required"]) == ("fail", False)
    assert code == 0, out
    # The text report names it too.
    _, text = _doctor(capsys, "--agent", "claude")
    assert "--disallowedTools" in text
    assert "not ready: flags claude" in text


def test_every_flag_accepted_passes_and_a_subcommands_help_is_read(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = Path(_path_with(tmp_path, "git", "tmux"))
    _fake_cli(bin_dir, "claude", "2.1.197 (Claude Code)", {"--help": CLAUDE_HELP + "  --disallowedTools <tools...>\n"})
    # codex's top-level --help does not list exec's options: only `codex exec --help` does.
    _fake_cli(bin_dir, "codex", "codex-cli 0.171.0", {"--help": "Commands:\n  exec\n", "exec --help": CODEX_EXEC_HELP})
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out = _doctor(capsys, "--json", "--agent", "codex")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["flags claude"]["status"] == "ok", checks["flags claude"]
    assert checks["flags codex"]["status"] == "ok", checks["flags codex"]
    assert "7 options" in checks["flags claude"]["detail"]
    assert "codex exec --help" in checks["flags codex"]["detail"]
    assert "flags aider" not in checks  # not installed: its "agent aider" line says so
    assert code == 0, out


def test_a_cli_whose_help_cannot_be_read_is_a_warning(
    outside_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = Path(_path_with(tmp_path, "git", "tmux"))
    _fake_cli(bin_dir, "claude", "2.1.197 (Claude Code)", {})  # --help exits 3 and prints nothing
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out = _doctor(capsys, "--json", "--agent", "claude")
    flags = {c["name"]: c for c in json.loads(out)["checks"]}["flags claude"]
    assert flags["status"] == "warn"
    assert flags["detail"] == "cannot read claude --help (no output, exit 3); the template's options are not checked"
    assert code == 0, out
