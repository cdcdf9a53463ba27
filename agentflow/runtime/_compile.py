"""Compile a validated template graph to a LangGraph StateGraph, plus its tools and reward hook bindings."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from pydantic import TypeAdapter, ValidationError

from agentflow.errors import ConfigError, Diagnostic, GraphValidationError, PluginLoadError, SpecError
from agentflow.graph._build import TemplateGraph, build_template_graph
from agentflow.graph._validate import validate_template
from agentflow.models import model_providers
from agentflow.models._scripted import resolve_script_path
from agentflow.rewards import RewardHook, reward_hooks
from agentflow.routing._router import QTableRouter, QTableStore, RoutingMode, routing_hash
from agentflow.runtime import _chains, _nodes, _parallel
from agentflow.runtime._best_of import best_of_hooks
from agentflow.runtime._context import RunContext
from agentflow.runtime._hooks import RewardEngine
from agentflow.spec._loader import LoadedWorkflow, load_workflow
from agentflow.spec._models import END, AgentNode, RouterNode, StateKey, SubgraphNode
from agentflow.spec._templating import Quoting
from agentflow.tools import resolve_tool, tool_registry
from agentflow.tools._base import Tool

_PYTHON_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
# Built once: a TypeAdapter builds its validator when made, which costs more than checking every input of a run.
_VALIDATORS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(python) for name, python in _PYTHON_TYPES.items()}
CONTEXT_KEY = "agentflow_run"


class InstalledCheckers:
    """The `Checkers` validation gets for a run: the installed model providers, tools and reward hooks."""

    def model_providers(self) -> list[str]:
        return model_providers.names()

    def builtin_tools(self) -> list[str]:
        return tool_registry.names()

    def tool_quoting(self, name: str) -> Mapping[str, Quoting] | None:
        return tool_registry.get(name).quoting if name in tool_registry else None

    def reward_hooks(self) -> list[str]:
        return reward_hooks.names()

    def resolve_script(self, script: str, base: Path) -> None:
        resolve_script_path(script, base)


@dataclass
class CompiledWorkflow:
    """A workflow ready to run any number of times: the LangGraph graph, its tools, hooks and child workflows."""

    loaded: LoadedWorkflow
    template: TemplateGraph
    graph: Any  # langgraph CompiledStateGraph: straight runs of nodes as one LangGraph node each (see `_chains`)
    tools: dict[str, Tool]
    hooks: RewardEngine
    recursion_limit: int
    prefix: str = ""
    children: dict[str, CompiledWorkflow] = field(default_factory=lambda: {})
    diagnostics: list[Diagnostic] = field(default_factory=lambda: [])  # the warnings validation gave
    routers: dict[str, QTableRouter] = field(default_factory=lambda: {})  # the `policy: qtable` routers by node
    offers: dict[str, QTableRouter] = field(default_factory=lambda: {})  # agent -> the a_priori router after it
    wiring: Any = None  # its fan-outs, joins and maps (`_parallel.wiring`), once compiled
    best_of_hooks: dict[str, RewardHook] = field(default_factory=lambda: {})  # node -> its `best_of.by` hook
    build_graph: Callable[[bool], Any] | None = None  # the LangGraph graph, stepwise or not (set by compile)
    _stepwise_graph: Any = None

    @property
    def stepwise_graph(self) -> Any:
        """The LangGraph graph with one LangGraph node per node: what a run saving a checkpoint after every node
        (and its resume) runs. Built on first use; the same graph as ``graph`` when the workflow has no chains."""
        if self._stepwise_graph is None:
            assert self.build_graph is not None, "compile_workflow sets build_graph"
            self._stepwise_graph = self.build_graph(True) if _chains.linear_chains(self) else self.graph
        return self._stepwise_graph

    def bind_routers(self, store: QTableStore | None, mode: RoutingMode | None = None) -> None:
        """Give the Q-table routers (of this workflow and its subgraphs) their store and an override of `learn`.

        Raises:
            ConfigError: the store's table of a router was learned on another version of the workflow.
        """
        for router in self.routers.values():
            if store is not None:
                router.store = store
                router.check_version()  # a table of another workflow version is refused before the run starts
            if mode is not None:
                router.mode = mode
        for child in self.children.values():
            child.bind_routers(store, mode)

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    def initial_state(self, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, then the workflow's `inputs`, then ``inputs``; values are checked against the declared types."""
        spec = self.loaded.spec
        state = {key: declared.default for key, declared in spec.state.items()}
        merged = {**spec.inputs, **(inputs or {})}
        for key, value in merged.items():
            if key not in spec.state:
                raise ConfigError(
                    f"input {key!r} is not a state key of {spec.name!r}",
                    fix=f"state keys: {', '.join(spec.state) or 'none'}",
                )
            state[key] = _check_type(key, spec.state[key], value)
        return state

    def invoke_config(self, ctx: RunContext) -> RunnableConfig:
        return {"configurable": {CONTEXT_KEY: ctx}, "recursion_limit": self.recursion_limit}


