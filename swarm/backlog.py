"""Load and validate the backlog: a folder of Markdown spec files with YAML front matter (docs/contract.md §2).

A spec file looks like::

    ---
    id: S042
    epic: E005
    depends_on: [S040]
    ---
    The prompt.

:func:`load_backlog` reads every spec file, validates the whole backlog and either returns a
:class:`Backlog` or raises :class:`~swarm.errors.BacklogError` carrying *every* problem it found, each
naming the file (relative to the backlog folder's parent) and the line where known. Nothing in here writes.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from swarm.errors import BacklogError, BadInput
from swarm.graph import topological_order
from swarm.models import ID_PATTERN, Spec, is_valid_id
from swarm.words import plural

logger = logging.getLogger(__name__)

__all__ = ["Backlog", "load_backlog", "parse_spec_text"]

#: libyaml is an order of magnitude faster than the pure-Python parser; both build the same nodes.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Only used to read YAML 1.1 integers (``0x1f``, ``1_000``, ``1:30``) and booleans (``yes``, ``off``) exactly as
#: ``safe_load`` would.
_SCALAR_READER = yaml.constructor.SafeConstructor()

_TAG_NULL = "tag:yaml.org,2002:null"
_TAG_BOOL = "tag:yaml.org,2002:bool"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_FLOAT = "tag:yaml.org,2002:float"
_TAG_STR = "tag:yaml.org,2002:str"

_KNOWN_FIELDS = (
    "id",
    "epic",
    "title",
    "depends_on",
    "priority",
    "requires",
    "max_attempts",
    "timeout_seconds",
    "verify",
    "allow_empty",
)
_ID_RULE = (
    f"use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (pattern {ID_PATTERN.pattern})"
)
_FENCE = "---"
_BOM = "\ufeff"
_BOM_BYTES = b"\xef\xbb\xbf"
#: Past this many cycles the rest are only counted: extracting each one costs its length, and a
#: pathological backlog could otherwise make reporting quadratic.
_MAX_CYCLES_SHOWN = 50
#: Longest cycle printed in full (ids including the repeated first one).
_MAX_CYCLE_SHOWN = 20
#: Suggestions ("did you mean ...?") cost a fuzzy scan of every id; bound the work on a badly broken backlog.
_MAX_SUGGESTIONS = 100

#: How per-file checks report: (file line or None, message).
_Problem = Callable[[int | None, str], None]


@dataclass(frozen=True)
class Backlog:
    """A validated backlog: every spec by id, in a stable order (sorted by file path)."""

    folder: Path
    specs: dict[str, Spec]
    #: Problems of specs the epic loaded for does not need (``load_backlog(..., epic=E)``): those specs are
    #: left out, and the problems are shown as warnings.
    warnings: tuple[str, ...] = ()

    def epics(self) -> list[str]:
        """The distinct epic names, sorted."""
        return sorted({spec.epic for spec in self.specs.values()})

    def epic_specs(self, epic: str) -> list[Spec]:
        """The specs of ``epic`` in backlog order; :class:`BadInput` naming the known epics if none."""
        found = [spec for spec in self.specs.values() if spec.epic == epic]
        if not found:
            known = self.epics()
            # Case first: "e5" for "E5" is the likeliest slip, and difflib is case-sensitive.
            same = [k for k in known if k.lower() == epic.lower()]
            close = same or difflib.get_close_matches(epic, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadInput(
                f"no specs in epic {epic!r} in {self.folder}",
                hint=f"{hint}known epics: {', '.join(known) if known else '(none)'}",
            )
        return found

    def closure(self, epic: str, done: Collection[str] = ()) -> tuple[list[Spec], list[Spec]]:
        """What launching ``epic`` must queue.

        Returns (the epic's specs not in ``done``, the specs of OTHER epics that those transitively depend
        on and that are not in ``done``), both in dependency order with ties broken by id. A done spec's own
        dependencies are not followed: once it is done, what it needed no longer matters.
        """
        done_set = frozenset(done)
        own = [spec for spec in self.epic_specs(epic) if spec.id not in done_set]
        seen = {spec.id for spec in own}
        others: list[str] = []
        stack = [dep for spec in own for dep in spec.depends_on]
        while stack:
            dep_id = stack.pop()
            if dep_id in seen or dep_id in done_set or dep_id not in self.specs:
                continue
            seen.add(dep_id)
            dep = self.specs[dep_id]
            if dep.epic != epic:
                others.append(dep_id)
            stack.extend(dep.depends_on)
        # One order over both lists, then split: an epic spec that depends on another epic spec only through
        # a third epic must still come after it, which ordering each list on its own would not guarantee.
        deps = {spec_id: spec.depends_on for spec_id, spec in self.specs.items()}
        order = _topological(self.folder, [*seen], deps)
        own_ids = {spec.id for spec in own}
        return (
            [self.specs[i] for i in order if i in own_ids],
            [self.specs[i] for i in order if i not in own_ids],
        )

    def topological_order(self) -> list[str]:
        """Every spec id, each after all its dependencies; ties broken by id."""
        deps = {spec_id: spec.depends_on for spec_id, spec in self.specs.items()}
        return _topological(self.folder, list(self.specs), deps)


def _topological(folder: Path, ids: Iterable[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """The subgraph induced by ``ids`` in topological order, the smallest ready id first (``swarm.graph``).

    A validated backlog has no cycles, but a hand-built :class:`Backlog` might, so a leftover is an error
    rather than a silently short list.
    """
    order, stuck = topological_order({spec_id: deps.get(spec_id, ()) for spec_id in ids})
    if stuck:
        raise BacklogError([f"{folder}: dependency cycle among {', '.join(stuck[:10])}; remove one depends_on entry"])
    return order


# --------------------------------------------------------------------------------------------- parsing


@dataclass
class _Parsed:
    """One file's outcome, with what the cross-file checks need beyond the :class:`Spec`."""

    spec: Spec | None
    problems: list[str] = field(default_factory=list)
    #: The id when it could be read, even if other fields are broken: it still counts as a known id, so
    #: one typo does not cascade into "unknown dependency" reports in every file that depends on it.
    id: str | None = None
    id_line: int | None = None
    #: The epic when it could be read, even if other fields are broken (whose problem it is, see load_backlog).
    epic: str | None = None
    #: The readable depends_on entries, also of a broken file, so unknown ones are reported in one pass.
    depends_on: tuple[str, ...] = ()
    #: File line of each depends_on entry, for pointing at the entry that names an unknown or cyclic dep.
    dep_lines: dict[str, int] = field(default_factory=dict)


