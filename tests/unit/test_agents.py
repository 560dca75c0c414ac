"""Agent templates, the command built from them, CLI detection and the prompt (swarm.agents)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from swarm import agents
from swarm.agents import (
    KINDS,
    AgentTemplate,
    build_command,
    check_agent_cli,
    known_failure,
    load_template,
    parse_usage,
    render_prompt,
    root_permission_problem,
    templates_dir,
)
from swarm.errors import BadInput, SwarmError

PROMPT_FILE = Path("/tmp/swarm/prompts/T1.md")
WORKTREE = Path("/repo/.worktrees/agent-1")


def _build(kind: str, **overrides: str) -> list[str]:
    args: dict[str, str] = {"model": "sonnet", "permission_mode": "acceptEdits", "task_id": "T1"}
    args.update(overrides)
    command = args.pop("command", None)
    return build_command(
        load_template(kind),
        model=args["model"],
        permission_mode=args["permission_mode"],
        prompt_file=PROMPT_FILE,
        worktree=WORKTREE,
        task_id=args["task_id"],
        command=command,
    ).argv


# ----------------------------------------------------------------------------------------------------
# Templates


def test_the_four_kinds_are_discovered() -> None:
    assert set(KINDS) >= {"claude", "codex", "aider", "command"}
    assert (templates_dir() / "prompt.md").is_file()


@pytest.mark.parametrize("kind", ["claude", "codex", "aider", "command"])
def test_template_loads_with_every_field(kind: str) -> None:
    template = load_template(kind)
    assert template.kind == kind
    assert template.description.strip()
    assert template.notes.strip()
    assert template.argv
    assert template.prompt in ("stdin", "file")
    assert template.waiting_patterns
    assert template.rate_limit_patterns
    assert isinstance(template.env, dict)
    for pattern in (*template.waiting_patterns, *template.rate_limit_patterns):
        re.compile(pattern)
    if kind == "command":
        assert template.binary == ""
    elif template.argv[:2] == ("/bin/sh", "-c"):
        # A shell front (codex): "$0" names the CLI, which the script execs with the remaining arguments.
        assert template.argv[3] == template.binary
        assert f'exec {template.binary} "$@"' in template.argv[2]
        assert template.version_args == ("--version",)
    else:
        assert template.binary == template.argv[0]
        assert template.version_args == ("--version",)
    # The prompt reaches a "file" agent only through {prompt_file}.
    if template.prompt == "file":
        assert any("{prompt_file}" in part for part in template.argv)


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("claude", "Do you want to proceed?"),
        ("claude", "Overwrite it? (y/n)"),
        ("aider", "Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:"),
        ("codex", "Allow command? [y/N]"),
    ],
)
def test_waiting_patterns_match_prompts(kind: str, line: str) -> None:
    assert any(re.search(p, line) for p in load_template(kind).waiting_patterns)


@pytest.mark.parametrize(
    ("kind", "line", "limited"),
    [
        ("claude", "Claude AI usage limit reached|1750000000", True),
        ("claude", 'API Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}', True),
        ("codex", "stream error: exceeded retry limit, last status: 429 Too Many Requests", True),
        ("aider", "litellm.RateLimitError: AnthropicException - rate limited", True),
        ("claude", "Please try again in 20 seconds.", True),
        # An agent implementing rate limiting talks about it; token counts may be 429.
        ("claude", "Added a rate limit middleware and its tests", False),
        ("claude", '{"usage":{"input_tokens":429,"output_tokens":12}}', False),
    ],
)
def test_rate_limit_patterns(kind: str, line: str, limited: bool) -> None:
    assert any(re.search(p, line) for p in load_template(kind).rate_limit_patterns) is limited


def test_unknown_kind_is_bad_input_with_a_suggestion() -> None:
    with pytest.raises(BadInput) as info:
        load_template("claud")
    text = info.value.render()
    assert "unknown agent kind 'claud'" in text
    assert "did you mean 'claude'" in text
    assert "codex" in text
    assert info.value.exit_code == 2


def test_kind_cannot_name_a_file_outside_the_folder() -> None:
    with pytest.raises(BadInput):
        load_template("../prompt")


# ----------------------------------------------------------------------------------------------------
# build_command


def test_claude_command_substitutes_model_and_permission_mode() -> None:
    built = build_command(
        load_template("claude"),
        model="opus",
        permission_mode="bypassPermissions",
        prompt_file=PROMPT_FILE,
        worktree=WORKTREE,
        task_id="T1",
    )
    assert built.argv[:2] == ["claude", "-p"]
    assert built.argv[built.argv.index("--model") + 1] == "opus"
    assert built.argv[built.argv.index("--permission-mode") + 1] == "bypassPermissions"
    assert "--output-format" in built.argv
    assert built.stdin_prompt is True
    assert built.env["SWARM_PROMPT_FILE"] == str(PROMPT_FILE)
    assert not any("{" in part for part in built.argv)


#: Claude Code's tools that move the work out of swarm's worktree (EnterWorktree, a subagent's own worktree) or
#: schedule work beyond the run (cron jobs, wake-ups, background workflows, its own task list), as 2.1.197 names
#: them in the init event ("Task" there is the "Agent" tool of the API).
CLAUDE_TOOLS_OFF = {
    "Agent",
    "EnterWorktree",
    "ExitWorktree",
    "CronCreate",
    "CronDelete",
    "CronList",
    "ScheduleWakeup",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "Workflow",
}


def test_claude_gets_no_worktree_task_or_cron_tools() -> None:
    argv = _build("claude")
    denied = argv[argv.index("--disallowedTools") + 1]
    assert set(denied.split(",")) == CLAUDE_TOOLS_OFF
    # One argument: the option takes every following word up to the next option, and the worker appends
    # --mcp-config after it, so a list of words would be fragile.
    after = argv[argv.index("--disallowedTools") + 2 :]
    assert not after or after[0].startswith("-")


def test_claude_bash_commands_may_run_as_long_as_the_prompt_lets_an_ask_wait() -> None:
    built = build_command(
        load_template("claude"),
        model="sonnet",
        permission_mode="acceptEdits",
        prompt_file=PROMPT_FILE,
        worktree=WORKTREE,
        task_id="T1",
    )
    promised = re.search(r"swarm msg ask \"your question\" --timeout (\d+)", _render("body"))
    assert promised is not None
    asked_ms = int(promised.group(1)) * 1000
    assert asked_ms == agents.ASK_TIMEOUT_SECONDS * 1000  # one constant for the prompt and the environment
    # Claude Code's Bash tool stops a command after BASH_DEFAULT_TIMEOUT_MS (2 minutes unless set), and a
    # longer timeout the model asks for is capped at BASH_MAX_TIMEOUT_MS: both must outlast the ask.
    for name in ("BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS"):
        assert int(built.env[name]) > asked_ms, name
    assert not any("{" in value for value in built.env.values())


def _run_codex_front(
    tmp_path: Path, database_url: str, model: str = "gpt-5-codex", channel: str | None = None
) -> list[str]:
    """Run the codex template's argv with a fake ``codex`` that prints its arguments and its stdin."""
    fake = tmp_path / "bin" / "codex"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\nsed "s/^/stdin:/"\n', encoding="utf-8")
    fake.chmod(0o755)
    argv = _build("codex", model=model)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "SWARM_DATABASE_URL": database_url}
    if channel is not None:
        env["SWARM_CHANNEL"] = channel
    done = subprocess.run(argv, input="RUN: echo $HOME\n", capture_output=True, text=True, env=env, check=True)
    return done.stdout.splitlines()


