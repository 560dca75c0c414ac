"""An agent's output as lines a person reads: its JSON events turned into text (docs/contract.md §6).

Claude Code (``--output-format stream-json --verbose``) and codex (``exec --json``) print one JSON event per
line. Someone watching the pane or reading ``swarm logs`` wants what the agent says, each tool call with its
command or file, results shortened, and the final cost or tokens; the worker keeps the raw events beside the
log (``.swarm/logs/<agent>.jsonl``) for scripts and for ``swarm logs --raw``.

Pure: :class:`Progress` turns one raw line into zero or more readable lines and knows nothing of files,
processes or the database. A line that is not a JSON event of the agent's format passes through unchanged,
so command agents and aider (plain text) look as they always did.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Format = Literal["claude-stream-json", "codex-json", "plain"]

#: The output format of each agent kind whose CLI prints JSON events; any other kind's output is plain text.
FORMATS: Mapping[str, Format] = {"claude": "claude-stream-json", "codex": "codex-json"}

#: A tool result or command output shows at most this many lines ...
RESULT_LINES = 2
#: ... each at most this many characters; a call's arguments at most ``CALL_WIDTH``.
RESULT_WIDTH = 160
CALL_WIDTH = 200

CALL = "→ "  # a tool call or a command the agent runs
RESULT = "  ← "  # what it returned
FAILED = "  ✗ "  # a call that failed, with what it said
NOTE = "· "  # the CLI's own notes: the session starting, retries, warnings
END = "■ "  # the run's (or turn's) end: cost, tokens, or the error


#: Terminal control sequences (CSI, OSC) and the other control characters but tab and newline. An event carries
#: them escaped ("\u001b[2J"); decoded and printed they would clear or retitle the terminal of whoever watches.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def format_for(kind: str) -> Format:
    """The output format of an agent kind (``claude``, ``codex``, ``aider``, ``command``)."""
    return FORMATS.get(kind, "plain")


def parse_event(line: str) -> dict[str, Any] | None:
    """The JSON event on one output line (an object with a string ``type``), else None."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


