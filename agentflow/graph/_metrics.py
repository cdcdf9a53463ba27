"""Structure-aware metrics of a template graph: size, depth, width, cycles and their bounds, critical path."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from agentflow.graph._branches import find_fanouts, map_item_nodes
from agentflow.graph._build import TemplateGraph
from agentflow.spec._models import END, AgentNode, NodeSpec


@dataclass(frozen=True)
class CycleInfo:
    nodes: list[str]
    max_iterations: int | None


@dataclass(frozen=True)
class GraphMetrics:
    """``depth`` counts the nodes on the longest start→END path once back edges are removed; ``width`` is the most
    nodes sharing one depth level; ``max_steps`` is the worst-case node executions allowed by the loop bounds (each
    candidate of a best-of node counts, as the run's ``max_steps`` limit counts it)."""

    nodes: int
    edges: int
    depth: int
    width: int
    cycles: list[CycleInfo]
    critical_path: list[str]
    max_steps: int
    kinds: dict[str, int] = field(default_factory=lambda: {})
    # fan-out source (or map node) -> its branches side by side: branch -> its nodes (a map: "<map>[i]" -> item node)
    branches: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def back_edges(template: TemplateGraph) -> list[tuple[str, str]]:
    """Edges that close a cycle in a depth-first walk from start (what makes the graph cyclic)."""
    graph = template.graph
    if template.start not in graph:
        return []
    found: list[tuple[str, str]] = []
    for source, target, kind in nx.dfs_labeled_edges(graph, source=template.start):
        # A non-tree edge whose target reaches its source can only point at a node still on the DFS path.
        if kind == "nontree" and nx.has_path(graph, target, source):
            found.append((source, target))
    return found


def compute_metrics(template: TemplateGraph) -> GraphMetrics:
    graph = template.graph
    reachable = nx.descendants(graph, template.start) | {template.start} if template.start in graph else set()
    dag = graph.subgraph(reachable).copy()
    dag.remove_edges_from(back_edges(template))
    if not nx.is_directed_acyclic_graph(dag):  # cycles not reachable by the walk; remove what is left
        dag.remove_edges_from(nx.find_cycle(dag))
    level: dict[str, int] = {}
    previous: dict[str, str | None] = {}
    for node in nx.topological_sort(dag) if nx.is_directed_acyclic_graph(dag) else []:
        predecessors = list(dag.predecessors(node))
        if not predecessors:
            level[node], previous[node] = 1, None
            continue
        best = max(predecessors, key=lambda p: level.get(p, 0))
        level[node], previous[node] = level.get(best, 0) + 1, best
    real_levels = {n: lv for n, lv in level.items() if n != END}
    path_end = END if END in level else max(real_levels, key=lambda n: real_levels[n], default=None)
    critical: list[str] = []
    cursor = path_end
    while cursor is not None:
        critical.append(cursor)
        cursor = previous.get(cursor)
    critical.reverse()
    widths: dict[int, int] = {}
    for lv in real_levels.values():
        widths[lv] = widths.get(lv, 0) + 1
    cycles = [
        CycleInfo(nodes=cycle, max_iterations=_cycle_bound(template, cycle))
        for cycle in sorted(nx.simple_cycles(graph), key=lambda c: (len(c), c))
    ]
    spec_nodes = template.workflow.spec.nodes
    kinds: dict[str, int] = {}
    for name in template.workflow.spec.nodes:
        kind = template.workflow.spec.nodes[name].kind
        kinds[kind] = kinds.get(kind, 0) + 1
    return GraphMetrics(
        nodes=len(template.workflow.spec.nodes),
        edges=graph.number_of_edges(),
        depth=len([n for n in critical if n != END]),
        width=max(widths.values(), default=0),
        cycles=cycles,
        critical_path=critical,
        max_steps=sum(template.max_visits(n) * _executions_per_visit(node) for n, node in spec_nodes.items()),
        kinds=kinds,
        branches=_branches(template),
    )


def _branches(template: TemplateGraph) -> dict[str, dict[str, list[str]]]:
    found: dict[str, dict[str, list[str]]] = {}
    for fanout in find_fanouts(template):
        found[fanout.source] = {target: sorted(nodes) for target, nodes in fanout.branches.items()}
    for item, name in map_item_nodes(template).items():
        found[name] = {f"{name}[i]": [item]}
    return found


def _executions_per_visit(node: NodeSpec) -> int:
    """How many node executions one visit makes: ``n`` for an agent with ``best_of``, else one."""
    best_of = node.best_of if isinstance(node, AgentNode) else None
    return best_of.n if best_of is not None else 1


def _cycle_bound(template: TemplateGraph, cycle: list[str]) -> int | None:
    bounds = [loop.max_iterations for loop in template.workflow.spec.loops if set(cycle) <= set(loop.nodes)]
    return min(bounds) if bounds else None
