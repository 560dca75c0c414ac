"""docs/contract.md §2 through the real CLI: every malformed backlog exits 2, names the file, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from swarm.store import open_store
from tests.helpers import swarm_cli, write_spec


class Broken(NamedTuple):
    test_id: str
    build: Callable[[Path], None]
    expect: list[str]  # fragments that must all appear on stderr


def _duplicate(specs: Path) -> None:
    write_spec(specs, "A", name="one.md")
    write_spec(specs, "A", name="two.md")


def _unknown_dep(specs: Path) -> None:
    write_spec(specs, "A")
    write_spec(specs, "B", depends_on=["NOPE"])


def _cycle(specs: Path) -> None:
    write_spec(specs, "A", depends_on=["C"])
    write_spec(specs, "B", depends_on=["A"])
    write_spec(specs, "C", depends_on=["B"])


def _self_cycle(specs: Path) -> None:
    write_spec(specs, "A", depends_on=["A"])


def _invalid_id(specs: Path) -> None:
    write_spec(specs, "A")
    write_spec(specs, "bad id!", name="bad.md")


def _bad_yaml(specs: Path) -> None:
    write_spec(specs, "A")
    specs.joinpath("broken.md").write_text("---\nid: B\nepic: E1\ntitle: [unclosed\n---\nbody\n", "utf-8")


def _missing_epic(specs: Path) -> None:
    write_spec(specs, "A")
    specs.joinpath("noepic.md").write_text("---\nid: B\ntitle: no epic\n---\nbody\n", "utf-8")


def _missing_id(specs: Path) -> None:
    write_spec(specs, "A")
    specs.joinpath("noid.md").write_text("---\nepic: E1\ntitle: no id\n---\nbody\n", "utf-8")


def _not_utf8(specs: Path) -> None:
    write_spec(specs, "A")
    specs.joinpath("latin1.md").write_bytes("---\nid: B\nepic: E1\n---\ncaf\xe9\n".encode("latin-1"))


def _no_front_matter(specs: Path) -> None:
    write_spec(specs, "A")
    specs.joinpath("plain.md").write_text("# just a note\n", "utf-8")


def _wrong_type(specs: Path) -> None:
    write_spec(specs, "A", extra="priority: high")


def _verify_not_text(specs: Path) -> None:
    write_spec(specs, "A", extra="verify: [pytest]")


def _allow_empty_not_bool(specs: Path) -> None:
    write_spec(specs, "A", extra='allow_empty: "sure"')


def _empty_body(specs: Path) -> None:
    specs.mkdir(parents=True, exist_ok=True)
    specs.joinpath("A.md").write_text("---\nid: A\nepic: E1\n---\n\n", "utf-8")


def _many_problems(specs: Path) -> None:
    write_spec(specs, "A", depends_on=["GHOST"])
    write_spec(specs, "A", name="again.md")


CASES = [
    Broken("duplicate-id", _duplicate, ["duplicate", "one.md", "two.md"]),
    Broken("unknown-dependency", _unknown_dep, ["B.md", "NOPE"]),
    Broken("cycle", _cycle, ["cycle", "A -> ", "C"]),
    Broken("self-dependency", _self_cycle, ["cycle", "A -> A"]),
    Broken("invalid-id", _invalid_id, ["bad.md", "bad id!"]),
    Broken("bad-yaml", _bad_yaml, ["broken.md:"]),
    Broken("missing-epic", _missing_epic, ["noepic.md", "epic"]),
    Broken("missing-id", _missing_id, ["noid.md", "id"]),
    Broken("non-utf8", _not_utf8, ["latin1.md", "UTF-8"]),
    Broken("no-front-matter", _no_front_matter, ["plain.md", "front matter"]),
    Broken("wrong-type", _wrong_type, ["A.md", "priority"]),
    Broken("verify-not-text", _verify_not_text, ["A.md:5", "verify must be a shell command", "write e.g."]),
    Broken("allow-empty-not-boolean", _allow_empty_not_bool, ["A.md:5", "allow_empty must be true or false"]),
    Broken("empty-body", _empty_body, ["A.md", "prompt is empty"]),
    Broken("all-problems-at-once", _many_problems, ["GHOST", "again.md", "2 problems"]),
]


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    return repo


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_malformed_backlog_exits_2_and_creates_nothing(tmp_path: Path, case: Broken) -> None:
    repo = _repo(tmp_path)
    case.build(repo / "specs")
    result = swarm_cli("queue", "init", "--epic", "E1", cwd=repo)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    for fragment in case.expect:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    assert "Traceback" not in result.stderr
    assert "nothing was written" in result.stderr
    assert not (repo / ".swarm").exists()


def test_malformed_backlog_leaves_existing_queue_untouched(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    write_spec(repo / "specs", "A")
    assert swarm_cli("queue", "init", "--epic", "E1", cwd=repo).returncode == 0
    db = repo / ".swarm" / "swarm.db"
    with open_store(f"sqlite:///{db}") as store:
        before = (store.list_tasks(), store.events())
    write_spec(repo / "specs", "B", depends_on=["A", "Y"])
    write_spec(repo / "specs", "X", depends_on=["Y"])
    write_spec(repo / "specs", "Y", depends_on=["X"])
    result = swarm_cli("queue", "init", "--epic", "E1", cwd=repo)
    assert result.returncode == 2
    assert "cycle" in result.stderr
    with open_store(f"sqlite:///{db}") as store:
        assert (store.list_tasks(), store.events()) == before


def test_missing_backlog_folder(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    result = swarm_cli("queue", "init", "--epic", "E1", cwd=repo)
    assert result.returncode == 2
    assert "specs" in result.stderr
    assert not (repo / ".swarm").exists()


def test_epic_with_no_specs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    write_spec(repo / "specs", "A", epic="E1")
    result = swarm_cli("queue", "init", "--epic", "E9", cwd=repo)
    assert result.returncode == 2
    assert "E9" in result.stderr
    assert "E1" in result.stderr  # names the epics that do exist
    assert not (repo / ".swarm").exists()


def test_launching_an_epic_queues_its_undone_dependencies_and_says_so(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    write_spec(repo / "specs", "BASE", epic="E0")
    write_spec(repo / "specs", "A", epic="E1", depends_on=["BASE"])
    write_spec(repo / "specs", "UNRELATED", epic="E0")
    result = swarm_cli("queue", "init", "--epic", "E1", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "BASE (E0)" in result.stdout
    with open_store(f"sqlite:///{repo}/.swarm/swarm.db") as store:
        assert sorted(t.id for t in store.list_tasks()) == ["A", "BASE"]
