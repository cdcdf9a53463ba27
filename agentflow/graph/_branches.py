"""The branches of a template graph: parallel fan-outs, their joins, map nodes, and which branch each node is in.

A fan-out is a node with ``parallel: [a, b]`` (or several unconditional ``edges:`` and no other way out): its
targets run concurrently, one branch each, named after the target. A branch is the target and every node reachable
from it before its join, the node whose ``after:`` names the branches' last nodes. Membership is static: a node
belongs to the same branches in every run, so the runtime knows a node's branch from its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import networkx as nx

from agentflow.errors import SourceLocation
from agentflow.spec._models import END, MapNode

if TYPE_CHECKING:
    from agentflow.graph._build import TemplateGraph


@dataclass(frozen=True)
class FanOut:
    """One fan-out: ``source`` starts ``targets`` concurrently; ``join`` (None: none found) runs after them all."""

    source: str
    targets: tuple[str, ...]
    join: str | None
    locations: tuple[SourceLocation, ...]  # where each target is named
    branches: dict[str, frozenset[str]] = field(default_factory=lambda: {})  # target -> the nodes of its branch


@dataclass(frozen=True)
class BranchStep:
    """One level of a node's branch membership: the branch ``target`` of the fan-out at ``source``."""

    source: str
    target: str


def fanout_join(template: TemplateGraph, source: str, targets: tuple[str, ...]) -> str | None:
    """The join of a fan-out: the nearest node with ``after:`` that some branch leads into."""
    graph, spec = template.graph, template.workflow.spec
    if source not in graph or not targets:
        return None
    distances = nx.single_source_shortest_path_length(graph, source)
    candidates = [
        name
        for name, node in spec.nodes.items()
        if node.after and name in distances and any(after in distances for after in node.after)
    ]
    return min(candidates, key=lambda name: (distances[name], name), default=None)


def find_fanouts(template: TemplateGraph) -> list[FanOut]:
    """Every fan-out of the template, with its join and the nodes of each branch."""
    found: list[FanOut] = []
    for source, targets in template.fanouts.items():
        transitions = template.transitions.get(source, [])
        locations = tuple(t.location for t in transitions if t.target in targets)
        join = fanout_join(template, source, tuple(targets))
        trimmed = template.graph.copy()
        for cut in (source, join, END):
            if cut is not None and cut in trimmed:
                trimmed.remove_node(cut)
        branches = {
            target: frozenset(nx.descendants(trimmed, target) | {target}) if target in trimmed else frozenset()
            for target in targets
        }
        found.append(FanOut(source, tuple(targets), join, locations, branches))
    return found


def branch_membership(template: TemplateGraph) -> dict[str, tuple[BranchStep, ...]]:
    """For each node inside a parallel branch: the branches it is in, outermost first (nested fan-outs)."""
    levels: dict[str, list[tuple[int, BranchStep]]] = {}
    for fanout in find_fanouts(template):
        if fanout.join is None:
            continue
        for target, nodes in fanout.branches.items():
            for name in nodes:
                levels.setdefault(name, []).append((len(nodes), BranchStep(fanout.source, target)))
    return {name: tuple(step for _, step in sorted(steps, key=lambda s: -s[0])) for name, steps in levels.items()}


def map_item_nodes(template: TemplateGraph) -> dict[str, str]:
    """Item node -> the map node that runs it."""
    return {node.node: name for name, node in template.workflow.spec.nodes.items() if isinstance(node, MapNode)}