def test_codex_reads_the_prompt_from_stdin(tmp_path: Path) -> None:
    out = _run_codex_front(tmp_path, "sqlite:////repo/.swarm/swarm.db")
    args = [line.removeprefix("arg:") for line in out if line.startswith("arg:")]
    assert args[0] == "exec"
    assert args[-1] == "-"
    assert out[-1] == "stdin:RUN: echo $HOME"
    assert "--full-auto" not in args  # removed from codex 0.171
    assert args[args.index("--sandbox") + 1] == "workspace-write"
    assert args[args.index("--model") + 1] == "gpt-5-codex"
    # Commands in a plain (not login) shell keep PATH, so `swarm` is found; the SQLite folder is writable.
    assert "allow_login_shell=false" in args
    assert args[args.index("--add-dir") + 1] == "/repo/.swarm"
    assert not any("network_access" in a for a in args)


def test_codex_on_a_database_server_gets_network_access(tmp_path: Path) -> None:
    args = [line.removeprefix("arg:") for line in _run_codex_front(tmp_path, "postgresql://db.example/swarm", "")]
    assert "sandbox_workspace_write.network_access=true" in args
    assert "--add-dir" not in args
    assert "--model" not in args  # an empty model drops the option


def test_codex_under_a_worker_reaches_its_channel(tmp_path: Path) -> None:
    # codex's sandbox refuses connect() on Unix sockets too: the channel needs its network access, and the
    # database folder need not be writable (the agent never opens the database).
    out = _run_codex_front(tmp_path, "", channel="/repo/.swarm/run/agent-1/channel.sock")
    args = [line.removeprefix("arg:") for line in out if line.startswith("arg:")]
    assert "sandbox_workspace_write.network_access=true" in args
    assert "--add-dir" not in args


