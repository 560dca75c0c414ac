"""Tests for swarm.backlog: spec file parsing, whole-backlog validation, closure and ordering."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.backlog import Backlog, load_backlog, parse_spec_text
from swarm.errors import BacklogError, BadInput
from swarm.models import Spec


def write(folder: Path, rel: str, content: str | bytes) -> Path:
    """Write one file under ``folder`` (creating directories) and return its path."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def spec_text(spec_id: str, epic: str = "E1", *, extra: str = "", body: str = "Do the thing.\n") -> str:
    """A minimal valid spec file; ``extra`` is inserted as more front matter lines."""
    return f"---\nid: {spec_id}\nepic: {epic}\n{extra}---\n{body}"


def problems_of(folder: Path) -> list[str]:
    """The problems load_backlog reports for ``folder`` (it must fail)."""
    with pytest.raises(BacklogError) as info:
        load_backlog(folder)
    return info.value.problems


# ------------------------------------------------------------------------------------------ valid input


def test_round_trip_all_fields_and_defaults(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    full = write(
        specs,
        "b_full.md",
        "---\n"
        "id: S042\n"
        "epic: E005\n"
        "title: Add the retry policy\n"
        "depends_on: [S040, S041]\n"
        "priority: 2\n"
        "requires: [python, docker]\n"
        "max_attempts: 3\n"
        "timeout_seconds: 1800\n"
        "x-owner: alice\n"
        "x_notes: {any: thing}\n"
        "---\n"
        "\n"
        "Free text: what the agent must do.\n"
        "\n"
        "    indented code stays indented\n"
        "\n",
    )
    write(specs, "a_first.md", spec_text("S041", "E005"))
    write(specs, "nested/deeper/c.md", spec_text("S040", "E004", body="# Build the base\n\nDetails.\n"))
    # Not specs: README (any case), hidden and underscore files, hidden directories, other extensions.
    write(specs, "README.md", "# About this backlog\n")
    write(specs, "nested/readme.MD", "not a spec")
    write(specs, "_draft.md", "not a spec")
    write(specs, ".hidden.md", "not a spec")
    write(specs, ".git/HEAD.md", "not a spec")
    write(specs, "notes.txt", "not a spec")

    backlog = load_backlog(specs)

    assert backlog.folder == specs
    # Stable order: by file path, not by id.
    assert list(backlog.specs) == ["S041", "S042", "S040"]
    assert backlog.specs["S042"] == Spec(
        id="S042",
        epic="E005",
        title="Add the retry policy",
        body="Free text: what the agent must do.\n\n    indented code stays indented",
        depends_on=("S040", "S041"),
        priority=2,
        requires=("python", "docker"),
        max_attempts=3,
        timeout_seconds=1800,
        path=full,
    )
    minimal = backlog.specs["S041"]
    assert minimal.depends_on == ()
    assert minimal.priority == 0
    assert minimal.requires == ()
    assert minimal.max_attempts is None
    assert minimal.timeout_seconds is None
    assert minimal.title == "Do the thing."
    assert minimal.body == "Do the thing."
    assert backlog.specs["S040"].title == "Build the base"
    assert backlog.epics() == ["E004", "E005"]
    assert [s.id for s in backlog.epic_specs("E005")] == ["S041", "S042"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("# Heading\nmore\n", "Heading", id="markdown-heading"),
        pytest.param("\n\n  ### Deep heading  \n", "Deep heading", id="leading-blank-lines"),
        pytest.param("plain first line\nsecond\n", "plain first line", id="plain-line"),
        pytest.param("#\n## \nReal text\n", "Real text", id="skip-empty-headings"),
        pytest.param("###\n", "S7", id="falls-back-to-id"),
    ],
)
def test_title_default(body: str, expected: str) -> None:
    spec, problems = parse_spec_text(spec_text("S7", body=body), Path("s7.md"))
    assert problems == []
    assert spec is not None
    assert spec.title == expected


def test_blank_title_uses_default_and_multiline_title_is_one_line() -> None:
    spec, problems = parse_spec_text(spec_text("S1", extra="title: ''\n", body="# From body\n"), Path("a.md"))
    assert problems == []
    assert spec is not None
    assert spec.title == "From body"
    spec, problems = parse_spec_text(spec_text("S1", extra="title: >\n  two\n  lines\n"), Path("a.md"))
    assert spec is not None
    assert spec.title == "two lines"