def _where(display: str, line: int | None) -> str:
    return f"{display}:{line}" if line is not None else display


def _line(node: yaml.Node) -> int | None:
    """The file line of ``node``: marks are 0-based within the front matter, which starts on file line 2."""
    mark = node.start_mark
    return None if mark is None else mark.line + 2


def _describe(node: yaml.Node) -> str:
    """How a value reads to a user, for "got ..." in messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _TAG_NULL:
        return "nothing"
    if node.tag == _TAG_BOOL:
        return f"the boolean {node.value!r}"
    if node.tag in (_TAG_INT, _TAG_FLOAT):
        return f"the number {node.value}"
    return f"the text {node.value!r}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _TAG_NULL


def _scalar_text(node: yaml.Node) -> str | None:
    """The scalar's source text (after quoting/escapes), or None for null and collections.

    The raw text, not the loaded value, is what the user wrote: ``id: 001`` stays "001" (safe_load
    would give the int 1) and ``id: yes`` stays "yes" (safe_load would give True).
    """
    if isinstance(node, yaml.ScalarNode) and node.tag != _TAG_NULL:
        return str(node.value)
    return None


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_spec_text(text: str, path: Path) -> tuple[Spec | None, list[str]]:
    """Parse one spec file's text into a :class:`Spec`, or return every problem found in it.

    Problems begin with ``path`` as given (``path:line: ...`` where the line is known). Cross-file rules
    (duplicate ids, unknown dependencies, cycles) are checked by :func:`load_backlog`, not here.
    """
    parsed = _parse(text, path, str(path))
    return parsed.spec, parsed.problems


def _parse(text: str, path: Path, display: str) -> _Parsed:
    result = _Parsed(spec=None)
    found: list[tuple[int, str]] = []

    def problem(line: int | None, message: str) -> None:
        found.append((line or 0, f"{_where(display, line)}: {message}"))

    spec = _parse_file(text, path, result, problem)
    if not found:
        result.spec = spec
    # Checks run field by field; report in file order so the list reads top to bottom like the file.
    result.problems = [message for _, message in sorted(found, key=lambda item: item[0])]
    return result


def _parse_file(text: str, path: Path, result: _Parsed, problem: _Problem) -> Spec | None:
    """Split front matter from the prompt and check both."""
    text = text.removeprefix(_BOM)
    # One line-break convention keeps our line numbers and YAML's marks in step.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[0].rstrip() != _FENCE:
        if not text.strip():
            problem(None, "the file is empty; write front matter (id, epic) between '---' lines, then the prompt")
        else:
            problem(
                1,
                "no front matter: the first line must be '---', followed by the fields "
                "(id: ..., epic: ...), a closing '---' line, then the prompt",
            )
        return None
    close = next((i for i in range(1, len(lines)) if lines[i].rstrip() == _FENCE), None)
    if close is None:
        problem(1, "the front matter is not closed; add a line '---' after the last field, before the prompt")
        return None
    body = _trim_body(lines[close + 1 :])
    spec = _parse_front("\n".join(lines[1:close]), body, path, result, problem)
    if not body:
        problem(close + 1, "the prompt is empty; write what the agent must do below the closing '---'")
    return spec


def _parse_front(front: str, body: str, path: Path, result: _Parsed, problem: _Problem) -> Spec | None:
    """The spec described by the front matter ``front``, reporting what is wrong with it."""
    try:
        root = yaml.compose(front, Loader=_LOADER)
    except yaml.YAMLError as exc:
        line, message = _yaml_error(exc, front)
        problem(
            line,
            f"invalid YAML in the front matter: {message}; fix the syntax (quote values with ': ' or ' #')",
        )
        return None
    if root is None:
        problem(2, "the front matter is empty; add at least 'id: ...' and 'epic: ...'")
        return None
    if not isinstance(root, yaml.MappingNode):
        problem(_line(root), f"the front matter must be fields written as 'key: value', got {_describe(root)}")
        return None

    fields = _fields(root, problem)
    spec_id = _id_field("id", fields, problem)
    epic = _id_field("epic", fields, problem)
    if spec_id is not None:
        result.id = spec_id
        result.id_line = _line(fields["id"])
    result.epic = epic
    depends_on = _id_list("depends_on", fields.get("depends_on"), "spec id", problem, result.dep_lines)
    result.depends_on = depends_on
    requires = _id_list("requires", fields.get("requires"), "capability name", problem, None)
    priority = _int_field("priority", fields.get("priority"), None, problem)
    max_attempts = _int_field("max_attempts", fields.get("max_attempts"), 1, problem)
    timeout_seconds = _int_field("timeout_seconds", fields.get("timeout_seconds"), 1, problem)
    verify = _verify_field(fields.get("verify"), problem)
    allow_empty = _bool_field("allow_empty", fields.get("allow_empty"), problem)
    title = _title(fields.get("title"), body, spec_id, problem)
    if spec_id is None or epic is None:
        return None
    return Spec(
        id=spec_id,
        epic=epic,
        title=title,
        body=body,
        depends_on=depends_on,
        priority=priority or 0,
        requires=requires,
        max_attempts=max_attempts,
        timeout_seconds=timeout_seconds,
        path=path,
        verify=verify,
        allow_empty=allow_empty,
    )


def _trim_body(lines: list[str]) -> str:
    """The prompt without the blank lines around it; inner text (indentation, blank lines) is kept."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:]).rstrip()


