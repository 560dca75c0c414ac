"""README and --help stay in sync: every command the CLI has is documented in the README."""

from __future__ import annotations

import re

import typer

from swarm.cli.main import app
from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_command_is_in_the_readme() -> None:
    root = typer.main.get_command(app)
    missing: list[str] = []
    for name, command in getattr(root, "commands", {}).items():
        subs = getattr(command, "commands", None)
        if subs:
            for sub in subs:
                # Groups are documented as `swarm queue init|claim|...` or one line per verb.
                if not re.search(rf"swarm {name} [^\n]*\b{sub}\b", README):
                    missing.append(f"swarm {name} {sub}")
        elif f"swarm {name}" not in README:
            missing.append(f"swarm {name}")
    assert missing == [], f"commands missing from README.md: {missing}"


def test_every_launch_and_teardown_flag_is_in_the_readme() -> None:
    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    for name in ("launch", "teardown", "status"):
        for param in commands[name].params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--") and flag not in ("--help", "--json"):
                    assert flag in README, f"swarm {name} {flag} is not in README.md"


def test_the_readme_says_task_commits_skip_the_hooks() -> None:
    """Task commits are made with --no-verify (runtime/git.py commit_all): a user must not find out by surprise."""
    assert "--no-verify" in README
    paragraph = next(p for p in README.split("\n\n") if "--no-verify" in p)
    assert "hook" in paragraph
    assert "swarm merge --test" in paragraph  # where checks belong instead


def test_the_readme_says_how_agent_processes_are_found_and_logs_are_capped() -> None:
    assert "PR_SET_CHILD_SUBREAPER" in README
    assert "log_max_bytes" in README
