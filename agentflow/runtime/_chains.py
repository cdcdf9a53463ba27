"""Straight runs of nodes executed as one LangGraph node: one superstep per chain instead of one per node.

Why: a LangGraph superstep (planning its tasks, running them under their config and callbacks, applying their writes
to the channels, an in-memory checkpoint) costs about as much as everything agentflow itself does for a node (its
events, limits, tool call and rewards), so on a straight run of cheap nodes half the time went to supersteps that
decide nothing: the next node is already known.

A **chain** is a maximal run ``a -> b -> ... -> z`` where each node but the last has exactly one way out, an
unconditional transition to the next, and each node but the first has exactly one way in, from the one before it
(so nothing else can enter the chain in the middle, and the start node can only head one). Nodes with their own
wiring never join one: routers (their transitions are decisions), maps and their item nodes, fan-out sources, joins
and every node inside a parallel branch (branches run concurrently in one superstep, which a chain would serialise).

Inside a chain every node is still its own visit, through the same :func:`agentflow.runtime._nodes.execute_node` as
a lone node: its events and their write-ahead flushes, loop bound, step limit, timeout, retries, rewards and
``ctx.state``. The chain reads each node's state from a local copy that it updates the way LangGraph would (reducers
included) and hands LangGraph the final value of every key its nodes wrote, as plain values that set the channels:
the chain is the only task of its superstep, so setting a channel to what the reducers produced step by step is
exactly what applying each node's contribution in turn would give.

Runs that save a LangGraph checkpoint after every node (``--resumable``) and their resumes use the stepwise graph
(:attr:`CompiledWorkflow.stepwise_graph`), one node per superstep, so a checkpoint still follows every node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig

from agentflow.runtime import _nodes, _parallel
from agentflow.runtime._context import RunContext
from agentflow.spec._models import END, MapNode, RouterNode

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow


def linear_chains(compiled: CompiledWorkflow) -> dict[str, tuple[str, ...]]:
    """The workflow's chains of two or more nodes, by their first node (the chain's LangGraph node name)."""
    template, spec, wired = compiled.template, compiled.loaded.spec, compiled.wiring
    fanout_targets = {target for targets in template.fanouts.values() for target in targets}

    def chainable(name: str) -> bool:
        node = spec.nodes[name]
        return not (
            isinstance(node, RouterNode | MapNode)
            or name in compiled.routers
            or name in wired.membership
            or name in wired.joins
            or name in wired.items
            or name in fanout_targets
            or _parallel.handles_transitions(compiled, name)
        )

    ways_in = Counter(t.target for transitions in template.transitions.values() for t in transitions)
    following: dict[str, str] = {}  # node -> the node the chain continues with
    for name, transitions in template.transitions.items():
        if len(transitions) != 1 or transitions[0].when is not None:
            continue
        target = transitions[0].target
        if target not in (END, name, spec.start) and ways_in[target] == 1 and chainable(name) and chainable(target):
            following[name] = target
    continued = set(following.values())
    chains: dict[str, tuple[str, ...]] = {}
    for head in following:
        if head in continued:
            continue  # a chain's later node (or part of a cycle nothing enters: such nodes stay on their own)
        members = [head]
        while members[-1] in following:
            members.append(following[members[-1]])
        chains[head] = tuple(members)
    return chains


def chain_function(compiled: CompiledWorkflow, members: tuple[str, ...], context_key: str) -> _parallel.NodeFunction:
    """The LangGraph function of one chain: its nodes in turn, then the final value of every key they wrote."""

    async def run_chain(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx: RunContext = config.get("configurable", {})[context_key]
        local = dict(state)
        written: set[str] = set()
        for name in members:
            updates: Mapping[str, Any] = await _nodes.execute_node(ctx, compiled, name, local)
            _parallel.merge_updates(local, compiled, name, updates)
            written.update(updates)
        # Plain values set a reducer channel (see `_parallel.reducer`): `local` already holds what they combined to.
        return {key: local[key] for key in written}

    run_chain.__name__ = f"chain_{members[0]}_to_{members[-1]}"
    return run_chain