def _yaml_error(exc: yaml.YAMLError, front: str) -> tuple[int | None, str]:
    """(file line, message) for a YAML error, counting the opening '---' line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        parts = [str(exc.problem or exc.context or "syntax error")]
        if exc.context and exc.problem and exc.context_mark is not None:
            parts.append(f"({exc.context} that starts on line {exc.context_mark.line + 2})")
        return (None if mark is None else mark.line + 2), " ".join(parts)
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML refuses (a control character): the reader gives a character offset, not a mark.
        position = int(exc.position)
        return front.count("\n", 0, position) + 2, f"character {exc.character!r} is not allowed ({exc.reason})"
    return None, str(exc)


def _fields(root: yaml.MappingNode, problem: _Problem) -> dict[str, yaml.Node]:
    """Known fields by name; reports unknown, duplicate and non-name keys. ``x-``/``x_`` keys are ignored."""
    fields: dict[str, yaml.Node] = {}
    key_lines: dict[str, int | None] = {}
    for key_node, value_node in root.value:
        key = _scalar_text(key_node)
        if key is None:
            problem(_line(key_node), f"a front matter key must be a plain name, got {_describe(key_node)}")
            continue
        if key.startswith(("x-", "x_")):
            continue  # user extensions: reserved for the user's own tooling, never an error
        if key not in _KNOWN_FIELDS:
            close = difflib.get_close_matches(key.lower(), _KNOWN_FIELDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problem(
                _line(key_node),
                f"unknown field {key!r}; {hint}known fields: {', '.join(_KNOWN_FIELDS)} "
                "(prefix your own fields with 'x-')",
            )
            continue
        if key in fields:
            # safe_load would silently keep the last value; the user almost certainly meant only one.
            first = key_lines[key]
            problem(
                _line(key_node),
                f"field {key!r} is given twice (first on line {first}); keep only one",
            )
            continue
        fields[key] = value_node
        key_lines[key] = _line(key_node)
    return fields


def _id_field(name: str, fields: Mapping[str, yaml.Node], problem: _Problem) -> str | None:
    node = fields.get(name)
    example = "S1" if name == "id" else "E1"
    if node is None:
        problem(None, f"missing required field {name!r}; add a line '{name}: {example}' to the front matter")
        return None
    value = _scalar_text(node)
    if value is None:
        problem(_line(node), f"{name} must be a single id like {example!r}, got {_describe(node)}")
        return None
    if not is_valid_id(value):
        problem(_line(node), f"{name} {value!r} is not a valid id; {_ID_RULE}")
        return None
    return value


def _id_list(
    name: str,
    node: yaml.Node | None,
    what: str,
    problem: _Problem,
    lines: dict[str, int] | None,
) -> tuple[str, ...]:
    """A list of ids (a lone scalar counts as a one-element list); duplicates are dropped, order kept."""
    if node is None or _is_null(node):
        return ()
    if isinstance(node, yaml.MappingNode):
        problem(_line(node), f"{name} must be a list of {what}s like [A, B], got a mapping")
        return ()
    entries: list[yaml.Node] = list(node.value) if isinstance(node, yaml.SequenceNode) else [node]
    values: dict[str, None] = {}
    for entry in entries:
        value = _scalar_text(entry)
        if value is None:
            problem(_line(entry), f"{name} entries must be {what}s (strings), got {_describe(entry)}")
            continue
        if not is_valid_id(value):
            problem(_line(entry), f"{name} entry {value!r} is not a valid {what}; {_ID_RULE}")
            continue
        if value not in values:
            values[value] = None
            entry_line = _line(entry)
            if lines is not None and entry_line is not None:
                lines[value] = entry_line
    return tuple(values)


def _int_field(name: str, node: yaml.Node | None, minimum: int | None, problem: _Problem) -> int | None:
    if node is None or _is_null(node):
        return None  # absent and empty both mean "use the default"
    # The resolver tags a plain YAML integer; a bool (`yes`, `true`) or quoted "3" is not one.
    if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG_INT:
        problem(_line(node), f"{name} must be a whole number, got {_describe(node)}; write e.g. '{name}: 3'")
        return None
    value = _SCALAR_READER.construct_yaml_int(node)
    if minimum is not None and value < minimum:
        problem(_line(node), f"{name} must be at least {minimum}, got {value}")
        return None
    return value


def _verify_field(node: yaml.Node | None, problem: _Problem) -> str | None:
    """The spec's verify command: None when absent (the configuration's ``[swarm] verify`` applies), ``""``
    for no verify (docs/contract.md §2)."""
    if node is None or _is_null(node):
        return None
    # Only a YAML string: `verify: 3` or `verify: true` is almost surely a slip, not a shell command.
    if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG_STR:
        problem(
            _line(node),
            f"verify must be a shell command written as text, got {_describe(node)}; "
            "write e.g. 'verify: \"pytest -q\"' (or 'verify: \"\"' for no verify)",
        )
        return None
    return str(node.value).strip()


def _bool_field(name: str, node: yaml.Node | None, problem: _Problem) -> bool:
    if node is None or _is_null(node):
        return False
    if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG_BOOL:
        problem(_line(node), f"{name} must be true or false, got {_describe(node)}; write e.g. '{name}: true'")
        return False
    return bool(_SCALAR_READER.construct_yaml_bool(node))


def _title(node: yaml.Node | None, body: str, spec_id: str | None, problem: _Problem) -> str:
    if node is not None and not _is_null(node):
        text = _scalar_text(node)
        if text is None:
            problem(_line(node), f"title must be text, got {_describe(node)}; write e.g. 'title: Add the parser'")
        elif text.strip():
            return " ".join(text.split())  # a folded/multi-line title becomes one line for commit messages
    # Default: the first body line with text, without its Markdown heading marks.
    for raw in body.split("\n"):
        line = raw.strip().lstrip("#").strip()
        if line:
            return line
    return spec_id or ""


# --------------------------------------------------------------------------------------------- loading


def load_backlog(folder: Path, *, epic: str | None = None) -> Backlog:
    """Read and validate every spec file under ``folder``.

    Raises :class:`BadInput` if the folder is missing, not a directory or holds no spec files, and
    :class:`BacklogError` listing every problem in the backlog (per file and across files) otherwise.
    With ``epic``, only the problems of specs that epic may need count: its own, those it transitively
    depends on, and files whose epic cannot be read; the others' specs are left out and their problems
    become the backlog's ``warnings``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise BadInput(
            f"backlog folder {folder} does not exist",
            hint="create it with spec files, run 'swarm init', or set [queue] backlog in swarm.toml",
        )
    if not folder.is_dir():
        raise BadInput(
            f"backlog folder {folder} is not a directory",
            hint="point [queue] backlog in swarm.toml at the folder that holds the spec files",
        )
    files = _spec_files(folder)
    if not files:
        raise BadInput(
            f"no spec files (*.md) in backlog folder {folder}",
            hint="add spec files (see 'swarm init' for an example) or point [queue] backlog elsewhere",
        )
    # Problems name files relative to the folder's parent ("specs/s1.md"), however the folder was given.
    base = Path(os.path.abspath(folder))
    prefix = Path(base.name) if base.name else Path()

    problems: list[_Found] = []
    parsed: list[tuple[str, _Parsed]] = []
    for rel in files:
        display = str(prefix / rel)
        text, read_problem = _read(folder / rel, display)
        if text is None:
            problems.append(_Found(read_problem, ()))  # unreadable: whose it is cannot be told
            continue
        one = _parse(text, folder / rel, display)
        problems.extend(_Found(message, (one,)) for message in one.problems)
        parsed.append((display, one))

    specs, cross = _check_backlog(parsed, str(prefix) if base.name else str(folder))
    problems.extend(cross)
    warnings: list[str] = []
    if problems and epic is not None:
        needed = _needed_by(epic, [one for _, one in parsed])
        warnings = [p.message for p in problems if not p.counts_for(epic, needed)]
        problems = [p for p in problems if p.counts_for(epic, needed)]
        if not problems:
            # Only specs the epic does not need are broken: they stay out of this backlog.
            broken = {one.id for p in cross for one in p.files} | {
                one.id for _, one in parsed if one.spec is None or one.problems
            }
            specs = {sid: spec for sid, spec in specs.items() if sid not in broken}
    if problems:
        raise BacklogError([p.message for p in problems])
    logger.debug("loaded %d specs from %s", len(specs), folder)
    return Backlog(folder=folder, specs=specs, warnings=tuple(warnings))