def _check_type(key: str, declared: StateKey, value: Any) -> Any:
    if declared.type == "any" or value is None:
        return value
    try:
        return _VALIDATORS[declared.type].validate_python(value)
    except ValidationError:
        raise ConfigError(
            f"input {key!r} should be {declared.type}, got {type(value).__name__} {value!r}",
            fix=f"pass a {declared.type} value for {key}",
        ) from None


def compile_workflow(
    workflow: LoadedWorkflow | str | Path, *, prefix: str = "", _parents: tuple[Path, ...] = ()
) -> CompiledWorkflow:
    """Load (if needed), validate and compile a workflow.

    Raises:
        SpecError: the file is malformed.
        GraphValidationError: a static rule fails; ``diagnostics`` lists every finding.
        ToolLoadError, UnknownBackendError: a tool or hook cannot be loaded.
    """
    loaded = workflow if isinstance(workflow, LoadedWorkflow) else load_workflow(workflow)
    template = build_template_graph(loaded)
    spec = loaded.spec
    # Tools first: their parameters are what tool nodes' `args` are validated against.
    tools: dict[str, Tool] = {}
    unloadable: list[ConfigError] = []
    for index, ref in enumerate(spec.tool_refs()):
        try:
            tools[spec.tool_name(ref)] = resolve_tool(ref.ref, base_dir=loaded.base_dir, host=ref.host)
        except PluginLoadError as exc:  # validation reports most of these; the rest name the line that names it
            where = loaded.locate("tools", index)
            unloadable.append(GraphValidationError([Diagnostic("tool.plugin", exc.message, where, exc.fix)]))
        except ConfigError as exc:  # raised below if validation finds nothing else
            unloadable.append(exc)
    diagnostics = validate_template(
        template,
        checkers=InstalledCheckers(),
        tool_parameters={name: tool.arguments_model for name, tool in tools.items()},
    )
    if any(d.severity == "error" for d in diagnostics):
        raise GraphValidationError(diagnostics)
    if unloadable:
        raise unloadable[0]
    children: dict[str, CompiledWorkflow] = {}
    resolved = loaded.path.resolve()
    for name, node in spec.nodes.items():
        if isinstance(node, SubgraphNode):
            # The child is loaded by the path as the user wrote it (relative to this file), so its diagnostics name
            # the file the way the user knows it; the resolved path only detects a cycle of includes.
            child_path = loaded.base_dir / node.workflow
            if child_path.resolve() in (*_parents, resolved):
                raise SpecError(
                    f"subgraph {name!r} includes {node.workflow}, which includes this workflow again",
                    location=loaded.locate("nodes", name, "workflow"),
                    fix="break the cycle of subgraph files",
                )
            children[name] = compile_workflow(child_path, prefix=f"{prefix}{name}/", _parents=(*_parents, resolved))
    state_type = TypedDict(  # type: ignore[misc]
        f"{spec.name}_state",
        {key: _parallel.state_annotation(_PYTHON_TYPES.get(k.type, Any), k.reduce) for key, k in spec.state.items()},
    )
    compiled = CompiledWorkflow(
        loaded=loaded,
        template=template,
        graph=None,
        tools=tools,
        hooks=RewardEngine(spec, loaded.base_dir),
        recursion_limit=sum(template.max_visits(n) for n in spec.nodes) * 2 + 10,
        prefix=prefix,
        children=children,
        diagnostics=diagnostics,
        best_of_hooks=best_of_hooks(spec, loaded.base_dir),
    )
    compiled.routers, compiled.offers = _qtable_routers(compiled)
    compiled.wiring = _parallel.wiring(compiled)
    compiled.build_graph = lambda stepwise: _build_graph(compiled, state_type, stepwise=stepwise)
    compiled.graph = compiled.build_graph(False)
    return compiled


