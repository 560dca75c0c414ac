"""swarm.runtime.tmux against a real tmux server on a socket of its own per test.

Each test's server is stopped at the end with ``stop_private_server`` (``tmux -L <its socket> kill-server``);
nothing here touches the user's default server or any session it did not create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import uuid4

import pytest
from libtmux.common import tmux_cmd

from swarm.errors import BadInput
from swarm.runtime import procs
from swarm.runtime.tmux import Tmux, TmuxError, stop_private_server, tmux_available
from tests.helpers import retry_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

TAG = "swarm-test-tag"
SLEEP = ["sleep", "60"]


@pytest.fixture
def socket_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh tmux socket name; its server (and only it) is killed after the test.

    TMUX_TMPDIR points at a private short directory (socket paths are limited to ~100 bytes), so the
    socket file tmux leaves behind goes away with it.
    """
    socket_dir = tempfile.mkdtemp(prefix="swt-")
    monkeypatch.setenv("TMUX_TMPDIR", socket_dir)
    monkeypatch.delenv("TMUX", raising=False)
    name = f"swarm-test-{uuid4().hex[:8]}"
    yield name
    stop_private_server(name)  # TMUX_TMPDIR still points at socket_dir: monkeypatch undoes it after this
    shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def tmux(socket_name: str) -> Tmux:
    """A Tmux on the test's own socket."""
    return Tmux(socket_name)


def _raw(socket_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Plain tmux on the test socket, to check state independently of the code under test."""
    return subprocess.run(["tmux", "-L", socket_name, *args], capture_output=True, text=True, check=False, timeout=10)


def _wait_for_file(path: Path, seconds: float = 10.0) -> str:
    """The file's text once a line has been fully written to it."""

    def ready() -> str | None:
        if path.exists():
            text = path.read_text()
            if text.endswith("\n"):
                return text
        return None

    return retry_until(ready, seconds)


def test_tmux_available_returns_version() -> None:
    version = tmux_available()
    assert version
    assert version[0].isdigit()


def test_tmux_available_without_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BadInput, match="tmux is not installed"):
        tmux_available()


def test_new_session_runs_command_with_env_in_cwd(tmux: Tmux, tmp_path: Path) -> None:
    work = tmp_path / "work dir #1"  # a space and a '#' (tmux expands -c as a format)
    work.mkdir()
    out = tmp_path / "out.txt"
    script = 'printf "%s|%s|%s|%s\\n" "$SWARM_X" "$SWARM_SEMI" "$PWD" "$1" > "$0"; exec sleep 60'
    pid = tmux.new_session(
        "swarm-repo-agent-1",
        ["sh", "-c", script, str(out), "arg with 'quotes' and #{fmt}"],
        cwd=work,
        env={"SWARM_X": "hello world", "SWARM_SEMI": "ends;"},
        tag=TAG,
    )
    text = _wait_for_file(out)
    assert text == f"hello world|ends;|{work}|arg with 'quotes' and #{{fmt}}\n"
    assert procs.alive(pid)
    assert tmux.pane_pid("swarm-repo-agent-1") == pid


