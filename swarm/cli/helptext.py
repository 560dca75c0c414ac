"""How ``--help`` reads: whole summaries in command listings, values named like ``EPIC`` and ``--db URL``.

typer's plain help cuts each command's summary in a listing to a few words ending in ``...`` and names values by
their type (``<str>``, ``<int range>``, ``{epic}`` in the usage line). One pass over the finished command tree
(the root group's constructor) fixes both for every command, whoever declared it, so that a new option gets a
proper name without anyone remembering to give it one.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

#: The name shown for a parameter's value, by parameter name; any other parameter shows its name in capitals.
#: The README's command table uses the same names.
METAVARS = {
    "agent": "KIND",
    "agent_id": "AGENT",
    "agents": "N",
    "backlog": "DIR",
    "base": "REF",
    "body": "TEXT",
    "body_file": "FILE",
    "capabilities": "LIST",
    "command": "CMD",
    "commit": "SHA",
    "cost_usd": "USD",
    "db": "URL",
    "depends_on": "IDS",
    "failed": "REASON",
    "from_agent": "AGENT",
    "grace": "SECONDS",
    "host_label": "LABEL",
    "into": "BRANCH",
    "lease_token": "TOKEN",
    "lines": "N",
    "max_agents": "N",
    "max_attempts": "N",
    "pace": "FACTOR",
    "priority": "N",
    "reason": "TEXT",
    "reply_to": "SEQ",
    "requires": "LIST",
    "run_file": "FILE",
    "since": "SEQ",
    "swarm_id": "ID",
    "task_id": "TASK",
    "test": "CMD",
    "thread": "NAME",
    "timeout": "SECONDS",
    "to": "AGENT",
    "ttl": "SECONDS",
    "where": "DIR",
}


def metavar_of(name: str | None) -> str:
    """The capitalised name of a parameter's value: ``METAVARS``' entry, else the parameter's own name."""
    key = name or "value"
    return METAVARS.get(key, key.strip("_").upper())


def summary_of(help_text: str | None) -> str:
    """A command's first paragraph on one line: what a listing of commands shows, in full."""
    return " ".join((help_text or "").split("\n\n", 1)[0].split())


class _NamedArgument(TyperArgument):
    """A positional argument shown by its name alone: ``EPIC`` (``[EPIC]`` when optional), no ``<str>``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def tidy(command: Any) -> None:
    """Give every command under ``command`` its whole summary and every parameter a capitalised value name."""
    if command.help and not command.short_help:
        command.short_help = summary_of(command.help)
    for param in command.params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = metavar_of(param.name)
            # typer has no setting for this: the class only changes how the argument is displayed, no state.
            param.__class__ = _NamedArgument
        elif isinstance(param, TyperOption) and not (param.is_flag or param.count) and param.metavar is None:
            param.metavar = metavar_of(param.name)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)


class SwarmGroup(TyperGroup):
    """The root group of ``swarm``: typer builds the whole tree first, then this tidies its help texts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tidy(self)
