"""Imports go one way (DESIGN.md): a lower package never imports a higher one, not even inside a function.

Every ``import`` of ``agentflow/`` is read from the source (module level, inside functions, under TYPE_CHECKING),
mapped to the subpackages it joins, and checked against the layers below: no import goes up, no two packages of
one layer import each other, and the CLI uses only the public modules of the others. There are no exceptions.
``agentflow/__init__.py`` is the public facade over everything (it imports lazily) and is left out;
``agentflow/_api.py``, its wrappers, sits at the top with the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).parents[1] / "agentflow"

# Lowest first. A package may import its own layer's members only without a cycle, and any layer below.
LAYERS: list[set[str]] = [
    {"errors", "_processes", "_tempdirs", "_registry", "_plugins", "_conformance", "_canonical_json"},
    {"spec"},
    {"graph"},
    {"models", "tools", "sandboxes", "rewards", "routing", "traces"},
    {"runtime"},
    {"rerun"},
    {"grading"},
    {"bench"},
    {"viewer"},
    {"cli", "_api"},  # _api: the sync/async wrappers behind the public facade (agentflow/__init__.py)
]
LEVEL = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every agentflow module ``path`` imports, relative imports resolved."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                names = [".".join([*base, *([node.module] if node.module else [])])]
            else:
                names = [node.module or ""]
            # `from agentflow.x import _y` names a module too
            names += [f"{names[0]}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        else:
            continue
        yield from (name for name in names if name.startswith("agentflow."))


def _subpackage(module: str) -> str:
    return module.split(".")[1]


def _edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(importer subpackage, imported subpackage) -> the module pairs behind it."""
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        module = _module_name(path)
        for imported in _imports(path):
            pair = (_subpackage(module), _subpackage(imported))
            if pair[0] != pair[1] and pair[1] != "__init__":
                found.setdefault(pair, set()).add((module, imported))
    return found


def test_every_subpackage_has_a_layer() -> None:
    names = {_subpackage(_module_name(path)) for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py"}
    assert names - set(LEVEL) == set(), "add the new subpackage to LAYERS (and to DESIGN.md's import order)"


def test_no_package_imports_one_above_it() -> None:
    edges = _edges()
    upward = {pair: sorted(modules) for pair, modules in edges.items() if LEVEL.get(pair[1], 0) > LEVEL.get(pair[0], 0)}
    assert not upward, f"imports against the layering (lower -> higher): {upward}"


def test_no_import_cycle_between_subpackages_of_one_layer() -> None:
    graph = nx.DiGraph()
    graph.add_edges_from(pair for pair in _edges() if LEVEL.get(pair[0]) == LEVEL.get(pair[1]))
    cycles = {frozenset(component) for component in nx.strongly_connected_components(graph) if len(component) > 1}
    assert not cycles, f"import cycles between packages of one layer: {cycles}"


def test_the_cli_uses_only_public_modules_of_other_packages() -> None:
    private = {
        (module, imported)
        for (source, target), pairs in _edges().items()
        if source == "cli"
        for module, imported in pairs
        if any(part.startswith("_") for part in imported.split(".")[2:])
    }
    assert not private, f"cli imports private modules of other packages: {sorted(private)}"
