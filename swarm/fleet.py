"""Mixed fleets: ``swarm launch E1 --fleet claude:sonnet=2,codex=1`` runs agents of several kinds and models.

A fleet is a comma-separated list of ``kind[:model][=count]`` (count 1 when left out). Agent ``agent-N`` takes
the member at slot ``N`` of the fleet written out one agent at a time; past the end the pattern repeats, so a
fleet that grows keeps its proportions (docs/contract.md §5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from swarm.errors import BadInput

#: What a fleet value looks like, for the hints of its errors.
FLEET_EXAMPLE = "claude:sonnet=2,codex=1"
_COUNT = re.compile(r"[0-9]{1,6}")
#: A model name as the agent CLIs take them (``sonnet``, ``gpt-5-codex``, ``ollama/llama3:8b``).
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")


@dataclass(frozen=True)
class FleetMember:
    """``count`` agents of ``kind``, each run with ``model`` (None: the configured ``agent.model``)."""

    kind: str
    model: str | None
    count: int = 1

    def text(self) -> str:
        """The member as written on the command line."""
        return self.kind + (f":{self.model}" if self.model else "") + (f"={self.count}" if self.count != 1 else "")


Fleet = tuple[FleetMember, ...]


def _bad(value: str, why: str, hint: str | None = None) -> BadInput:
    return BadInput(
        f"invalid --fleet {value!r}: {why}",
        hint=hint or f"write kind[:model][=count] separated by commas, e.g. --fleet {FLEET_EXAMPLE}",
    )


def parse_fleet(value: str, kinds: Sequence[str]) -> Fleet:
    """The members of a ``--fleet`` value; BadInput (one line: what, why, what to do) when it is malformed or
    names a kind not in ``kinds``."""
    if not value.strip():
        raise _bad(value, "it is empty")
    members: list[FleetMember] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            raise _bad(value, "it has an empty entry (two commas, or one at an end)")
        head, eq, count_text = entry.partition("=")
        count = 1
        if eq:
            if not _COUNT.fullmatch(count_text.strip()) or int(count_text) < 1:
                raise _bad(value, f"the count of {head.strip()!r} is {count_text!r}, not a whole number of 1 or more")
            count = int(count_text)
        kind, colon, model = (part.strip() for part in head.partition(":"))
        if not kind:
            raise _bad(value, f"the entry {entry!r} names no kind")
        if kind not in kinds:
            raise _bad(value, f"unknown agent kind {kind!r}", hint=f"kinds are {', '.join(kinds)}")
        if colon and not _MODEL.fullmatch(model):
            raise _bad(value, f"the model of {kind!r} is {model!r}, not a model name")
        members.append(FleetMember(kind=kind, model=model if colon else None, count=count))
    return tuple(members)


def fleet_size(fleet: Fleet) -> int:
    """How many agents the fleet names."""
    return sum(member.count for member in fleet)


def fleet_text(fleet: Fleet) -> str:
    """The fleet written back as a ``--fleet`` value."""
    return ",".join(member.text() for member in fleet)


def member_of(fleet: Fleet, number: int) -> FleetMember:
    """The member that agent ``agent-<number>`` (1-based) belongs to; the pattern repeats past the fleet's end."""
    slots = [member for member in fleet for _ in range(member.count)]
    return slots[(number - 1) % len(slots)]


def check_fleet_options(
    fleet: Fleet, *, agents: int | None, kind: str | None, model: str | None, command: str | None
) -> None:
    """BadInput when ``--fleet`` is combined with the options it replaces, or its ``command`` members and
    ``--command`` do not go together. Checked before anything is read or written."""
    if not fleet:
        return
    given = [name for name, v in (("--agents", agents), ("--agent", kind), ("--model", model)) if v is not None]
    if given:
        raise BadInput(
            f"--fleet names the kinds, models and number of agents, so {' and '.join(given)} does not apply",
            hint=f"drop {given[0]}, or write it into the fleet, e.g. --fleet {FLEET_EXAMPLE}",
        )
    has_command = any(member.kind == "command" for member in fleet)
    if has_command and not (command or "").strip():
        raise BadInput("the fleet has command agents, and they need --command", hint='pass --command "your program"')
    if command is not None and not has_command:
        raise BadInput(
            "--command is given but the fleet has no command agent to run it",
            hint="add command=N to --fleet, or drop --command",
        )
