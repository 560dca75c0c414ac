"""Agent kinds (docs/contract.md §6): the templates in ``templates/agents/``, the command each one runs, the prompt.

A template says which CLI an agent kind needs, the argv that runs it (with ``{placeholder}`` slots), how
the prompt reaches it (stdin or a file) and which output means "waiting for a human" or "rate limited".
The prompt text is never put into an argv element or a shell string: it is written to the agent's stdin
or to a file whose path is passed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.abc import Traversable
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any, Literal

from swarm.errors import BadInput, SwarmError
from swarm.words import plural_of

#: Seconds to wait for ``<binary> --version``: a CLI that hangs must not hang ``swarm doctor``.
VERSION_TIMEOUT_SECONDS = 10.0

#: How to install the CLI of each built-in kind (the hint of the "not on PATH" error).
INSTALL_HINTS: Mapping[str, str] = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "aider": "pip install aider-chat",
}

#: The option the worker adds to a ``claude`` run: the ``swarm`` MCP server's config file (``swarm doctor`` checks
#: that the installed Claude Code accepts it, as it does the template's own options).
CLAUDE_MCP_OPTION = "--mcp-config"

#: The placeholders an argv element may hold. Anything else in braces is left as it is.
PLACEHOLDERS = ("model", "permission_mode", "prompt_file", "worktree", "task_id", "command", "session_id")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

#: How long the prompt tells an agent to wait for the lead's answer (``swarm msg ask ... --timeout``).
ASK_TIMEOUT_SECONDS = 600
#: How long one shell command of an agent may run (``{command_timeout_ms}`` in a template's env): an ask's wait
#: and a minute for the command to start, connect and print, so the CLI never stops an ask that keeps its word.
COMMAND_TIMEOUT_SECONDS = ASK_TIMEOUT_SECONDS + 60
#: The placeholders an env value may hold.
_ENV_PLACEHOLDERS = {"command_timeout_ms": str(COMMAND_TIMEOUT_SECONDS * 1000)}
_ENV_PLACEHOLDER = re.compile(r"\{(" + "|".join(_ENV_PLACEHOLDERS) + r")\}")

PromptMode = Literal["stdin", "file"]

#: How an agent's output reports what the run cost (the template's ``usage`` key): Claude Code's stream-json
#: ``result`` line, aider's ``Cost: $X message, $Y session.``, codex's ``tokens used`` line, or nothing.
UsageFormat = Literal["claude-stream-json", "aider", "codex", "none"]
USAGE_FORMATS: tuple[UsageFormat, ...] = ("claude-stream-json", "aider", "codex", "none")


def templates_dir() -> Traversable | Path:
    """The folder of swarm's templates (``agents/*.toml``, ``prompt.md``).

    A wheel carries it inside the package as ``swarm/templates``; an editable install (a source checkout)
    has it at the repository's top level, next to the ``swarm`` package.
    """
    packaged = files("swarm") / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def _agents_dir() -> Traversable | Path:
    return templates_dir() / "agents"


def known_kinds() -> tuple[str, ...]:
    """The agent kinds, one per ``templates/agents/<kind>.toml``, sorted."""
    folder = _agents_dir()
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")))


KINDS: tuple[str, ...] = known_kinds()


@dataclass(frozen=True)
class AgentTemplate:
    """One agent kind, as read from ``templates/agents/<kind>.toml``."""

    kind: str
    description: str
    #: The CLI that must be on PATH; empty for ``command``, which runs whatever the user gives.
    binary: str
    version_args: tuple[str, ...]
    argv: tuple[str, ...]
    #: ``stdin``: the prompt is written to the agent's stdin; ``file``: only ``{prompt_file}`` /
    #: ``SWARM_PROMPT_FILE`` carry it.
    prompt: PromptMode
    #: Regexes searched in the last lines of the pane: a match means the agent waits for a human.
    waiting_patterns: tuple[str, ...]
    #: Regexes for the provider's rate-limit and usage-limit messages.
    rate_limit_patterns: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    #: Which of :data:`USAGE_FORMATS` the agent's output reports cost and tokens in (:func:`parse_usage`).
    usage: UsageFormat = "none"
    #: Patterns launch adds to the repository's ``.git/info/exclude``: files the CLI writes into the
    #: worktree (aider's ``.aider*``) stay out of task commits without touching the user's ``.gitignore``.
    git_exclude: tuple[str, ...] = ()
    #: Regexes for what the CLI prints when its run failed although it may exit 0 (the API unreachable, a
    #: refused key, retries exhausted), searched in the last lines of its output (:func:`known_failure`).
    failure_patterns: tuple[str, ...] = ()
    #: What the argv gets to resume an earlier conversation (``{session_id}`` in it), or empty: the CLI cannot
    #: resume or its output names no session (docs/contract.md §6).
    resume_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentCommand:
    """What the worker runs for one task: the argv (no shell unless the template says so), whether the
    prompt goes to stdin, and the extra environment."""

    argv: list[str]
    stdin_prompt: bool
    env: dict[str, str]


def load_template(kind: str) -> AgentTemplate:
    """Read and check the template of ``kind``.

    Raises :class:`BadInput` for an unknown kind (naming the known ones and the closest match), and
    :class:`SwarmError` for a template file that is broken (an installation problem, not the user's).
    """
    kinds = known_kinds()
    if kind not in kinds:  # also keeps a kind such as "../x" from naming a file outside the folder
        close = difflib.get_close_matches(kind, kinds, n=1)
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        raise BadInput(
            f"unknown agent kind {kind!r}",
            hint=f"{suggestion}known kinds: {', '.join(kinds) or 'none'}; or run any program with --command",
        )
    source = _agents_dir() / f"{kind}.toml"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SwarmError(f"cannot read the {kind} agent template {source}: {exc}", hint="reinstall swarm") from exc
    return _parse_template(kind, str(source), data)


def _parse_template(kind: str, source: str, data: Mapping[str, Any]) -> AgentTemplate:
    def broken(why: str) -> SwarmError:
        return SwarmError(f"the {kind} agent template {source} is invalid: {why}", hint="reinstall swarm")

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str):
            raise broken(f"{key} must be a string")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise broken(f"{key} must be a list of strings")
        return tuple(value)

    expected = {
        "description",
        "binary",
        "version_args",
        "argv",
        "prompt",
        "waiting_patterns",
        "rate_limit_patterns",
        "env",
        "notes",
    }
    optional = {"usage", "git_exclude", "failure_patterns", "resume_args"}
    missing = sorted(expected - data.keys())
    if missing:
        raise broken(f"missing {', '.join(missing)}")
    unknown = sorted(data.keys() - expected - optional)
    if unknown:
        raise broken(f"unknown {plural_of('key', len(unknown))} {', '.join(unknown)}")
    prompt = text("prompt")
    if prompt not in ("stdin", "file"):
        raise broken(f'prompt must be "stdin" or "file", not {prompt!r}')
    argv = strings("argv")
    if not argv:
        raise broken("argv is empty")
    waiting, limits = strings("waiting_patterns"), strings("rate_limit_patterns")
    failures = strings("failure_patterns") if "failure_patterns" in data else ()
    for pattern in (*waiting, *limits, *failures):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise broken(f"bad regex {pattern!r}: {exc}") from exc
    usage = data.get("usage", "none")
    if usage not in USAGE_FORMATS:
        raise broken(f"usage must be one of {', '.join(USAGE_FORMATS)}, not {usage!r}")
    excludes = strings("git_exclude") if "git_exclude" in data else ()
    resume = strings("resume_args") if "resume_args" in data else ()
    if resume and not any("{session_id}" in part for part in resume):
        raise broken("resume_args must hold {session_id}")
    env = data.get("env")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise broken("env must be a table of strings")
    return AgentTemplate(
        kind=kind,
        description=text("description"),
        binary=text("binary"),
        version_args=strings("version_args"),
        argv=argv,
        prompt="stdin" if prompt == "stdin" else "file",
        waiting_patterns=waiting,
        rate_limit_patterns=limits,
        env=dict(env),
        notes=text("notes").strip(),
        usage=next(f for f in USAGE_FORMATS if f == usage),
        git_exclude=excludes,
        failure_patterns=failures,
        resume_args=resume,
    )


def build_command(
    template: AgentTemplate,
    *,
    model: str,
    permission_mode: str,
    prompt_file: Path,
    worktree: Path,
    task_id: str,
    command: str | None = None,
    session_id: str | None = None,
) -> AgentCommand:
    """The argv and environment of one agent run.

    Each argv element has its known ``{placeholders}`` replaced in one pass, so a substituted value is never
    scanned again and any other brace (or ``$``) in a user's ``--command`` reaches ``sh -c`` untouched.
    An element that is exactly a placeholder with an empty value (``--model ""``) is dropped together with
    the option just before it, so the agent falls back to its own default. ``command`` is only used by the
    ``command`` kind (the caller turns ``--command`` into that kind); it is required there. An env value's
    ``{command_timeout_ms}`` becomes :data:`COMMAND_TIMEOUT_SECONDS` in milliseconds. ``session_id``: the
    conversation to resume, through the template's ``resume_args`` (appended; nothing when it has none).
    """
    uses_command = any("{command}" in part for part in template.argv)
    if uses_command and not (command or "").strip():
        raise BadInput(
            f"the {template.kind} agent needs a command to run",
            hint='pass --command "your program and its arguments"',
        )
    values = {
        "model": model,
        "permission_mode": permission_mode,
        "prompt_file": str(prompt_file),
        "worktree": str(worktree),
        "task_id": task_id,
        "command": command or "",
        "session_id": session_id or "",
    }
    resume = template.resume_args if session_id else ()
    argv: list[str] = []
    for part in (*template.argv, *resume):
        whole = _PLACEHOLDER.fullmatch(part)
        if whole and not values[whole.group(1)]:
            if argv and argv[-1].startswith("-") and len(argv) > 1:
                argv.pop()  # the option that would have taken the empty value
            continue
        argv.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], part))
    env = {
        name: _ENV_PLACEHOLDER.sub(lambda m: _ENV_PLACEHOLDERS[m.group(1)], value)
        for name, value in template.env.items()
    }
    # Set here as well as by the worker so that an agent always finds its prompt, whatever the mode.
    env.update(
        {
            "SWARM_PROMPT_FILE": str(prompt_file),
            "SWARM_WORKTREE": str(worktree),
            "SWARM_TASK_ID": task_id,
        }
    )
    return AgentCommand(argv=argv, stdin_prompt=template.prompt == "stdin", env=env)


#: aider, after each reply: ``Tokens: 1.2k sent, 34 received. Cost: $0.0019 message, $0.0042 session.``
#: (the Cost part only when the model is priced).
_AIDER_TOKENS = re.compile(r"\bTokens: ([\d.,]+)([kKmM]?) sent, ([\d.,]+)([kKmM]?) received\b")
_AIDER_COST = re.compile(r"\bCost: \$([\d.]+) message, \$([\d.]+) session\b")
#: codex exec, at the end of the run: a line ``tokens used`` and the count (``1,234``) on the next one.
_CODEX_TOKENS_LABEL = re.compile(r"^tokens used:?\s*([\d,]*)$", re.IGNORECASE)
_CODEX_COUNT = re.compile(r"^[\d,]+$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
#: A session id as swarm passes it back to the CLI (a UUID for Claude Code): an argv element, never an option.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def parse_usage(fmt: UsageFormat, line: str, usage: dict[str, Any]) -> None:
    """Note in ``usage`` (``cost_usd``, ``tokens``, ``session_id``) what one stripped output line of an agent
    reports.

    Called with every line in order; ``usage`` also carries the little state a format needs across lines
    (codex prints its count on the line after ``tokens used``). Lines that say nothing are ignored.
    """
    if fmt == "claude-stream-json":
        _claude_usage(line, usage)
    elif fmt == "aider":
        _aider_usage(line, usage)
    elif fmt == "codex":
        _codex_usage(line, usage)


def _claude_usage(line: str, usage: dict[str, Any]) -> None:
    # The first stream-json event, {"type": "system", "subtype": "init", "session_id": ...}, and the final one,
    # {"type": "result", "session_id": ..., "total_cost_usd": ..., "usage": {...}}; the tool results between them
    # ("type": "user") are the task's material, never read for either.
    if not (line.startswith("{") and ('"total_cost_usd"' in line or '"session_id"' in line)):
        return
    if line.startswith('{"type":"user"'):
        return
    try:
        event = json.loads(line)
    except ValueError:
        return
    if not isinstance(event, dict) or event.get("type") not in ("system", "result"):
        return
    session = event.get("session_id")
    if isinstance(session, str) and _SESSION_ID.fullmatch(session):
        usage["session_id"] = session
    if event.get("type") != "result":
        return
    if isinstance(event.get("total_cost_usd"), int | float):
        usage["cost_usd"] = float(event["total_cost_usd"])
    counts = event.get("usage")
    if isinstance(counts, dict):
        kinds = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        usage["tokens"] = sum(v for k, v in counts.items() if k in kinds and isinstance(v, int))


def _count(number: str, suffix: str) -> int:
    return round(float(number.replace(",", "")) * _SCALE[suffix.lower()])


def _aider_usage(line: str, usage: dict[str, Any]) -> None:
    tokens = _AIDER_TOKENS.search(line)
    if tokens:  # one line per model reply: the run's tokens are their sum
        sent, received = _count(*tokens.group(1, 2)), _count(*tokens.group(3, 4))
        usage["tokens"] = int(usage.get("tokens") or 0) + sent + received
    cost = _AIDER_COST.search(line)
    if cost:  # the session figure already adds up every reply of this run
        usage["cost_usd"] = float(cost.group(2))


def _codex_usage(line: str, usage: dict[str, Any]) -> None:
    if line.startswith("{") and '"turn.completed"' in line:
        _codex_json_usage(line, usage)
        return
    expecting = usage.pop("_codex_count_next", False)
    label = _CODEX_TOKENS_LABEL.match(line)
    if label:
        if label.group(1):
            usage["tokens"] = int(label.group(1).replace(",", ""))
        else:
            usage["_codex_count_next"] = True
    elif expecting and _CODEX_COUNT.match(line):
        usage["tokens"] = int(line.replace(",", ""))


def tool_output(fmt: UsageFormat, line: str) -> bool:
    """Whether an output line of an agent whose output is in ``fmt`` is what its tools returned: Claude Code's
    stream-json ``user`` events carry the tool results (a file it read, a command's output), the task's material
    and never the provider reporting a rate limit, however much a file about rate limiting reads like one."""
    return fmt == "claude-stream-json" and line.startswith('{"type":"user"')


def _codex_json_usage(line: str, usage: dict[str, Any]) -> None:
    # `codex exec --json` ends each turn with {"type": "turn.completed", "usage": {"input_tokens": ...,
    # "output_tokens": ...}} (cached and reasoning tokens are parts of those two); a run's tokens are their sum.
    try:
        event = json.loads(line)
    except ValueError:
        return
    counts = event.get("usage") if isinstance(event, dict) and event.get("type") == "turn.completed" else None
    if isinstance(counts, dict):
        spent = sum(v for k, v in counts.items() if k in ("input_tokens", "output_tokens") and isinstance(v, int))
        usage["tokens"] = int(usage.get("tokens") or 0) + spent


#: How many of the last output lines :func:`known_failure` searches: a CLI says how its run ended at the end,
#: and a failure it recovered from (aider's "Retrying in 2.0 seconds...") lies further up.
FAILURE_LINES = 3


def _normal(line: str) -> str:
    return " ".join(line.split())


def prompt_lines(prompt: str) -> frozenset[str]:
    """The lines of ``prompt``, whitespace collapsed, for :func:`echoes`."""
    return frozenset(_normal(line) for line in prompt.splitlines())


def echoes(line: str, prompt: frozenset[str]) -> bool:
    """Whether an output line is equal (up to whitespace) to a line of the prompt (:func:`prompt_lines`): the agent
    echoing its task (codex prints its prompt, a command agent may ``cat`` it), never the CLI reporting a failure or
    a rate limit although the task's words may read like one."""
    return _normal(line) in prompt


def known_failure(patterns: Sequence[re.Pattern[str]], tail: Sequence[str], prompt: str) -> str | None:
    """The known failure in the last lines of an agent's output (docs/contract.md §3), or None.

    The first of the last :data:`FAILURE_LINES` lines of ``tail`` that matches one of ``patterns`` and the lines
    after it, joined with " | ". A line equal (up to whitespace) to a line of ``prompt`` is the agent echoing its
    task, never a failure.
    """
    echoed = prompt_lines(prompt)
    last = list(tail)[-FAILURE_LINES:]
    for number, line in enumerate(last):
        if not echoes(line, echoed) and any(p.search(line) for p in patterns):
            said = [_readable(text) for text in last[number:]]
            # A CLI often says it twice (Claude Code's last message and its result event, codex's two lines).
            return " | ".join(text for n, text in enumerate(said) if n == 0 or text != said[n - 1])
    return None


def _readable(line: str) -> str:
    """What an output line says: the text of a JSON event (Claude Code's stream-json, codex's --json), else the
    line; at most 300 characters."""
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            message = event.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            texts = [c.get("text") for c in content if isinstance(c, dict)] if isinstance(content, list) else []
            if isinstance(event.get("result"), str):
                texts = [event["result"]]
            error = event.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):  # codex's turn.failed
                texts = [error["message"]]
            elif event.get("type") == "error" and isinstance(event.get("message"), str):  # codex's error event
                texts = [event["message"]]
            said = " ".join(t for t in texts if isinstance(t, str) and t.strip())
            if said:
                line = said
    return line if len(line) <= 300 else line[:299] + "…"


def check_agent_cli(template: AgentTemplate, env: Mapping[str, str] | None = None) -> str | None:
    """The version of the template's CLI (first line of ``<binary> <version_args>``), or None for a kind
    that needs no CLI (``command``).

    ``env`` (default ``os.environ``) supplies the PATH searched and the environment of the version run.
    Raises :class:`BadInput` naming the install command when the CLI is not on PATH. A CLI that is found
    but does not answer is not an error: its version reads "unknown (...)".
    """
    if not template.binary:
        return None
    environ = dict(os.environ if env is None else env)
    found = shutil.which(template.binary, path=environ.get("PATH", os.defpath))
    if found is None:
        raise BadInput(
            f"the {template.kind} agent needs the '{template.binary}' command, which is not on PATH",
            hint=INSTALL_HINTS.get(template.kind, f"install {template.binary} or add it to PATH"),
        )
    try:
        done = subprocess.run(
            [found, *template.version_args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT_SECONDS,
            env=environ,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"unknown ({template.binary} {' '.join(template.version_args)} timed out)"
    except OSError as exc:
        return f"unknown (cannot run {found}: {exc.strerror or exc})"
    for output in (done.stdout, done.stderr):  # some CLIs print their version on stderr
        for line in output.splitlines():
            if line.strip():
                return line.strip()
    return f"unknown (no output, exit {done.returncode})"


def root_permission_problem(template: AgentTemplate, permission_mode: str, env: Mapping[str, str]) -> str | None:
    """A one-line warning when the agent will refuse to start because of who runs it, else None.

    Claude Code refuses ``--permission-mode bypassPermissions`` as root unless ``IS_SANDBOX=1``.
    """
    if (
        template.kind == "claude"
        and permission_mode == "bypassPermissions"
        and os.geteuid() == 0
        and env.get("IS_SANDBOX") != "1"
    ):
        return (
            "Claude Code refuses --permission-mode bypassPermissions as root: set IS_SANDBOX=1 "
            "(only inside a disposable sandbox or container) or use another --permission-mode, "
            "e.g. acceptEdits"
        )
    return None


def render_prompt(
    *,
    task_id: str,
    title: str,
    body: str,
    epic: str,
    attempt: int,
    dependencies: Sequence[tuple[str, str, str | None]],
    agent_id: str,
    worktree: Path,
    branch: str,
    previous_failure: str | None = None,
    interrupted: bool = False,
) -> str:
    """The prompt of one task, from ``templates/prompt.md``.

    ``dependencies`` are ``(task id, title, commit sha or None)`` of the completed tasks this one depends on.
    ``previous_failure`` is why the last attempt failed (the task's ``last_error``): it adds a section that
    quotes it (docs/contract.md §3); without it the section is left out. ``interrupted``: this run resumes the
    conversation of an attempt that was stopped through no fault of the agent's, which a section says.
    Values are substituted in a single pass (``string.Template.safe_substitute``), so a ``$name`` inside the
    body or a title is kept verbatim and never re-interpreted.
    """
    text = (templates_dir() / "prompt.md").read_text(encoding="utf-8")
    if dependencies:
        deps = "These tasks are done; their commits are already merged into your branch:\n\n" + "\n".join(
            f"- {dep_id}: {dep_title}" + (f" (commit {sha[:12]})" if sha else " (no commit recorded)")
            for dep_id, dep_title, sha in dependencies
        )
    else:
        deps = "None: this task depends on no other task."
    if previous_failure and previous_failure.strip():
        # Quoted, so that an agent that echoes its prompt does not print the failure's own lines again
        # (known_failure ignores lines of the prompt, and the real failure line is not one of them).
        quoted = "\n".join(f"> {line}".rstrip() for line in previous_failure.strip().splitlines())
        failure = (
            "## The previous attempt failed\n\n"
            f"{quoted}\n\n"
            "Find out why, fix it, and make sure this attempt does not fail the same way."
        )
    else:
        failure = ""
        text = text.replace("$previous_failure\n\n", "")
    if interrupted:
        resumed = (
            "## You were interrupted\n\n"
            "Your previous attempt at this task was stopped before it ended, through no fault of yours (a restart,\n"
            "a stop, a lost lease or a paused provider). This conversation continues it. Look at the worktree\n"
            "(`git status`, `git diff`) before you go on: what you changed before may not be there any more\n"
            f"(swarm kept it as `refs/swarm/wip/{agent_id}/{task_id}`). Then finish the task."
        )
    else:
        resumed = ""
        text = text.replace("$interrupted\n\n", "")
    return Template(text).safe_substitute(
        task_id=task_id,
        interrupted=resumed,
        title=title,
        body=body.strip(),
        epic=epic,
        attempt=str(attempt),
        dependencies=deps,
        agent_id=agent_id,
        worktree=str(worktree),
        branch=branch,
        previous_failure=failure,
        ask_timeout=str(ASK_TIMEOUT_SECONDS),
    )
