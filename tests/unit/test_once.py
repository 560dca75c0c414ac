"""Once each: the id pattern, the ``--db`` option and the topological order are written in one place; and no
product function is too long to read as the steps it takes."""

from __future__ import annotations

import re

from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "swarm"


def _where(pattern: str) -> list[str]:
    found = re.compile(pattern)
    return sorted(
        str(path.relative_to(REPO_ROOT))
        for path in PACKAGE.rglob("*.py")
        if found.search(path.read_text(encoding="utf-8"))
    )


def test_the_id_pattern_is_written_once() -> None:
    assert _where(re.escape("[A-Za-z0-9][A-Za-z0-9._-]{0,63}")) == ["swarm/models.py"]


def test_the_db_option_is_declared_once() -> None:
    assert _where(r"""["']--db["']""") == ["swarm/cli/options.py"]


def test_every_topological_order_comes_from_one_function() -> None:
    # The backlog, the queue's insertion order and merge's order used to be three hand-written sorts.
    assert _where(r"\bgraphlib\b") == ["swarm/graph.py"]
    users = set(_where(r"from swarm\.graph import topological_order"))
    assert {"swarm/backlog.py", "swarm/merge.py", "swarm/store/common.py"} <= users
    assert _where(r"heapq\.heappop") == ["swarm/graph.py"]


def test_no_product_function_is_over_80_lines() -> None:
    # A long function hides the sequence it performs; launch, teardown and the MCP server read as named steps.
    import ast

    long: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
