"""The ``--fleet`` value: kind[:model][=count], comma separated; every malformed value is one line of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.config import load_config
from swarm.errors import BadInput
from swarm.fleet import FleetMember, check_fleet_options, fleet_size, fleet_text, member_of, parse_fleet
from swarm.launcher import LaunchRequest, _kind_of, launch_overrides
from swarm.models import AgentRecord

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


def _kind_of_agents(tmp_path: Path, request: LaunchRequest, existing: dict[str, AgentRecord], count: int) -> list[str]:
    """What ``_plan_agents`` gives agents 1..count, as ``kind:model`` (model left out when empty)."""
    loaded = load_config(tmp_path, overrides=launch_overrides(request), env={})
    picked = [_kind_of(tmp_path, loaded, request, n, existing, "") for n in range(1, count + 1)]
    return [kind + (f":{model}" if model else "") for kind, model, _ in picked]


def test_a_fleet_member_without_a_model_gets_agent_model_only_for_the_configured_kind(tmp_path: Path) -> None:
    request = LaunchRequest(epic="E1", fleet=parse_fleet("claude,codex,codex:o3", KINDS))
    assert _kind_of_agents(tmp_path, request, {}, 3) == ["claude:sonnet", "codex", "codex:o3"]


def test_running_agents_keep_their_kind_and_new_ones_repeat_the_fleet(tmp_path: Path) -> None:
    """docs/contract.md §5: a relaunch never changes an agent's kind; a grown fleet keeps its mix."""
    existing = {
        "agent-1": AgentRecord(id="agent-1", kind="claude", model="sonnet"),
        "agent-2": AgentRecord(id="agent-2", kind="claude", model="sonnet"),
        "agent-3": AgentRecord(id="agent-3", kind="codex", model=None),
    }
    # An epic added (or --agents 6) without --fleet: agents 4..6 repeat the swarm's own pattern.
    grown = _kind_of_agents(tmp_path, LaunchRequest(epic="E2", agents=6), existing, 6)
    assert grown == ["claude:sonnet", "claude:sonnet", "codex"] * 2
    # A new --fleet (or --agent) sets only the new agents.
    refleet = LaunchRequest(epic="E2", fleet=parse_fleet("aider:gpt-4o=4", KINDS))
    assert _kind_of_agents(tmp_path, refleet, existing, 4) == [
        "claude:sonnet",
        "claude:sonnet",
        "codex",
        "aider:gpt-4o",
    ]
    # --agent without --model: the built-in default model is Claude's; aider uses its CLI's own default.
    assert _kind_of_agents(tmp_path, LaunchRequest(epic="E2", kind="aider"), existing, 4)[3] == "aider"
    chosen = LaunchRequest(epic="E2", kind="codex", model="gpt-5")
    assert _kind_of_agents(tmp_path, chosen, existing, 4)[3] == "codex:gpt-5"
    assert _kind_of_agents(tmp_path, LaunchRequest(epic="E2", kind="claude"), existing, 4)[3] == "claude:sonnet"
    # A command agent has no model, even with one in swarm.toml (as `swarm init` writes it).
    (tmp_path / "swarm.toml").write_text('[agent]\nmodel = "sonnet"\n')
    assert _kind_of_agents(tmp_path, LaunchRequest(epic="E1", command="make fix"), {}, 1) == ["command"]
