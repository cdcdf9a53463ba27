"""Parallel fan-out/fan-in and map nodes: how they compile to LangGraph and how their branches run.

- **Fan-out** (``parallel: [a, b]``, or several unconditional edges): LangGraph runs every target in the same
  superstep; the join (the node with ``after: [a_last, b_last]``) is a LangGraph waiting edge from all of them, so it
  runs once, after every branch finished. Each node of a branch runs inside ``ctx.in_branch(Branch(<target>,
  "parallel"))`` (membership is static: ``agentflow.graph._branches``), so its events carry ``data.branch``.
- **Map** (``kind: map``): three LangGraph nodes. ``<map>[items]`` evaluates ``over``; its conditional edge sends
  one ``Send("<map>[item]", state + item + index)`` per item (LangGraph runs them concurrently in one superstep;
  ``max_concurrency`` caps how many work at once); each item runs the item node as branch ``<map>[<i>]``; then the
  map node itself runs (its ``node_finished`` records the results, in item order, written to ``output``).
- **State**: a key with ``reduce:`` is a LangGraph reducer channel; every node's write to it is a contribution the
  reducer combines (the run's inputs set its first value). ``ctx.state`` follows the same reducers as writes land.
- **Sandboxes**: branches share the run's sandbox (like threads in one working copy) unless the fan-out or map says
  ``sandbox: fork``: then each branch gets ``await sandbox.fork()``, closed when the branch ends.
- **Failures**: a failing branch fails the superstep, so the run (LangGraph cancels the other branches), unless the
  join or map says ``on_branch_error: continue``: then the branch's later nodes are skipped, the join sees
  ``failed_branches`` and the trace records which failed. A limit exceeded in a branch always stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.runnables import RunnableConfig

from agentflow.errors import LimitExceeded, NodeFailed, RunError
from agentflow.graph import _expr
from agentflow.graph._branches import BranchStep, branch_membership, find_fanouts
from agentflow.graph._validate_branches import FAILED_BRANCHES, node_writes
from agentflow.runtime._branches import Branch, current_branch
from agentflow.runtime._context import RunContext
from agentflow.sandboxes._base import Sandbox
from agentflow.spec._models import MapNode
from agentflow.traces._events import EventType
from agentflow.traces._payloads import ErrorData

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow
    from agentflow.runtime._nodes import Visit

NodeFunction = Callable[[dict[str, Any], RunnableConfig], Coroutine[Any, Any, Any]]
RouteFunction = Callable[[dict[str, Any], RunnableConfig], Any]

CONTRIBUTION = "__agentflow_contribution__"
"""A node's write to a key with a reducer travels as ``{CONTRIBUTION: value}``: the reducer combines it with the
current value, while a plain value (the run's inputs) sets it."""


def _combine(name: str, current: Any, value: Any) -> Any:
    if current is None and name != "last":
        if name == "append":
            return [value]
        if name == "extend":
            return list(value)
        if name == "merge":
            return dict(value)
        return value
    if name == "append":
        return [*current, value]
    if name == "extend":
        return [*current, *value]
    if name == "merge":
        return {**current, **value}
    if name == "sum":
        return current + value
    if name == "max":
        return max(current, value)
    if name == "min":
        return min(current, value)
    return value  # last


def reducer(name: str) -> Callable[[Any, Any], Any]:
    """The LangGraph reducer of ``reduce: <name>``: combines contributions, takes a plain value as it is."""

    def reduce(current: Any, write: Any) -> Any:
        if isinstance(write, dict) and write.keys() == {CONTRIBUTION}:
            return _combine(name, current, write[CONTRIBUTION])
        return write

    reduce.__name__ = f"reduce_{name}"
    return reduce


def state_annotation(python_type: Any, reduce: str | None) -> Any:
    """The type of a state key in the LangGraph schema: with its reducer when it declares one."""
    return python_type if reduce is None else Annotated[python_type, reducer(reduce)]


def reducers_of(compiled: CompiledWorkflow) -> dict[str, str]:
    """State key -> reducer name, for the keys that declare one."""
    return {key: declared.reduce for key, declared in compiled.loaded.spec.state.items() if declared.reduce}


def merge_updates(state: dict[str, Any], compiled: CompiledWorkflow, name: str, updates: Mapping[str, Any]) -> None:
    """Apply a node's updates to ``ctx.state`` the way LangGraph applies them to its channels (a map's item node
    writes no state: its updates are the item's result)."""
    wired: _Wiring | None = compiled.wiring
    if wired is None:
        state.update(updates)
        return
    if name in wired.items:
        return
    reducers = wired.reducers
    for key, value in updates.items():
        state[key] = _combine(reducers[key], state.get(key), value) if key in reducers else value


def as_contributions(updates: Any, reducers: Mapping[str, str]) -> Any:
    """A node's updates as LangGraph must get them: writes to reducer keys marked as contributions."""
    if not reducers or not isinstance(updates, dict):
        return updates
    return {key: {CONTRIBUTION: value} if key in reducers else value for key, value in updates.items()}


@dataclass
class _MapRun:
    """One visit of a map node: its items, the results so far, and the items that failed."""

    items: list[Any]
    results: dict[int, Any] = field(default_factory=lambda: {})
    failed: dict[int, str] = field(default_factory=lambda: {})
    gate: asyncio.Semaphore | None = None


@dataclass
class BranchRuns:
    """The branches of one run in flight (``ctx.branch_runs``): their Branch objects and forks, failures, maps."""

    branches: dict[str, Branch] = field(default_factory=lambda: {})
    failed: dict[str, str] = field(default_factory=lambda: {})  # branch id -> the failure
    maps: dict[str, _MapRun] = field(default_factory=lambda: {})
    locks: dict[str, asyncio.Lock] = field(default_factory=lambda: {})

    async def close(self, branch_id: str) -> None:
        """Close the fork of a branch (and of the branches inside it) when it ends."""
        for known in [b for b in self.branches if b == branch_id or b.startswith(branch_id + "/")]:
            branch = self.branches.pop(known)
            if branch.sandbox is not None:
                with contextlib.suppress(Exception):  # a fork that will not close must not hide how the branch ended
                    await branch.sandbox.close()

    async def close_all(self) -> None:
        for branch_id in list(self.branches):
            await self.close(branch_id)


def branch_runs(ctx: RunContext) -> BranchRuns:
    runs = ctx.branch_runs.get("runs")
    if not isinstance(runs, BranchRuns):
        runs = BranchRuns()
        ctx.branch_runs["runs"] = runs
    return runs


async def close_branch_sandboxes(ctx: RunContext) -> None:
    """Close every fork still open (a run that stopped inside its branches)."""
    runs = ctx.branch_runs.get("runs")
    if isinstance(runs, BranchRuns):
        await runs.close_all()


async def _fork(ctx: RunContext, parent: Sandbox) -> Sandbox:
    ctx.flush()  # forking copies the workdir outside the process
    return await parent.fork()


@dataclass(frozen=True)
class _Wiring:
    """What the compiled graph needs to know of its branches, computed once per compiled workflow."""

    membership: dict[str, tuple[BranchStep, ...]]
    fanout_sandbox: dict[str, str]  # fan-out source -> shared | fork
    join_of: dict[str, str]  # fan-out source -> its join
    joins: dict[str, tuple[str, ...]]  # join -> the fan-outs it closes
    join_targets: dict[str, frozenset[str]]  # join -> the targets (branch names) of the fan-outs it closes
    exits: dict[str, str]  # a node named in a join's `after:` -> that join
    maps: dict[str, MapNode]
    reducers: dict[str, str]  # state key -> its reducer
    items: frozenset[str]  # the item nodes of maps


def wiring(compiled: CompiledWorkflow) -> _Wiring:
    template = compiled.template
    spec = compiled.loaded.spec
    fanouts = [f for f in find_fanouts(template) if f.join is not None]
    joins: dict[str, list[str]] = {}
    for fanout in fanouts:
        assert fanout.join is not None
        joins.setdefault(fanout.join, []).append(fanout.source)
    return _Wiring(
        membership=branch_membership(template),
        fanout_sandbox={f.source: spec.nodes[f.source].sandbox for f in fanouts},
        join_of={f.source: f.join for f in fanouts if f.join is not None},
        joins={join: tuple(sources) for join, sources in joins.items()},
        join_targets={
            join: frozenset(t for f in fanouts if f.source in sources for t in f.targets)
            for join, sources in joins.items()
        },
        exits={source: join for join, sources in template.joins.items() for source in sources},
        maps={name: node for name, node in spec.nodes.items() if isinstance(node, MapNode)},
        reducers=reducers_of(compiled),
        items=frozenset(node.node for node in spec.nodes.values() if isinstance(node, MapNode)),
    )


def _map_label(name: str, part: str) -> str:
    """The LangGraph name of a map's extra nodes: ``<map>[items]`` (evaluates `over`), ``<map>[item]`` (one item)."""
    return f"{name}[{part}]"


# ---- node functions -------------------------------------------------------------------------------------------------


def wrap_node(compiled: CompiledWorkflow, name: str, inner: NodeFunction, context_key: str) -> NodeFunction:
    """The LangGraph function of node ``name``: ``inner`` inside its branch (if any), as a join (if it is one), its
    writes to reducer keys marked as contributions."""
    wired: _Wiring = compiled.wiring
    reducers = wired.reducers
    steps = wired.membership.get(name, ())
    join_sources = wired.joins.get(name, ())
    continues = compiled.loaded.spec.nodes[name].on_branch_error == "continue"

    async def run(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        if not steps:
            if join_sources:
                state = await _start_join(
                    ctx, compiled=compiled, name=name, state=state, enclosing=current_branch.get(), continues=continues
                )
            return as_contributions(await inner(state, config), reducers)
        branch = await _enter_branch(ctx, compiled, steps)
        if join_sources:  # a join inside a branch (nested fan-outs) closes the branches nested in its own
            state = await _start_join(
                ctx, compiled=compiled, name=name, state=state, enclosing=branch, continues=continues
            )
        runs = branch_runs(ctx)
        if any(branch.id == failed or branch.id.startswith(failed + "/") for failed in runs.failed):
            return {}  # the branch failed before this node (on_branch_error: continue): it does no more
        exit_join = wired.exits.get(name)
        with ctx.in_branch(branch):
            try:
                updates = await inner(state, config)
            except LimitExceeded:
                raise
            except NodeFailed as exc:
                join = wired.join_of.get(steps[-1].source)
                spec = compiled.loaded.spec
                if join is None or spec.nodes[join].on_branch_error != "continue":
                    raise
                runs.failed[branch.id] = str(exc)
                await runs.close(branch.id)
                return {}
        if exit_join is not None:
            await runs.close(branch.id)  # the branch ends here: its fork is discarded
        return as_contributions(updates, reducers)

    run.__name__ = f"node_{name}"
    return run


def wrap_route(compiled: CompiledWorkflow, name: str, inner: RouteFunction, context_key: str) -> RouteFunction:
    """A branch node's conditional edge runs in its branch too (its ``route`` event carries the branch id)."""
    steps = compiled.wiring.membership.get(name, ())
    if not steps:
        return inner

    def route(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        branch = _known_branch(ctx, compiled, steps)
        if branch is None:
            return inner(state, config)
        with ctx.in_branch(branch):
            return inner(state, config)

    return route


def _branch_key(compiled: CompiledWorkflow, parent: Branch | None, target: str) -> str:
    """The id of branch ``target`` under ``parent``: how ``BranchRuns`` knows it."""
    return target if parent is None else f"{parent.id}/{target}"


def _known_branch(ctx: RunContext, compiled: CompiledWorkflow, steps: tuple[BranchStep, ...]) -> Branch | None:
    runs = branch_runs(ctx)
    branch = current_branch.get()
    for step in steps:
        found = runs.branches.get(_branch_key(compiled, branch, step.target))
        # a branch closed already (its fork discarded) is still the branch: only its id counts here
        branch = found if found is not None else Branch(name=step.target, kind="parallel", parent=branch)
    return branch


def _in_branch_of(compiled: CompiledWorkflow, name: str, inner: NodeFunction, context_key: str) -> NodeFunction:
    """``inner`` (a map's extra LangGraph nodes) inside the branches the map node ``name`` is in."""
    steps = compiled.wiring.membership.get(name, ())
    if not steps:
        return inner

    async def run(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        branch = await _enter_branch(ctx, compiled, steps)
        with ctx.in_branch(branch):
            return await inner(state, config)

    run.__name__ = inner.__name__
    return run


async def _enter_branch(ctx: RunContext, compiled: CompiledWorkflow, steps: tuple[BranchStep, ...]) -> Branch:
    """The Branch objects of a node's branches (outermost first), made when the branch's first node starts."""
    runs = branch_runs(ctx)
    branch = current_branch.get()  # a subgraph inside a branch of its parent nests under it
    for step in steps:
        parent = branch
        key = _branch_key(compiled, parent, step.target)
        lock = runs.locks.setdefault(key, asyncio.Lock())
        async with lock:
            known = runs.branches.get(key)
            if known is None:
                known = Branch(name=step.target, kind="parallel", parent=parent)
                if compiled.wiring.fanout_sandbox.get(step.source) == "fork":
                    forked_from = ctx.sandbox if parent is None else parent.effective_sandbox(ctx.sandbox)
                    known.sandbox = await _fork(ctx, forked_from)
                runs.branches[key] = known
        branch = known
    assert branch is not None
    return branch


async def _start_join(
    ctx: RunContext,
    *,
    compiled: CompiledWorkflow,
    name: str,
    state: dict[str, Any],
    enclosing: Branch | None,
    continues: bool,
) -> dict[str, Any]:
    """Before a join runs: its branches are over (close what is left of them); with ``on_branch_error:
    continue`` the join sees (and the trace records) the branches that failed."""
    runs = branch_runs(ctx)
    fanout_targets = compiled.wiring.join_targets.get(name, frozenset())
    prefix = "" if enclosing is None else enclosing.id + "/"
    mine = {prefix + target for target in fanout_targets}
    failed = sorted(branch_id for branch_id in runs.failed if branch_id in mine)
    for branch_id in mine:
        await runs.close(branch_id)  # a loop back to the fan-out starts its branches (and forks) afresh
    if not continues:
        return state
    if failed:
        label = compiled.prefix + name
        message = f"branches {', '.join(failed)} failed; join {label!r} goes on (on_branch_error: continue)"
        ctx.emit(EventType.ERROR, node=label, data=ErrorData(kind="BranchesFailed", message=message))
    for branch_id in failed:
        runs.failed.pop(branch_id, None)  # a loop back to the fan-out runs the branches afresh
    return {**state, FAILED_BRANCHES: failed}


# ---- map ------------------------------------------------------------------------------------------------------------


def map_dispatch(compiled: CompiledWorkflow, name: str, context_key: str) -> NodeFunction:
    """``<map>[items]``: evaluate ``over``; a value that is not a list fails the run (recorded, the agent's)."""
    node = compiled.wiring.maps[name]
    label = compiled.prefix + name

    async def dispatch(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        try:
            items = _expr.evaluate(node.over, {"state": dict(state)})
        except RunError as exc:
            _record_map_error(ctx, label, f"map {label!r}: `over` ({node.over}) failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - an expression error is the workflow's, recorded as such
            _record_map_error(ctx, label, f"map {label!r}: `over` ({node.over}) failed: {exc}")
        if not isinstance(items, list):
            kind = _expr.type_name(items)
            _record_map_error(ctx, label, f"map {label!r}: `over` ({node.over}) gave {kind}, not a list")
        gate = asyncio.Semaphore(node.max_concurrency)
        branch_runs(ctx).maps[_map_key(compiled, name)] = _MapRun(items=list(items), gate=gate)
        return {}

    dispatch.__name__ = f"map_{name}_items"
    return dispatch


class MapOverError(RunError):
    """A map's ``over`` did not give a list: the workflow's (the agent's) failure, not the infrastructure's."""


def _record_map_error(ctx: RunContext, label: str, message: str) -> None:
    ctx.emit(EventType.ERROR, node=label, data=ErrorData(kind="MapOverError", message=message))
    ctx.flush()
    raise MapOverError(message)


def _map_key(compiled: CompiledWorkflow, name: str) -> str:
    enclosing = current_branch.get()
    return f"{'' if enclosing is None else enclosing.id + '/'}{compiled.prefix}{name}"


def map_sends(compiled: CompiledWorkflow, name: str, context_key: str) -> RouteFunction:
    """The conditional edge after ``<map>[items]``: one LangGraph ``Send`` per item, or straight on when none."""
    from langgraph.types import Send

    def sends(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        run = branch_runs(ctx).maps[_map_key(compiled, name)]
        if not run.items:
            return name
        return [
            Send(_map_label(name, "item"), {**state, "item": item, "index": index})
            for index, item in enumerate(run.items)
        ]

    return sends


def map_item(compiled: CompiledWorkflow, name: str, context_key: str) -> NodeFunction:
    """``<map>[item]``: one item, as branch ``<map>[<index>]``, through the item node's executor."""
    from agentflow.runtime import _nodes

    node = compiled.wiring.maps[name]
    item_node = compiled.loaded.spec.nodes[node.node]
    _, result_keys = node_writes(item_node)

    async def run_item(state: dict[str, Any], config: RunnableConfig) -> Any:
        ctx: RunContext = config.get("configurable", {})[context_key]
        run = branch_runs(ctx).maps[_map_key(compiled, name)]
        index = int(state["index"])
        assert run.gate is not None
        async with run.gate:
            parent = current_branch.get()
            branch = Branch(name=f"{name}[{index}]", kind="map", parent=parent)
            if node.sandbox == "fork":
                branch.sandbox = await _fork(ctx, ctx.current_sandbox())
            try:
                with ctx.in_branch(branch):
                    updates = await _nodes.execute_node(ctx, compiled, node.node, state)
            except LimitExceeded:
                raise
            except NodeFailed as exc:
                if node.on_branch_error != "continue":
                    raise
                run.results[index], run.failed[index] = None, str(exc)
                return {}
            finally:
                if branch.sandbox is not None:
                    with contextlib.suppress(Exception):
                        await branch.sandbox.close()
        run.results[index] = updates[result_keys[0]] if len(result_keys) == 1 else dict(updates)
        return {}

    run_item.__name__ = f"map_{name}_item"
    return run_item


def collect_map(visit: Visit, node: MapNode) -> dict[str, Any]:
    """The map node's own visit, after its items: the results in item order, for its ``output`` key."""
    runs = branch_runs(visit.ctx)
    run = runs.maps.pop(_map_key(visit.compiled, visit.name), None)
    if run is None:
        return {node.output: []}
    if run.failed:
        failed = ", ".join(f"{visit.label}[{index}]" for index in sorted(run.failed))
        message = f"map items {failed} failed; their results are null (on_branch_error: continue)"
        visit.ctx.emit(EventType.ERROR, node=visit.label, data=ErrorData(kind="BranchesFailed", message=message))
    return {node.output: [run.results.get(index) for index in range(len(run.items))]}


# ---- graph wiring ---------------------------------------------------------------------------------------------------


def handles_transitions(compiled: CompiledWorkflow, name: str) -> bool:
    """Whether :func:`add_branch_edges` wires this node's ways out (a fan-out, a branch's exit, a map)."""
    template = compiled.template
    return name in template.fanouts or name in compiled.wiring.exits or name in compiled.wiring.maps


def add_branch_nodes(builder: Any, compiled: CompiledWorkflow, context_key: str) -> None:
    """The extra LangGraph nodes of map nodes."""
    for name in compiled.wiring.maps:
        dispatch = _in_branch_of(compiled, name, map_dispatch(compiled, name, context_key), context_key)
        builder.add_node(_map_label(name, "items"), dispatch)
        item = _in_branch_of(compiled, name, map_item(compiled, name, context_key), context_key)
        builder.add_node(_map_label(name, "item"), item)


def add_branch_edges(
    builder: Any,
    compiled: CompiledWorkflow,
    route: Callable[[str], RouteFunction],
    entry: Callable[[str], str],
    context_key: str,
) -> None:
    """Fan-outs (one edge per target), joins (a LangGraph waiting edge from every branch's exit), and maps."""
    template = compiled.template
    for source, targets in template.fanouts.items():
        for target in targets:
            builder.add_edge(source, entry(target))
    for join, sources in template.joins.items():
        builder.add_edge(list(sources), entry(join))
    for name in compiled.wiring.maps:
        items, item = _map_label(name, "items"), _map_label(name, "item")
        sends = wrap_route(compiled, name, map_sends(compiled, name, context_key), context_key)
        builder.add_conditional_edges(items, sends, [item, name])
        builder.add_edge(item, name)
        transitions = template.transitions[name]
        if len(transitions) == 1 and transitions[0].when is None:
            builder.add_edge(name, entry(transitions[0].target))
        else:
            ways: dict[Hashable, str] = {t.target: entry(t.target) for t in transitions}
            builder.add_conditional_edges(name, route(name), ways)


def entry_of(compiled: CompiledWorkflow, name: str) -> str:
    """The LangGraph node an edge to ``name`` goes to: a map is entered through its ``[items]`` node."""
    return _map_label(name, "items") if name in compiled.wiring.maps else name