def _build_graph(compiled: CompiledWorkflow, state_type: Any, *, stepwise: bool) -> Any:
    """The LangGraph graph of a compiled workflow: its straight runs of nodes as one LangGraph node each (see
    `_chains`), or with ``stepwise`` one LangGraph node, so one superstep and one checkpoint, per node."""
    from langgraph.graph import END as LANGGRAPH_END
    from langgraph.graph import START, StateGraph

    spec, template = compiled.loaded.spec, compiled.template
    chains = {} if stepwise else _chains.linear_chains(compiled)
    langgraph_node = {member: head for head, members in chains.items() for member in members}
    inside = {member for members in chains.values() for member in members[:-1]}  # ways out within the chain
    builder: Any = StateGraph(state_type)  # the state type is built at run time, so its generics say nothing
    for name in spec.nodes:
        if name in chains:
            builder.add_node(name, _chains.chain_function(compiled, chains[name], CONTEXT_KEY))
        elif name not in langgraph_node:
            builder.add_node(name, _parallel.wrap_node(compiled, name, _node_function(compiled, name), CONTEXT_KEY))
    _parallel.add_branch_nodes(builder, compiled, CONTEXT_KEY)

    def entry(target: str) -> str:
        return LANGGRAPH_END if target == END else _parallel.entry_of(compiled, target)

    builder.add_edge(START, entry(spec.start))
    for name, transitions in template.transitions.items():
        if name in inside or _parallel.handles_transitions(compiled, name):
            continue
        source = langgraph_node.get(name, name)  # a chain's ways out leave from the chain's LangGraph node
        if len(transitions) == 1 and transitions[0].when is None and name not in compiled.routers:
            builder.add_edge(source, entry(transitions[0].target))
        else:
            targets: dict[Hashable, str] = {t.target: entry(t.target) for t in transitions}
            builder.add_conditional_edges(source, _route_function(compiled, name), targets)
    _parallel.add_branch_edges(builder, compiled, lambda name: _route_function(compiled, name), entry, CONTEXT_KEY)
    return builder.compile()


def _qtable_routers(compiled: CompiledWorkflow) -> tuple[dict[str, QTableRouter], dict[str, QTableRouter]]:
    spec = compiled.loaded.spec
    agents = [name for name, node in spec.nodes.items() if isinstance(node, AgentNode)]
    routers: dict[str, QTableRouter] = {}
    offers: dict[str, QTableRouter] = {}
    for name, node in spec.nodes.items():
        if not isinstance(node, RouterNode) or node.policy != "qtable":
            continue
        routers[name] = QTableRouter(
            workflow=spec.name,
            template_hash=routing_hash(compiled.loaded),
            name=name,
            label=compiled.prefix + name,
            settings=node.qtable,
            candidates=node.candidates,
            agents=agents,
            start=spec.start,
            prefix=compiled.prefix,
        )
        if node.qtable.mode == "a_priori":
            for source, transitions in compiled.template.transitions.items():
                # an agent whose only way out leads to this router names its successor itself
                if source in agents and [t.target for t in transitions] == [name]:
                    offers[source] = routers[name]
    return routers, offers


NodeFunction = Callable[[dict[str, Any], RunnableConfig], Coroutine[Any, Any, Any]]


def _node_function(compiled: CompiledWorkflow, name: str) -> NodeFunction:
    async def run_node(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[CONTEXT_KEY]
        return await _nodes.execute_node(ctx, compiled, name, state)

    run_node.__name__ = f"node_{name}"
    return run_node


def _route_function(compiled: CompiledWorkflow, name: str) -> Callable[[dict[str, Any], RunnableConfig], Any]:
    def route(state: dict[str, Any], config: RunnableConfig) -> str:
        ctx: RunContext = config.get("configurable", {})[CONTEXT_KEY]
        return _nodes.choose_next(ctx, compiled, name, state)

    return _parallel.wrap_route(compiled, name, route, CONTEXT_KEY)
