"""The floors of the code: no module imports itself back through others, and no package of bench
does either, so each package can be read knowing only those below it."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter

import pytest

from helpers import REPO

#: The project's folders of modules and the package each installs as (architectures/ is bench.architectures).
PACKAGES = {"bench": "bench", "architectures": "bench.architectures"}


def modules() -> dict[str, ast.Module]:
    """Every module of :data:`PACKAGES` by its installed dotted name (a package by its own name), parsed."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            found[".".join((package, *parts)).removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
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
    """The floor a module stands on: its package under bench (``bench.plans``, ``bench.architectures``) or its
    own top-level module (``bench.tables``)."""
    return ".".join(module.split(".")[:2])


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between floors; ``bench`` itself (its version) is imported by anyone and imports none."""
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set())
        units[unit(module)] |= {unit(t) for t in targets if unit(t) not in (unit(module), "bench")}
    return units


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One loop of ``graph`` (its first node again at its end), or None where there is none."""
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return exc.args[1]
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_no_module_imports_itself_back(graph):
    assert cycle(graph) is None


def test_no_package_imports_itself_back(graph):
    assert cycle(unit_graph(graph)) is None


def test_the_check_finds_a_loop_between_packages():
    graph = {"bench.plans.driver": {"bench.tables"}, "bench.tables": {"bench.plans.steptimes"},
             "bench.plans.steptimes": set()}
    assert cycle(graph) is None  # no module loop...
    assert set(cycle(unit_graph(graph))) == {"bench.plans", "bench.tables"}  # ...but a loop of floors


def layout_rows() -> list[tuple[set[str], str, str]]:
    """The rows of docs/layout.md's table as ``(the floors its path cell names, path cell, imports cell)``."""
    rows = []
    for line in (REPO / "docs" / "layout.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        paths = re.findall(r"`([\w/.]+)`", cells[0])
        modules = ("bench." + p.removesuffix(".py").strip("/").replace("/", ".").removeprefix("bench.") for p in paths
                   if p.startswith(("bench/", "architectures/")))
        floors = {unit(module.removesuffix(".__init__")) for module in modules}
        rows.append((floors, cells[0], cells[2]))
    return rows


def test_the_layout_page_names_what_each_part_imports(graph):
    floors = unit_graph(graph)
    for parts, path, imports in layout_rows():
        parts &= set(floors)  # bench/mnist/ and bench/weights/ hold data, not modules
        actual = set().union(*(floors[part] for part in parts)) - parts if parts else set()
        named = set() if imports in ("", "nothing") else {"bench." + name for name in imports.split(", ")}
        assert named == actual, f"{path}: imports {', '.join(sorted(actual)) or 'nothing'}"


def test_the_layout_page_has_a_row_for_every_part(graph):
    named = set().union(*(parts for parts, _, _ in layout_rows()))
    assert set(unit_graph(graph)) - named == set()
