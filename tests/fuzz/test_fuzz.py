"""Fuzzing: the backlog loader and the command line never crash with a traceback; every rejection is a
clear message (and, for bad input, exit 2). 2,000 examples per target."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.backlog import load_backlog, parse_spec_text
from swarm.cli import main as cli_main
from swarm.errors import BacklogError, BadInput

EXAMPLES = 2000

_KEYS = ["id", "epic", "title", "depends_on", "priority", "requires", "max_attempts", "timeout_seconds", "x-note"]
_SCALARS = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 5).map(str),
    st.sampled_from(["S1", "S2", "E1", "[S1, S2]", "[", "{", "yes", "null", "~", "0x10", "1.5", "'q'", '"x', "- a"]),
)


@st.composite
def spec_files(draw: st.DrawFn) -> str:
    """Mostly-plausible spec files with random damage."""
    lines = []
    if draw(st.booleans()):
        lines.append("---")
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.one_of(st.sampled_from(_KEYS), st.text(max_size=6)))
        lines.append(f"{key}: {draw(_SCALARS)}")
    if draw(st.booleans()):
        lines.append("---")
    lines.append(draw(st.text(max_size=40)))
    return "\n".join(lines)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(spec_files(), st.text(max_size=200)))
def test_parse_spec_text_never_crashes(text: str) -> None:
    spec, problems = parse_spec_text(text, Path("specs/x.md"))
    assert (spec is None) == bool(problems)
    for problem in problems:
        assert problem.startswith("specs/x.md")
        assert "\n" not in problem.strip()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    files=st.lists(st.one_of(spec_files(), st.binary(max_size=60).map(repr)), min_size=1, max_size=4),
    raw=st.binary(max_size=80),
)
def test_load_backlog_rejects_cleanly(tmp_path_factory: pytest.TempPathFactory, files: list[str], raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("backlog")
    for n, text in enumerate(files):
        (folder / f"s{n}.md").write_text(text, encoding="utf-8")
    (folder / "raw.md").write_bytes(raw)
    outcome: object
    try:
        outcome = load_backlog(folder)
    except (BacklogError, BadInput) as exc:  # the only ways a backlog may be refused
        outcome = exc
    if isinstance(outcome, BacklogError):
        assert outcome.problems
        assert all(".md" in problem for problem in outcome.problems)
    if isinstance(outcome, BadInput):
        assert outcome.exit_code == 2
        assert outcome.render().strip()
    else:
        assert getattr(outcome, "specs", None)


_COMMANDS = [
    ["queue", "init"],
    ["queue", "claim"],
    ["queue", "heartbeat"],
    ["queue", "release"],
    ["queue", "status"],
    ["queue", "add"],
    ["queue", "cancel"],
    ["queue", "retry"],
    ["queue", "reap"],
    ["queue", "events"],
    ["msg", "send"],
    ["msg", "list"],
    ["msg", "reply"],
    ["msg", "wait"],
    ["config", "show"],
    ["status"],
    ["doctor"],
    ["queue"],
    ["msg"],
    [],
]
_FLAGS = [
    "--epic",
    "--agent-id",
    "--task-id",
    "--spec-id",
    "--lease-token",
    "--completed",
    "--failed",
    "--returned",
    "--commit",
    "--json",
    "--db",
    "--ttl",
    "--title",
    "--body",
    "--depends-on",
    "--priority",
    "--to",
    "--type",
    "--thread",
    "--since",
    "--timeout",
    "--capabilities",
    "--max-agents",
    "--reply-to",
    "--id",
    "--nope",
    "-h",
]
_VALUES = [
    "E1",
    "S1",
    "agent-1",
    "bad id",
    "",
    "-1",
    "0",
    "1e9",
    "x" * 70,
    "sqlite:///x.db",
    "mysql://x",
    "postgresql://nohost.invalid:1/db",
    "signal.x",
    "gossip",
    "0.01",
    "lead",
    "A,B",
    "../etc",
    "\u00e9",
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty repository to run commands in (no queue yet), with no SWARM_* in the environment."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "S1.md").write_text("---\nid: S1\nepic: E1\n---\nbody\n")
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("SWARM_")]:
        monkeypatch.delenv(name)
    return tmp_path


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(_COMMANDS),
    rest=st.lists(st.one_of(st.sampled_from(_FLAGS), st.sampled_from(_VALUES), st.text(max_size=8)), max_size=6),
)
def test_cli_never_shows_a_traceback(repo: Path, command: list[str], rest: list[str]) -> None:
    if "--timeout" in rest:  # `msg wait` would block until its timeout: keep waits out of the fuzz
        return
    if command == ["msg", "wait"]:
        rest = [*rest, "--timeout", "0"]
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = cli_main.run([*command, *rest])
    text = err.getvalue()
    assert "Traceback" not in text
    assert "internal error" not in text, text
    assert code in (0, 1, 2, 124), (command, rest, code, text)
    if code == 2:
        assert text.strip(), "a rejection must say why"
