"""Static rules of parallel fan-outs, joins and map nodes (see ``_branches``); called by ``validate_template``."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import networkx as nx

from agentflow.errors import Diagnostic, SourceLocation
from agentflow.graph._branches import FanOut, find_fanouts, map_item_nodes
from agentflow.graph._build import TemplateGraph
from agentflow.spec._models import END, AgentNode, MapNode, NodeSpec, RouterNode, SubgraphNode, ToolNode

REDUCERS = "append | extend | merge | sum | max | min | last"

ITEM_NAMES = ("item", "index")
"""What a map's item node sees beside the state (templates `{item}`, CEL `state.item`)."""

FAILED_BRANCHES = "failed_branches"
"""What a join with ``on_branch_error: continue`` sees beside the state: the ids of the branches that failed."""


def _unknown_node(name: str, template: TemplateGraph, where: SourceLocation) -> Diagnostic:
    choices = sorted(template.workflow.spec.nodes)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return Diagnostic("graph.unknown-node", f"unknown node {name!r}", where, f"{hint}known: {', '.join(choices)}")


def node_writes(node: NodeSpec) -> tuple[str, list[str]]:
    """The YAML key of a node's state writes and the state keys it writes."""
    if isinstance(node, AgentNode | ToolNode):
        return "output", list(node.output)
    if isinstance(node, SubgraphNode):
        return "outputs", list(node.outputs)
    if isinstance(node, MapNode):
        return "output", [node.output]
    return "output", []


def extra_reads(template: TemplateGraph, name: str) -> tuple[str, ...]:
    """Names a node may read beside the declared state keys: a map item's ``item``/``index``, a join's
    ``failed_branches``."""
    node = template.workflow.spec.nodes.get(name)
    if name in map_item_nodes(template):
        return ITEM_NAMES
    if node is not None and node.after and node.on_branch_error == "continue":
        return (FAILED_BRANCHES,)
    return ()


def check_branches(template: TemplateGraph) -> Iterator[Diagnostic]:
    """Fan-outs have a join every branch reaches, branches do not overlap or loop across the join, concurrent writes
    have reducers, and map nodes name a node they alone run."""
    yield from _check_options(template)
    yield from _check_joins(template)
    for fanout in find_fanouts(template):
        yield from _check_fanout(template, fanout)
    yield from _check_maps(template)


