"""Imports go one way (DESIGN.md): a lower package never imports a higher one, not even inside a function.

Every ``import`` of ``agentflow/`` is read from the source (module level, inside functions, under TYPE_CHECKING),
mapped to the subpackages it joins, and checked against the layers below. The violations that exist today are
listed in ``KNOWN`` (the architecture issue removes them): a new one fails, and so does a listed one that is gone,
so the list only shrinks. ``agentflow/__init__.py`` is the public facade over everything (it imports lazily) and is
left out; ``agentflow/_api.py``, its wrappers, sits at the top with the CLI.
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

# (importer, imported) subpackage pairs that break the layering today.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_SIBLING_CYCLES: set[frozenset[str]] = set()
# cli modules that import another package's private module (`agentflow.x._y`) instead of its public API.
KNOWN_PRIVATE_FROM_CLI = {
    ("agentflow.cli.sandbox", "agentflow.sandboxes._build"),
    ("agentflow.cli.sandbox", "agentflow.sandboxes._docker"),
    ("agentflow.cli.traces", "agentflow.traces._import"),
    ("agentflow.cli.traces", "agentflow.traces._otel"),
}


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
    upward = {pair for pair in edges if LEVEL.get(pair[1], 0) > LEVEL.get(pair[0], 0)}
    new = {pair: sorted(edges[pair]) for pair in upward - KNOWN_UPWARD}
    assert not new, f"imports against the layering (lower -> higher): {new}"
    gone = KNOWN_UPWARD - upward
    assert not gone, f"no longer imported, remove from KNOWN_UPWARD: {sorted(gone)}"


def test_no_import_cycle_between_subpackages_of_one_layer() -> None:
    graph = nx.DiGraph()
    graph.add_edges_from(pair for pair in _edges() if LEVEL.get(pair[0]) == LEVEL.get(pair[1]))
    cycles = {frozenset(component) for component in nx.strongly_connected_components(graph) if len(component) > 1}
    assert cycles - KNOWN_SIBLING_CYCLES == set(), f"new import cycles: {cycles - KNOWN_SIBLING_CYCLES}"
    assert KNOWN_SIBLING_CYCLES - cycles == set(), "a known cycle is gone: remove it from KNOWN_SIBLING_CYCLES"


def test_the_cli_uses_only_public_modules_of_other_packages() -> None:
    private = {
        (module, imported)
        for (source, target), pairs in _edges().items()
        if source == "cli"
        for module, imported in pairs
        if any(part.startswith("_") for part in imported.split(".")[2:])
    }
    assert private - KNOWN_PRIVATE_FROM_CLI == set(), f"cli imports private modules: {private - KNOWN_PRIVATE_FROM_CLI}"
    assert KNOWN_PRIVATE_FROM_CLI - private == set(), f"fixed, remove: {KNOWN_PRIVATE_FROM_CLI - private}"