def shorten(text: str, width: int = RESULT_WIDTH) -> str:
    """``text`` on one line (whitespace runs collapsed), at most ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def excerpt(text: str, prefix: str, lines: int = RESULT_LINES) -> list[str]:
    """The first ``lines`` non-blank lines of ``text``, shortened, each after ``prefix``; then how many more."""
    kept = [line.rstrip() for line in text.expandtabs(4).splitlines() if line.strip()]
    if not kept:
        return []
    out = [prefix + shorten(kept[0])]
    out += [" " * len(prefix) + shorten(line) for line in kept[1:lines]]
    if len(kept) > lines:
        more = len(kept) - lines
        out[-1] += f" … (+{more} line{'s' if more > 1 else ''})"
    return out


class Progress:
    """Turns one agent's raw output, line by line, into readable lines; keeps what a format needs across lines
    (the working directory to shorten paths, the codex commands already shown when they started)."""

    def __init__(self, fmt: Format) -> None:
        self.format: Format = fmt
        self._cwd = ""
        self._started: set[str] = set()

    def event(self, line: str) -> dict[str, Any] | None:
        """The line's JSON event when this format prints events, else None (the line is plain text)."""
        return None if self.format == "plain" else parse_event(line)

    def feed(self, line: str) -> list[str]:
        """The readable lines for one raw output line (without its newline). A plain line is returned as it is;
        an event may give several lines, or none (events that say nothing to a person)."""
        event = self.event(line)
        if event is None:
            return [line]
        lines = self._claude(event) if self.format == "claude-stream-json" else self._codex(event)
        return [_CONTROL.sub("", line) for line in lines]

    # -- Claude Code stream-json ---------------------------------------------------------------------
    def _claude(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        if kind == "system":
            return self._claude_system(event)
        if kind == "assistant":
            return self._claude_assistant(event)
        if kind == "user":
            return self._claude_results(event)
        if kind == "result":
            return [self._claude_result(event)]
        return []  # stream_event (partial messages) and kinds this version does not know: the raw file has them

    def _claude_system(self, event: dict[str, Any]) -> list[str]:
        subtype = event.get("subtype")
        if subtype == "init":
            self._cwd = str(event.get("cwd") or "")
            said = f"{NOTE}claude started" + (f" (model {event['model']})" if event.get("model") else "")
            servers = [s for s in event.get("mcp_servers") or [] if isinstance(s, dict)]
            if servers:
                said += "; mcp: " + ", ".join(f"{s.get('name')} ({s.get('status')})" for s in servers)
            return [said]
        if subtype == "api_retry":
            why = event.get("error_status") or event.get("error") or "error"
            return [f"{NOTE}API retry {event.get('attempt')}/{event.get('max_retries')} ({why})"]
        if subtype == "compact_boundary":
            return [f"{NOTE}conversation compacted"]
        return []  # hooks, status pings

    def _claude_assistant(self, event: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for block in _blocks(event):
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                out += [line.rstrip() for line in block["text"].splitlines() if line.strip()]
            elif kind == "tool_use":
                out.append(CALL + self._claude_call(str(block.get("name")), block.get("input")))
            elif kind == "thinking" and isinstance(block.get("thinking"), str) and block["thinking"].strip():
                out.append(f"{NOTE}thinking: {shorten(block['thinking'])}")
        return out

    def _claude_call(self, name: str, args: Any) -> str:
        """``Tool: what it works on``: a command, a file, a pattern; else its arguments as short JSON."""
        args = args if isinstance(args, dict) else {}
        if name == "Bash" and isinstance(args.get("command"), str):
            return f"{name}: {shorten(args['command'], CALL_WIDTH)}"
        path = args.get("file_path") or args.get("notebook_path")
        if isinstance(path, str):
            said = f"{name}: {self._path(path)}"
            if name == "Write" and isinstance(args.get("content"), str):
                said += f" ({len(args['content'].splitlines())} lines)"
            return said
        for key in ("pattern", "url", "query", "description", "prompt"):
            if isinstance(args.get(key), str):
                where = f" in {self._path(args['path'])}" if isinstance(args.get("path"), str) else ""
                return f"{name}: {shorten(args[key], CALL_WIDTH)}{where}"
        if not args:
            return name
        return f"{name}: {shorten(json.dumps(args, ensure_ascii=False), CALL_WIDTH)}"

    def _claude_results(self, event: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for block in _blocks(event):
            if block.get("type") != "tool_result":
                continue  # the prompt and other user turns are not the agent's work
            text = _text_of(block.get("content"))
            if block.get("is_error"):
                out += excerpt(text, FAILED) or [FAILED + "failed"]
            else:
                out += excerpt(text, RESULT) or [RESULT + "(no output)"]
        return out

    @staticmethod
    def _claude_result(event: dict[str, Any]) -> str:
        figures = []
        if isinstance(event.get("num_turns"), int):
            figures.append(f"{event['num_turns']} turn{'' if event['num_turns'] == 1 else 's'}")
        if isinstance(event.get("duration_ms"), int | float):
            figures.append(f"{event['duration_ms'] / 1000:.1f}s")
        if isinstance(event.get("total_cost_usd"), int | float):
            figures.append(f"${event['total_cost_usd']:.4f}")
        counts = event.get("usage")
        if isinstance(counts, dict):
            kinds = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            figures.append(f"{sum(v for k, v in counts.items() if k in kinds and isinstance(v, int)):,} tokens")
        said = ", ".join(figures)
        if event.get("is_error"):
            why = event.get("result") if isinstance(event.get("result"), str) else event.get("subtype")
            return f"{END}failed: {shorten(str(why or 'error'))}" + (f" ({said})" if said else "")
        return f"{END}done" + (f": {said}" if said else "")

    def _path(self, path: str) -> str:
        # Paths inside the worktree read better relative to it.
        if self._cwd and path.startswith(self._cwd.rstrip("/") + "/"):
            return path[len(self._cwd.rstrip("/")) + 1 :]
        return path

    # -- codex exec --json ---------------------------------------------------------------------------
    def _codex(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        item = event.get("item")
        if kind in ("item.started", "item.updated", "item.completed") and isinstance(item, dict):
            return self._codex_item(kind, item)
        if kind == "error":
            return [f"{NOTE}{shorten(str(event.get('message') or 'error'))}"]
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            return [f"{END}failed: {shorten(str(message or 'error'))}"]
        if kind == "turn.completed":
            return [f"{END}turn done" + _codex_tokens(event.get("usage"))]
        return []  # thread.started, turn.started

    def _codex_item(self, kind: str, item: dict[str, Any]) -> list[str]:
        sort = item.get("type")
        if sort == "command_execution":
            return self._codex_command(kind, item)
        if kind != "item.completed":
            return []  # the other items are told once, complete
        if sort == "agent_message":
            return [line.rstrip() for line in str(item.get("text") or "").splitlines() if line.strip()]
        if sort == "reasoning":
            return [f"{NOTE}thinking: {shorten(str(item.get('text') or ''))}"]
        if sort == "file_change":
            changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
            return [f"{CALL}{c.get('kind') or 'change'}: {c.get('path')}" for c in changes]
        if sort == "mcp_tool_call":
            return _codex_mcp_call(item)
        if sort == "web_search":
            return [f"{CALL}web search: {shorten(str(item.get('query') or ''), CALL_WIDTH)}"]
        if sort == "todo_list":
            todos = [t for t in item.get("items") or [] if isinstance(t, dict)]
            return [f"{NOTE}todo: [{'x' if t.get('completed') else ' '}] {shorten(str(t.get('text')))}" for t in todos]
        if sort == "error":
            return [f"{NOTE}{shorten(str(item.get('message') or 'error'))}"]
        return []

    def _codex_command(self, kind: str, item: dict[str, Any]) -> list[str]:
        """A command is named when it starts (a long one shows what it is doing), its output when it ends."""
        key = str(item.get("id"))
        call = CALL + "run: " + shorten(_unwrap_shell(str(item.get("command") or "")), CALL_WIDTH)
        if kind != "item.completed":
            if key in self._started:
                return []
            self._started.add(key)
            return [call]
        out = [] if key in self._started else [call]
        self._started.discard(key)
        output = str(item.get("aggregated_output") or "")
        code = item.get("exit_code")
        if code not in (0, None) or item.get("status") == "failed":
            return out + (excerpt(output, FAILED + f"exit {code}: ") or [FAILED + f"exit {code}"])
        return out + (excerpt(output, RESULT) or [RESULT + "(no output)"])


def _codex_mcp_call(item: dict[str, Any]) -> list[str]:
    said = f"{CALL}{item.get('server')}.{item.get('tool')}"
    if item.get("arguments"):
        said += ": " + shorten(json.dumps(item["arguments"], ensure_ascii=False), CALL_WIDTH)
    error = item.get("error")
    if not error:
        return [said]
    return [said, FAILED + shorten(_text_of(error.get("message") if isinstance(error, dict) else error))]


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text_of(content: Any) -> str:
    """A tool result's text: a string, or the text blocks of a list (images and the like are named)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, dict):
                text = block.get("text")
                parts.append(text if isinstance(text, str) else f"[{block.get('type')}]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def _unwrap_shell(command: str) -> str:
    """``/bin/bash -c 'mkdir out'`` -> ``mkdir out``: codex wraps each command in the user's shell."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if len(words) == 3 and words[0].rsplit("/", 1)[-1] in ("bash", "sh", "zsh") and words[1] in ("-c", "-lc"):
        return words[2]
    return command


def _codex_tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    sent, received = usage.get("input_tokens"), usage.get("output_tokens")
    if not (isinstance(sent, int) and isinstance(received, int)):
        return ""
    return f": {sent + received:,} tokens ({sent:,} in, {received:,} out)"