def test_yaml_pitfalls_keep_the_source_text() -> None:
    text = "---\nid: 001\nepic: 1.0\ndepends_on: [007, yes, 1e3]\nrequires: on\npriority: 0x10\n---\nbody\n"
    spec, problems = parse_spec_text(text, Path("a.md"))
    assert problems == []
    assert spec is not None
    assert spec.id == "001"
    assert spec.epic == "1.0"
    assert spec.depends_on == ("007", "yes", "1e3")
    assert spec.requires == ("on",)
    assert spec.priority == 16


def test_single_string_dependency_duplicates_dropped_and_negative_priority() -> None:
    spec, problems = parse_spec_text(spec_text("S2", extra="depends_on: S1\npriority: -3\n"), Path("a.md"))
    assert problems == []
    assert spec is not None
    assert spec.depends_on == ("S1",)
    assert spec.priority == -3
    spec, _ = parse_spec_text(spec_text("S3", extra="depends_on: [S1, S2, S1]\n"), Path("a.md"))
    assert spec is not None
    assert spec.depends_on == ("S1", "S2")


def test_empty_optional_fields_mean_defaults() -> None:
    extra = "title:\ndepends_on:\nrequires:\npriority:\nmax_attempts:\ntimeout_seconds:\n"
    spec, problems = parse_spec_text(spec_text("S1", extra=extra), Path("a.md"))
    assert problems == []
    assert spec is not None
    assert (spec.depends_on, spec.priority, spec.requires, spec.max_attempts) == ((), 0, (), None)


@pytest.mark.parametrize(
    ("extra", "verify", "allow_empty"),
    [
        pytest.param("verify: pytest -q tests/test_x.py\n", "pytest -q tests/test_x.py", False, id="plain"),
        pytest.param(
            'verify: "make check && echo ok"\nallow_empty: true\n', "make check && echo ok", True, id="quoted"
        ),
        pytest.param('verify: ""\n', "", False, id="empty-means-no-verify"),
        pytest.param("verify: |\n  ruff check .\n  pytest -q\n", "ruff check .\npytest -q", False, id="block"),
        pytest.param("verify:\nallow_empty:\n", None, False, id="empty-fields-mean-defaults"),
        pytest.param("allow_empty: false\n", None, False, id="allow-empty-false"),
    ],
)
def test_verify_and_allow_empty(extra: str, verify: str | None, allow_empty: bool) -> None:
    spec, problems = parse_spec_text(spec_text("S1", extra=extra), Path("a.md"))
    assert problems == []
    assert spec is not None
    assert (spec.verify, spec.allow_empty) == (verify, allow_empty)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        pytest.param("verify: 3\n", "verify must be a shell command written as text, got the number 3", id="number"),
        pytest.param("verify: true\n", "verify must be a shell command written as text, got the boolean", id="bool"),
        pytest.param("verify: [pytest, -q]\n", "verify must be a shell command written as text, got a list", id="list"),
        pytest.param('allow_empty: "yes"\n', "allow_empty must be true or false, got the text 'yes'", id="text"),
        pytest.param("allow_empty: 1\n", "allow_empty must be true or false, got the number 1", id="number"),
    ],
)
def test_verify_and_allow_empty_of_the_wrong_type_name_the_file_line_and_fix(extra: str, fragment: str) -> None:
    spec, problems = parse_spec_text(spec_text("S1", extra=extra), Path("specs/a.md"))
    assert spec is None
    assert len(problems) == 1
    assert problems[0].startswith("specs/a.md:4: ")
    assert fragment in problems[0]
    assert "write e.g." in problems[0]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "a.md", b"\xef\xbb\xbf---\r\nid: S1\r\nepic: E1\r\n---\r\nBody line\r\n")
    backlog = load_backlog(specs)
    assert backlog.specs["S1"].body == "Body line"
    assert backlog.specs["S1"].title == "Body line"


