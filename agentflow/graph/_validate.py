"""Static validation of a template graph, before anything runs.

Each rule returns Diagnostics with file:line:col, a message and a fix. Rules never stop at the first problem, so a
user sees everything wrong with a file in one go.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import networkx as nx
from pydantic import BaseModel, ValidationError

from agentflow._plugins import is_plugin_ref, load_plugin, plugin_file
from agentflow.errors import (
    ConfigError,
    Diagnostic,
    ExpressionError,
    PluginLoadError,
    SourceLocation,
    SpecError,
    TemplateError,
)
from agentflow.graph import _expr
from agentflow.graph._branches import map_item_nodes
from agentflow.graph._build import TemplateGraph
from agentflow.graph._validate_branches import check_branches, extra_reads
from agentflow.spec import _templating
from agentflow.spec._loader import load_workflow
from agentflow.spec._models import (
    END,
    AgentNode,
    MapNode,
    NodeSpec,
    RouterNode,
    SubgraphNode,
    ToolNode,
    WorkflowSpec,
)


class Checkers(Protocol):
    """What validation asks of the packages above the graph (models, tools, reward hooks).

    The caller supplies it (the runtime's `compile_workflow` passes the installed registries), so the graph imports
    nothing above it.
    """

    def model_providers(self) -> list[str]:
        """The provider names a model string may start with."""
        ...

    def builtin_tools(self) -> list[str]:
        """The names of the built-in tools."""
        ...

    def tool_quoting(self, name: str) -> Mapping[str, _templating.Quoting] | None:
        """How built-in tool ``name`` quotes the placeholders of each parameter; None when there is no such tool."""
        ...

    def reward_hooks(self) -> list[str]:
        """The names of the built-in reward hooks."""
        ...

    def resolve_script(self, script: str, base: Path) -> None:
        """Raise ConfigError when the script a ``scripted:<script>`` model names cannot be found from ``base``."""
        ...


_ZERO: dict[str, Any] = {"str": "", "int": 0, "float": 0.0, "bool": False, "list": [], "dict": {}}


def _closest(name: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    same_letters = [choice for choice in choices if choice.lower() == name.lower()]
    if same_letters:  # `end` means END
        return same_letters[0]
    found = difflib.get_close_matches(name, choices, n=1)
    return found[0] if found else None


def _unknown(kind: str, name: str, choices: Iterable[str], where: SourceLocation, code: str) -> Diagnostic:
    choices = sorted(choices)
    close = _closest(name, choices)
    hint = f"did you mean {close!r}? " if close else ""
    return Diagnostic(code, f"unknown {kind} {name!r}", where, f"{hint}known: {', '.join(choices) or 'none'}")


def validate_template(
    template: TemplateGraph, *, checkers: Checkers, tool_parameters: Mapping[str, type[BaseModel]] | None = None
) -> list[Diagnostic]:
    """Run every static rule; errors first, each list in file order.

    Args:
        template: the template graph of a loaded workflow.
        checkers: the model providers, tools and reward hooks names are checked against.
        tool_parameters: the parameter model of each tool by name (what `compile_workflow` resolved), so tool
            nodes' `args` are checked against it; without it they are not.
    """
    corrected = _corrected_graph(template)
    structure = (
        []  # a node name no known name resembles: what the graph would be is unknown, so nothing is said about it
        if corrected is None
        else [*_check_reachability(template, corrected), *_check_cycles(template, corrected)]
    )
    diagnostics = [
        *_check_names(template),
        *_check_transitions(template),
        *_check_qtable_routers(template),
        *structure,
        *_check_models(template, checkers),
        *_check_subgraph_files(template),
        *_check_tools(template, checkers),
        *_check_tool_arguments(template, tool_parameters or {}),
        *_check_rewards(template, checkers),
        *_check_best_of(template, checkers),
        *_check_state(template),
        *check_branches(template),
        *_check_expressions(template, _child_specs(template)),
    ]

    def order(d: Diagnostic) -> tuple[int, int, int]:
        loc = d.location
        return (d.severity != "error", loc.line if loc else 0, loc.column if loc else 0)

    return sorted(diagnostics, key=order)


def _check_names(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    if spec.start not in spec.nodes:
        yield _unknown("start node", spec.start, spec.nodes, workflow.locate("start"), "graph.unknown-node")
    for index, edge in enumerate(spec.edges):
        if edge.from_ not in spec.nodes:
            where = workflow.locate("edges", index, "from")
            yield _unknown("node", edge.from_, spec.nodes, where, "graph.unknown-node")
        if edge.to != END and edge.to not in spec.nodes:
            where = workflow.locate("edges", index, "to")
            yield _unknown("node", edge.to, [*spec.nodes, END], where, "graph.unknown-node")
        if edge.from_ in spec.nodes and isinstance(spec.nodes[edge.from_], RouterNode):
            yield Diagnostic(
                "graph.router-edge",
                f"router {edge.from_!r} has an entry in `edges`; a router declares every target in its `routes`",
                workflow.locate("edges", index),
                f"move this edge into nodes.{edge.from_}.routes",
            )
    for name, node in spec.nodes.items():
        if isinstance(node, RouterNode):
            for index, route in enumerate(node.routes):
                if route.to != END and route.to not in spec.nodes:
                    where = workflow.locate("nodes", name, "routes", index, "to")
                    yield _unknown("route target", route.to, [*spec.nodes, END], where, "graph.unknown-node")
    for index, name in enumerate(spec.end):
        if name not in spec.nodes:
            yield _unknown("node", name, spec.nodes, workflow.locate("end", index), "graph.unknown-node")
    for index, loop in enumerate(spec.loops):
        for position, name in enumerate(loop.nodes):
            if name not in spec.nodes:
                where = workflow.locate("loops", index, "nodes", position)
                yield _unknown("node", name, spec.nodes, where, "graph.unknown-node")


def _check_qtable_routers(template: TemplateGraph) -> Iterator[Diagnostic]:
    for name, node in template.workflow.spec.nodes.items():
        if isinstance(node, RouterNode) and node.policy == "qtable":
            yield from _check_qtable_router(template, name, node)


def _check_qtable_router(template: TemplateGraph, name: str, node: RouterNode) -> Iterator[Diagnostic]:
    """A learned router routes between agents: each candidate is an agent node or END, named once."""
    workflow = template.workflow
    spec = workflow.spec
    seen: set[str] = set()
    for index, candidate in enumerate(node.candidates):
        where = workflow.locate("nodes", name, "candidates", index)
        if candidate in seen:
            yield Diagnostic(
                "graph.qtable-candidate",
                f"router {name!r} lists candidate {candidate!r} twice",
                where,
                "name each candidate once",
            )
        seen.add(candidate)
        if candidate == END:
            continue
        if candidate not in spec.nodes:
            yield _unknown("qtable candidate", candidate, [*spec.nodes, END], where, "graph.unknown-node")
        elif not isinstance(spec.nodes[candidate], AgentNode):
            yield Diagnostic(
                "graph.qtable-candidate",
                f"router {name!r} (policy qtable) has candidate {candidate!r}, a {spec.nodes[candidate].kind} node; "
                "a Q-table routes between agent nodes and END",
                where,
                "list only agent nodes and END in `candidates`, or route to this node with an expression router",
            )
    if node.qtable.end_when is not None:
        try:
            _expr.check_syntax(node.qtable.end_when)
        except ExpressionError as exc:
            where = workflow.locate("nodes", name, "qtable", "end_when")
            yield Diagnostic("expr.syntax", f"end_when: {exc}", where, "fix the CEL expression")
    for index, feature in enumerate(node.qtable.features):
        try:
            _expr.check_syntax(feature.expr)
        except ExpressionError as exc:
            where = workflow.locate("nodes", name, "qtable", "features", index, "expr")
            yield Diagnostic("expr.syntax", f"feature {feature.name!r}: {exc}", where, "fix the CEL expression")
    for index, hook in enumerate(node.qtable.success):
        if not any(reward.hook == hook for reward in spec.rewards):
            where = workflow.locate("nodes", name, "qtable", "success", index)
            declared = sorted({reward.hook for reward in spec.rewards})
            yield Diagnostic(
                "graph.qtable-success",
                f"router {name!r} takes success from hook {hook!r}, which `rewards` does not declare",
                where,
                f"declare it under `rewards` for the agent nodes (declared: {', '.join(declared) or 'none'})",
            )


def _corrected_graph(template: TemplateGraph) -> Any:
    """The graph as the user meant it: each misspelt node name replaced by the name it resembles.

    A mistyped edge target (`chek`, `end`) would also make nodes unreachable or unable to end; those follow from the
    one typo, which is reported with its "did you mean", so reachability is judged on the corrected graph. None when
    a misspelt name resembles no node.
    """
    spec = template.workflow.spec
    known = [*spec.nodes, END]
    written = {
        spec.start,
        *(e.from_ for e in spec.edges),
        *(t.target for ts in template.transitions.values() for t in ts),
    }
    corrections: dict[str, str] = {}
    for name in written - set(known):
        close = _closest(name, known)
        if close is None:
            return None
        corrections[name] = close
    return nx.relabel_nodes(template.graph, corrections, copy=True) if corrections else template.graph


def _check_transitions(template: TemplateGraph) -> Iterator[Diagnostic]:
    for source, transitions in template.transitions.items():
        if source not in template.workflow.spec.nodes:
            continue
        node = template.workflow.spec.nodes[source]
        if isinstance(node, RouterNode) and node.policy == "qtable":
            continue  # its candidates are chosen by the table, not tried in order
        unconditional = [t for t in transitions if t.when is None]
        if source in template.fanouts:
            continue  # its targets all run, concurrently (see `_validate_branches` for its rules)
        if len(unconditional) > 1:
            yield Diagnostic(
                "graph.ambiguous-edge",
                f"node {source!r} has {len(unconditional)} unconditional ways out "
                f"(to {', '.join(t.target for t in unconditional)}); only the first could ever be taken",
                unconditional[1].location,
                "add `when:` conditions, or remove the extra edges",
            )
        elif unconditional and transitions[-1].when is not None:
            yield Diagnostic(
                "graph.shadowed-edge",
                f"node {source!r}: the edges after its unconditional edge to {unconditional[0].target!r} "
                "are never taken",
                transitions[-1].location,
                "put the unconditional edge last",
                severity="warning",
            )
        if transitions and not unconditional:
            yield Diagnostic(
                "graph.no-default",
                f"node {source!r} has only conditional ways out; the run fails if none holds",
                transitions[-1].location,
                "add a last edge or route without `when` as the default",
                severity="warning",
            )


def _check_reachability(template: TemplateGraph, graph: Any) -> Iterator[Diagnostic]:
    workflow = template.workflow
    start = template.start if template.start in workflow.spec.nodes else _closest(template.start, workflow.spec.nodes)
    if start is None:
        return
    reachable = nx.descendants(graph, start) | {start}
    can_end = nx.ancestors(graph, END) | {END} | set(map_item_nodes(template))  # an item hands back to its map
    for name in workflow.spec.nodes:
        where = workflow.locate("nodes", name, key=True)
        if name not in reachable:
            yield Diagnostic(
                "graph.unreachable",
                f"node {name!r} cannot be reached from the start node {start!r}",
                where,
                "add an edge to it, or remove the node",
            )
        elif name not in can_end:
            outs = list(graph.successors(name))
            detail = "it has no way out" if not outs else f"every path from it loops without reaching {END}"
            yield Diagnostic(
                "graph.no-end",
                f"node {name!r} can never reach {END}: {detail}",
                where,
                f"add an edge from it toward {END}, or list it under `end:`",
            )
    if END not in reachable:
        yield Diagnostic(
            "graph.no-end",
            f"no path from the start node {start!r} reaches {END}",
            workflow.locate("start"),
            f"add `end: [node]` or an edge `to: {END}`",
        )


def _check_cycles(template: TemplateGraph, graph: Any) -> Iterator[Diagnostic]:
    spec, workflow = template.workflow.spec, template.workflow
    for cycle in nx.simple_cycles(graph):
        if any(set(cycle) <= set(loop.nodes) for loop in spec.loops):
            continue
        closing = graph.edges[cycle[-1], cycle[0]]
        names = ", ".join(cycle)
        yield Diagnostic(
            "graph.unbounded-cycle",
            f"the cycle {' -> '.join([*cycle, cycle[0]])} has no bound",
            closing.get("location") or workflow.locate("nodes", cycle[0], key=True),
            f"add `loops: [{{nodes: [{names}], max_iterations: 3}}]`",
        )


def _check_models(template: TemplateGraph, checkers: Checkers) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    providers = checkers.model_providers()
    for name, config in spec.models.items():
        provider = config.model.split(":", 1)[0] if ":" in config.model else None
        where = workflow.locate("models", name, "model")
        if provider is None:
            yield Diagnostic(
                "model.format", f"model {config.model!r} is not `provider:model`", where, "e.g. openai:gpt-4o-mini"
            )
        elif provider not in providers:
            yield _unknown("model provider", provider, providers, where, "model.unknown-provider")
    for node_name, node in spec.nodes.items():
        if isinstance(node, AgentNode) and node.model not in spec.models:
            where = workflow.locate("nodes", node_name, "model")
            yield _unknown("model", node.model, spec.models, where, "model.unknown")


def _check_tools(template: TemplateGraph, checkers: Checkers) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    builtins = checkers.builtin_tools()
    declared: dict[str, str] = {}
    misnamed: set[str] = set()  # functions a mistyped plugin reference was meant to name: reported there, once
    for index, tool_ref in enumerate(spec.tool_refs()):
        ref = tool_ref.ref
        where = workflow.locate("tools", index)
        if is_plugin_ref(ref):
            problem = _plugin_problem(ref, workflow.base_dir, where, code="tool", kind="tool plugin")
            if problem is not None:
                diagnostic, suggestion = problem
                yield diagnostic
                if suggestion:
                    misnamed.add(suggestion)
        elif ref not in builtins:
            yield _unknown("built-in tool", ref, builtins, where, "tool.unknown")
        if tool_ref.host and not is_plugin_ref(ref):
            yield Diagnostic(
                "tool.host-builtin",
                f"`host: true` has no effect on the built-in tool {ref!r}",
                where,
                "drop `host`: it chooses where a plugin function runs; built-in tools always act through the sandbox",
                severity="warning",
            )
        name = spec.tool_name(ref)
        if name in declared:
            yield Diagnostic("tool.duplicate", f"two tools are named {name!r}", where, "rename one of the functions")
        declared[name] = ref
    for node_name, node in spec.nodes.items():
        if isinstance(node, AgentNode):
            for index, tool_name in enumerate(node.tools):
                if tool_name not in declared and tool_name not in misnamed:
                    where = workflow.locate("nodes", node_name, "tools", index)
                    yield _unknown("tool", tool_name, declared, where, "tool.unknown")
        elif isinstance(node, ToolNode) and node.tool not in declared and node.tool not in misnamed:
            yield _unknown("tool", node.tool, declared, workflow.locate("nodes", node_name, "tool"), "tool.unknown")
        elif isinstance(node, ToolNode) and declared.get(node.tool) == node.tool:
            yield from _check_code_placeholders(template, node_name, node, checkers)


def _check_code_placeholders(
    template: TemplateGraph, node_name: str, node: ToolNode, checkers: Checkers
) -> Iterator[Diagnostic]:
    """A placeholder in a built-in tool's code (python ``code``, shell ``command``) must stand where a literal may."""
    quoting = checkers.tool_quoting(node.tool)
    if quoting is None:
        return  # reported as an unknown built-in tool
    for key, value in node.args.items():
        if key in quoting and isinstance(value, str):
            try:
                problems = _templating.quoting_problems(value, quoting[key])
            except ValueError:
                continue  # malformed braces are reported with the state reads
            for problem in problems:
                where = template.workflow.locate("nodes", node_name, "args", key)
                yield Diagnostic("tool.code-placeholder", problem, where, "remove the quotes around the placeholder")


def _plugin_problem(
    ref: str, base_dir: Path, where: SourceLocation, *, code: str, kind: str
) -> tuple[Diagnostic, str | None] | None:
    """Load a plugin the way the run will; a failure becomes a diagnostic at the workflow line that names it.

    Returns the diagnostic and, for a mistyped function name, the existing function it was meant to name.
    """
    path = plugin_file(ref, base_dir)
    if path is not None and not path.is_file():
        return Diagnostic(
            f"{code}.missing-file",
            f"{kind} file not found: {path}",
            where,
            "plugin paths are relative to the workflow file: `path/to/file.py:function`",
        ), None
    try:
        load_plugin(ref, base_dir=base_dir, kind=kind)
    except PluginLoadError as exc:
        return Diagnostic(f"{code}.plugin", exc.message, where, exc.fix), exc.suggestion
    return None


def _check_rewards(template: TemplateGraph, checkers: Checkers) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    hook_names = checkers.reward_hooks()
    for index, reward in enumerate(spec.rewards):
        where = workflow.locate("rewards", index, "hook")
        if is_plugin_ref(reward.hook):
            problem = _plugin_problem(reward.hook, workflow.base_dir, where, code="reward", kind="reward hook")
            if problem is not None:
                yield problem[0]
        elif reward.hook not in hook_names:
            yield _unknown("reward hook", reward.hook, hook_names, where, "reward.unknown-hook")
        for position, name in enumerate(reward.nodes):
            if name not in spec.nodes:
                where = workflow.locate("rewards", index, "nodes", position)
                yield _unknown("node", name, spec.nodes, where, "graph.unknown-node")


def _check_best_of(template: TemplateGraph, checkers: Checkers) -> Iterator[Diagnostic]:
    """The hook a `best_of` scores its candidates with must exist, as a reward's must."""
    workflow = template.workflow
    hook_names = checkers.reward_hooks()
    for name, node in workflow.spec.nodes.items():
        best_of = node.best_of if isinstance(node, AgentNode) else None
        if best_of is None:
            continue
        where = workflow.locate("nodes", name, "best_of", "by")
        if is_plugin_ref(best_of.by):
            problem = _plugin_problem(best_of.by, workflow.base_dir, where, code="best_of", kind="reward hook")
            if problem is not None:
                yield problem[0]
        elif best_of.by not in hook_names:
            yield _unknown("reward hook", best_of.by, hook_names, where, "best_of.unknown-hook")


def _state_reads(template: TemplateGraph) -> Iterator[tuple[str, SourceLocation]]:
    """Every (state key, where) a template or expression reads (not what a node sees beside the state: a map item's
    ``item``, a join's ``failed_branches``)."""
    workflow = template.workflow
    for name, node in workflow.spec.nodes.items():
        besides = extra_reads(template, name)
        for key, path in _node_reads(node):
            if key not in besides:
                yield key, workflow.locate("nodes", name, *path)
    for transitions in template.transitions.values():
        for transition in transitions:
            for key in _expr.state_keys_read(transition.when or ""):
                yield key, transition.location


def _node_reads(node: NodeSpec) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """(state key, path inside the node) of every read of one node's templates and expressions."""
    texts: list[tuple[str, tuple[str | int, ...]]] = []
    expressions: list[tuple[str, tuple[str | int, ...]]] = []
    if isinstance(node, AgentNode):
        texts.append((node.prompt, ("prompt",)))
        if node.input:
            texts.append((node.input, ("input",)))
        expressions += [(e, ("output", k)) for k, e in node.output.items()]
    elif isinstance(node, ToolNode):
        for key, value in node.args.items():
            for field in _safe_value_placeholders(value):
                yield field.split(".")[0], ("args", key)
        expressions += [(e, ("output", k)) for k, e in node.output.items()]
    elif isinstance(node, SubgraphNode):
        expressions += [(e, ("inputs", k)) for k, e in node.inputs.items()]
    elif isinstance(node, MapNode):
        expressions.append((node.over, ("over",)))
    for text, path in texts:
        for field in _safe_placeholders(text):
            yield field.split(".")[0], path
    for expression, path in expressions:
        for key in _expr.state_keys_read(expression):
            yield key, path


def _safe_placeholders(text: str) -> list[str]:
    try:
        return _templating.placeholders(text)
    except TemplateError:
        return []


def _safe_value_placeholders(value: Any) -> list[str]:
    try:
        return _templating.value_placeholders(value)
    except TemplateError:
        return []


def _node_outputs(node: NodeSpec) -> tuple[str, dict[str, str]]:
    """The YAML key of a node's state writes and the writes themselves (state key -> CEL expression)."""
    if isinstance(node, AgentNode | ToolNode):
        return "output", node.output
    if isinstance(node, SubgraphNode):
        return "outputs", node.outputs
    if isinstance(node, MapNode):
        return "output", {node.output: node.over}
    return "output", {}


def _check_node_writes(template: TemplateGraph) -> Iterator[Diagnostic]:
    """Output mappings name declared state keys; prompt templates parse (expressions: `_check_expressions`)."""
    workflow = template.workflow
    spec = workflow.spec
    items = map_item_nodes(template)
    for name, node in spec.nodes.items():
        part, outputs = _node_outputs(node)
        for key in outputs:
            if key not in spec.state and name not in items:  # an item node's outputs name parts of its result
                where = workflow.locate("nodes", name, part, key, key=True)
                yield _unknown("state key", key, spec.state, where, "state.unknown-key")
        if isinstance(node, AgentNode):
            for text, field in [(node.prompt, "prompt"), (node.input or "", "input")]:
                try:
                    _templating.placeholders(text)
                except TemplateError as exc:
                    yield Diagnostic("template.syntax", str(exc), workflow.locate("nodes", name, field), None)


def _check_state(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    yield from _check_node_writes(template)
    writers: set[str] = set(spec.inputs)
    for name, node in spec.nodes.items():
        if name not in map_item_nodes(template):
            writers.update(_node_outputs(node)[1])
    for key in spec.inputs:
        if key not in spec.state:
            yield _unknown("state key", key, spec.state, workflow.locate("inputs", key, key=True), "state.unknown-key")
    reported: set[str] = set()
    for key, where in _state_reads(template):
        if key not in spec.state:
            yield _unknown("state key", key, spec.state, where, "state.unknown-key")
        elif key not in writers and spec.state[key].default is None and key not in reported:
            reported.add(key)
            yield Diagnostic(
                "state.never-written",
                f"state key {key!r} is read but no node writes it, it has no default and no input sets it",
                where,
                f"give state.{key} a default, add it to `inputs`, or write it from a node's `output`",
            )


def _samples(spec: WorkflowSpec) -> dict[str, Any]:
    """A value of its declared type for each typed state key: its default, else the type's zero value."""
    sample: dict[str, Any] = {}
    for key, declared in spec.state.items():
        if declared.type == "any":
            continue
        default_fits = declared.default is not None and _expr.fits(declared.default, declared.type)
        sample[key] = declared.default if default_fits else _ZERO[declared.type]
    return sample


@dataclass(frozen=True)
class _Expression:
    """One CEL expression of a workflow: where it is, what it may read, and the state key type it must fit."""

    source: str
    path: tuple[str | int, ...]
    samples: dict[str, Any]
    opaque: tuple[str, ...] = ()
    condition: bool = False
    target: tuple[str, str] | None = None  # (state key, declared type) the result is stored in


def _map_expressions(spec: WorkflowSpec, state: dict[str, Any]) -> Iterator[_Expression]:
    for name, node in spec.nodes.items():
        if isinstance(node, MapNode):
            yield _Expression(node.over, ("nodes", name, "over"), state, target=("over", "list"))


def _expressions(template: TemplateGraph, children: Mapping[str, WorkflowSpec]) -> Iterator[_Expression]:
    spec = template.workflow.spec
    base = {"state": _samples(spec)}
    state = base
    # a write to an `append` key is one element of its list: of any type
    types = {key: declared.type for key, declared in spec.state.items() if declared.reduce != "append"}

    def target(key: str, declared: Mapping[str, str]) -> tuple[str, str] | None:
        return (key, declared[key]) if key in declared else None

    for index, edge in enumerate(spec.edges):
        if edge.when is not None:
            yield _Expression(edge.when, ("edges", index, "when"), state, condition=True)
    yield from _map_expressions(spec, base)
    # a map's item node sees its `item` (of a type known at run time) and `index` beside the state
    item_state = {"state": {**base["state"], "index": 0}}
    items = set(map_item_nodes(template))
    for name, node in spec.nodes.items():
        here: tuple[str | int, ...] = ("nodes", name)
        state = item_state if name in items else base
        if isinstance(node, RouterNode):
            for index, route in enumerate(node.routes):
                if route.when is not None:
                    yield _Expression(route.when, (*here, "routes", index, "when"), state, condition=True)
        elif isinstance(node, AgentNode):
            # `json` is the answer parsed as JSON: its shape is known only when the model answers.
            agent = {"answer": "", **state}
            for key, source in node.output.items():
                yield _Expression(source, (*here, "output", key), agent, ("json",), target=target(key, types))
        elif isinstance(node, ToolNode):
            # `result` is whatever the tool returns, `error` is null when it succeeded.
            tool = {"ok": False, **state}
            for key, source in node.output.items():
                yield _Expression(source, (*here, "output", key), tool, ("result", "error"), target=target(key, types))
        elif isinstance(node, SubgraphNode):
            child = children.get(name)
            child_types = {k: d.type for k, d in child.state.items()} if child else {}
            for key, source in node.inputs.items():
                yield _Expression(source, (*here, "inputs", key), state, target=target(key, child_types))
            child_state = {"state": _samples(child)} if child else {}
            for key, source in node.outputs.items():
                opaque = () if child else ("state",)
                yield _Expression(source, (*here, "outputs", key), child_state, opaque, target=target(key, types))


def _check_expressions(template: TemplateGraph, children: Mapping[str, WorkflowSpec]) -> Iterator[Diagnostic]:
    """Conditions and output mappings: syntax, known functions and names, operand types, and the result's type."""
    workflow = template.workflow
    for expression in _expressions(template, children):
        problems, result = _expr.analyze(expression.source, expression.samples, expression.opaque)
        for problem in problems:
            where = workflow.locate_inside(problem.offset, *expression.path)
            yield Diagnostic(problem.code, problem.message, where, problem.fix)
        if problems or result is _expr.UNKNOWN:
            continue
        where = workflow.locate(*expression.path)
        if expression.condition and not isinstance(result, bool):
            yield Diagnostic(
                "expr.type",
                f"condition {expression.source!r} gives {_expr.type_name(result)}, not a boolean",
                where,
                "a condition must give true or false: compare the value (`state.count > 0`, `state.name != ''`)",
            )
        elif expression.target is not None and not _expr.fits(result, expression.target[1]):
            key, declared = expression.target
            actual = _expr.type_name(result)
            yield Diagnostic(
                "expr.type",
                f"{expression.source!r} gives {actual}, which cannot be stored in {key!r} (declared {declared})",
                where,
                f"convert it ({_CONVERSIONS.get(declared, 'a value of that type')}) "
                f"or declare `{key}: {{type: {actual}}}`",
            )


_CONVERSIONS = {
    "str": "string(...)",
    "int": "int(...)",
    "float": "double(...)",
    "bool": "a comparison such as `... == 'yes'`",
    "list": "a list literal [...]",
    "dict": "a map literal {...}",
}


def _child_specs(template: TemplateGraph) -> dict[str, WorkflowSpec]:
    """The specs of the subgraph files that load (a broken one reports its own errors when it is compiled)."""
    workflow = template.workflow
    children: dict[str, WorkflowSpec] = {}
    for name, node in workflow.spec.nodes.items():
        if isinstance(node, SubgraphNode) and (workflow.base_dir / node.workflow).is_file():
            try:
                children[name] = load_workflow(workflow.base_dir / node.workflow).spec
            except SpecError:
                continue
    return children


def check_run_files(template: TemplateGraph, *, checkers: Checkers, scripts: bool = True) -> list[Diagnostic]:
    """The files a live run opens: model scripts (unless ``scripts`` is false: a model override) and the host
    folders copied into the sandbox.

    Kept apart from `validate_template`, because a replay from a tape needs neither and must compile without them.
    """
    workflow = template.workflow
    spec, base = workflow.spec, workflow.base_dir
    diagnostics: list[Diagnostic] = []
    for name, config in spec.models.items():
        provider, _, script = config.model.partition(":")
        if scripts and provider == "scripted" and script:
            try:
                checkers.resolve_script(script, base)
            except ConfigError as exc:
                where = workflow.locate("models", name, "model")
                diagnostics.append(Diagnostic("model.missing-script", exc.message, where, exc.fix))
    for inside, host in spec.sandbox.files.items():
        folder = Path(host) if Path(host).is_absolute() else base / host
        if not folder.exists():
            diagnostics.append(
                Diagnostic(
                    "sandbox.missing-files",
                    f"sandbox.files[{inside!r}]: the folder {folder} does not exist",
                    workflow.locate("sandbox", "files", inside),
                    "host folders are relative to the workflow file; create it or fix the path",
                )
            )
    return diagnostics


def _check_subgraph_files(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    for name, node in workflow.spec.nodes.items():
        if isinstance(node, SubgraphNode) and not (workflow.base_dir / node.workflow).is_file():
            yield Diagnostic(
                "subgraph.missing-file",
                f"subgraph {name!r}: workflow file not found: {workflow.base_dir / node.workflow}",
                workflow.locate("nodes", name, "workflow"),
                "subgraph paths are relative to this workflow file",
            )


_UNKNOWN_ARGUMENT: Any = object()


def _argument_sample(value: Any, samples: Mapping[str, Any]) -> Any:
    """A value like the one a tool node passes at run time: `{key}` alone takes the state key's type."""
    if isinstance(value, str):
        fields = _safe_placeholders(value)
        if len(fields) == 1 and value == "{" + fields[0] + "}":
            key = fields[0]
            return samples.get(key, _UNKNOWN_ARGUMENT)  # unknown for a dotted path or an untyped key
        return value
    if isinstance(value, dict):
        items = {k: _argument_sample(v, samples) for k, v in value.items()}
        return _UNKNOWN_ARGUMENT if _UNKNOWN_ARGUMENT in items.values() else items
    if isinstance(value, list):
        listed = [_argument_sample(v, samples) for v in value]
        return _UNKNOWN_ARGUMENT if any(v is _UNKNOWN_ARGUMENT for v in listed) else listed
    return value


def _describe_parameters(model: type[BaseModel]) -> str:
    parts = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        kind = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        parts.append(f"{name} ({kind}{'' if info.is_required() else ', optional'})")
    return ", ".join(parts) or "none"


def _check_tool_arguments(template: TemplateGraph, parameters: Mapping[str, type[BaseModel]]) -> Iterator[Diagnostic]:
    """A tool node's `args` against the tool's parameters: unknown, missing and mistyped arguments."""
    workflow = template.workflow
    spec = workflow.spec
    samples = _samples(spec)
    for name, node in spec.nodes.items():
        if not isinstance(node, ToolNode) or node.tool not in parameters:
            continue
        model = parameters[node.tool]
        arguments = {key: _argument_sample(value, samples) for key, value in node.args.items()}
        unknown = {key for key, value in arguments.items() if value is _UNKNOWN_ARGUMENT}
        from_state = {key for key, value in node.args.items() if _safe_value_placeholders(value)}
        try:
            model.model_validate({k: v for k, v in arguments.items() if k not in unknown})
        except ValidationError as exc:
            for error in exc.errors():
                key = str(error["loc"][0]) if error["loc"] else ""
                if key in unknown:
                    continue  # its value comes from state of a type known only at run time
                if key in from_state and not error["type"].endswith("_type"):
                    continue  # only the type of a state value is known, not the value (a bound, a literal choice)
                yield _argument_diagnostic(template, name, model, key, error)


def _argument_diagnostic(
    template: TemplateGraph, name: str, model: type[BaseModel], key: str, error: Any
) -> Diagnostic:
    workflow = template.workflow
    node = workflow.spec.nodes[name]
    assert isinstance(node, ToolNode)
    accepted = f"{node.tool} takes: {_describe_parameters(model)}"
    if error["type"] == "extra_forbidden":
        close = _closest(key, model.model_fields)
        hint = f"did you mean {close!r}? " if close else ""
        return Diagnostic(
            "tool.unknown-argument",
            f"tool {node.tool!r} has no argument {key!r}",
            workflow.locate("nodes", name, "args", key, key=True),
            f"{hint}{accepted}",
        )
    if error["type"] == "missing":
        return Diagnostic(
            "tool.missing-argument",
            f"tool {node.tool!r} needs the argument {key!r}",
            workflow.locate("nodes", name, "args") if node.args else workflow.locate("nodes", name, "tool"),
            f"add `{key}:` to nodes.{name}.args; {accepted}",
        )
    written = node.args.get(key)
    fields = _safe_placeholders(written) if isinstance(written, str) else []
    origin = (
        f"{{{fields[0]}}} is a state key of type {template.workflow.spec.state[fields[0]].type}"
        if len(fields) == 1 and written == "{" + fields[0] + "}"
        else f"got {_expr.type_name(error.get('input'))} {written!r}"
    )
    return Diagnostic(
        "tool.argument-type",
        f"argument {key!r} of tool {node.tool!r}: {error['msg'].lower()} ({origin})",
        workflow.locate("nodes", name, "args", key),
        f"pass a value of the parameter's type; {accepted}",
    )