@dataclass(frozen=True)
class _Found:
    """One problem of the backlog and the files it is about (none: it cannot be told, so it always counts)."""

    message: str
    files: tuple[_Parsed, ...]

    def counts_for(self, epic: str, needed: set[str]) -> bool:
        """Whether launching ``epic`` must refuse this problem: it is about a spec the epic may need."""
        return not self.files or any(one.epic is None or one.epic == epic or one.id in needed for one in self.files)


def _needed_by(epic: str, parsed: list[_Parsed]) -> set[str]:
    """The ids of the epic's specs and of every spec they transitively depend on, read from every file
    (broken ones too, whose depends_on could be read)."""
    by_id = {one.id: one for one in parsed if one.id is not None}
    stack = [one.id for one in parsed if one.epic == epic and one.id is not None]
    needed: set[str] = set()
    while stack:
        spec_id = stack.pop()
        if spec_id in needed:
            continue
        needed.add(spec_id)
        one = by_id.get(spec_id)
        if one is not None:
            stack.extend(one.depends_on)
    return needed


def _spec_files(folder: Path) -> list[Path]:
    """Spec files relative to ``folder``, sorted; hidden/underscore files, README.md and dot-dirs skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune: never descend into .git etc.
        rel_dir = Path(dirpath).relative_to(folder)
        for name in filenames:
            if name.endswith(".md") and not name.startswith((".", "_")) and name.lower() != "readme.md":
                found.append(rel_dir / name)
    found.sort()
    return found


def _read(path: Path, display: str) -> tuple[str | None, str]:
    """The file's text, or None and the problem. A UTF-8 byte order mark is accepted and dropped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"{display}: cannot read the file ({exc.strerror or exc}); check its permissions"
    skip = len(_BOM_BYTES) if raw.startswith(_BOM_BYTES) else 0
    try:
        return raw[skip:].decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = raw.count(b"\n", 0, offset) + 1
        return None, (
            f"{display}:{line}: not valid UTF-8 (byte 0x{raw[offset]:02x} at byte offset {offset}); "
            "save the file as UTF-8"
        )