def test_parse_spec_text_names_the_path_as_given() -> None:
    spec, problems = parse_spec_text("---\nid: S1\n---\nbody\n", Path("some/where/x.md"))
    assert spec is None
    assert problems == ["some/where/x.md: missing required field 'epic'; add a line 'epic: E1' to the front matter"]


def test_backlog_folder_given_as_dot_names_files_under_the_folder_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = tmp_path / "myspecs"
    write(specs, "a.md", "no front matter\n")
    monkeypatch.chdir(specs)
    assert problems_of(Path("."))[0].startswith("myspecs/a.md:1: ")


# ------------------------------------------------------------------------------------------ bad folders


def test_missing_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_backlog(tmp_path / "nope")


def test_file_instead_of_folder_is_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, "specs", "x")
    with pytest.raises(BadInput, match="not a directory"):
        load_backlog(path)


def test_folder_without_spec_files_is_bad_input(tmp_path: Path) -> None:
    write(tmp_path / "specs", "README.md", "# only a readme\n")
    with pytest.raises(BadInput, match="no spec files") as info:
        load_backlog(tmp_path / "specs")
    assert not isinstance(info.value, BacklogError)


# ------------------------------------------------------------------------------------------ malformed


class MalformedCase(NamedTuple):
    """One invalid backlog: its files, and (prefix, fragment) pairs some problem must match."""

    test_id: str
    files: dict[str, str | bytes]
    expected: list[tuple[str, str]]


GOOD = spec_text("S1")
BAD = "specs/bad.md"

