"""The throwaway project of ``swarm demo``: a tiny Python package and an 8-spec backlog with dependencies.

The graph (each arrow: "needs"):

    D1 package ─┬─> D2 add ────┬─> D4 cli ──┬─> D6 tests ────┐
                ├─> D3 mul ────┘            └─> D7 changelog ─┼─> D8 release
                └─> D5 docs ────────────────────────────────────┘
"""

from __future__ import annotations

import subprocess
from pathlib import Path

EPIC = "DEMO"

_SPECS: list[tuple[str, str, list[str], str]] = [
    (
        "D1",
        "Create the calc package",
        [],
        """THINK looking at the empty repository
THINK a package with a version is the first step

```file calc/__init__.py
\"\"\"calc: a tiny calculator built by a swarm of agents.\"\"\"

__version__ = "0.1.0"
```
""",
    ),
    (
        "D2",
        "Add addition",
        ["D1"],
        """NEED calc/__init__.py
THINK writing add() with a doctest

```file calc/add.py
def add(a: float, b: float) -> float:
    \"\"\"Return a + b.

    >>> add(2, 3)
    5
    \"\"\"
    return a + b
```
""",
    ),
    (
        "D3",
        "Add multiplication",
        ["D1"],
        """NEED calc/__init__.py
THINK writing mul() with a doctest

```file calc/mul.py
def mul(a: float, b: float) -> float:
    \"\"\"Return a * b.

    >>> mul(4, 5)
    20
    \"\"\"
    return a * b
```
""",
    ),
    (
        "D4",
        "Add the command line",
        ["D2", "D3"],
        """NEED calc/add.py calc/mul.py
THINK both operations are merged in; wiring them to a CLI

```file calc/cli.py
import sys

from calc.add import add
from calc.mul import mul

OPS = {"add": add, "mul": mul}


def main(argv: list[str] | None = None) -> int:
    op, a, b = (argv or sys.argv[1:])[:3]
    print(OPS[op](float(a), float(b)))
    return 0
```
""",
    ),
    (
        "D5",
        "Document the package",
        ["D1"],
        """NEED calc/__init__.py
THINK describing what calc is for

```file docs/usage.md
# Using calc

    python -c "from calc.cli import main; main(['add', '2', '3'])"

prints `5.0`. Operations: `add`, `mul`.
```
""",
    ),
    (
        "D6",
        "Test the command line",
        ["D4"],
        """NEED calc/cli.py
THINK writing tests for both operations

```file tests/test_cli.py
from calc.cli import main


def test_add(capsys):
    main(["add", "2", "3"])
    assert capsys.readouterr().out == "5.0\\n"


def test_mul(capsys):
    main(["mul", "4", "5"])
    assert capsys.readouterr().out == "20.0\\n"
```
""",
    ),
    (
        "D7",
        "Write the changelog",
        ["D4"],
        """NEED calc/cli.py
THINK summarising what the swarm built

```file CHANGELOG.md
# Changelog

## 0.1.0
- `calc.add.add` and `calc.mul.mul`
- `calc.cli.main`: `add` and `mul` from the command line
```
""",
    ),
    (
        "D8",
        "Prepare the release",
        ["D5", "D6", "D7"],
        """NEED docs/usage.md tests/test_cli.py CHANGELOG.md
THINK every part is in; writing the release notes

```file RELEASE.md
# calc 0.1.0

Built by three agents working in parallel, each on its own branch and worktree.
See CHANGELOG.md for what is in it and docs/usage.md for how to use it.
```
""",
    ),
]


def write_project(root: Path) -> None:
    """Create the demo repository at ``root``: a first commit, then the backlog in ``specs/``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("# calc\n\nA throwaway project for `swarm demo`.\n", encoding="utf-8")
    (root / ".gitignore").write_text(".swarm/\n.worktrees/\n__pycache__/\n", encoding="utf-8")
    specs = root / "specs"
    specs.mkdir(exist_ok=True)
    for spec_id, title, deps, body in _SPECS:
        front = ["---", f"id: {spec_id}", f"epic: {EPIC}", f"title: {title}"]
        if deps:
            front.append(f"depends_on: [{', '.join(deps)}]")
        front.append("---")
        (specs / f"{spec_id}.md").write_text("\n".join(front) + "\n" + body, encoding="utf-8")
    env_git = [
        "-c",
        "user.name=swarm demo",
        "-c",
        "user.email=demo@swarm.invalid",
        "-c",
        "init.defaultBranch=main",
    ]
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-q", "-m", "calc: empty project and its backlog"],
    ):
        subprocess.run(["git", *env_git, *args], cwd=root, check=True, capture_output=True)


def spec_count() -> int:
    """How many specs the demo backlog has."""
    return len(_SPECS)
