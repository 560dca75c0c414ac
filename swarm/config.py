"""Layered configuration (docs/contract.md §9).

Defaults < ``swarm.toml`` < remembered < ``SWARM_*`` environment < flags.

:class:`Config` is a pydantic-settings ``BaseSettings`` whose ``settings_customise_sources`` orders its sources:
the flags are its init arguments, then an ``EnvSettingsSource`` (``SWARM_`` prefix, ``_`` nested delimiter split
once), the values launch remembered under ``.swarm/``, and a ``TomlConfigSettingsSource``. pydantic-settings
merges and validates them. Two things it cannot do are done here: a classmethod hook cannot be handed one load's
repository and environment, so :func:`load_config` builds the sources and lends them through a context variable
(elsewhere ``Config()`` is the defaults); and it does not say which source supplied a value, so
:func:`load_config` asks the same sources for their values in priority order, for ``swarm config show`` and to
turn the first validation error into one :class:`~swarm.errors.ConfigError` line naming the value's source.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from swarm.errors import ConfigError

log = logging.getLogger(__name__)

#: The configuration file, at the repository root.
CONFIG_FILE_NAME = "swarm.toml"
#: Prefix of every configuration environment variable: ``SWARM_<SECTION>_<KEY>``.
ENV_PREFIX = "SWARM_"
#: Short names kept for docs/contract.md §4 and §6; the ``SWARM_<SECTION>_<KEY>`` name wins when both are set.
ENV_ALIASES: Mapping[str, str] = {
    "SWARM_DATABASE_URL": "queue.database",
    "SWARM_TMUX_SOCKET": "swarm.tmux_socket",
}
#: Variables swarm sets for its own processes (docs/contract.md §6). They share the prefix but are not configuration,
#: so they are never reported as misspelt settings.
RUNTIME_ENV_VARS = frozenset(
    {
        "SWARM_ID",
        "SWARM_AGENT_ID",
        "SWARM_TOKEN",
        "SWARM_TASK_ID",
        "SWARM_LEASE_TOKEN",
        "SWARM_PROMPT_FILE",
        "SWARM_WORKTREE",
        "SWARM_DEBUG",
    }
)

SOURCE_DEFAULT = "default"
SOURCE_TOML = CONFIG_FILE_NAME
SOURCE_FLAG = "flag"

_VALUE_ERROR_PREFIX = "Value error, "


# ----------------------------------------------------------------------------------------------------
# Value checks shared by several fields. They raise ValueError so that pydantic reports them against the
# field, which the loader then maps back to the source that supplied the value.


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _no_newline(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be a single line")
    return value


_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.*")


def _database_url(value: str) -> str:
    if not _DATABASE_URL.fullmatch(value):
        raise ValueError('must be a URL such as "sqlite:///.swarm/swarm.db" or "postgresql://host/db"')
    if value.startswith("sqlite:") and (not value.startswith("sqlite:///") or value == "sqlite:///"):
        raise ValueError('a SQLite URL must be "sqlite:///relative/path.db" or "sqlite:////absolute/path.db"')
    return value


# A git ref component may not contain spaces, "..", "~", "^", ":" and friends; this is a safe subset.
_BRANCH_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def _branch_prefix(value: str) -> str:
    if not _BRANCH_PREFIX.fullmatch(value) or ".." in value or value.endswith((".", ".lock")):
        raise ValueError('must be a git branch name prefix such as "swarm" or "bots/swarm"')
    return value


def _matching(pattern: str, message: str) -> Callable[[str], str]:
    """A check that the whole value matches ``pattern``, else ``ValueError(message)``."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return check


_author = _matching(r"[^<>\n]*[^<>\s] <[^<>\s]+>", 'must look like "Name <email>"')
# `tmux -L NAME` takes a bare socket name; a path or whitespace would silently mean another server.
_tmux_socket = _matching(r"[^\s/]*", "must be a tmux socket name (tmux -L) without '/' or spaces, or empty")
_kind = _matching(r"[a-z][a-z0-9_-]*", "must be an agent template name such as claude, codex, aider or command")


