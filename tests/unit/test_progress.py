"""swarm.progress on real events: the samples in progress_samples/ were printed by Claude Code 2.1.330
(``-p --output-format stream-json --verbose``) against the shared tools' mock_anthropic.py and by codex-cli
0.171.0 (``exec --json``) against mock_openai.py; the ``-fail`` ones against a closed port or a refused key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from swarm.agents import known_failure, load_template, parse_usage
from swarm.progress import Progress, format_for, parse_event

SAMPLES = Path(__file__).parent / "progress_samples"


def readable(fmt: str, sample: str) -> list[str]:
    progress = Progress(format_for(fmt))
    out: list[str] = []
    for line in (SAMPLES / sample).read_text().splitlines():
        out += progress.feed(line)
    return out


def test_claude_run_reads_as_calls_results_text_and_the_cost() -> None:
    assert readable("claude", "claude.jsonl") == [
        "· claude started (model claude-sonnet-5)",
        "→ Bash: mkdir -p out && echo hi > out/a.txt",
        "  ← (Bash completed with no output)",
        "→ Bash: ls out",
        "  ← a.txt",
        "→ Bash: false",
        "  ✗ Exit code 1",
        "FAILED: a command returned an error",
        "■ done: 4 turns, 0.7s, $0.0024, 480 tokens",
    ]


def test_claude_file_tools_name_the_file_relative_to_the_worktree_and_results_are_shortened() -> None:
    lines = readable("claude", "claude-tools.jsonl")
    assert "→ Write: b.txt (2 lines)" in lines
    assert "→ Read: b.txt" in lines
    assert "→ Edit: b.txt" in lines
    # The file Read returned: two lines shown, the rest counted.
    read = lines.index("→ Read: b.txt")
    assert lines[read + 1 : read + 3] == ["  ← 1 line1", "    2 line2 … (+1 line)"]
    assert all(len(line) <= 200 for line in lines if line.startswith("  "))


def test_claude_failed_run_says_why() -> None:
    lines = readable("claude", "claude-fail.jsonl")
    assert lines[1] == "· API retry 1/1 (unknown)"
    assert (
        lines[-1]
        == "■ failed: API Error: Unable to connect to API (ConnectionRefused) (1 turn, 0.9s, $0.0000, 0 tokens)"
    )


def test_claude_tool_calls_of_every_shape() -> None:
    progress = Progress("claude-stream-json")
    progress.feed(
        json.dumps(
            {
                "type": "system",
                "subtype": "init",
                "cwd": "/w",
                "model": "m",
                "mcp_servers": [{"name": "swarm", "status": "connected"}],
            }
        )
    )

    def call(name: str, args: object) -> list[str]:
        block = {"type": "tool_use", "name": name, "input": args}
        return progress.feed(json.dumps({"type": "assistant", "message": {"content": [block]}}))

    assert call("Grep", {"pattern": "TODO", "path": "/w/src"}) == ["→ Grep: TODO in src"]
    assert call("WebFetch", {"url": "http://x/y"}) == ["→ WebFetch: http://x/y"]
    assert call("mcp__swarm__msg_send", {"text": "hi", "to": "lead"}) == [
        '→ mcp__swarm__msg_send: {"text": "hi", "to": "lead"}'
    ]
    assert call("Bash", {"command": "echo " + "x" * 500})[0].endswith("…")
    assert call("TodoWrite", {}) == ["→ TodoWrite"]


def test_codex_run_reads_as_commands_their_results_and_the_tokens() -> None:
    lines = readable("codex", "codex.jsonl")
    assert lines[0].startswith("· Model metadata for `gpt-5` not found")
    assert lines[1:7] == [
        "→ run: mkdir -p out && echo hi > out/a.txt",  # shown when it starts, unwrapped from /bin/bash -c
        "  ← (no output)",
        "→ run: printf '%s\\n' hello > out/b.txt",
        "  ← (no output)",
        "→ run: false",
        "  ✗ exit 1",
    ]
    assert lines[7] == "FAILED: a command returned an error: Chunk ID: c12a8f"
    assert lines[-1] == "■ turn done: 480 tokens (400 in, 80 out)"


def test_codex_failed_turn_says_why() -> None:
    lines = readable("codex", "codex-fail.jsonl")
    assert lines[-1].startswith("■ failed: unexpected status 401 Unauthorized")
    assert lines[1].startswith("· Reconnecting... 1/5")


def test_codex_items_of_every_shape() -> None:
    progress = Progress("codex-json")

    def done(item: dict[str, object]) -> list[str]:
        return progress.feed(json.dumps({"type": "item.completed", "item": {"id": "i", **item}}))

    assert done({"type": "file_change", "changes": [{"path": "a.py", "kind": "update"}]}) == ["→ update: a.py"]
    assert done({"type": "command_execution", "command": "ls", "aggregated_output": "a\nb\nc\n", "exit_code": 0}) == [
        "→ run: ls",  # completed without a started event: the command is named once
        "  ← a",
        "    b … (+1 line)",
    ]
    assert done({"type": "web_search", "query": "tmux"}) == ["→ web search: tmux"]
    assert done({"type": "reasoning", "text": "look\nfirst"}) == ["· thinking: look first"]
    assert done({"type": "mcp_tool_call", "server": "s", "tool": "t", "arguments": {"a": 1}}) == ['→ s.t: {"a": 1}']
    assert progress.feed('{"type": "turn.started"}') == []


@pytest.mark.parametrize("fmt", ["claude", "codex", "aider", "command"])
def test_plain_lines_pass_through_unchanged(fmt: str) -> None:
    progress = Progress(format_for(fmt))
    for line in ["hello", "  indented\tand tabbed  ", "{not json", "", '{"no": "type"}', "[1, 2]"]:
        assert progress.feed(line) == [line]


def test_json_of_agents_without_events_is_their_text() -> None:
    # A command agent that prints JSON prints what it means to print.
    line = '{"type": "result", "is_error": true}'
    assert Progress(format_for("command")).feed(line) == [line]
    assert Progress(format_for("aider")).event(line) is None
    assert parse_event(line) == {"type": "result", "is_error": True}


# -- what the worker reads from the raw events: known failures and usage (swarm.agents) ----------------------


def _raw(sample: str) -> list[str]:
    return [line.strip() for line in (SAMPLES / sample).read_text().splitlines()]


@pytest.mark.parametrize(
    ("kind", "sample", "reason"),
    [
        ("claude", "claude-fail.jsonl", "API Error: Unable to connect to API (ConnectionRefused)"),
        ("claude", "claude.jsonl", None),
        (
            "codex",
            "codex-fail.jsonl",
            "unexpected status 401 Unauthorized: mock: forced HTTP 401, url: http://127.0.0.1:34053/v1/responses",
        ),
        ("codex", "codex.jsonl", None),  # the model's "FAILED: ..." is its answer, not the CLI failing
    ],
)
def test_the_templates_failure_patterns_read_the_raw_events(kind: str, sample: str, reason: str | None) -> None:
    patterns = [re.compile(p) for p in load_template(kind).failure_patterns]
    assert known_failure(patterns, _raw(sample), "") == reason


def test_usage_is_read_from_the_raw_events() -> None:
    usage: dict[str, Any] = {}
    for line in _raw("codex.jsonl"):
        parse_usage(load_template("codex").usage, line, usage)
    assert usage == {"tokens": 480}  # turn.completed: 400 in + 80 out
    usage = {}
    for line in _raw("claude.jsonl"):
        parse_usage(load_template("claude").usage, line, usage)
    assert usage["cost_usd"] == pytest.approx(0.0024)


def test_terminal_control_sequences_decoded_from_an_event_never_reach_the_pane() -> None:
    # In the raw event they are escaped ("\u001b"); decoded, they would recolour or clear the watcher's terminal.
    result = {"type": "tool_result", "content": "\x1b[31mred\x1b[0m \x1b]0;title\x07done\x08\x00"}
    lines = Progress("claude-stream-json").feed(json.dumps({"type": "user", "message": {"content": [result]}}))
    assert lines == ["  ← red done"]
    text = {"type": "text", "text": "clear\x1b[2J screen"}
    assert Progress("claude-stream-json").feed(json.dumps({"type": "assistant", "message": {"content": [text]}})) == [
        "clear screen"
    ]