MALFORMED_CASES: list[MalformedCase] = [
    MalformedCase("no-front-matter", {"bad.md": "id: S1\nepic: E\n"}, [(f"{BAD}:1: ", "no front matter")]),
    MalformedCase(
        "front-matter-not-first-line",
        {"bad.md": "\n---\nid: S1\nepic: E\n---\nbody\n"},
        [(f"{BAD}:1: ", "first line must be '---'")],
    ),
    MalformedCase(
        "unterminated-front-matter",
        {"bad.md": "---\nid: S1\nepic: E\nbody\n"},
        [(f"{BAD}:1: ", "not closed; add a line '---'")],
    ),
    MalformedCase("empty-file", {"bad.md": ""}, [(f"{BAD}: ", "the file is empty")]),
    MalformedCase(
        "bad-yaml",
        {"bad.md": "---\nid: S1\nepic: E\ntitle: a: b\n---\nbody\n"},
        [(f"{BAD}:4: ", "invalid YAML in the front matter")],
    ),
    MalformedCase(
        "bad-yaml-unclosed-flow-list",
        {"bad.md": "---\nid: S1\nepic: E\ndepends_on: [S2\n---\nbody\n"},
        [(f"{BAD}:", "starts on line 4")],
    ),
    MalformedCase(
        "bad-yaml-control-character",
        {"bad.md": "---\nid: S1\nepic: E\ntitle: a\x01b\n---\nbody\n"},
        [(f"{BAD}:4: ", "not allowed")],
    ),
    MalformedCase(
        "front-matter-not-a-mapping",
        {"bad.md": "---\n- id\n- epic\n---\nbody\n"},
        [(f"{BAD}:2: ", "must be fields written as 'key: value', got a list")],
    ),
    MalformedCase("front-matter-empty", {"bad.md": "---\n---\nbody\n"}, [(f"{BAD}:2: ", "front matter is empty")]),
    MalformedCase("missing-id", {"bad.md": "---\nepic: E\n---\nbody\n"}, [(f"{BAD}: ", "missing required field 'id'")]),
    MalformedCase(
        "missing-epic",
        {"bad.md": "---\nid: S1\n---\nbody\n"},
        [(f"{BAD}: ", "missing required field 'epic'")],
    ),
    MalformedCase(
        "id-is-a-list",
        {"bad.md": "---\nepic: E\nid: [S1]\n---\nbody\n"},
        [(f"{BAD}:3: ", "id must be a single id like 'S1', got a list")],
    ),
    MalformedCase("id-is-empty", {"bad.md": "---\nid:\nepic: E\n---\nbody\n"}, [(f"{BAD}:2: ", "got nothing")]),
    MalformedCase(
        "invalid-id",
        {"bad.md": "---\nid: 'bad id'\nepic: E\n---\nbody\n"},
        [
            (f"{BAD}:2: ", "id 'bad id' is not a valid id; use 1 to 64"),
            (BAD, "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
        ],
    ),
    MalformedCase(
        "id-too-long",
        {"bad.md": f"---\nid: {'a' * 65}\nepic: E\n---\nbody\n"},
        [(f"{BAD}:2: ", "is not a valid id")],
    ),
    MalformedCase(
        "invalid-epic",
        {"bad.md": "---\nid: S1\nepic: -E\n---\nbody\n"},
        [(f"{BAD}:3: ", "epic '-E' is not a valid id")],
    ),
    MalformedCase(
        "unknown-field-with-suggestion",
        {"bad.md": "---\nid: S1\nepic: E\npriorty: 2\n---\nbody\n"},
        [(f"{BAD}:4: ", "unknown field 'priorty'; did you mean 'priority'?")],
    ),
    MalformedCase(
        "unknown-field-wrong-case",
        {"bad.md": "---\nid: S1\nepic: E\nDepends_On: [S1]\n---\nbody\n"},
        [(f"{BAD}:4: ", "did you mean 'depends_on'?")],
    ),
    MalformedCase(
        "unknown-field-without-suggestion",
        {"bad.md": "---\nid: S1\nepic: E\nzzz: 1\n---\nbody\n"},
        [(f"{BAD}:4: ", "unknown field 'zzz'; known fields: id, epic")],
    ),
    MalformedCase(
        "field-given-twice",
        {"bad.md": "---\nid: S1\nepic: E\nid: S2\n---\nbody\n"},
        [(f"{BAD}:4: ", "field 'id' is given twice (first on line 2)")],
    ),
    MalformedCase(
        "priority-bool",
        {"bad.md": "---\nid: S1\nepic: E\npriority: true\n---\nbody\n"},
        [(f"{BAD}:4: ", "priority must be a whole number, got the boolean 'true'")],
    ),
    MalformedCase(
        "priority-quoted",
        {"bad.md": '---\nid: S1\nepic: E\npriority: "2"\n---\nbody\n'},
        [(f"{BAD}:4: ", "priority must be a whole number, got the text '2'")],
    ),
    MalformedCase(
        "priority-float",
        {"bad.md": "---\nid: S1\nepic: E\npriority: 1.5\n---\nbody\n"},
        [(f"{BAD}:4: ", "priority must be a whole number")],
    ),
    MalformedCase(
        "max-attempts-zero",
        {"bad.md": "---\nid: S1\nepic: E\nmax_attempts: 0\n---\nbody\n"},
        [(f"{BAD}:4: ", "max_attempts must be at least 1, got 0")],
    ),
    MalformedCase(
        "timeout-negative",
        {"bad.md": "---\nid: S1\nepic: E\ntimeout_seconds: -5\n---\nbody\n"},
        [(f"{BAD}:4: ", "timeout_seconds must be at least 1, got -5")],
    ),
    MalformedCase(
        "timeout-list",
        {"bad.md": "---\nid: S1\nepic: E\ntimeout_seconds: [1]\n---\nbody\n"},
        [(f"{BAD}:4: ", "timeout_seconds must be a whole number, got a list")],
    ),
    MalformedCase(
        "title-not-text",
        {"bad.md": "---\nid: S1\nepic: E\ntitle: {a: b}\n---\nbody\n"},
        [(f"{BAD}:4: ", "title must be text, got a mapping")],
    ),
    MalformedCase(
        "depends-on-mapping",
        {"bad.md": "---\nid: S2\nepic: E\ndepends_on: {S1: yes}\n---\nbody\n", "a.md": GOOD},
        [(f"{BAD}:4: ", "depends_on must be a list of spec ids")],
    ),
    MalformedCase(
        "depends-on-entry-not-a-string",
        {
            "bad.md": "---\nid: S2\nepic: E\ndepends_on:\n  - S1\n  - [S3]\n  - {a: 1}\n---\nbody\n",
            "a.md": GOOD,
        },
        [
            (f"{BAD}:6: ", "depends_on entries must be spec ids (strings), got a list"),
            (f"{BAD}:7: ", "depends_on entries must be spec ids (strings), got a mapping"),
        ],
    ),
    MalformedCase(
        "depends-on-null-entry",
        {"bad.md": "---\nid: S2\nepic: E\ndepends_on: [S1, null]\n---\nbody\n", "a.md": GOOD},
        [(f"{BAD}:4: ", "got nothing")],
    ),
    MalformedCase(
        "depends-on-invalid-id",
        {"bad.md": "---\nid: S2\nepic: E\ndepends_on: ['S 1']\n---\nbody\n"},
        [(f"{BAD}:4: ", "depends_on entry 'S 1' is not a valid spec id")],
    ),
    MalformedCase(
        "requires-entry-not-a-string",
        {"bad.md": "---\nid: S1\nepic: E\nrequires:\n  - python\n  - {gpu: 2}\n---\nbody\n"},
        [(f"{BAD}:6: ", "requires entries must be capability names (strings), got a mapping")],
    ),
    MalformedCase(
        "requires-invalid",
        {"bad.md": "---\nid: S1\nepic: E\nrequires: [py thon]\n---\nbody\n"},
        [(f"{BAD}:4: ", "requires entry 'py thon' is not a valid capability name")],
    ),
    MalformedCase(
        "empty-body",
        {"bad.md": "---\nid: S1\nepic: E\n---\n\n   \n\n"},
        [(f"{BAD}:4: ", "the prompt is empty")],
    ),
    MalformedCase(
        "non-utf8",
        {"bad.md": b"---\nid: S1\nepic: E\n---\nna\xefve \xff\n"},
        [(f"{BAD}:5: ", "not valid UTF-8 (byte 0xef at byte offset 25)")],
    ),
    MalformedCase(
        "non-utf8-after-bom",
        {"bad.md": b"\xef\xbb\xbf---\n\xc3\n"},
        [(f"{BAD}:2: ", "byte offset 7")],
    ),
    MalformedCase(
        "duplicate-id",
        {"a.md": GOOD, "bad.md": "---\nepic: E2\nid: S1\n---\nbody\n"},
        [(f"{BAD}:3: ", "duplicate id 'S1', also used by specs/a.md")],
    ),
    MalformedCase(
        "unknown-dependency-with-suggestion",
        {
            "a.md": spec_text("S100"),
            "bad.md": "---\nid: S2\nepic: E\ndepends_on:\n  - S100\n  - S101\n---\nx\n",
        },
        [(f"{BAD}:6: ", "depends_on names unknown spec 'S101' (did you mean 'S100'?)")],
    ),
    MalformedCase(
        "unknown-dependency-single-string",
        {"bad.md": "---\nid: S2\nepic: E\ndepends_on: Q9\n---\nx\n"},
        [(f"{BAD}:4: ", "depends_on names unknown spec 'Q9'; fix the id or add a spec")],
    ),
    MalformedCase(
        "self-dependency",
        {"bad.md": "---\nid: S1\nepic: E\ndepends_on: [S1]\n---\nx\n"},
        [(f"{BAD}:4: ", "dependency cycle S1 -> S1;")],
    ),
    MalformedCase(
        "three-spec-cycle",
        {
            "bad.md": "---\nid: S1\nepic: E\ndepends_on: [S2]\n---\nx\n",
            "b.md": spec_text("S2", extra="depends_on: [S3]\n"),
            "c.md": spec_text("S3", extra="depends_on: [S1]\n"),
        },
        [(f"{BAD}:4: ", "dependency cycle S1 -> S2 -> S3 -> S1; remove one")],
    ),
]


@pytest.mark.parametrize(
    list(MalformedCase._fields),
    MALFORMED_CASES,
    ids=[case.test_id for case in MALFORMED_CASES],
)
def test_malformed_backlog(
    tmp_path: Path, test_id: str, files: dict[str, str | bytes], expected: list[tuple[str, str]]
) -> None:
    specs = tmp_path / "specs"
    for rel, content in files.items():
        write(specs, rel, content)
    problems = problems_of(specs)
    for prefix, fragment in expected:
        assert any(p.startswith(prefix) and fragment in p for p in problems), (
            test_id,
            prefix,
            fragment,
            problems,
        )
    # Every problem names a file of the backlog first.
    assert all(p.startswith("specs/") for p in problems), problems


def test_unknown_dependency_is_not_reported_for_an_id_declared_in_a_broken_file(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "a.md", spec_text("S1", extra="priority: high\n"))
    write(specs, "b.md", spec_text("S2", extra="depends_on: [S1]\n"))
    assert problems_of(specs) == [
        "specs/a.md:4: priority must be a whole number, got the text 'high'; write e.g. 'priority: 3'"
    ]


def test_each_cycle_is_reported_once(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "a.md", spec_text("A", extra="depends_on: [B]\n"))
    write(specs, "b.md", spec_text("B", extra="depends_on: [A]\n"))
    write(specs, "c.md", spec_text("C", extra="depends_on: [C, A]\n"))
    write(specs, "d.md", spec_text("D", extra="depends_on: [C]\n"))
    problems = problems_of(specs)
    assert problems == [
        "specs/a.md:4: dependency cycle A -> B -> A; remove one of these depends_on entries",
        "specs/c.md:4: dependency cycle C -> C; remove one of these depends_on entries",
    ]


def test_many_problems_in_many_files_are_reported_together(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "a.md", "---\nid: A\nepic: E\ntitle: [\n---\nx\n")
    write(specs, "b.md", "---\nid: 'B B'\nepic: E\npriority: yes\nbogus: 1\n---\n\n")
    write(specs, "c.md", b"---\nid: C\xff\n")
    write(specs, "sub/d.md", spec_text("D", extra="depends_on: [Z, D2]\n"))
    write(specs, "sub/e.md", spec_text("D"))
    write(specs, "sub/f.md", spec_text("F", extra="depends_on: [G]\n"))
    write(specs, "sub/g.md", spec_text("G", extra="depends_on: [F]\n"))
    problems = problems_of(specs)
    files = [p.split(":", 1)[0] for p in problems]
    assert files == [
        "specs/a.md",
        "specs/b.md",
        "specs/b.md",
        "specs/b.md",
        "specs/b.md",
        "specs/c.md",
        "specs/sub/e.md",
        "specs/sub/d.md",
        "specs/sub/d.md",
        "specs/sub/f.md",
    ]
    text = "\n".join(problems)
    assert "specs/b.md:2: id 'B B' is not a valid id" in text
    assert "specs/b.md:4: priority must be a whole number" in text
    assert "specs/b.md:5: unknown field 'bogus'" in text
    assert "specs/b.md:6: the prompt is empty" in text
    assert "specs/c.md:2: not valid UTF-8" in text
    assert "specs/sub/e.md:2: duplicate id 'D', also used by specs/sub/d.md" in text
    assert "specs/sub/d.md:4: depends_on names unknown spec 'Z'" in text
    assert "specs/sub/d.md:4: depends_on names unknown spec 'D2' (did you mean 'D'?)" in text
    assert "specs/sub/f.md:4: dependency cycle F -> G -> F" in text


def test_long_cycle_is_shortened(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    for i in range(100):
        write(specs, f"c{i:03d}.md", spec_text(f"C{i:03d}", extra=f"depends_on: [C{(i + 1) % 100:03d}]\n"))
    (problem,) = problems_of(specs)
    assert problem.startswith("specs/c000.md:4: dependency cycle C000 -> C001 -> ")
    assert "... (81 more) -> C096 -> C097 -> C098 -> C099 -> C000;" in problem


# ------------------------------------------------------------------------------------------ graph queries


def make_backlog(tmp_path: Path, specs: list[tuple[str, str, list[str]]]) -> Backlog:
    """Write (id, epic, depends_on) specs as files and load them."""
    folder = tmp_path / "specs"
    for spec_id, epic, deps in specs:
        write(folder, f"{spec_id}.md", spec_text(spec_id, epic, extra=f"depends_on: [{', '.join(deps)}]\n"))
    return load_backlog(folder)


def test_closure_follows_cross_epic_dependencies(tmp_path: Path) -> None:
    backlog = make_backlog(
        tmp_path,
        [
            ("A2", "E1", ["A1", "B2"]),
            ("A1", "E1", ["B1"]),
            ("A3", "E1", []),
            ("B1", "E2", ["C1"]),
            ("B2", "E2", []),
            ("B3", "E2", []),  # in another epic but not needed: never queued
            ("C1", "E3", ["C0"]),
            ("C0", "E3", []),
        ],
    )

    own, others = backlog.closure("E1")
    # One dependency order over both lists, smallest ready id first: A3 needs nothing, so it leads.
    assert [s.id for s in own] == ["A3", "A1", "A2"]
    assert [s.id for s in others] == ["B2", "C0", "C1", "B1"]

    # Done specs are left out and their own dependencies are not followed.
    own, others = backlog.closure("E1", done={"B1", "A3"})
    assert [s.id for s in own] == ["A1", "A2"]
    assert [s.id for s in others] == ["B2"]

    own, others = backlog.closure("E1", done=["A1", "A2", "A3"])
    assert (own, others) == ([], [])

    own, others = backlog.closure("E3")
    assert [s.id for s in own] == ["C0", "C1"]
    assert others == []


def test_closure_goes_through_other_epics_back_into_the_epic(tmp_path: Path) -> None:
    # A1 needs A2 only through B1: ordering E1's specs among themselves would put A1 first.
    backlog = make_backlog(tmp_path, [("A1", "E1", ["B1"]), ("B1", "E2", ["A2"]), ("A2", "E1", [])])
    own, others = backlog.closure("E1")
    assert [s.id for s in own] == ["A2", "A1"]
    assert [s.id for s in others] == ["B1"]


def test_unknown_epic_names_the_known_epics(tmp_path: Path) -> None:
    backlog = make_backlog(tmp_path, [("A1", "E1", []), ("B1", "E2", [])])
    with pytest.raises(BadInput, match=r"no specs in epic 'E3'") as info:
        backlog.closure("E3")
    assert "known epics: E1, E2" in str(info.value)
    with pytest.raises(BadInput, match="did you mean 'E1'"):
        backlog.epic_specs("e1")


def test_topological_order_puts_dependencies_first_ties_by_id(tmp_path: Path) -> None:
    backlog = make_backlog(
        tmp_path,
        [("D", "E", ["B"]), ("C", "E", []), ("B", "E", ["A", "C"]), ("A", "E", []), ("E0", "E", [])],
    )
    assert backlog.topological_order() == ["A", "C", "B", "D", "E0"]


def test_topological_order_of_a_hand_built_cyclic_backlog_raises(tmp_path: Path) -> None:
    specs = {
        "A": Spec(id="A", epic="E", title="a", body="a", depends_on=("B",)),
        "B": Spec(id="B", epic="E", title="b", body="b", depends_on=("A",)),
    }
    with pytest.raises(BacklogError, match="dependency cycle among A, B"):
        Backlog(folder=tmp_path, specs=specs).topological_order()


def test_ten_thousand_long_chain_loads_without_recursion_error(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    count = 10_000
    for i in range(count):
        deps = f"[C{i - 1:05d}]" if i else "[]"
        (folder / f"c{i:05d}.md").write_text(f"---\nid: C{i:05d}\nepic: E\ndepends_on: {deps}\n---\nx\n")
    backlog = load_backlog(folder)
    order = backlog.topological_order()
    assert order == [f"C{i:05d}" for i in range(count)]
    own, others = backlog.closure("E", done={"C05000"})
    assert len(own) == count - 1
    assert others == []

    # Closing the chain into a loop is found, still without recursion.
    (folder / "c00000.md").write_text(f"---\nid: C00000\nepic: E\ndepends_on: [C{count - 1:05d}]\n---\nx\n")
    (problem,) = problems_of(folder)
    assert "dependency cycle C00000 -> C09999 -> C09998" in problem


def test_two_thousand_specs_load_in_dependency_order(tmp_path: Path) -> None:
    # Speed belongs in benchmarks, not in a threshold here; this checks a large, deep backlog loads correctly.
    folder = tmp_path / "specs"
    folder.mkdir()
    for i in range(2000):
        deps = f"[S{i - 1}, S{i // 2}]" if i else "[]"
        (folder / f"s{i:04d}.md").write_text(
            f"---\nid: S{i}\nepic: E{i % 7}\ndepends_on: {deps}\npriority: {i % 3}\n---\n# Task {i}\n\nBody.\n"
        )
    backlog = load_backlog(folder)
    order = backlog.topological_order()
    assert len(backlog.specs) == 2000
    position = {sid: n for n, sid in enumerate(order)}
    assert all(position[dep] < position[sid] for sid, spec in backlog.specs.items() for dep in spec.depends_on)


# ------------------------------------------------------------------------------------------ properties


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """A random DAG: ids in a random order; each node depends only on nodes earlier in ``order``."""
    size = draw(st.integers(min_value=1, max_value=15))
    names = draw(st.permutations([f"T{i}" for i in range(size)]))
    deps: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        earlier = names[:index]
        deps[name] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4)) if earlier else []
    return list(names), deps


def write_graph(folder: Path, deps: dict[str, list[str]]) -> None:
    for name, targets in deps.items():
        write(folder, f"{name}.md", spec_text(name, extra=f"depends_on: [{', '.join(targets)}]\n"))


def reachable(deps: dict[str, list[str]], start: str) -> set[str]:
    """Every node ``start`` transitively depends on."""
    seen: set[str] = set()
    stack = list(deps[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(deps[node])
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dags(), data=st.data())
def test_random_dags_order_and_back_edges(graph: tuple[list[str], dict[str, list[str]]], data: st.DataObject) -> None:
    names, deps = graph
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "specs"
        write_graph(folder, deps)
        backlog = load_backlog(folder)
        order = backlog.topological_order()
        assert sorted(order) == sorted(names)
        position = {name: i for i, name in enumerate(order)}
        for name, targets in deps.items():
            for target in targets:
                assert position[target] < position[name]

        # A back edge: a node that `start` transitively depends on (or `start` itself) depends on `start`.
        start = data.draw(st.sampled_from(names))
        end = data.draw(st.sampled_from(sorted(reachable(deps, start) | {start})))
        deps[end] = [*deps[end], start]
        write_graph(folder, deps)
        problems = problems_of(folder)

    cycles = [p for p in problems if "dependency cycle" in p]
    assert cycles, problems
    assert len(cycles) == len(problems)
    for problem in cycles:
        chain = problem.split("dependency cycle ", 1)[1].split(";", 1)[0].split(" -> ")
        assert chain[0] == chain[-1]
        pairs = list(itertools.pairwise(chain))
        # Every reported cycle is real, and uses the new edge (the graph was acyclic without it).
        assert all(b in deps[a] for a, b in pairs), (chain, deps)
        assert (end, start) in pairs


def test_a_broken_spec_the_epic_does_not_need_is_a_warning(tmp_path: Path) -> None:
    from tests.helpers import write_spec

    specs = tmp_path / "specs"
    write_spec(specs, "A", "E1")
    write_spec(specs, "B", "E1", depends_on=["S"])
    write_spec(specs, "S", "E0")  # another epic's spec E1 needs
    write_spec(specs, "X", "E2", extra="priority: high")  # broken, of an epic E1 does not need
    write_spec(specs, "Y", "E2", depends_on=["nope"])  # broken across files
    backlog = load_backlog(specs, epic="E1")
    assert sorted(backlog.specs) == ["A", "B", "S"]
    assert len(backlog.warnings) == 2
    assert any("specs/X.md" in w for w in backlog.warnings)
    assert any("specs/Y.md" in w and "nope" in w for w in backlog.warnings)
    with pytest.raises(BacklogError):
        load_backlog(specs)  # without an epic every problem counts
    with pytest.raises(BacklogError):
        load_backlog(specs, epic="E2")  # its own broken specs
    # A broken spec the epic needs (of another epic), and a file whose epic cannot be read, refuse.
    write_spec(specs, "S", "E0", extra="priority: high")
    with pytest.raises(BacklogError, match=r"S\.md"):
        load_backlog(specs, epic="E1")
    write_spec(specs, "S", "E0")
    (specs / "Z.md").write_text("---\nid: Z\nepic: [\n---\nbody\n")
    with pytest.raises(BacklogError, match=r"Z\.md"):
        load_backlog(specs, epic="E1")