def _host_label(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}", value):
        raise PydanticCustomError(
            "host_label", "a host label of 1-31 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def _relative_path(value: str) -> str:
    _non_empty(value)
    if Path(value).is_absolute():
        raise ValueError("must be a path relative to the repository root")
    return value


def _absolute_path(value: str) -> str:
    _non_empty(value)
    if not Path(value).is_absolute():
        raise ValueError("must be an absolute path such as /opt/tools")
    return value


def _home_path(value: str) -> str:
    # "~/.claude" or ".claude": a path inside $HOME, which the worker resolves against the agent's own HOME.
    _non_empty(value)
    inside = value.removeprefix("~/")
    if Path(inside).is_absolute() or inside in ("~", ".") or ".." in Path(inside).parts:
        raise ValueError('must be a path inside the home directory such as "~/.claude"')
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty), AfterValidator(_no_newline)]
RelativePath = Annotated[str, AfterValidator(_relative_path), AfterValidator(_no_newline)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _relation_error(key: str, relation: str, other: str) -> PydanticCustomError:
    # The keys travel in the error context so the loader can name both values and where each came from.
    return PydanticCustomError(
        "relation",
        "{key} must be {relation} {other}",
        {"key": key, "relation": relation, "other": other},
    )


class _Section(BaseModel):
    """Common rules of the three sections: no unknown keys, immutable, no booleans posing as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_bool_numbers(cls, value: object, info: ValidationInfo) -> object:
        # Lax validation would read TOML `max_attempts = true` as 1; a boolean is always a mistake here.
        if (
            isinstance(value, bool)
            and info.field_name is not None
            and cls.model_fields[info.field_name].annotation in (int, float)
        ):
            raise PydanticCustomError("bool_number", "a boolean is not a number")
        return value


class QueueSettings(_Section):
    """``[queue]``: where the backlog and the database live, and how leases and retries behave."""

    backlog: RelativePath = "specs"
    database: Annotated[str, AfterValidator(_database_url)] = "sqlite:///.swarm/swarm.db"
    lease_ttl_seconds: PositiveSeconds = 300.0
    heartbeat_seconds: PositiveSeconds = 30.0
    max_attempts: Annotated[int, Field(ge=1)] = 3
    retry_backoff_seconds: NonNegativeSeconds = 10.0
    retry_backoff_max_seconds: NonNegativeSeconds = 600.0

    @model_validator(mode="after")
    def _check_relations(self) -> QueueSettings:
        # A heartbeat period at or above the lease ttl would let leases expire while their agent is healthy.
        if self.heartbeat_seconds >= self.lease_ttl_seconds:
            raise _relation_error("heartbeat_seconds", "less than", "lease_ttl_seconds")
        if self.retry_backoff_max_seconds < self.retry_backoff_seconds:
            raise _relation_error("retry_backoff_max_seconds", "at least", "retry_backoff_seconds")
        return self


class SwarmSettings(_Section):
    """``[swarm]``: agents, worktrees, branches and the tmux server."""

    max_agents: Annotated[int, Field(ge=1)] = 5
    worktree_base: RelativePath = ".worktrees"
    branch_prefix: Annotated[str, AfterValidator(_branch_prefix)] = "swarm"
    copy_files: list[RelativePath] = Field(default_factory=lambda: [".env"])
    setup: list[NonEmptyStr] = Field(default_factory=list)
    submodules: bool = True
    task_timeout_seconds: Annotated[int, Field(ge=1)] = 1800
    max_restarts: Annotated[int, Field(ge=0)] = 3
    commit_author: Annotated[str, AfterValidator(_author)] = "swarm <swarm@localhost>"
    tmux_socket: Annotated[str, AfterValidator(_tmux_socket)] = ""
    stall_seconds: Annotated[float, Field(gt=0)] = 300.0
    restart_backoff_seconds: Annotated[float, Field(ge=0)] = 2.0
    monitor_interval_seconds: Annotated[float, Field(gt=0)] = 2.0
    remote: Annotated[str, AfterValidator(_no_newline)] = "origin"
    host_label: Annotated[str, AfterValidator(_host_label)] = ""
    #: How long launch, teardown and repair wait for another of them working on this repository.
    lock_timeout_seconds: Annotated[float, Field(ge=0)] = 120.0
    log_max_bytes: Annotated[int, Field(ge=1024)] = 10_000_000
    #: docs/contract.md §3: a shell command that must pass before a task is done, for specs without their own
    #: ``verify``; empty means no verify.
    verify: str = ""
    #: docs/contract.md §6: "bwrap" runs each agent in a bubblewrap sandbox; "none" runs it as the user.
    sandbox: Literal["none", "bwrap"] = "none"
    #: The sandbox keeps the network unless this is false (then it has loopback of its own only).
    sandbox_network: bool = True
    #: What of $HOME the sandboxed agent sees, read-write ("~/.claude", ...); empty: the whole home directory.
    sandbox_home: list[Annotated[str, AfterValidator(_home_path), AfterValidator(_no_newline)]] = Field(
        default_factory=list
    )
    #: More folders or files the sandboxed agent sees, read-only (a toolchain outside /usr and /opt).
    sandbox_paths: list[Annotated[str, AfterValidator(_absolute_path), AfterValidator(_no_newline)]] = Field(
        default_factory=list
    )


class AgentSettings(_Section):
    """``[agent]``: which agent program runs each task."""

    kind: Annotated[str, AfterValidator(_kind)] = "claude"
    # Empty is allowed: kinds such as `command` have no model; empty means the agent's own default.
    model: Annotated[str, AfterValidator(_no_newline)] = "sonnet"
    permission_mode: NonEmptyStr = "bypassPermissions"
    #: docs/contract.md §6: each task of an agent continues the agent's conversation of its previous task (kinds
    #: that can resume: claude), so it keeps what it learned; a failed task ends that conversation.
    keep_context: bool = False


#: docs/contract.md §9: the events ``[notify]`` can send, in the order they are documented.
NOTIFY_EVENTS: tuple[str, ...] = ("question", "escalation", "task_dead", "rate_limited", "epic_done")


def _webhook(value: str) -> str:
    if not value:
        return value
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("http", "https") or not value.split("://", 1)[1].split("/", 1)[0]:
        raise PydanticCustomError(
            "webhook", "an http:// or https:// URL such as https://hooks.slack.com/services/..., or empty"
        )
    _no_newline(value)
    return value


def _notify_command(value: list[str]) -> list[str]:
    if value and not value[0].strip():
        raise PydanticCustomError("notify_command", "the program (its first item) must not be empty")
    return value


def _notify_events(value: list[str]) -> list[str]:
    for name in value:
        if name not in NOTIFY_EVENTS:
            close = difflib.get_close_matches(name, NOTIFY_EVENTS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            # The text is built here, not templated: pydantic's templates do not take a repr.
            raise ValueError(f"{name!r} is not an event; {hint}the events are {', '.join(NOTIFY_EVENTS)}")
    return value


class NotifySettings(_Section):
    """``[notify]``: hooks told about what needs the lead (docs/contract.md §9); both empty: none."""

    #: argv of a program that gets each event as JSON on stdin (e.g. a script calling notify-send).
    command: Annotated[list[Annotated[str, AfterValidator(_no_newline)]], AfterValidator(_notify_command)] = Field(
        default_factory=list
    )
    #: A URL that gets each event as a JSON POST (Slack and Discord incoming webhooks accept the body).
    webhook: Annotated[str, AfterValidator(_webhook)] = ""
    events: Annotated[list[str], AfterValidator(_notify_events)] = Field(default_factory=lambda: list(NOTIFY_EVENTS))


#: The sources of the load in progress, highest priority first, below the init arguments (see the module doc).
_SOURCES: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar("swarm_config_sources", default=())


class Config(BaseSettings):
    """The whole validated configuration. ``Config()`` is the defaults; :func:`load_config` reads the layers."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        # `SWARM_QUEUE_MAX_ATTEMPTS`: the first `_` after the section ends it; keys keep their own underscores.
        env_nested_delimiter="_",
        env_nested_max_split=1,
    )

    queue: QueueSettings = QueueSettings()
    swarm: SwarmSettings = SwarmSettings()
    agent: AgentSettings = AgentSettings()
    notify: NotifySettings = NotifySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (the init arguments) first, then the sources :func:`load_config` built for this load."""
        # The stock environment source would read os.environ and every SWARM_* name; it is never used.
        return (init_settings, *_SOURCES.get())


_SECTIONS: dict[str, type[BaseModel]] = {name: cast(Any, info.annotation) for name, info in Config.model_fields.items()}

#: Every setting as ``section.key``, in declaration order.
CONFIG_KEYS: tuple[str, ...] = tuple(
    f"{section}.{key}" for section, model in _SECTIONS.items() for key in model.model_fields
)


def _field(key: str) -> FieldInfo:
    section, name = key.split(".", 1)
    return _SECTIONS[section].model_fields[name]


def env_var_name(key: str) -> str:
    """The environment variable of a dotted key: ``queue.max_attempts`` -> ``SWARM_QUEUE_MAX_ATTEMPTS``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _env_names(key: str) -> list[str]:
    """The variables that can set ``key``, the one that wins first."""
    return [env_var_name(key), *(alias for alias, target in ENV_ALIASES.items() if target == key)]


