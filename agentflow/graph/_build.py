"""Build the template graph (a networkx.DiGraph) from a loaded workflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from agentflow.errors import SourceLocation
from agentflow.spec._loader import LoadedWorkflow
from agentflow.spec._models import END, MapNode, RouterNode


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
    # fan-out source -> its parallel targets (`parallel:`, or several unconditional `edges:` and no other way out)
    fanouts: dict[str, list[str]] = field(default_factory=lambda: {})
    # join -> the nodes it runs after (`after:`); their transitions into the join are in `transitions` too
    joins: dict[str, list[str]] = field(default_factory=lambda: {})
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
    fanouts, joins = _branch_transitions(workflow, transitions)
    for source, outs in transitions.items():
        for transition in outs:
            if not graph.has_edge(source, transition.target):
                graph.add_edge(source, transition.target, when=transition.when, location=transition.location)
    _add_map_edges(workflow, graph)
    return TemplateGraph(workflow=workflow, graph=graph, transitions=transitions, fanouts=fanouts, joins=joins)


def _add_map_edges(workflow: LoadedWorkflow, graph: Any) -> None:
    spec = workflow.spec
    for name, node in spec.nodes.items():
        if isinstance(node, MapNode) and node.node in spec.nodes and not graph.has_edge(name, node.node):
            # the item node runs inside the map (once per item) and hands back to it: no transition of its own
            graph.add_edge(name, node.node, when=None, location=workflow.locate("nodes", name, "node"), map=True)


def _branch_transitions(
    workflow: LoadedWorkflow, transitions: dict[str, list[Transition]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Add the transitions of fan-outs and joins; return the fan-outs (source -> targets) and joins (-> sources)."""
    spec = workflow.spec
    fanouts: dict[str, list[str]] = {}
    joins: dict[str, list[str]] = {}
    for name, node in spec.nodes.items():
        for index, target in enumerate(node.parallel):
            transitions[name].append(Transition(name, target, None, workflow.locate("nodes", name, "parallel", index)))
        if node.parallel:
            fanouts[name] = list(node.parallel)
        elif (
            not isinstance(node, RouterNode)
            and len(transitions[name]) > 1
            and all(t.when is None and t.target != END for t in transitions[name])
        ):
            fanouts[name] = [t.target for t in transitions[name]]  # several unconditional edges: a fan-out
    for name, node in spec.nodes.items():
        for index, source in enumerate(node.after):
            where = workflow.locate("nodes", name, "after", index)
            transitions.setdefault(source, []).append(Transition(source, name, None, where))
        if node.after:
            joins[name] = list(node.after)
    return fanouts, joins