def _check_backlog(parsed: list[tuple[str, _Parsed]], folder_display: str) -> tuple[dict[str, Spec], list[_Found]]:
    """Cross-file rules: duplicate ids, unknown dependencies, cycles. Returns (specs by id, problems)."""
    problems: list[_Found] = []
    owner: dict[str, tuple[str, _Parsed]] = {}  # id -> first file that declares it
    specs: dict[str, Spec] = {}
    for display, one in parsed:
        if one.id is None:
            continue
        first = owner.get(one.id)
        if first is not None:
            message = (
                f"{_where(display, one.id_line)}: duplicate id {one.id!r}, also used by {first[0]}; "
                "give each spec its own id"
            )
            problems.append(_Found(message, (one, first[1])))
            continue
        owner[one.id] = (display, one)
        if one.spec is not None:
            specs[one.id] = one.spec

    suggestions = 0
    for display, one in parsed:
        for dep in one.depends_on:
            if dep in owner:
                continue
            hint = ""
            if suggestions < _MAX_SUGGESTIONS:
                suggestions += 1
                hint = _suggest(dep, owner)
            message = (
                f"{_where(display, one.dep_lines.get(dep))}: depends_on names unknown spec {dep!r}{hint}; "
                "fix the id or add a spec with that id"
            )
            problems.append(_Found(message, (one,)))

    problems.extend(_cycle_problems(specs, owner, folder_display))
    return specs, problems