def test_aider_gets_the_prompt_file() -> None:
    template = load_template("aider")
    built = build_command(
        template,
        model="gpt-4o",
        permission_mode="acceptEdits",
        prompt_file=PROMPT_FILE,
        worktree=WORKTREE,
        task_id="T1",
    )
    assert built.stdin_prompt is False
    assert built.argv[built.argv.index("--message-file") + 1] == str(PROMPT_FILE)
    assert {"--yes-always", "--no-auto-commits"} <= set(built.argv)


def test_empty_model_drops_the_option() -> None:
    argv = _build("claude", model="")
    assert "--model" not in argv
    assert argv[0] == "claude"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"


def test_user_command_keeps_braces_and_dollars() -> None:
    user = 'echo "${SWARM_TASK_ID}" {model} {} $HOME && awk \'{print $1}\' "$SWARM_PROMPT_FILE"'
    built = build_command(
        load_template("command"),
        model="sonnet",
        permission_mode="acceptEdits",
        prompt_file=PROMPT_FILE,
        worktree=WORKTREE,
        task_id="T1",
        command=user,
    )
    assert built.argv == ["/bin/sh", "-c", user]
    assert built.stdin_prompt is True
    assert built.env["SWARM_PROMPT_FILE"] == str(PROMPT_FILE)
    assert built.env["SWARM_TASK_ID"] == "T1"


def test_substituted_values_are_not_scanned_again() -> None:
    # A model named like a placeholder stays literal: substitution is one pass.
    argv = _build("claude", model="{task_id}")
    assert argv[argv.index("--model") + 1] == "{task_id}"


@pytest.mark.parametrize("command", [None, "", "   "])
def test_command_kind_needs_a_command(command: str | None) -> None:
    with pytest.raises(BadInput, match="needs a command"):
        build_command(
            load_template("command"),
            model="",
            permission_mode="acceptEdits",
            prompt_file=PROMPT_FILE,
            worktree=WORKTREE,
            task_id="T1",
            command=command,
        )


@pytest.mark.parametrize("kind", ["claude", "codex", "aider", "command"])
def test_prompt_text_never_reaches_argv(tmp_path: Path, kind: str) -> None:
    prompt = "do it; rm -rf / `whoami` $(id) && echo 'x' | tee \"y\" > z {model}"
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text(prompt, encoding="utf-8")
    built = build_command(
        load_template(kind),
        model="m",
        permission_mode="acceptEdits",
        prompt_file=prompt_file,
        worktree=tmp_path,
        task_id="T1",
        command="cat" if kind == "command" else None,
    )
    for part in built.argv:
        assert "rm -rf" not in part
        assert "$(id)" not in part
    assert prompt not in built.env.values()


# ----------------------------------------------------------------------------------------------------
# check_agent_cli


def _fake_template(binary: str = "fakeagent") -> AgentTemplate:
    return dataclasses.replace(load_template("claude"), kind="fake", binary=binary)


def test_check_agent_cli_finds_a_fake_binary(tmp_path: Path) -> None:
    fake = tmp_path / "fakeagent"
    fake.write_text('#!/bin/sh\necho "1.2.3 (Fake)"\necho second line\n', encoding="utf-8")
    fake.chmod(0o755)
    version = check_agent_cli(_fake_template(), env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert version == "1.2.3 (Fake)"


def test_check_agent_cli_missing_binary_is_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput) as info:
        check_agent_cli(load_template("claude"), env={"PATH": str(empty)})
    text = info.value.render()
    assert "the claude agent needs the 'claude' command, which is not on PATH" in text
    assert "npm install -g @anthropic-ai/claude-code" in text


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("codex", "npm install -g @openai/codex"), ("aider", "pip install aider-chat")],
)
def test_install_hints(tmp_path: Path, kind: str, hint: str) -> None:
    with pytest.raises(BadInput, match=re.escape(hint)):
        check_agent_cli(load_template(kind), env={"PATH": str(tmp_path)})


