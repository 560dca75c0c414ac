"""Layered configuration: precedence, sources, environment names, validation and error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from swarm.cli.config_cmd import register
from swarm.config import (
    CONFIG_KEYS,
    Config,
    LoadedConfig,
    QueueSettings,
    env_var_name,
    find_repo_root,
    load_config,
    remember,
)
from swarm.errors import ConfigError


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's or CI's own SWARM_* variables must not leak into any test.
    for name in list(os.environ):
        if name.startswith("SWARM_"):
            monkeypatch.delenv(name)


def write_toml(repo: Path, text: str) -> Path:
    path = repo / "swarm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(repo: Path, overrides: dict[str, object] | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(repo, overrides=overrides, env={} if env is None else env)
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    assert info.value.exit_code == 2
    return message


# -- defaults and precedence -----------------------------------------------------------------------------


def test_defaults_without_file_or_env(repo: Path) -> None:
    loaded = load_config(repo, env={})
    assert loaded.config == Config()
    assert loaded.repo == repo.resolve()
    assert set(loaded.sources) == set(CONFIG_KEYS)
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.config.queue.lease_ttl_seconds == 300.0
    assert loaded.config.swarm.copy_files == [".env"]
    assert loaded.config.agent.permission_mode == "bypassPermissions"


def test_defaults_match_the_design() -> None:
    values = LoadedConfig(Config(), Path("/r"), {}).values()
    assert values == {
        "queue.backlog": "specs",
        "queue.database": "sqlite:///.swarm/swarm.db",
        "queue.lease_ttl_seconds": 300.0,
        "queue.heartbeat_seconds": 30.0,
        "queue.max_attempts": 3,
        "queue.retry_backoff_seconds": 10.0,
        "queue.retry_backoff_max_seconds": 600.0,
        "swarm.max_agents": 5,
        "swarm.worktree_base": ".worktrees",
        "swarm.branch_prefix": "swarm",
        "swarm.copy_files": [".env"],
        "swarm.submodules": True,
        "swarm.setup": [],
        "swarm.task_timeout_seconds": 1800,
        "swarm.max_restarts": 3,
        "swarm.commit_author": "swarm <swarm@localhost>",
        "swarm.tmux_socket": "",
        "swarm.stall_seconds": 300.0,
        "swarm.restart_backoff_seconds": 2.0,
        "swarm.monitor_interval_seconds": 2.0,
        "swarm.remote": "origin",
        "swarm.host_label": "",
        "swarm.lock_timeout_seconds": 120.0,
        "swarm.log_max_bytes": 10_000_000,
        "swarm.verify": "",
        "swarm.sandbox": "none",
        "swarm.sandbox_network": True,
        "swarm.sandbox_home": [],
        "swarm.sandbox_paths": [],
        "agent.kind": "claude",
        "agent.model": "sonnet",
        "agent.permission_mode": "bypassPermissions",
        "agent.keep_context": False,
        "notify.command": [],
        "notify.webhook": "",
        "notify.events": ["question", "escalation", "task_dead", "rate_limited", "epic_done"],
    }


@pytest.mark.parametrize(
    ("toml", "env", "flag", "expected", "source"),
    [
        (False, False, False, 3, "default"),
        (True, False, False, 4, "swarm.toml"),
        (True, True, False, 5, "env SWARM_QUEUE_MAX_ATTEMPTS"),
        (False, True, False, 5, "env SWARM_QUEUE_MAX_ATTEMPTS"),
        (True, True, True, 6, "flag"),
        (True, False, True, 6, "flag"),
    ],
)
def test_layer_precedence(repo: Path, toml: bool, env: bool, flag: bool, expected: int, source: str) -> None:
    if toml:
        write_toml(repo, "[queue]\nmax_attempts = 4\n")
    environment = {"SWARM_QUEUE_MAX_ATTEMPTS": "5"} if env else {}
    overrides: dict[str, object] = {"queue.max_attempts": 6} if flag else {}
    loaded = load_config(repo, overrides=overrides, env=environment)
    assert loaded.config.queue.max_attempts == expected
    assert loaded.sources["queue.max_attempts"] == source


def test_sources_are_recorded_per_key(repo: Path) -> None:
    write_toml(repo, '[agent]\nmodel = "opus"\n[swarm]\nmax_agents = 2\n')
    loaded = load_config(
        repo,
        overrides={"swarm.max_agents": 8, "agent.kind": None},
        env={"SWARM_QUEUE_LEASE_TTL_SECONDS": "120", "SWARM_AGENT_MODEL": "haiku"},
    )
    assert loaded.config.queue.lease_ttl_seconds == 120.0
    assert loaded.sources["queue.lease_ttl_seconds"] == "env SWARM_QUEUE_LEASE_TTL_SECONDS"
    assert loaded.config.agent.model == "haiku"
    assert loaded.sources["agent.model"] == "env SWARM_AGENT_MODEL"
    assert loaded.config.swarm.max_agents == 8
    assert loaded.sources["swarm.max_agents"] == "flag"
    # A None override is a flag that was not given: the lower layers stay in charge.
    assert loaded.config.agent.kind == "claude"
    assert loaded.sources["agent.kind"] == "default"
    assert loaded.sources["queue.backlog"] == "default"


def test_every_key_has_an_env_variable(repo: Path) -> None:
    assert env_var_name("queue.lease_ttl_seconds") == "SWARM_QUEUE_LEASE_TTL_SECONDS"
    assert env_var_name("swarm.max_agents") == "SWARM_SWARM_MAX_AGENTS"
    env = {
        "SWARM_QUEUE_BACKLOG": "backlog",
        "SWARM_SWARM_MAX_AGENTS": "7",
        "SWARM_SWARM_TASK_TIMEOUT_SECONDS": "60",
        "SWARM_SWARM_COMMIT_AUTHOR": "Bot <bot@example.com>",
        "SWARM_AGENT_KIND": "codex",
    }
    loaded = load_config(repo, env=env)
    assert loaded.config.queue.backlog == "backlog"
    assert loaded.config.swarm.max_agents == 7
    assert loaded.config.swarm.task_timeout_seconds == 60
    assert loaded.config.swarm.commit_author == "Bot <bot@example.com>"
    assert loaded.config.agent.kind == "codex"
    for name in env:
        assert f"env {name}" in loaded.sources.values()


def test_env_defaults_to_os_environ(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_AGENT_MODEL", "opus")
    loaded = load_config(repo)
    assert loaded.config.agent.model == "opus"
    assert loaded.sources["agent.model"] == "env SWARM_AGENT_MODEL"


def test_repo_defaults_to_the_repository_around_cwd(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "sub" / "dir").mkdir(parents=True)
    write_toml(repo, "[swarm]\nmax_agents = 2\n")
    monkeypatch.chdir(repo / "sub" / "dir")
    loaded = load_config(env={})
    assert loaded.repo == repo.resolve()
    assert loaded.config.swarm.max_agents == 2


def test_empty_env_variable_counts_as_unset(repo: Path) -> None:
    write_toml(repo, "[queue]\nmax_attempts = 4\n")
    loaded = load_config(repo, env={"SWARM_QUEUE_MAX_ATTEMPTS": ""})
    assert loaded.config.queue.max_attempts == 4
    assert loaded.sources["queue.max_attempts"] == "swarm.toml"


def test_remembered_values_sit_between_the_file_and_the_environment(repo: Path) -> None:
    write_toml(repo, '[queue]\ndatabase = "sqlite:///file.db"\n')
    remember(repo, "queue.database", "postgresql://remembered/db")
    loaded = load_config(repo, env={})
    assert loaded.config.queue.database == "postgresql://remembered/db"
    assert loaded.sources["queue.database"] == "remembered in .swarm/database_url"
    loaded = load_config(repo, env={"SWARM_DATABASE_URL": "postgresql://env/db"})
    assert loaded.sources["queue.database"] == "env SWARM_DATABASE_URL"


def test_config_outside_load_config_is_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Config() reads no layer by itself: code that builds one must not pick up the process environment.
    monkeypatch.setenv("SWARM_QUEUE_MAX_ATTEMPTS", "9")
    assert Config().queue.max_attempts == 3


# -- aliases and runtime variables -----------------------------------------------------------------------


def test_aliases(repo: Path) -> None:
    loaded = load_config(repo, env={"SWARM_DATABASE_URL": "postgresql://db/swarm", "SWARM_TMUX_SOCKET": "swarm-test"})
    assert loaded.config.queue.database == "postgresql://db/swarm"
    assert loaded.sources["queue.database"] == "env SWARM_DATABASE_URL"
    assert loaded.config.swarm.tmux_socket == "swarm-test"
    assert loaded.sources["swarm.tmux_socket"] == "env SWARM_TMUX_SOCKET"


def test_specific_name_wins_over_alias(repo: Path) -> None:
    loaded = load_config(
        repo,
        env={
            "SWARM_DATABASE_URL": "postgresql://alias/db",
            "SWARM_QUEUE_DATABASE": "postgresql://specific/db",
            "SWARM_TMUX_SOCKET": "alias",
            "SWARM_SWARM_TMUX_SOCKET": "specific",
        },
    )
    assert loaded.config.queue.database == "postgresql://specific/db"
    assert loaded.sources["queue.database"] == "env SWARM_QUEUE_DATABASE"
    assert loaded.config.swarm.tmux_socket == "specific"
    assert loaded.sources["swarm.tmux_socket"] == "env SWARM_SWARM_TMUX_SOCKET"


def test_flag_wins_over_alias(repo: Path) -> None:
    loaded = load_config(
        repo, overrides={"queue.database": "sqlite:///x.db"}, env={"SWARM_DATABASE_URL": "postgresql://h/d"}
    )
    assert loaded.config.queue.database == "sqlite:///x.db"
    assert loaded.sources["queue.database"] == "flag"


def test_runtime_swarm_variables_are_ignored(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "SWARM_ID": "abc123",
        "SWARM_AGENT_ID": "agent-1",
        "SWARM_TOKEN": "secret",
        "SWARM_DEBUG": "1",
        "SWARM_TASK_ID": "S001",
        "SWARM_LEASE_TOKEN": "lease",
        "SWARM_PROMPT_FILE": "/tmp/prompt.md",
        "SWARM_WORKTREE": "/repo/.worktrees/agent-1",
        "SWARM_SOMETHING_ELSE": "whatever",
    }
    loaded = load_config(repo, env=env)
    assert loaded.config == Config()
    assert set(loaded.sources.values()) == {"default"}
    assert "SWARM_AGENT_ID" not in caplog.text


def test_misspelt_setting_variable_is_ignored_with_a_warning(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = load_config(repo, env={"SWARM_QUEUE_MAX_ATTEMPT": "9"})
    assert loaded.config.queue.max_attempts == 3
    assert "SWARM_QUEUE_MAX_ATTEMPTS" in caplog.text


# -- lists from the environment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('[".env", "config/local.yaml"]', [".env", "config/local.yaml"]),
        (".env, config/local.yaml", [".env", "config/local.yaml"]),
        (".env", [".env"]),
        ("[]", []),
        (" a ,, b ", ["a", "b"]),
    ],
)
def test_env_lists(repo: Path, raw: str, expected: list[str]) -> None:
    loaded = load_config(repo, env={"SWARM_SWARM_COPY_FILES": raw})
    assert loaded.config.swarm.copy_files == expected


def test_env_list_with_commas_inside_items_uses_json(repo: Path) -> None:
    loaded = load_config(repo, env={"SWARM_SWARM_SETUP": '["make a,b", "npm ci"]'})
    assert loaded.config.swarm.setup == ["make a,b", "npm ci"]


def test_env_list_bad_json(repo: Path) -> None:
    message = config_error(repo, env={"SWARM_SWARM_SETUP": '["uv sync"'})
    assert "SWARM_SWARM_SETUP" in message
    assert "swarm.setup" in message


def test_env_list_of_wrong_items(repo: Path) -> None:
    message = config_error(repo, env={"SWARM_SWARM_SETUP": "[1, 2]"})
    assert "env SWARM_SWARM_SETUP" in message
    assert "a list of strings" in message


# -- swarm.toml errors -----------------------------------------------------------------------------------


def test_unknown_key_suggests_the_right_one(repo: Path) -> None:
    write_toml(repo, '[queue]\nbacklog = "specs"\nmax_attempt = 3\n')
    message = config_error(repo, env={})
    assert "unknown key 'max_attempt' in [queue]" in message
    assert "did you mean 'max_attempts'" in message
    assert "swarm.toml line 3" in message


def test_key_in_the_wrong_section_points_to_its_section(repo: Path) -> None:
    write_toml(repo, "[queue]\nmax_agents = 3\n")
    message = config_error(repo, env={})
    assert "unknown key 'max_agents' in [queue]" in message
    assert "[swarm] max_agents" in message


def test_unknown_section_suggests_the_right_one(repo: Path) -> None:
    write_toml(repo, "[queu]\nmax_attempts = 3\n")
    message = config_error(repo, env={})
    assert "unknown section [queu]" in message
    assert "did you mean [queue]" in message
    assert "line 1" in message


def test_key_outside_any_section(repo: Path) -> None:
    write_toml(repo, "max_agents = 3\n")
    message = config_error(repo, env={})
    assert "'max_agents' must be inside a section" in message
    assert "[swarm]" in message


def test_bad_toml_names_file_and_line(repo: Path) -> None:
    path = write_toml(repo, '[queue]\nbacklog = "specs"\nmax_attempts = = 3\n')
    message = config_error(repo, env={})
    assert f"{path}:3" in message
    assert "invalid TOML" in message
    assert "line 3" in message


def test_non_utf8_toml(repo: Path) -> None:
    (repo / "swarm.toml").write_bytes(b'[agent]\nmodel = "\xff"\n')
    message = config_error(repo, env={})
    assert "UTF-8" in message


# -- invalid values ---------------------------------------------------------------------------------------


def test_bad_env_value_is_one_line_naming_the_variable(repo: Path) -> None:
    message = config_error(repo, env={"SWARM_QUEUE_MAX_ATTEMPTS": "three"})
    assert "queue.max_attempts" in message
    assert "env SWARM_QUEUE_MAX_ATTEMPTS" in message
    assert "'three'" in message
    assert "an integer" in message


def test_bad_toml_value_names_the_file_and_line(repo: Path) -> None:
    write_toml(repo, '[swarm]\nbranch_prefix = "swarm"\nmax_agents = "many"\n')
    message = config_error(repo, env={})
    assert "swarm.max_agents" in message
    assert "swarm.toml line 3" in message
    assert "'many'" in message
    assert "an integer >= 1" in message


def test_bad_flag_value_names_the_flag(repo: Path) -> None:
    message = config_error(repo, overrides={"swarm.max_agents": 0}, env={})
    assert "swarm.max_agents" in message
    assert "flag" in message
    assert "an integer >= 1" in message


def test_unknown_override_key(repo: Path) -> None:
    message = config_error(repo, overrides={"queue.max_attempt": 3}, env={})
    assert "queue.max_attempts" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queue.lease_ttl_seconds", 0),
        ("queue.lease_ttl_seconds", -5),
        ("queue.heartbeat_seconds", 0),
        ("queue.max_attempts", 0),
        ("queue.retry_backoff_seconds", -1),
        ("swarm.max_agents", 0),
        ("swarm.task_timeout_seconds", 0),
        ("swarm.max_restarts", -1),
        ("swarm.max_agents", True),
        ("swarm.max_agents", 2.5),
        ("queue.backlog", ""),
        ("queue.backlog", "/abs/specs"),
        ("queue.database", "not a url"),
        ("queue.database", "sqlite://relative.db"),
        ("swarm.branch_prefix", "has space"),
        ("swarm.branch_prefix", "a..b"),
        ("swarm.commit_author", "nobody"),
        ("swarm.tmux_socket", "/tmp/socket"),
        ("swarm.copy_files", ["/etc/passwd"]),
        ("swarm.setup", [""]),
        ("agent.kind", "Not A Kind"),
        ("agent.permission_mode", ""),
    ],
)
def test_invalid_values_are_rejected(repo: Path, key: str, value: object) -> None:
    message = config_error(repo, overrides={key: value}, env={})
    assert f"invalid {key} from a command-line flag" in message


def test_heartbeat_must_be_shorter_than_the_lease(repo: Path) -> None:
    write_toml(repo, "[queue]\nlease_ttl_seconds = 60\n")
    message = config_error(repo, env={"SWARM_QUEUE_HEARTBEAT_SECONDS": "60"})
    assert "queue.heartbeat_seconds" in message
    assert "env SWARM_QUEUE_HEARTBEAT_SECONDS" in message
    assert "less than queue.lease_ttl_seconds" in message
    assert "swarm.toml" in message


def test_backoff_bounds(repo: Path) -> None:
    message = config_error(repo, overrides={"queue.retry_backoff_max_seconds": 1.0}, env={})
    assert "queue.retry_backoff_max_seconds" in message
    assert "queue.retry_backoff_seconds" in message


def test_models_reject_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValueError, match="extra"):
        QueueSettings.model_validate({"bogus": 1})
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.queue.max_attempts = 9


# -- database URL and repository root --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///.swarm/swarm.db", "sqlite:///{repo}/.swarm/swarm.db"),
        ("sqlite:///data/q.db?mode=rwc", "sqlite:///{repo}/data/q.db?mode=rwc"),
        ("sqlite:////var/lib/swarm.db", "sqlite:////var/lib/swarm.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://user@host:5432/swarm", "postgresql://user@host:5432/swarm"),
    ],
)
def test_database_url(repo: Path, url: str, expected: str) -> None:
    loaded = load_config(repo, overrides={"queue.database": url}, env={})
    resolved = loaded.database_url()
    assert resolved == expected.format(repo=repo.resolve())
    if url == "sqlite:///.swarm/swarm.db":
        assert resolved.startswith("sqlite:////")


def test_find_repo_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    nested = root / "a" / "b"
    nested.mkdir(parents=True)
    assert find_repo_root(nested) == root.resolve()
    assert find_repo_root(root) == root.resolve()


def test_find_repo_root_accepts_a_git_file(tmp_path: Path) -> None:
    # A linked worktree has a `.git` file pointing at the main repository.
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: /elsewhere\n")
    (worktree / "src").mkdir()
    assert find_repo_root(worktree / "src") == worktree.resolve()


def test_find_repo_root_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    if find_repo_root(lonely) != lonely.resolve():
        pytest.skip("tmp_path lies inside a git repository")
    monkeypatch.chdir(lonely)
    assert find_repo_root() == lonely.resolve()


# -- swarm config show -----------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def test_config_show_json(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(repo, "[swarm]\nmax_agents = 2\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SWARM_AGENT_MODEL", "opus")
    result = CliRunner().invoke(cli(), ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["repo"] == str(repo.resolve())
    assert set(document["values"]) == set(CONFIG_KEYS)
    assert document["values"]["swarm.max_agents"] == 2
    assert document["sources"]["swarm.max_agents"] == "swarm.toml"
    assert document["values"]["agent.model"] == "opus"
    assert document["sources"]["agent.model"] == "env SWARM_AGENT_MODEL"
    assert document["sources"]["queue.backlog"] == "default"
    assert document["database_url"] == f"sqlite:///{repo.resolve()}/.swarm/swarm.db"


def test_config_show_table(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli(), ["config", "show"])
    assert result.exit_code == 0, result.output
    for key in CONFIG_KEYS:
        assert key in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("queue.max_attempts"))
    assert line.split() == ["queue.max_attempts", "3", "default"]


def test_config_show_reports_config_errors(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SWARM_SWARM_MAX_AGENTS", "lots")
    result = CliRunner().invoke(cli(), ["config", "show"])
    assert isinstance(result.exception, ConfigError)
    assert "SWARM_SWARM_MAX_AGENTS" in str(result.exception)
