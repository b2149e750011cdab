"""The floors of the code: no module imports itself back through others, and no package of bench
does either, so each package can be read knowing only those below it."""

from __future__ import annotations

import ast

import pytest

from helpers import REPO

#: The project's packages: every module of these is a node.
PACKAGES = ("bench", "architectures")


def modules() -> dict[str, ast.Module]:
    """Every module of :data:`PACKAGES` by dotted name (a package by its own name), parsed."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = ast.parse(path.read_text(), str(path))
    return found


def import_graph(found: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Who imports whom among ``found``, imports inside functions included (they run too, only later)."""
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, tree in found.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in found else node.module
                           for a in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in found and target != name}
    return graph


def unit(module: str) -> str:
    """The floor a module stands on: its package under bench (``bench.plans``) or its own top-level module
    (``bench.tables``); ``architectures`` is one."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bench" else parts[0]


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between floors; ``bench`` itself (its version) is imported by anyone and imports none."""
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set())
        units[unit(module)] |= {unit(t) for t in targets if unit(t) not in (unit(module), "bench")}
    return units


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_no_module_imports_itself_back(graph):
    assert cycles(graph) == []


def test_no_package_imports_itself_back(graph):
    assert cycles(unit_graph(graph)) == []


def test_the_check_finds_a_loop_between_packages():
    graph = {"bench.plans.driver": {"bench.tables"}, "bench.tables": {"bench.plans.steptimes"},
             "bench.plans.steptimes": set()}
    assert cycles(graph) == []  # no module loop...
    assert cycles(unit_graph(graph)) == [["bench.plans", "bench.tables"]]  # ...but a loop of floors