def test_check_agent_cli_for_command_kind_is_none(tmp_path: Path) -> None:
    assert check_agent_cli(load_template("command"), env={"PATH": str(tmp_path)}) is None


def test_check_agent_cli_hanging_binary_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "VERSION_TIMEOUT_SECONDS", 0.2)
    fake = tmp_path / "fakeagent"
    fake.write_text("#!/bin/sh\nexec sleep 5\n", encoding="utf-8")
    fake.chmod(0o755)
    version = check_agent_cli(_fake_template(), env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert version is not None
    assert version.startswith("unknown")


# ----------------------------------------------------------------------------------------------------
# root_permission_problem


@pytest.mark.parametrize(
    ("kind", "uid", "mode", "env", "warned"),
    [
        ("claude", 0, "bypassPermissions", {}, True),
        ("claude", 0, "bypassPermissions", {"IS_SANDBOX": "0"}, True),
        ("claude", 0, "bypassPermissions", {"IS_SANDBOX": "1"}, False),
        ("claude", 0, "acceptEdits", {}, False),
        ("claude", 1000, "bypassPermissions", {}, False),
        ("codex", 0, "bypassPermissions", {}, False),
    ],
)
def test_root_permission_problem(
    monkeypatch: pytest.MonkeyPatch, kind: str, uid: int, mode: str, env: dict[str, str], warned: bool
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    problem = root_permission_problem(load_template(kind), mode, env)
    if warned:
        assert problem is not None
        assert "IS_SANDBOX=1" in problem
        assert "\n" not in problem
    else:
        assert problem is None


# ----------------------------------------------------------------------------------------------------
# render_prompt


def _render(body: str, title: str = "Add the parser", deps: list[tuple[str, str, str | None]] | None = None) -> str:
    return render_prompt(
        task_id="T2",
        title=title,
        body=body,
        epic="E1",
        attempt=2,
        dependencies=deps or [],
        agent_id="agent-3",
        worktree=WORKTREE,
        branch="swarm/E1/agent-3",
    )


def test_render_prompt_has_body_deps_and_how_to_ask() -> None:
    text = _render(
        "Write parse() in parser.py.",
        deps=[("T1", "Add the lexer", "0123456789abcdef0123"), ("T0", "Scaffold", None)],
    )
    for expected in (
        "Write parse() in parser.py.",
        "T2",
        "Add the parser",
        "E1",
        "attempt 2",
        "agent-3",
        str(WORKTREE),
        "swarm/E1/agent-3",
        "T1: Add the lexer",
        "0123456789ab",
        "T0: Scaffold",
        'swarm msg ask "your question" --timeout 600',
        "msg_ask",
        "team",
        "do not push",
    ):
        assert expected in text, expected
    assert "$" not in text.replace("$title", "")  # every placeholder was filled


def test_render_prompt_of_a_first_attempt_has_no_failure_section() -> None:
    text = _render("body")
    assert "previous attempt" not in text
    assert "\n\n\n" not in text  # the section's placeholder line is gone, not left blank


def test_render_prompt_quotes_the_previous_failure() -> None:
    reason = "verify failed (exit 1): FAILED tests/test_x.py::test_y | assert 2 == 3\nsecond line $title"
    text = render_prompt(
        task_id="T2",
        title="Add the parser",
        body="body",
        epic="E1",
        attempt=2,
        dependencies=[],
        agent_id="agent-3",
        worktree=WORKTREE,
        branch="swarm/E1/agent-3",
        previous_failure=reason,
    )
    assert "## The previous attempt failed" in text
    assert "> verify failed (exit 1): FAILED tests/test_x.py::test_y | assert 2 == 3\n> second line $title" in text
    assert text.index("previous attempt failed") < text.index("## What to do")

    assert "depends on no other task" in _render("body")


def test_render_prompt_keeps_dollars_in_the_body_verbatim() -> None:
    body = "Use $title and ${x} and $$ and $1 in the shell; cost is $5."
    text = _render(body, title="Title with $task_id")
    assert body in text
    assert "Title with $task_id" in text
    assert "Title with T2" not in text


# ----------------------------------------------------------------------------------------------------
# Known failures

#: The last lines each real CLI printed when it gave up (aider exits 0 then): against a closed loopback port and
#: against a server that refuses the key (Claude Code 2.1.197, codex-cli 0.171.0, aider 0.86.2).
CLAUDE_RESULT = (
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"num_turns":1,'
    '"result":"API Error: Unable to connect to API (ConnectionRefused)","total_cost_usd":0}'
)
REAL_FAILURES = [
    pytest.param(
        "claude",
        [
            '{"type":"system","subtype":"api_retry","attempt":10,"max_retries":10,"error_status":null}',
            '{"type":"assistant","message":{"model":"<synthetic>","role":"assistant","content":[{"type":"text",'
            '"text":"API Error: Unable to connect to API (ConnectionRefused)"}]},"error":"server_error"}',
            CLAUDE_RESULT,
        ],
        "API Error: Unable to connect to API (ConnectionRefused)",
        id="claude-unreachable",
    ),
    pytest.param(
        "claude",
        [
            '{"type":"assistant","message":{"content":[{"type":"text",'
            '"text":"Invalid API key · Fix external API key"}]}}',
            '{"type":"result","subtype":"success","is_error":true,"api_error_status":401,'
            '"result":"Invalid API key · Fix external API key"}',
        ],
        "Invalid API key · Fix external API key",
        id="claude-bad-key",
    ),
    pytest.param(
        "claude",
        ["API Error: Unable to connect to API (ConnectionRefused)"],
        "API Error: Unable to connect to API (ConnectionRefused)",
        id="claude-text-output",
    ),
    pytest.param(
        "codex",
        [
            "ERROR: Reconnecting... 5/5",
            "ERROR: unexpected status 401 Unauthorized: invalid x-api-key, url: http://127.0.0.1:9/v1/responses",
            "ERROR: unexpected status 401 Unauthorized: invalid x-api-key, url: http://127.0.0.1:9/v1/responses",
        ],
        "ERROR: unexpected status 401 Unauthorized: invalid x-api-key, url: http://127.0.0.1:9/v1/responses",
        id="codex-bad-key",
    ),
    pytest.param(
        "aider",
        [
            "Repo-map: using 4096 tokens, auto refresh",
            "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid",
            "x-api-key",
            "The API provider is not able to authenticate you. Check your API key.",
        ],
        "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid | x-api-key | "
        "The API provider is not able to authenticate you. Check your API key.",
        id="aider-bad-key",
    ),
    pytest.param(
        "aider",
        [
            "Retrying in 32.0 seconds...",
            "litellm.InternalServerError: InternalServerError: OpenAIException - Connection",
            "error.",
            "The API provider's servers are down or overloaded.",
        ],
        "litellm.InternalServerError: InternalServerError: OpenAIException - Connection | error. | "
        "The API provider's servers are down or overloaded.",
        id="aider-unreachable",
    ),
]


def _patterns(kind: str) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in load_template(kind).failure_patterns]


@pytest.mark.parametrize(("kind", "tail", "reason"), REAL_FAILURES)
def test_the_real_failure_outputs_are_known(kind: str, tail: list[str], reason: str) -> None:
    assert known_failure(_patterns(kind), tail, "Write the parser.") == reason


@pytest.mark.parametrize(
    ("kind", "tail"),
    [
        pytest.param(
            "claude",
            ['{"type":"result","subtype":"success","is_error":false,"result":"Done: wrote parser.py"}'],
            id="claude-success",
        ),
        pytest.param(
            "aider",
            [
                "litellm.InternalServerError: InternalServerError: OpenAIException - Connection",
                "The API provider's servers are down or overloaded.",
                "Retrying in 0.2 seconds...",
                "parser.py",
                "Applied edit to parser.py",
                "Tokens: 1.2k sent, 34 received. Cost: $0.0019 message, $0.0042 session.",
            ],
            id="aider-recovered-after-a-retry",
        ),
        pytest.param("codex", ["tokens used", "1,234"], id="codex-success"),
    ],
)
def test_a_run_that_ended_well_shows_no_known_failure(kind: str, tail: list[str]) -> None:
    assert known_failure(_patterns(kind), tail, "Write the parser.") is None


def test_a_line_that_echoes_the_prompt_is_not_a_failure() -> None:
    prompt = "Handle this error:\n\n    The API provider is not able to authenticate you.\n"
    echo = ["Handle this error:", "The API provider is not able to authenticate you."]
    assert known_failure(_patterns("aider"), echo, prompt) is None
    # The same words printed by the CLI itself, in a line of its own that the prompt does not hold, still count.
    real = [*echo, "The API provider is not able to authenticate you. Check your API key."]
    assert known_failure(_patterns("aider"), real, prompt) == real[-1]


def test_the_previous_failure_quoted_in_the_prompt_is_not_mistaken_for_an_echo() -> None:
    reason = "ERROR: unexpected status 401 Unauthorized: invalid x-api-key"
    prompt = _render("body").replace("## What to do", f"> {reason}\n\n## What to do")
    assert known_failure(_patterns("codex"), [f"> {reason}"], prompt) is None  # the agent printing its prompt
    assert known_failure(_patterns("codex"), [reason], prompt) == reason  # codex failing the same way again


def test_the_command_kind_knows_no_failure_output() -> None:
    assert load_template("command").failure_patterns == ()


def test_a_bad_failure_pattern_is_a_broken_template() -> None:
    data = tomllib.loads((templates_dir() / "agents" / "aider.toml").read_text(encoding="utf-8"))
    data["failure_patterns"] = ["(unclosed"]
    with pytest.raises(SwarmError, match="bad regex"):
        agents._parse_template("aider", "aider.toml", data)


# ----------------------------------------------------------------------------------------------------
# Cost and tokens


def _usage(kind: str, *lines: str) -> dict[str, object]:
    usage: dict[str, object] = {}
    for line in lines:
        parse_usage(load_template(kind).usage, line, usage)
    return {k: v for k, v in usage.items() if not k.startswith("_")}


def test_claude_usage_from_the_result_line() -> None:
    result = '{"type":"result","total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5,"x":1}}'
    assert _usage("claude", '{"type":"assistant","total_cost_usd":9}', result) == {"cost_usd": 0.25, "tokens": 15}


def test_aider_usage_adds_up_replies_and_keeps_the_session_cost() -> None:
    assert _usage(
        "aider",
        "Tokens: 2.3k sent, 34 received. Cost: $0.0019 message, $0.0019 session.",
        "Tokens: 1,200 sent, 66 received. Cost: $0.0021 message, $0.0040 session.",
    ) == {"tokens": 2300 + 34 + 1200 + 66, "cost_usd": 0.004}
    assert _usage("aider", "Tokens: 783 sent, 34 received.") == {"tokens": 817}  # an unpriced model


def test_codex_usage_from_the_tokens_used_lines() -> None:
    assert _usage("codex", "codex", "DONE", "tokens used", "1,360", "DONE") == {"tokens": 1360}
    assert _usage("codex", "tokens used: 42") == {"tokens": 42}
    assert _usage("codex", "360", "tokens used", "not a number", "12") == {}


def test_command_kind_reads_only_claudes_stream_json_cost() -> None:
    # A --command agent often wraps `claude -p --output-format stream-json`; other CLIs' lines mean nothing there.
    assert load_template("command").usage == "claude-stream-json"
    assert _usage("command", "tokens used", "12", "Cost: $1 message, $2 session.") == {}


def test_aider_files_are_excluded_from_git() -> None:
    assert load_template("aider").git_exclude == (".aider*",)
    assert load_template("claude").git_exclude == ()


def test_bad_usage_format_is_a_broken_template() -> None:
    with pytest.raises(SwarmError, match="usage must be one of"):
        agents._parse_template("x", "x.toml", {**_template_data("claude"), "usage": "tokens"})


def _template_data(kind: str) -> dict[str, object]:
    return dict(tomllib.loads((templates_dir() / "agents" / f"{kind}.toml").read_text(encoding="utf-8")))


def test_only_claudes_stream_json_tool_results_are_tool_output() -> None:
    result = '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"rate limited"}]}}'
    assert agents.tool_output("claude-stream-json", result)
    assert not agents.tool_output("claude-stream-json", '{"type":"assistant","message":{"content":[]}}')
    assert not agents.tool_output("codex", result)  # codex prints no JSON events: any line may be codex's own


def test_echoes_ignores_whitespace_only() -> None:
    lines = agents.prompt_lines("Retry on  HTTP 429:\n\n    Error: rate limited\n")
    assert agents.echoes("Error: rate limited", lines)
    assert agents.echoes("Retry on HTTP 429:", lines)
    assert not agents.echoes("Error: rate limited, try again in 1 second", lines)
