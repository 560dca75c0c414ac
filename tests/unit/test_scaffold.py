"""``swarm init``: the template config, the example backlog, refusal, --force and .gitignore handling."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from swarm.cli.config_cmd import register
from swarm.config import CONFIG_KEYS, Config, load_config
from swarm.errors import BadInput
from swarm.models import is_valid_id
from swarm.scaffold import (
    EXAMPLE_SPECS,
    SWARM_TOML,
    atomic_write_text,
    scaffold_targets,
    update_gitignore,
    write_scaffold,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (but .git) with its content and mtime, to prove nothing changed."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts[:1]
    }


def front_matter(text: str) -> tuple[dict[str, object], str]:
    match = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, flags=re.DOTALL)
    assert match, "a spec starts with YAML front matter between --- lines"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict)
    return data, match.group(2)


# -- the template ----------------------------------------------------------------------------------------


def test_template_names_every_key_of_the_model() -> None:
    data = tomllib.loads(SWARM_TOML)
    keys = {f"{section}.{key}" for section, table in data.items() for key in table}
    assert keys == set(CONFIG_KEYS), "add new settings to swarm/scaffold.py SWARM_TOML with a comment"


def test_template_holds_exactly_the_defaults() -> None:
    assert Config.model_validate(tomllib.loads(SWARM_TOML)) == Config()


def test_template_explains_every_key() -> None:
    lines = SWARM_TOML.splitlines()
    for number, line in enumerate(lines):
        if re.match(r"[a-z_]+ = ", line):
            assert lines[number - 1].startswith("#"), f"no comment above {line!r}"


def test_written_config_loads_back_to_the_defaults(repo: Path) -> None:
    write_scaffold(repo)
    loaded = load_config(repo, env={})
    assert loaded.config == Config()
    assert set(loaded.sources.values()) == {"swarm.toml"}


# -- the example backlog ---------------------------------------------------------------------------------


def test_example_specs_are_valid(repo: Path) -> None:
    write_scaffold(repo)
    specs = {}
    for path in sorted((repo / "specs").glob("*.md")):
        data, body = front_matter(path.read_text(encoding="utf-8"))
        specs[data["id"]] = (data, body)
    assert set(specs) == {"S001", "S002", "S003"}
    for spec_id, (data, body) in specs.items():
        assert isinstance(spec_id, str)
        assert is_valid_id(spec_id)
        assert data["epic"] == "E001"
        assert isinstance(data["title"], str)
        assert data["title"].strip()
        assert len(body.split()) > 20, "the body is the agent's prompt: real instructions"
        depends_on = data.get("depends_on", [])
        assert isinstance(depends_on, list)
        assert all(dep in specs for dep in depends_on)
        assert set(data) <= {
            "id",
            "epic",
            "title",
            "depends_on",
            "priority",
            "requires",
            "max_attempts",
            "timeout_seconds",
        }
    assert specs["S001"][0].get("depends_on", []) == []
    assert specs["S002"][0]["depends_on"] == ["S001"]
    assert specs["S003"][0]["depends_on"] == ["S001"]


def test_example_spec_files_are_named_after_their_ids() -> None:
    for name, text in EXAMPLE_SPECS.items():
        data, _ = front_matter(text)
        assert name.startswith(f"{data['id']}-")


# -- writing, refusing, forcing --------------------------------------------------------------------------


def test_init_writes_config_specs_and_gitignore(repo: Path) -> None:
    written = write_scaffold(repo)
    assert written == [*scaffold_targets(repo)[1:], repo / "swarm.toml", repo / ".gitignore"]
    assert (repo / "swarm.toml").read_text(encoding="utf-8") == SWARM_TOML
    umask = os.umask(0)
    os.umask(umask)
    for path in written:
        assert path.is_file()
        # New files get the usual mode, not the 0600 of the temporary file they were written through.
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    # No temporary file is left behind.
    assert not list(repo.rglob("*.tmp"))


def test_init_refuses_a_second_time_and_changes_nothing(repo: Path) -> None:
    write_scaffold(repo)
    (repo / "swarm.toml").write_text("[swarm]\nmax_agents = 2\n", encoding="utf-8")
    before = snapshot(repo)
    with pytest.raises(BadInput) as info:
        write_scaffold(repo)
    assert info.value.exit_code == 2
    assert "swarm.toml" in str(info.value)
    assert "--force" in str(info.value)
    assert snapshot(repo) == before


def test_init_refuses_if_any_one_target_exists(repo: Path) -> None:
    spec = repo / "specs" / "S002-development-guide.md"
    spec.parent.mkdir()
    spec.write_text("mine\n", encoding="utf-8")
    before = snapshot(repo)
    with pytest.raises(BadInput, match=r"S002-development-guide\.md"):
        write_scaffold(repo)
    assert snapshot(repo) == before
    assert not (repo / "swarm.toml").exists()
    assert not (repo / ".gitignore").exists()


def test_force_overwrites_targets_and_keeps_other_files(repo: Path) -> None:
    write_scaffold(repo)
    (repo / "swarm.toml").write_text("[swarm]\nmax_agents = 2\n", encoding="utf-8")
    (repo / "specs" / "S001-project-overview.md").write_text("edited\n", encoding="utf-8")
    mine = repo / "specs" / "S100-mine.md"
    mine.write_text("my own spec\n", encoding="utf-8")
    write_scaffold(repo, force=True)
    assert (repo / "swarm.toml").read_text(encoding="utf-8") == SWARM_TOML
    assert (repo / "specs" / "S001-project-overview.md").read_text(encoding="utf-8") == EXAMPLE_SPECS[
        "S001-project-overview.md"
    ]
    assert mine.read_text(encoding="utf-8") == "my own spec\n"
    assert (repo / ".gitignore").read_text(encoding="utf-8").count(".swarm/") == 1


def test_force_keeps_the_mode_of_replaced_files(repo: Path) -> None:
    write_scaffold(repo)
    (repo / "swarm.toml").chmod(0o640)
    write_scaffold(repo, force=True)
    assert stat.S_IMODE((repo / "swarm.toml").stat().st_mode) == 0o640


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8") == "new\n"


# -- .gitignore ------------------------------------------------------------------------------------------


def test_gitignore_is_created(repo: Path) -> None:
    assert update_gitignore(repo) == repo / ".gitignore"
    lines = (repo / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".swarm/" in lines
    assert ".worktrees/" in lines


def test_gitignore_keeps_content_and_adds_only_what_is_missing(repo: Path) -> None:
    (repo / ".gitignore").write_text("node_modules/\n/.swarm\n*.pyc", encoding="utf-8")
    update_gitignore(repo)
    text = (repo / ".gitignore").read_text(encoding="utf-8")
    assert text.startswith("node_modules/\n/.swarm\n*.pyc\n")
    lines = text.splitlines()
    assert ".worktrees/" in lines
    assert ".swarm/" not in lines, "/.swarm already ignores it"
    assert text.endswith("\n")


def test_gitignore_already_complete_is_untouched(repo: Path) -> None:
    (repo / ".gitignore").write_text(".swarm/\n.worktrees\n", encoding="utf-8")
    before = snapshot(repo)
    assert update_gitignore(repo) is None
    assert snapshot(repo) == before
    write_scaffold(repo)
    assert (repo / ".gitignore").read_text(encoding="utf-8") == ".swarm/\n.worktrees\n"


# -- the command -----------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def test_cli_init(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")  # init writes at the repository root, not in the cwd
    result = CliRunner().invoke(cli(), ["init"])
    assert result.exit_code == 0, result.output
    assert (repo / "swarm.toml").is_file()
    assert (repo / "specs" / "S001-project-overview.md").is_file()
    assert "wrote swarm.toml" in result.stdout
    assert "swarm launch E001" in result.stdout


def test_cli_init_refuses_then_force(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    runner = CliRunner()
    assert runner.invoke(cli(), ["init"]).exit_code == 0
    before = snapshot(repo)
    refused = runner.invoke(cli(), ["init"])
    assert isinstance(refused.exception, BadInput)
    assert refused.exception.exit_code == 2
    assert snapshot(repo) == before
    forced = runner.invoke(cli(), ["init", "--force"])
    assert forced.exit_code == 0, forced.output


def test_every_option_has_help() -> None:
    result = CliRunner().invoke(cli(), ["init", "--help"])
    assert "--force" in result.stdout
    assert "Overwrite" in result.stdout
    result = CliRunner().invoke(cli(), ["config", "show", "--help"])
    assert "--json" in result.stdout
    assert "JSON object" in result.stdout


# -- --claude: the lead's slash command -------------------------------------------------------------------


def test_init_claude_writes_the_slash_command_too(repo: Path) -> None:
    written = write_scaffold(repo, claude=True)
    command = repo / ".claude" / "commands" / "swarm.md"
    assert written == [*scaffold_targets(repo)[1:], repo / "swarm.toml", command, repo / ".gitignore"]
    text = command.read_text(encoding="utf-8")
    assert text.startswith("---\ndescription: ")
    assert "$ARGUMENTS" in text
    # It names every lead tool, and how to add the server when it is missing.
    for tool in ("swarm_launch", "swarm_status", "questions", "msg_reply", "swarm_teardown", "queue_retry"):
        assert tool in text
    assert "claude mcp add swarm -- swarm mcp --lead" in text


def test_init_claude_in_an_initialised_repository_writes_only_the_command(repo: Path) -> None:
    write_scaffold(repo)
    (repo / "swarm.toml").write_text("[swarm]\nmax_agents = 2\n", encoding="utf-8")
    assert write_scaffold(repo, claude=True) == [repo / ".claude" / "commands" / "swarm.md"]
    assert (repo / "swarm.toml").read_text(encoding="utf-8") == "[swarm]\nmax_agents = 2\n"
    before = snapshot(repo)
    with pytest.raises(BadInput, match=r"\.claude/commands/swarm\.md.*--force"):
        write_scaffold(repo, claude=True)
    assert snapshot(repo) == before


def test_cli_init_claude(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli(), ["init", "--claude"])
    assert result.exit_code == 0, result.output
    assert "wrote .claude/commands/swarm.md" in result.output
    assert "claude mcp add swarm -- swarm mcp --lead" in result.output
