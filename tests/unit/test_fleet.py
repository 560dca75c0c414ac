"""The ``--fleet`` value: kind[:model][=count], comma separated; every malformed value is one line of bad input."""

from __future__ import annotations

import pytest

from swarm.errors import BadInput
from swarm.fleet import FleetMember, check_fleet_options, fleet_size, fleet_text, member_of, parse_fleet

KINDS = ("aider", "claude", "codex", "command")


def test_parse_kinds_models_and_counts() -> None:
    fleet = parse_fleet("claude:sonnet=2, codex=1,aider:ollama/llama3:8b", KINDS)
    assert fleet == (
        FleetMember("claude", "sonnet", 2),
        FleetMember("codex", None, 1),
        FleetMember("aider", "ollama/llama3:8b", 1),
    )
    assert fleet_size(fleet) == 4
    assert fleet_text(fleet) == "claude:sonnet=2,codex,aider:ollama/llama3:8b"


def test_agents_take_their_slot_and_the_pattern_repeats() -> None:
    fleet = parse_fleet("claude:sonnet=2,codex", KINDS)
    assert [member_of(fleet, n).kind for n in range(1, 7)] == ["claude", "claude", "codex"] * 2


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "it is empty"),
        ("claude,,codex", "empty entry"),
        ("claude,", "empty entry"),
        ("gemini=2", "unknown agent kind 'gemini'"),
        ("claude=0", "not a whole number of 1 or more"),
        ("claude=two", "not a whole number of 1 or more"),
        ("claude=", "not a whole number of 1 or more"),
        ("claude:=2", "not a model name"),
        ("claude:so net", "not a model name"),
        (":sonnet", "names no kind"),
    ],
)
def test_malformed_values_are_one_line_of_bad_input(value: str, why: str) -> None:
    with pytest.raises(BadInput) as raised:
        parse_fleet(value, KINDS)
    line = raised.value.render()
    assert why in line
    assert "\n" not in line
    assert raised.value.hint  # what to do
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"agents": 3}, "--agents does not apply"),
        ({"kind": "codex"}, "--agent does not apply"),
        ({"model": "opus"}, "--model does not apply"),
        ({"command": "make"}, "no command agent"),
    ],
)
def test_fleet_excludes_the_options_it_replaces(options: dict[str, object], why: str) -> None:
    given: dict[str, object] = {"agents": None, "kind": None, "model": None, "command": None, **options}
    with pytest.raises(BadInput, match=why):
        check_fleet_options(parse_fleet("claude=2", KINDS), **given)  # type: ignore[arg-type]


def test_command_members_need_command() -> None:
    with pytest.raises(BadInput, match="need --command"):
        check_fleet_options(parse_fleet("command=2", KINDS), agents=None, kind=None, model=None, command=None)
    check_fleet_options(parse_fleet("command=2,claude", KINDS), agents=None, kind=None, model=None, command="make")
