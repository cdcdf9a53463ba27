"""Build the template graph (a networkx.DiGraph) from a loaded workflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from agentflow.errors import SourceLocation
from agentflow.spec._loader import LoadedWorkflow
from agentflow.spec._models import END, RouterNode


@dataclass(frozen=True)
class Transition:
    """One way out of a node: an `edges:` entry, a router route, or an `end:` entry, in the order they are tried."""

    source: str
    target: str
    when: str | None
    location: SourceLocation


@dataclass
class TemplateGraph:
    """The workflow template as a directed graph; END is a node. Edge data: ``when`` and ``location``."""

    workflow: LoadedWorkflow
    graph: Any  # networkx.DiGraph; networkx ships no type hints
    transitions: dict[str, list[Transition]]
    _bounds: dict[str, int | None] = field(default_factory=lambda: {})

    @property
    def start(self) -> str:
        return self.workflow.spec.start

    def loop_bound(self, node: str) -> int | None:
        """The smallest max_iterations of the loops that contain ``node`` (None when it is in none)."""
        if node not in self._bounds:  # asked at every node visit: computed once per node
            bounds = [loop.max_iterations for loop in self.workflow.spec.loops if node in loop.nodes]
            self._bounds[node] = min(bounds) if bounds else None
        return self._bounds[node]

    def max_visits(self, node: str) -> int:
        return self.loop_bound(node) or 1


def build_template_graph(workflow: LoadedWorkflow) -> TemplateGraph:
    """Turn the spec's nodes, edges, routes and end list into a graph; unknown names are kept for validation."""
    spec = workflow.spec
    graph = nx.DiGraph()
    for name in spec.nodes:
        graph.add_node(name, kind=spec.nodes[name].kind, location=workflow.locate("nodes", name, key=True))
    graph.add_node(END, kind="end", location=None)
    transitions: dict[str, list[Transition]] = {name: [] for name in spec.nodes}
    for index, edge in enumerate(spec.edges):
        where = workflow.locate("edges", index)
        transitions.setdefault(edge.from_, []).append(Transition(edge.from_, edge.to, edge.when, where))
    for name, node in spec.nodes.items():
        if isinstance(node, RouterNode) and node.policy == "qtable":
            # A learned router may take any of its candidates; none is a default, the table chooses.
            for index, candidate in enumerate(node.candidates):
                where = workflow.locate("nodes", name, "candidates", index)
                transitions[name].append(Transition(name, candidate, None, where))
        elif isinstance(node, RouterNode):
            for index, route in enumerate(node.routes):
                where = workflow.locate("nodes", name, "routes", index)
                transitions[name].append(Transition(name, route.to, route.when, where))
    for index, name in enumerate(spec.end):
        transitions.setdefault(name, []).append(Transition(name, END, None, workflow.locate("end", index)))
    for source, outs in transitions.items():
        for transition in outs:
            if not graph.has_edge(source, transition.target):
                graph.add_edge(source, transition.target, when=transition.when, location=transition.location)
    return TemplateGraph(workflow=workflow, graph=graph, transitions=transitions)
