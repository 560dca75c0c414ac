"""README and --help stay in sync: every command the CLI has is documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

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


def _sources() -> list[Path]:
    roots = [REPO_ROOT / "swarm", REPO_ROOT / "tests", REPO_ROOT / "benchmarks"]
    files = [p for root in roots for p in root.rglob("*.py")]
    return [*files, REPO_ROOT / "README.md", *(REPO_ROOT / "templates").rglob("*")]


def test_comments_cite_the_contract_in_the_repository_never_an_outside_document() -> None:
    # "DESIGN 8" named a file outside the repository: a reader of the code could not follow it.
    outside = re.compile(r"\bDESIGN(?:\.md)?\s*§?\d")
    hits = [
        f"{path.relative_to(REPO_ROOT)}:{n}"
        for path in _sources()
        if path.is_file() and path != Path(__file__)
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == [], f"cite docs/contract.md §N instead: {hits}"


def test_every_contract_citation_names_a_section_that_exists() -> None:
    contract = (REPO_ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## §(\d+) ", contract, flags=re.MULTILINE))
    assert sections == {str(n) for n in range(1, 10)}
    cited = {
        (f"{path.relative_to(REPO_ROOT)}", number)
        for path in _sources()
        if path.is_file()
        for number in re.findall(r"contract\.md §(\d+)", path.read_text(encoding="utf-8", errors="replace"))
    }
    assert cited, "no code cites docs/contract.md"
    assert [c for c in cited if c[1] not in sections] == []


def test_the_architecture_page_names_every_module_it_lists() -> None:
    page = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:runtime|store|cli)/[a-z_]+|[a-z_]+)`", page.split("## A task's life")[0]))
    modules = (
        {str(p.relative_to(REPO_ROOT / "swarm").with_suffix("")) for p in (REPO_ROOT / "swarm").rglob("*.py")}
        | {p.name for p in (REPO_ROOT / "swarm").iterdir() if p.is_dir()}
        | {"store/", "cli/", "demo/"}
    )
    missing = sorted(n for n in named if "/" in n and n not in modules)
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"
