"""Rebuilding a sandbox to its state at a point of a recorded run, by running the recorded tool calls again.

A sandbox dies with its run; what a run's tools made of the workspace is only known through the tool calls its
trace recorded. Running those calls again, in order, in a fresh sandbox holding the workflow's files gives the
workspace they left. ``agentflow resume`` rebuilds the sandbox of the completed visits this way, ``agentflow fork``
the sandbox of the prefix it shares with its parent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentflow.runtime import CompiledWorkflow
from agentflow.sandboxes import ExecObserver, Sandbox
from agentflow.tools import Tool, ToolContext
from agentflow.traces import Event, EventType


@dataclass
class Rebuilt:
    """What a rebuild ran: how many recorded tool calls ran again, and the seqs of those whose result differed."""

    tool_calls: int = 0
    differed: list[int] = field(default_factory=lambda: [])


async def rebuild_sandbox(
    sandbox: Sandbox,
    compiled: CompiledWorkflow,
    events: Sequence[Event],
    *,
    run_id: str,
    state: Mapping[str, Any],
    observer_of: Callable[[Event], ExecObserver | None] | None = None,
) -> Rebuilt:
    """Run every tool call of ``events`` that has a recorded result again in ``sandbox``, in trace order.

    Args:
        sandbox: a fresh sandbox holding the workflow's files.
        compiled: the workflow, whose tools (and its subgraphs') run the calls.
        events: the recorded events up to the point to rebuild (blob references resolved).
        run_id: the run the tools are told they run in.
        state: the state the tools are given.
        observer_of: for a recorded call, what observes the sandbox commands running it again (resume records
            them in the trace), or None.

    A call of a tool the workflow no longer has is skipped; a result that differs from the recorded one is counted
    in ``differed`` and the rebuild goes on (the caller reports it).
    """
    tools = dict(_all_tools(compiled))
    results = {event.parent: event for event in events if event.type is EventType.TOOL_RESULT}
    rebuilt = Rebuilt()
    for event in events:
        recorded = results.get(event.seq)
        tool = tools.get(str(event.data.get("tool")))
        if event.type is not EventType.TOOL_CALL or recorded is None or tool is None:
            continue
        tool_ctx = ToolContext(
            sandbox=sandbox,
            run_id=run_id,
            node=event.node or "",
            state=dict(state),
            on_exec=observer_of(event) if observer_of is not None else None,
        )
        outcome = await tool.invoke(tool_ctx, str(event.data.get("arguments") or "{}"))
        rebuilt.tool_calls += 1
        if outcome.ok != recorded.data.get("ok") or outcome.content != recorded.data.get("content"):
            rebuilt.differed.append(event.seq)
    return rebuilt


def _all_tools(compiled: CompiledWorkflow) -> Iterator[tuple[str, Tool]]:
    for child in compiled.children.values():
        yield from _all_tools(child)
    yield from compiled.tools.items()  # last, so the top workflow's tools win a name clash
