"""Static validation of a template graph, before anything runs.

Each rule returns Diagnostics with file:line:col, a message and a fix. Rules never stop at the first problem, so a
user sees everything wrong with a file in one go.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from agentflow._plugins import is_plugin_ref, load_plugin, plugin_file
from agentflow.errors import Diagnostic, PluginLoadError, SourceLocation
from agentflow.graph._build import TemplateGraph
from agentflow.routing import _expr
from agentflow.spec import _templating
from agentflow.spec._models import END, AgentNode, NodeSpec, RouterNode, SubgraphNode, ToolNode

_ZERO: dict[str, Any] = {"str": "", "int": 0, "float": 0.0, "bool": False, "list": [], "dict": {}}


def _closest(name: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1)
    return found[0] if found else None


def _unknown(kind: str, name: str, choices: Iterable[str], where: SourceLocation, code: str) -> Diagnostic:
    choices = sorted(choices)
    close = _closest(name, choices)
    hint = f"did you mean {close!r}? " if close else ""
    return Diagnostic(code, f"unknown {kind} {name!r}", where, f"{hint}known: {', '.join(choices) or 'none'}")


def validate_template(template: TemplateGraph) -> list[Diagnostic]:
    """Run every static rule; errors first, each list in file order."""
    diagnostics = [
        *_check_names(template),
        *_check_transitions(template),
        *_check_reachability(template),
        *_check_cycles(template),
        *_check_models(template),
        *_check_tools(template),
        *_check_rewards(template),
        *_check_state(template),
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


def _check_transitions(template: TemplateGraph) -> Iterator[Diagnostic]:
    for source, transitions in template.transitions.items():
        if source not in template.workflow.spec.nodes:
            continue
        unconditional = [t for t in transitions if t.when is None]
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
        for transition in transitions:
            if transition.when is not None:
                try:
                    _expr.check_syntax(transition.when)
                except _expr.ExpressionError as exc:
                    yield Diagnostic("expr.syntax", str(exc), transition.location, "see the CEL language definition")


def _check_reachability(template: TemplateGraph) -> Iterator[Diagnostic]:
    graph, workflow = template.graph, template.workflow
    if template.start not in workflow.spec.nodes:
        return
    reachable = nx.descendants(graph, template.start) | {template.start}
    can_end = nx.ancestors(graph, END) | {END}
    for name in workflow.spec.nodes:
        where = workflow.locate("nodes", name, key=True)
        if name not in reachable:
            yield Diagnostic(
                "graph.unreachable",
                f"node {name!r} cannot be reached from the start node {template.start!r}",
                where,
                "add an edge to it, or remove the node",
            )
        elif name not in can_end:
            outs = [t.target for t in template.transitions.get(name, [])]
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
            f"no path from the start node {template.start!r} reaches {END}",
            workflow.locate("start"),
            f"add `end: [node]` or an edge `to: {END}`",
        )


def _check_cycles(template: TemplateGraph) -> Iterator[Diagnostic]:
    spec, workflow = template.workflow.spec, template.workflow
    for cycle in nx.simple_cycles(template.graph):
        if any(set(cycle) <= set(loop.nodes) for loop in spec.loops):
            continue
        closing = template.graph.edges[cycle[-1], cycle[0]]
        names = ", ".join(cycle)
        yield Diagnostic(
            "graph.unbounded-cycle",
            f"the cycle {' -> '.join([*cycle, cycle[0]])} has no bound",
            closing.get("location") or workflow.locate("nodes", cycle[0], key=True),
            f"add `loops: [{{nodes: [{names}], max_iterations: 3}}]`",
        )


def _check_models(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    providers = _provider_names()
    for name, config in spec.models.items():
        provider = config.model.split(":", 1)[0] if ":" in config.model else None
        where = workflow.locate("models", name, "model")
        if provider is None:
            yield Diagnostic(
                "model.format", f"model {config.model!r} is not `provider:model`", where, "e.g. openai:gpt-4o-mini"
            )
        elif providers is not None and provider not in providers:
            yield _unknown("model provider", provider, providers, where, "model.unknown-provider")
    for node_name, node in spec.nodes.items():
        if isinstance(node, AgentNode) and node.model not in spec.models:
            where = workflow.locate("nodes", node_name, "model")
            yield _unknown("model", node.model, spec.models, where, "model.unknown")


def _provider_names() -> list[str] | None:
    try:
        from agentflow.models import model_providers  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    names: list[str] = model_providers.names()
    return names


def _builtin_tool_names() -> list[str] | None:
    try:
        from agentflow.tools import tool_registry  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    names: list[str] = tool_registry.names()
    return names


def _check_tools(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    builtins = _builtin_tool_names()
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
        elif builtins is not None and ref not in builtins:
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
            yield from _check_code_placeholders(template, node_name, node)


def _check_code_placeholders(template: TemplateGraph, node_name: str, node: ToolNode) -> Iterator[Diagnostic]:
    """A placeholder in a built-in tool's code (python ``code``, shell ``command``) must stand where a literal may."""
    try:
        from agentflow.tools import tool_registry  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return
    if node.tool not in tool_registry:
        return  # reported as an unknown built-in tool
    quoting = tool_registry.get(node.tool).quoting
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