def flatten(config: Config) -> dict[str, object]:
    """Every value of ``config`` under its dotted key, JSON-compatible, in :data:`CONFIG_KEYS` order."""
    dumped = config.model_dump(mode="json")
    return {key: dumped[key.split(".", 1)[0]][key.split(".", 1)[1]] for key in CONFIG_KEYS}


def _nest(flat: Mapping[str, object]) -> dict[str, dict[str, object]]:
    nested: dict[str, dict[str, object]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    return nested


def _flat(nested: Mapping[str, Any]) -> dict[str, object]:
    """The inverse of :func:`_nest` for what a source returns (its sections are tables)."""
    return {f"{section}.{key}": value for section, table in nested.items() for key, value in table.items()}


def _suggest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


# ----------------------------------------------------------------------------------------------------
# Sources. Each one also names where a value it supplies came from (``origin``), for `config show` and errors.


def _toml_line(text: str, section: str | None, key: str | None) -> int | None:
    """Best-effort line number of ``[section]`` (key None) or of ``key`` in it (section None: top level).

    tomllib reports no positions for valid documents, so unknown and invalid keys are located by a scan.
    """
    current: str | None = None
    header = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.fullmatch(line)
        if match:
            current = match.group(1).strip("\"'")
            if key is None and current == section:
                return number
            continue
        if key is None:
            continue
        name = re.escape(key)
        if current == section and re.match(rf"\s*[\"']?{name}[\"']?\s*=", line):
            return number
        # Dotted keys at the top level (`queue.max_attempts = 3`) are valid TOML too.
        if current is None and section is not None and re.match(rf"\s*{re.escape(section)}\s*\.\s*{name}\s*=", line):
            return number
    return None


class TomlSource(TomlConfigSettingsSource):
    """``swarm.toml`` through ``TomlConfigSettingsSource``, refusing what it does not know with a suggestion.

    ``extra="forbid"`` would refuse unknown keys too, but only after merging, with pydantic's wording; checking
    here names the file and line and the key that was probably meant.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise self._syntax_error(exc) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text", hint="save it as UTF-8 (TOML requires it)") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path}: {exc.strerror or exc}", hint="check the file's permissions"
            ) from None
        for section, table in self.toml_data.items():
            self._check(section, table)

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from."""
        return SOURCE_TOML

    @cached_property
    def text(self) -> str:
        """The file's text, for locating keys (only read when an error needs a line number)."""
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def where(self, section: str | None, key: str | None) -> str:
        """``swarm.toml line N`` when the line can be found, else ``swarm.toml``."""
        line = _toml_line(self.text, section, key)
        return f"{SOURCE_TOML} line {line}" if line else SOURCE_TOML

    def _check(self, section: str, table: object) -> None:
        if section not in _SECTIONS:
            raise self._unknown_section(section, table)
        if not isinstance(table, dict):
            raise ConfigError(
                f"{self.path} line {_toml_line(self.text, None, section) or '?'}: "
                f"{section!r} must be a table [{section}], not a value",
                hint=f"put its keys under a [{section}] header",
            )
        for key in table:
            if key not in _SECTIONS[section].model_fields:
                raise self._unknown_key(section, key)

    def _syntax_error(self, exc: tomllib.TOMLDecodeError) -> ConfigError:
        # Python 3.11's TOMLDecodeError has no lineno attribute; the position is at the end of the message.
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
        place, what = str(self.path), message
        if match:
            place, what = f"{self.path}:{match[1]}", f"{message[: match.start()]} (line {match[1]}, column {match[2]})"
        return ConfigError(
            f"{place}: invalid TOML: {what}", hint="fix the syntax or delete the file to use the defaults"
        )

    def _unknown_section(self, section: str, value: object) -> ConfigError:
        line = _toml_line(self.text, section, None) or _toml_line(self.text, None, section)
        place = f"{self.path} line {line}" if line else str(self.path)
        sections = f"the sections are {', '.join(f'[{s}]' for s in _SECTIONS)}"
        if not isinstance(value, dict):
            # A setting written above every header: point at the section that owns a key of that name.
            owners = [s for s, model in _SECTIONS.items() if section in model.model_fields]
            if owners:
                return ConfigError(
                    f"{place}: {section!r} must be inside a section",
                    hint=f"did you mean to put it under [{owners[0]}]?",
                )
            close = _suggest(section, [k.split(".", 1)[1] for k in CONFIG_KEYS])
            return ConfigError(
                f"{place}: unknown setting {section!r} outside any section",
                hint=close or sections,
            )
        match = difflib.get_close_matches(section, list(_SECTIONS), n=1, cutoff=0.6)
        return ConfigError(
            f"{place}: unknown section [{section}]", hint=f"did you mean [{match[0]}]?" if match else sections
        )

    def _unknown_key(self, section: str, key: str) -> ConfigError:
        line = _toml_line(self.text, section, key)
        place = f"{self.path} line {line}" if line else str(self.path)
        fields = list(_SECTIONS[section].model_fields)
        # The exact key in another section is a likelier mistake than a typo of a key in this one.
        owners = [s for s, model in _SECTIONS.items() if key in model.model_fields]
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        if owners:
            hint = f"did you mean [{owners[0]}] {key}?"
        elif close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = f"the keys of [{section}] are {', '.join(fields)}"
        return ConfigError(f"{place}: unknown key {key!r} in [{section}]", hint=hint)


class EnvSource(EnvSettingsSource):
    """``SWARM_<SECTION>_<KEY>`` (and the short aliases) through pydantic-settings' environment source.

    It reads a given mapping rather than ``os.environ``, and only the names of real settings reach the stock
    parser: runtime variables such as ``SWARM_AGENT_ID`` share the prefix and would read as the unknown key
    ``agent.id``. An empty variable counts as unset, and a list may also be comma-separated.
    """

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        #: Dotted key -> the variable that supplied it.
        self._names: dict[str, str] = {}
        super().__init__(settings_cls)

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from: ``env NAME``."""
        return f"env {self._names[key]}"

    def _load_env_vars(self) -> Mapping[str, str | None]:
        chosen: dict[str, str | None] = {}
        for key in CONFIG_KEYS:
            # Shells make `VAR= swarm ...` the way to clear a variable, so an empty one is skipped.
            var = next((name for name in _env_names(key) if self._given.get(name)), None)
            if var is not None:
                self._names[key] = var
                # Under its canonical name, in the case the (case-insensitive) stock parser matches.
                chosen[env_var_name(key).lower()] = self._given[var]
        _warn_misspelt_env(self._given)
        return chosen

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """A list setting: a JSON list, or comma-separated values."""
        text = str(value).strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            key = next(key for key in self._names if key.endswith(f".{field_name}"))
            raise ConfigError(
                f"invalid {key} from {self.origin(key)}: {value!r} is not a JSON list ({exc.msg})",
                hint='use a JSON list such as ["a", "b"] or comma-separated values',
            ) from None


def _warn_misspelt_env(env: Mapping[str, str]) -> None:
    # Unknown SWARM_* variables must be ignored (runtime variables share the prefix), but one that is a typo
    # of a setting deserves a warning rather than silence.
    known = [name for key in CONFIG_KEYS for name in _env_names(key)]
    section_prefixes = tuple(f"{ENV_PREFIX}{section.upper()}_" for section in _SECTIONS)
    for name in env:
        if name in known or name in RUNTIME_ENV_VARS or not name.startswith(section_prefixes):
            continue
        match = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if match:
            log.warning("ignoring environment variable %s: not a setting; did you mean %s?", name, match[0])


#: Where launch remembers what it was told with --db and --host-label, so later commands in the repository
#: (status, teardown, msg, the monitor) act on the same database and agents without repeating the flags.
REMEMBERED: dict[str, Path] = {
    "queue.database": Path(".swarm") / "database_url",
    "swarm.host_label": Path(".swarm") / "host_label",
}


class RememberedSource(InitSettingsSource):
    """The values :func:`remember` stored under ``.swarm/`` (above ``swarm.toml``, below the environment)."""

    def __init__(self, settings_cls: type[BaseSettings], root: Path) -> None:
        values: dict[str, object] = {}
        for key, relative in REMEMBERED.items():
            try:
                values[key] = (root / relative).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
        super().__init__(settings_cls, init_kwargs=dict(_nest({k: v for k, v in values.items() if v})))

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from."""
        return f"remembered in {REMEMBERED[key]}"


def remember(repo: Path, key: str, value: str) -> None:
    """Make ``value`` the setting ``key`` of later commands in ``repo`` (below environment and flags)."""
    path = repo / REMEMBERED[key]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a database URL may carry a password
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration, the repository it belongs to, and where each value came from."""

    config: Config
    repo: Path
    #: Dotted key -> ``default`` | ``swarm.toml`` | ``remembered in .swarm/...`` | ``env SWARM_...`` | ``flag``.
    sources: dict[str, str]

    @property
    def toml_path(self) -> Path:
        """The configuration file of this repository (it may not exist)."""
        return self.repo / CONFIG_FILE_NAME

    def values(self) -> dict[str, object]:
        """Every value under its dotted key, JSON-compatible."""
        return flatten(self.config)

    def resolve_path(self, value: str) -> Path:
        """A configured path (backlog, worktree base, ...) made absolute against the repository root."""
        return (self.repo / Path(value).expanduser()).resolve()

    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute against the repository root.

        ``sqlite:///.swarm/swarm.db`` -> ``sqlite:////abs/repo/.swarm/swarm.db``; other URLs are unchanged, so
        every process (worker, monitor, agent in its worktree) opens the same file whatever its cwd.
        """
        url = self.config.queue.database
        prefix = "sqlite:///"
        if not url.startswith(prefix):
            return url
        rest = url[len(prefix) :]
        path, sep, query = rest.partition("?")
        if path.startswith(("/", "file:")) or path == ":memory:":
            return url
        # "~" is the user's home, as in a shell; anything else relative is the repository's.
        absolute = Path(path).expanduser() if path.startswith("~") else self.repo / path
        return f"{prefix}{absolute}{sep}{query}"


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest ancestor of ``start`` (default: cwd) holding ``.git`` (a directory, or a worktree's file).

    Outside any repository, ``start`` itself, so that ``swarm init`` and ``swarm config show`` still work.
    """
    here = (start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


def _flags(overrides: Mapping[str, object]) -> dict[str, object]:
    given = {key: value for key, value in overrides.items() if value is not None}
    for key in given:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"unknown setting {key!r} given as a flag", hint=_suggest(key, list(CONFIG_KEYS)) or None)
    return given


def load_config(
    repo: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read and validate the configuration of ``repo`` (default: the repository around the cwd).

    ``overrides`` are command-line flags under dotted keys (``{"queue.database": "sqlite:///x.db"}``);
    ``None`` values stand for flags that were not given and are skipped. ``env`` defaults to ``os.environ``.
    Raises :class:`ConfigError` with one line naming the key, its source, the value and what was expected.
    """
    root = find_repo_root() if repo is None else Path(repo).resolve()
    flags = _flags(overrides or {})
    toml = TomlSource(Config, root / CONFIG_FILE_NAME)
    sources = (EnvSource(Config, os.environ if env is None else env), RememberedSource(Config, root), toml)
    # The winning value and its origin per key, from the same sources, lowest priority first.
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for source in reversed(sources):
        supplied = _flat(source())
        values.update(supplied)
        origins.update({key: source.origin(key) for key in supplied})
    values.update(flags)
    origins.update(dict.fromkeys(flags, SOURCE_FLAG))
    init_kwargs: dict[str, Any] = _nest(flags)
    token = _SOURCES.set(sources)  # read by Config.settings_customise_sources
    try:
        config = Config(**init_kwargs)
    except ValidationError as exc:
        raise _invalid(exc, values, origins, toml) from None
    finally:
        _SOURCES.reset(token)
    return LoadedConfig(
        config=config, repo=root, sources={key: origins.get(key, SOURCE_DEFAULT) for key in CONFIG_KEYS}
    )


# ----------------------------------------------------------------------------------------------------
# Error messages


def _expected(field: FieldInfo) -> str:
    """A short description of what a field accepts: ``an integer >= 1``, ``a list of strings``..."""
    annotation = field.annotation
    if get_origin(annotation) is list:
        return "a list of strings"
    base = {int: "an integer", float: "a number", str: "a string"}.get(annotation, "a value")  # type: ignore[arg-type]
    bounds = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            bounds.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            bounds.append(f">= {item.ge}")
    return f"{base} {' and '.join(bounds)}" if bounds else base


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _value(values: Mapping[str, object], key: str) -> object:
    """The value ``key`` was given, else its default."""
    return values[key] if key in values else _field(key).get_default(call_default_factory=True)


def _reason(error: ErrorDetails) -> str:
    message = error["msg"]
    message = message.removeprefix(_VALUE_ERROR_PREFIX)
    return message[:1].lower() + message[1:]


def _where(origin: str, key: str, toml: TomlSource) -> tuple[str, str]:
    """(where the value came from, what to do) for an error message."""
    if origin == SOURCE_TOML:
        section, name = key.split(".", 1)
        return toml.where(section, name), f"fix it in {toml.path}"
    if origin.startswith("env "):
        return origin, f"fix or unset {origin.removeprefix('env ')}"
    if origin == SOURCE_FLAG:
        return "a command-line flag", "fix the flag"
    return origin, "this default is wrong; please report it"


def _invalid(
    exc: ValidationError, values: Mapping[str, object], origins: Mapping[str, str], toml: TomlSource
) -> ConfigError:
    errors = exc.errors()
    error = errors[0]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    loc = [str(part) for part in error["loc"]]
    ctx = error.get("ctx") or {}
    if error["type"] == "relation" and len(loc) == 1:
        section = loc[0]
        key, other = f"{section}.{ctx['key']}", f"{section}.{ctx['other']}"
        where, fix = _where(origins.get(key, SOURCE_DEFAULT), key, toml)
        other_where, _ = _where(origins.get(other, SOURCE_DEFAULT), other, toml)
        return ConfigError(
            f"invalid {key} from {where}: got {_show(_value(values, key))}, expected a value "
            f"{ctx['relation']} {other} ({_show(_value(values, other))} from {other_where}){more}",
            hint=fix,
        )
    if len(loc) < 2:  # not expected: every field has a default, so only keys and relations can fail
        return ConfigError(f"invalid configuration: {_reason(error)}{more}")
    key = f"{loc[0]}.{loc[1]}"
    where, fix = _where(origins.get(key, SOURCE_DEFAULT), key, toml)
    item = f" (item {int(loc[2]) + 1})" if len(loc) > 2 and loc[2].isdigit() else ""
    return ConfigError(
        f"invalid {key} from {where}: got {_show(_value(values, key))}{item}, "
        f"expected {_expected(_field(key))} ({_reason(error)}){more}",
        hint=fix,
    )