def test_env_layers_over_server_environment(tmux: Tmux, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server starts with our environment. A variable given with the same value reaches the pane
    # through the server; one with a different value must override the server's.
    monkeypatch.setenv("SWARM_SAME", "same-value")
    monkeypatch.setenv("SWARM_CHANGED", "server-value")
    tmux.new_session("first", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    out = tmp_path / "env.txt"
    tmux.new_session(
        "second",
        ["sh", "-c", 'echo "$SWARM_SAME $SWARM_CHANGED $TERM" > env.txt; exec sleep 60'],
        cwd=tmp_path,
        env={"SWARM_SAME": "same-value", "SWARM_CHANGED": "new-value", "TERM": "dumb-from-caller"},
        tag=TAG,
    )
    same, changed, term = _wait_for_file(out).split()
    assert (same, changed) == ("same-value", "new-value")
    assert term != "dumb-from-caller"  # TERM is tmux's, not the launching terminal's


def test_large_inherited_environment_fits(tmux: Tmux, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 24 KB of environment is more than tmux accepts in one command; only what differs is sent.
    for i in range(48):
        monkeypatch.setenv(f"SWARM_BULK_{i}", "x" * 500)
    tmux.new_session("first", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    out = tmp_path / "bulk.txt"
    tmux.new_session(
        "second",
        ["sh", "-c", 'echo "${#SWARM_BULK_47} $SWARM_NEW" > bulk.txt; exec sleep 60'],
        cwd=tmp_path,
        env={**os.environ, "SWARM_NEW": "1"},
        tag=TAG,
    )
    assert _wait_for_file(out) == "500 1\n"


def test_too_large_environment_is_a_clear_error(tmux: Tmux, tmp_path: Path) -> None:
    with pytest.raises(TmuxError, match="too large"):
        tmux.new_session("big", SLEEP, cwd=tmp_path, env={"SWARM_HUGE": "y" * 20000}, tag=TAG)
    assert not tmux.has_session("big")


def test_session_options(tmux: Tmux, socket_name: str, tmp_path: Path) -> None:
    tmux.new_session("opts", SLEEP, cwd=tmp_path, env={}, tag=TAG, width=120, height=40)
    shown = _raw(
        socket_name,
        "list-windows",
        "-t",
        "=opts",
        "-F",
        "#{history_limit} #{remain-on-exit} #{window_width}x#{window_height}",
    )
    assert shown.stdout.split("\n")[0] == "10000 off 120x40"
    assert len(shown.stdout.strip().splitlines()) == 1  # the placeholder window is gone


def test_tag_is_set_and_read(tmux: Tmux, socket_name: str, tmp_path: Path) -> None:
    tmux.new_session("tagged", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    _raw(socket_name, "new-session", "-d", "-s", "untagged", "sleep 60")
    assert tmux.session_tag("tagged") == TAG
    assert tmux.session_tag("untagged") is None
    assert tmux.session_tag("missing") is None


def test_tagged_sessions_lists_only_tagged(tmux: Tmux, socket_name: str, tmp_path: Path) -> None:
    assert tmux.tagged_sessions(TAG) == []  # no server yet
    tmux.new_session("a-1", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    tmux.new_session("a-2", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    tmux.new_session("b-1", SLEEP, cwd=tmp_path, env={}, tag="other-tag")
    _raw(socket_name, "new-session", "-d", "-s", "plain", "sleep 60")
    assert tmux.tagged_sessions(TAG) == ["a-1", "a-2"]
    assert tmux.tagged_sessions("other-tag") == ["b-1"]
    assert sorted(tmux.sessions()) == ["a-1", "a-2", "b-1", "plain"]


def test_kill_session_refuses_look_alike_and_foreign(tmux: Tmux, socket_name: str, tmp_path: Path) -> None:
    # A look-alike name that is not ours: "-1x" would prefix-match "-1" without exact targets.
    _raw(socket_name, "new-session", "-d", "-s", "swarm-repo-agent-1x", "sleep 60")
    assert tmux.kill_session("swarm-repo-agent-1", TAG) is False
    assert tmux.has_session("swarm-repo-agent-1x")

    # The look-alike even carrying our tag is not the session asked for.
    _raw(socket_name, "set-option", "-t", "=swarm-repo-agent-1x:", "@swarm_id", TAG)
    assert tmux.kill_session("swarm-repo-agent-1", TAG) is False
    assert tmux.has_session("swarm-repo-agent-1x")

    # The exact name, but another swarm's tag, or no tag at all.
    tmux.new_session("swarm-repo-agent-2", SLEEP, cwd=tmp_path, env={}, tag="another-swarm")
    _raw(socket_name, "new-session", "-d", "-s", "swarm-repo-agent-3", "sleep 60")
    assert tmux.kill_session("swarm-repo-agent-2", TAG) is False
    assert tmux.kill_session("swarm-repo-agent-3", TAG) is False
    assert tmux.has_session("swarm-repo-agent-2")
    assert tmux.has_session("swarm-repo-agent-3")


def test_kill_session_kills_own_and_tolerates_gone(tmux: Tmux, tmp_path: Path) -> None:
    pid = tmux.new_session("mine", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    tmux.new_session("keep", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    assert tmux.kill_session("mine", TAG) is True
    assert not tmux.has_session("mine")
    assert tmux.has_session("keep")
    retry_until(lambda: not procs.alive(pid), 10)
    assert tmux.kill_session("mine", TAG) is False


def test_kill_session_without_server(tmux: Tmux) -> None:
    assert tmux.kill_session("nothing", TAG) is False


def test_has_session_is_exact(tmux: Tmux, tmp_path: Path) -> None:
    tmux.new_session("abc", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    assert tmux.has_session("abc")
    assert not tmux.has_session("ab")
    assert not tmux.has_session("abcd")
    assert tmux.pane_pid("ab") is None
    assert tmux.session_tag("ab") is None


def test_has_session_without_server(tmux: Tmux) -> None:
    assert not tmux.has_session("abc")
    assert tmux.pane_pid("abc") is None


def test_capture_shows_output(tmux: Tmux, tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 60"
    tmux.new_session("cap", ["sh", "-c", script], cwd=tmp_path, env={}, tag=TAG)

    def finished() -> str | None:
        text = tmux.capture("cap")
        return text if "line-5" in text else None

    text = retry_until(finished, 10)
    assert text.splitlines()[-5:] == ["line-1", "line-2", "line-3", "line-4", "line-5"]
    assert tmux.capture("cap", lines=2).splitlines() == ["line-4", "line-5"]


def test_capture_missing_session(tmux: Tmux, tmp_path: Path) -> None:
    tmux.new_session("present", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    with pytest.raises(TmuxError, match="no tmux session 'absent'"):
        tmux.capture("absent")


def test_respawn_replaces_command(tmux: Tmux, tmp_path: Path) -> None:
    first = tmux.new_session("resp", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    out = tmp_path / "respawned.txt"
    second = tmux.respawn(
        "resp",
        ["sh", "-c", 'echo "$SWARM_R $PWD" > respawned.txt; exec sleep 60'],
        cwd=tmp_path,
        env={"SWARM_R": "again"},
    )
    assert second != first
    assert _wait_for_file(out) == f"again {tmp_path}\n"
    assert tmux.pane_pid("resp") == second
    assert procs.alive(second)
    retry_until(lambda: not procs.alive(first), 10)
    assert tmux.session_tag("resp") == TAG  # the tag belongs to the session and survives


def test_respawn_missing_session(tmux: Tmux, tmp_path: Path) -> None:
    with pytest.raises(TmuxError):
        tmux.respawn("absent", SLEEP, cwd=tmp_path, env={})


def test_pane_pid_is_alive_and_session_ends_with_command(tmux: Tmux, tmp_path: Path) -> None:
    pid = tmux.new_session("short", ["sh", "-c", "read line"], cwd=tmp_path, env={}, tag=TAG)
    assert procs.alive(pid)
    assert tmux.pane_pid("short") == pid
    os.kill(pid, 15)
    # remain-on-exit off: the session goes away with its command.
    retry_until(lambda: not tmux.has_session("short"), 10)
    assert tmux.pane_pid("short") is None


def test_duplicate_name_raises(tmux: Tmux, tmp_path: Path) -> None:
    pid = tmux.new_session("dup", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    with pytest.raises(TmuxError, match="already exists"):
        tmux.new_session("dup", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    assert tmux.pane_pid("dup") == pid  # the first one is untouched


@pytest.mark.parametrize("name", ["a.b", "a:b", "", "a b", "=a", "a/b"])
def test_invalid_names_are_bad_input(tmux: Tmux, tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInput):
        tmux.new_session(name, SLEEP, cwd=tmp_path, env={}, tag=TAG)
    with pytest.raises(BadInput):
        tmux.has_session(name)


def test_invalid_tag_command_and_cwd(tmux: Tmux, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        tmux.new_session("x", SLEEP, cwd=tmp_path, env={}, tag="has space")
    with pytest.raises(BadInput):
        tmux.new_session("x", [], cwd=tmp_path, env={}, tag=TAG)
    with pytest.raises(BadInput, match="does not exist"):
        tmux.new_session("x", SLEEP, cwd=tmp_path / "missing", env={}, tag=TAG)
    assert not tmux.has_session("x")


def test_tag_with_tmux_special_characters(tmux: Tmux, tmp_path: Path) -> None:
    odd = "t#{session_name}'\"$x\\;"
    tmux.new_session("odd", SLEEP, cwd=tmp_path, env={}, tag=odd)
    tmux.new_session("plain", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    assert tmux.session_tag("odd") == odd
    assert tmux.tagged_sessions(odd) == ["odd"]
    assert tmux.kill_session("odd", TAG) is False
    assert tmux.kill_session("odd", odd) is True


def test_attach_argv(tmux: Tmux, socket_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmux.new_session("att", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    argv = tmux.attach_argv("att")
    assert argv[1:] == ["-L", socket_name, "attach-session", "-t", "=att"]

    # Inside a pane of this very server: switch the client instead of nesting.
    socket_path = _raw(socket_name, "display-message", "-p", "-t", "=att:", "#{socket_path}").stdout.strip()
    monkeypatch.setenv("TMUX", f"{socket_path},1,0")
    assert tmux.attach_argv("att")[-3:] == ["switch-client", "-t", "=att"]

    # Inside another server: attach with $TMUX unset.
    monkeypatch.setenv("TMUX", "/nonexistent/socket,1,0")
    argv = tmux.attach_argv("att")
    assert argv[:3] == ["env", "-u", "TMUX"]
    assert argv[-3:] == ["attach-session", "-t", "=att"]


def test_kill_server_if_empty(tmux: Tmux, socket_name: str, tmp_path: Path) -> None:
    tmux.new_session("one", SLEEP, cwd=tmp_path, env={}, tag=TAG)
    tmux.kill_server_if_empty()
    assert tmux.has_session("one")  # not empty: kept

    # A server configured to outlive its last session.
    _raw(socket_name, "set-option", "-g", "exit-empty", "off")
    assert tmux.kill_session("one", TAG)
    assert _raw(socket_name, "list-sessions").returncode == 0  # still up, with no sessions
    tmux.kill_server_if_empty()
    assert _raw(socket_name, "list-sessions").returncode != 0
    tmux.kill_server_if_empty()  # no server: nothing to do, no error


def test_kill_server_if_empty_never_touches_default_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no socket the method must return before running tmux at all; a Tmux whose commands would
    # fail loudly proves it.
    default = Tmux(None)

    def explode(*_commands: Sequence[str]) -> tmux_cmd:
        raise AssertionError("tmux was called for the default server")

    monkeypatch.setattr(default, "_run", explode)
    default.kill_server_if_empty()
    assert Tmux("").socket_name is None