def _check_rewards(template: TemplateGraph) -> Iterator[Diagnostic]:
    from agentflow.rewards import reward_hooks

    workflow = template.workflow
    spec = workflow.spec
    hook_names = reward_hooks.names()
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


def _state_reads(template: TemplateGraph) -> Iterator[tuple[str, SourceLocation]]:
    """Every (state key, where) a template or expression reads."""
    workflow = template.workflow
    for name, node in workflow.spec.nodes.items():
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
                    yield field.split(".")[0], workflow.locate("nodes", name, "args", key)
            expressions += [(e, ("output", k)) for k, e in node.output.items()]
        elif isinstance(node, SubgraphNode):
            expressions += [(e, ("inputs", k)) for k, e in node.inputs.items()]
        for text, path in texts:
            for field in _safe_placeholders(text):
                yield field.split(".")[0], workflow.locate("nodes", name, *path)
        for expression, path in expressions:
            for key in _expr.state_keys_read(expression):
                yield key, workflow.locate("nodes", name, *path)
    for transitions in template.transitions.values():
        for transition in transitions:
            for key in _expr.state_keys_read(transition.when or ""):
                yield key, transition.location


def _safe_placeholders(text: str) -> list[str]:
    try:
        return _templating.placeholders(text)
    except _templating.TemplateError:
        return []


def _safe_value_placeholders(value: Any) -> list[str]:
    try:
        return _templating.value_placeholders(value)
    except _templating.TemplateError:
        return []


def _node_outputs(node: NodeSpec) -> tuple[str, dict[str, str]]:
    """The YAML key of a node's state writes and the writes themselves (state key -> CEL expression)."""
    if isinstance(node, AgentNode | ToolNode):
        return "output", node.output
    if isinstance(node, SubgraphNode):
        return "outputs", node.outputs
    return "output", {}


def _check_node_writes(template: TemplateGraph) -> Iterator[Diagnostic]:
    """Output mappings name declared state keys and parse; prompt templates parse."""
    workflow = template.workflow
    spec = workflow.spec
    for name, node in spec.nodes.items():
        part, outputs = _node_outputs(node)
        for key, expression in outputs.items():
            if key not in spec.state:
                yield _unknown("state key", key, spec.state, workflow.locate("nodes", name, part), "state.unknown-key")
            try:
                _expr.check_syntax(expression)
            except _expr.ExpressionError as exc:
                where = workflow.locate("nodes", name, part, key)
                yield Diagnostic("expr.syntax", str(exc), where, "see the CEL language definition")
        if isinstance(node, AgentNode):
            for text, field in [(node.prompt, "prompt"), (node.input or "", "input")]:
                try:
                    _templating.placeholders(text)
                except _templating.TemplateError as exc:
                    yield Diagnostic("template.syntax", str(exc), workflow.locate("nodes", name, field), None)


def _check_state(template: TemplateGraph) -> Iterator[Diagnostic]:
    workflow = template.workflow
    spec = workflow.spec
    yield from _check_node_writes(template)
    writers: set[str] = set(spec.inputs)
    for node in spec.nodes.values():
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
    yield from _check_condition_types(template)


def _check_condition_types(template: TemplateGraph) -> Iterator[Diagnostic]:
    """Evaluate each `when` against typed sample values to catch operand type errors before a run."""
    spec = template.workflow.spec
    sample: dict[str, Any] = {}
    for key, declared in spec.state.items():
        if declared.type == "any":
            continue
        sample[key] = declared.default if declared.default is not None else _ZERO[declared.type]
    for transitions in template.transitions.values():
        for transition in transitions:
            if transition.when is None:
                continue
            if any(k not in sample for k in _expr.state_keys_read(transition.when)):
                continue  # an untyped key: nothing to check statically
            try:
                _expr.evaluate_condition(transition.when, sample)
            except _expr.ExpressionError as exc:
                if _expr.is_type_error(exc):
                    yield Diagnostic(
                        "expr.type",
                        f"condition has a type error: {exc}",
                        transition.location,
                        "compare values of the declared state types; conditions must give a boolean",
                    )