def _check_options(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    edge_sources = {edge.from_ for edge in spec.edges} | set(spec.end)
    for name, node in spec.nodes.items():
        here = ("nodes", name)
        for index, target in enumerate(node.parallel):
            if target == END or target not in spec.nodes:
                yield _unknown_node(target, template, workflow.locate(*here, "parallel", index))
        if node.parallel and isinstance(node, RouterNode | MapNode):
            yield Diagnostic(
                "graph.fanout-kind",
                f"{node.kind} node {name!r} cannot fan out: a {node.kind} has its own ways out",
                workflow.locate(*here, "parallel"),
                "put `parallel:` on an agent, tool or subgraph node (a router may route to that node)",
            )
        if node.parallel and name in edge_sources:
            yield Diagnostic(
                "graph.fanout-edges",
                f"node {name!r} has both `parallel:` and entries in `edges`/`end`",
                workflow.locate(*here, "parallel"),
                "a fan-out's ways out are its parallel targets: move the other targets into `parallel:`",
            )
        fans_out = name in template.fanouts or isinstance(node, MapNode)
        if node.sandbox == "fork" and not fans_out:
            yield Diagnostic(
                "graph.fork-without-branches",
                f"node {name!r} says `sandbox: fork` but starts no branches",
                workflow.locate(*here, "sandbox"),
                "`sandbox: fork` goes on a node with `parallel:` or on a map node",
            )
        if node.on_branch_error == "continue" and not node.after and not isinstance(node, MapNode):
            yield Diagnostic(
                "graph.branch-errors-without-join",
                f"node {name!r} says `on_branch_error: continue` but joins no branches",
                workflow.locate(*here, "on_branch_error"),
                "`on_branch_error` goes on the join (the node with `after:`) or on a map node",
            )


def _check_joins(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    joined = {f.join for f in find_fanouts(template) if f.join is not None}
    for join, sources in template.joins.items():
        for index, source in enumerate(sources):
            where = workflow.locate("nodes", join, "after", index)
            if source not in spec.nodes:
                yield _unknown_node(source, template, where)
                continue
            others = [t for t in template.transitions.get(source, []) if t.target != join]
            if others or spec.nodes[source].parallel:
                yield Diagnostic(
                    "graph.join-source-edge",
                    f"node {source!r} is in the `after:` of join {join!r} but has other ways out "
                    f"(to {', '.join(t.target for t in others) or 'its parallel targets'})",
                    where,
                    "the last node of a branch leads only into its join: remove its other edges, or join a "
                    "node after it",
                )
        if join not in joined:
            yield Diagnostic(
                "graph.join-without-fanout",
                f"join {join!r} is not after a fan-out: no `parallel:` node leads to {', '.join(sources)}",
                workflow.locate("nodes", join, "after"),
                "give the node before the branches `parallel: [...]`, or replace `after:` by ordinary edges",
            )


def _check_fanout(template: TemplateGraph, fanout: FanOut) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    graph = template.graph
    first = fanout.locations[0] if fanout.locations else workflow.locate("nodes", fanout.source, key=True)
    if fanout.join is None:
        yield Diagnostic(
            "graph.fanout-no-join",
            f"the branches of {fanout.source!r} ({', '.join(fanout.targets)}) are never joined",
            first,
            "add a node with `after: [<the last node of each branch>]` that runs once every branch finished",
        )
        return
    join = fanout.join
    after = set(spec.nodes[join].after)
    owner: dict[str, str] = {}
    for position, target in enumerate(fanout.targets):
        where = fanout.locations[position] if position < len(fanout.locations) else first
        nodes = fanout.branches.get(target, frozenset())
        if target not in spec.nodes:
            continue
        if not nodes & after:
            yield Diagnostic(
                "graph.branch-no-join",
                f"branch {target!r} of {fanout.source!r} never reaches the join {join!r}",
                where,
                f"add the last node of branch {target!r} to nodes.{join}.after",
            )
        for name in sorted(nodes):
            if name in owner and owner[name] != target:
                yield Diagnostic(
                    "graph.branch-overlap",
                    f"node {name!r} is in branches {owner[name]!r} and {target!r} of {fanout.source!r}: it would "
                    "run twice at once",
                    workflow.locate("nodes", name, key=True),
                    "give each branch its own nodes (copy the node under another name)",
                )
            owner.setdefault(name, target)
    # A loop back into a branch that skips the fan-out would run a branch node without its siblings.
    without_source = graph.copy()
    without_source.remove_node(fanout.source)
    after_join = nx.descendants(without_source, join) if join in without_source else set()
    for name in sorted(set(owner) & after_join):
        yield Diagnostic(
            "graph.branch-loop",
            f"node {name!r} of branch {owner[name]!r} is reached again from the join {join!r} without going "
            f"through the fan-out {fanout.source!r}",
            workflow.locate("nodes", join, "after"),
            f"loop back to {fanout.source!r} (so all branches run again), not into one branch",
        )
    yield from _check_concurrent_writes(template, fanout)


def _check_concurrent_writes(template: TemplateGraph, fanout: FanOut) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    items = map_item_nodes(template)
    first_writer: dict[str, tuple[str, str]] = {}  # state key -> (branch, node)
    reported: set[str] = set()
    for target in fanout.targets:
        for name in sorted(fanout.branches.get(target, frozenset())):
            if name not in spec.nodes or name in items:
                continue  # an item node's outputs are its map's result, not state writes
            part, keys = node_writes(spec.nodes[name])
            for key in keys:
                declared = spec.state.get(key)
                if declared is None or declared.reduce is not None or key in reported:
                    continue
                if key in first_writer and first_writer[key][0] != target:
                    reported.add(key)
                    other_branch, other_node = first_writer[key]
                    yield Diagnostic(
                        "state.concurrent-write",
                        f"state key {key!r} is written by node {other_node!r} (branch {other_branch!r}) and node "
                        f"{name!r} (branch {target!r}), which run concurrently, and it declares no reducer",
                        workflow.locate("nodes", name, part, key, key=True),
                        f"declare how the writes combine: state.{key}: {{type: {declared.type}, reduce: "
                        f"<{REDUCERS}>}}, or write different keys",
                    )
                first_writer.setdefault(key, (target, name))


def _check_maps(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    targets = {t.target for transitions in template.transitions.values() for t in transitions}
    used: dict[str, str] = {}
    for name, node in spec.nodes.items():
        if not isinstance(node, MapNode):
            continue
        here = ("nodes", name)
        if node.parallel or node.after:
            yield Diagnostic(
                "graph.map-branches",
                f"map node {name!r} cannot have `parallel:` or `after:`",
                workflow.locate(*here, "parallel" if node.parallel else "after"),
                "put the fan-out or the join on a node before or after the map",
            )
        if node.output in spec.state and spec.state[node.output].type not in ("list", "any"):
            yield Diagnostic(
                "state.map-output-type",
                f"map {name!r} writes a list to {node.output!r}, declared {spec.state[node.output].type}",
                workflow.locate(*here, "output"),
                f"declare state.{node.output}: {{type: list}}",
            )
        item = spec.nodes.get(node.node)
        where = workflow.locate(*here, "node")
        if item is None:
            yield _unknown_node(node.node, template, where)
            continue
        if node.node in used:
            yield Diagnostic(
                "graph.map-node-shared",
                f"node {node.node!r} is the item node of maps {used[node.node]!r} and {name!r}",
                where,
                "give each map its own item node",
            )
        used[node.node] = name
        if not isinstance(item, AgentNode | ToolNode | SubgraphNode):
            yield Diagnostic(
                "graph.map-node-kind",
                f"map {name!r} runs {node.node!r}, a {item.kind} node; a map runs an agent, tool or subgraph node",
                where,
                "name an agent, tool or subgraph node",
            )
            continue
        if node.node in targets or node.node == spec.start or template.transitions.get(node.node):
            yield Diagnostic(
                "graph.map-node-edges",
                f"node {node.node!r} is run by map {name!r} once per item, so it has no edges of its own",
                where,
                f"remove the edges to and from {node.node!r} (the map's own edges lead on after every item)",
            )
        part, keys = node_writes(item)
        if not keys:
            yield Diagnostic(
                "graph.map-node-result",
                f"map {name!r}: node {node.node!r} gives no result: it has no `{part}:`",
                where,
                f"give nodes.{node.node}.{part} an entry, e.g. `{{result: answer}}` (its value is the item's result)",
            )