def _cycle_problems(
    specs: Mapping[str, Spec], owner: Mapping[str, tuple[str, _Parsed]], folder_display: str
) -> list[_Found]:
    """One problem per dependency cycle, found by an iterative DFS (a 10,000-long chain must not recurse).

    Every back edge closes exactly one distinct cycle, so each is reported once. Deterministic: roots and
    edges are visited in id order.
    """
    graph = {spec_id: sorted(d for d in spec.depends_on if d in specs) for spec_id, spec in specs.items()}
    gray, black = 1, 2
    state: dict[str, int] = {}
    cycles: list[list[str]] = []
    hidden = 0
    for root in sorted(graph):
        if root in state:
            continue
        state[root] = gray
        path = [root]
        position = {root: 0}
        stack = [iter(graph[root])]
        while stack:
            for nxt in stack[-1]:
                seen = state.get(nxt)
                if seen is None:
                    state[nxt] = gray
                    position[nxt] = len(path)
                    path.append(nxt)
                    stack.append(iter(graph[nxt]))
                    break
                if seen == gray:
                    if len(cycles) < _MAX_CYCLES_SHOWN:
                        cycles.append(path[position[nxt] :])
                    else:
                        hidden += 1
            else:
                stack.pop()
                done = path.pop()
                del position[done]
                state[done] = black

    problems: list[_Found] = []
    for cycle in cycles:
        # Start at the smallest id so the same cycle always prints the same way.
        start = cycle.index(min(cycle))
        ring = cycle[start:] + cycle[:start]
        display, one = owner[ring[0]]
        target = ring[1] if len(ring) > 1 else ring[0]
        shown = [*ring, ring[0]]
        if len(shown) > _MAX_CYCLE_SHOWN:
            # A 10,000-spec cycle would make a 100 kB line; its ends are enough to find the loop.
            skipped = len(shown) - _MAX_CYCLE_SHOWN
            shown = [*shown[: _MAX_CYCLE_SHOWN - 5], f"... ({skipped} more)", *shown[-5:]]
        chain = " -> ".join(shown)
        where = _where(display, one.dep_lines.get(target))
        message = f"{where}: dependency cycle {chain}; remove one of these depends_on entries"
        problems.append(_Found(message, tuple(owner[i][1] for i in ring)))
    if hidden:
        message = (
            f"{folder_display}: {plural(hidden, 'more dependency cycle')} not shown; fix those above and load again"
        )
        problems.append(_Found(message, ()))
    return problems
