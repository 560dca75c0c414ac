"""The import layers of swarm: a module imports only modules of its own level or below, and no import cycle.

Every module under ``swarm/`` is parsed (not imported), and every import counts: at the top, inside functions
(the lazy imports that keep start-up fast) and under ``TYPE_CHECKING`` (a type is a dependency too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import swarm

ROOT = Path(swarm.__file__).parent

#: Levels, lowest first. A module (or a package and everything in it: ``swarm.store`` covers ``swarm.store.*``)
#: may import its own level and the levels below. The most specific entry wins.
LEVELS: dict[str, int] = {
    # 0: plain data and the errors everything raises.
    "swarm": 0,  # the package itself: __version__
    "swarm.errors": 0,
    "swarm.models": 0,
    "swarm.graph": 0,
    "swarm.words": 0,  # counted nouns in messages
    "swarm.progress": 0,  # pure: an agent's raw output lines to readable ones
    # 1: the store and what works directly on it or on the configuration.
    "swarm.store": 1,
    "swarm.config": 1,
    "swarm.agents": 1,
    "swarm.backlog": 1,
    "swarm.threads": 1,
    "swarm.channel_client": 1,  # the agent side of its channel to the worker: sockets and JSON only
    "swarm.queue": 1,
    "swarm.cmdlock": 1,
    "swarm.scaffold": 1,
    "swarm.notify": 1,
    # 2: the machinery that runs agents: git, tmux, processes, the worker and the monitor.
    "swarm.runtime": 2,
    # proves tokens against the store, and tells from the process tree whether the caller runs inside an agent
    "swarm.identity": 2,
    # 3: what a command does, and what it shows.
    "swarm.launcher": 3,
    "swarm.repair": 3,
    "swarm.merge": 3,
    "swarm.status": 3,
    "swarm.views": 3,
    "swarm.console": 3,
    "swarm.follow": 3,
    "swarm.mcp_server": 3,
    "swarm.mcp_lead": 3,
    "swarm.demo": 3,
    # 4: the command line.
    "swarm.cli": 4,
    "swarm.__main__": 4,
}

#: Imports known to break the layers, each to be removed by the change named next to it.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """``swarm/store/sqlite.py`` -> ``swarm.store.sqlite``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, source: str) -> Iterator[str]:
    """The swarm modules ``source`` (the text of module ``name``) imports, wherever the import statement is."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if _is_ours(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not _is_ours(base):
                continue
            for alias in node.names:
                # ``from swarm.runtime import procs`` imports the module swarm.runtime.procs.
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


def _is_ours(name: str) -> bool:
    return name == "swarm" or name.startswith("swarm.")


def level_of(name: str) -> int:
    """The level of the most specific entry of LEVELS that covers ``name``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LEVELS:
            return LEVELS[prefix]
    raise AssertionError(f"{name} has no level: add it (or its package) to LEVELS in {__file__}")


def import_graph() -> dict[str, set[str]]:
    """Every swarm module -> the swarm modules it imports (itself left out)."""
    return {
        name: {target for target in imports_of(name, path.read_text(encoding="utf-8")) if target != name}
        for name, path in MODULES.items()
    }


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a (level 1) imports b (level 3)`` for every import of a higher level, known exceptions aside."""
    return sorted(
        f"{name} (level {level_of(name)}) imports {target} (level {level_of(target)})"
        for name, targets in graph.items()
        for target in targets
        if level_of(target) > level_of(name) and (name, target) not in KNOWN_EXCEPTIONS
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), known exceptions left out."""
    edges = {name: sorted(t for t in targets if (name, t) not in KNOWN_EXCEPTIONS) for name, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_every_module_has_a_level() -> None:
    for name in MODULES:
        level_of(name)  # raises, naming the module, if LEVELS does not cover it


def test_no_module_imports_a_higher_level() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_known_exceptions_are_still_needed() -> None:
    """An exception whose import is gone must leave the list, so that the import cannot come back unnoticed."""
    graph = import_graph()
    assert [pair for pair in sorted(KNOWN_EXCEPTIONS) if pair[1] not in graph.get(pair[0], set())] == []


def test_the_checks_see_imports_inside_functions() -> None:
    """A lazy import is still an import: the parser finds it and the checks report it."""
    source = "def f() -> None:\n    from swarm.cli import main\n    import swarm.launcher\n"
    found = set(imports_of("swarm.store.base", source))
    assert found == {"swarm.cli.main", "swarm.launcher"}
    graph = {"swarm.store.base": found, "swarm.cli.main": {"swarm.store.base"}, "swarm.launcher": set()}
    assert len(upward_imports(graph)) == 2
    assert cycles(graph) == [["swarm.cli.main", "swarm.store.base"]]
