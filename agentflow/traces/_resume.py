"""``agentflow resume RUN_ID``: continue an interrupted run from its last LangGraph checkpoint.

The resumed run keeps its run id and its trace: a ``run_resumed`` event follows the last complete event the killed
process wrote (the hash chain goes on through it, so the whole trace still verifies), then the run goes on and ends
with ``run_finished`` as usual. Nothing before the marker is changed; an incomplete last line left by a writer
killed mid-write is the only thing removed, and its bytes are kept as a blob named in the marker.

What the run continues from:

- **state**: the LangGraph checkpoint saved after the last node that completed (``thread_id`` = the run id).
  Nodes run one per LangGraph step here, so that checkpoint's ``step`` is the number of completed top-level visits;
  the visit that was running when the process died runs again from its start.
- **model calls**: the responses the killed process already received for the visit that runs again are served from
  the trace (matched by the hash of the request content, in order), so no answered call is repeated. A scripted
  model continues from its position in its script.
- **sandbox**: the old sandbox died with its process. A fresh one is built from the workflow's files, then every
  tool call of the completed visits is run again in it, in order, so the workspace holds what those calls made of
  it; the marker counts these calls and lists the seq of any whose result differs from the recorded one. Each
  command the rebuild ran is recorded right after the marker as a `sandbox_exec` with `by: "resume"` (a replay,
  which rebuilds nothing, leaves them out of the comparison).
- **counters**: visits, steps, model calls and tokens of the completed visits, so loop bounds and limits hold over
  the whole run.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.errors import ConfigError, TraceError
from agentflow.models._base import Message, Model, ModelResponse, ModelSettings
from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import request_hash
from agentflow.traces._langgraph_checkpoints import open_checkpointer
from agentflow.traces._protocol import Recorder, Store

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow
    from agentflow.runtime._context import RunContext
    from agentflow.runtime._run import RunResult
    from agentflow.sandboxes._base import ExecResult
    from agentflow.tools._base import ExecObserver, Tool
    from agentflow.traces._protocol import Trace


async def resume_run(store: Store, run_id: str, *, workflow: str | Path | None = None) -> RunResult:
    """Continue an interrupted resumable run until it ends; return how it ended.

    Args:
        store: the store holding the run (and its LangGraph checkpoints).
        run_id: the run's id or a unique prefix.
        workflow: the workflow file; by default the one the run recorded. Its template hash must be the recorded
            one: a LangGraph checkpoint only fits the graph it was saved from.

    Raises:
        TraceError: no such run, the run finished or is still running, its trace is damaged, or it has no
            LangGraph checkpoint (it was not started with ``--resumable``).
        ConfigError: the workflow file is gone, invalid, or changed since the run started.
    """
    from agentflow.runtime._compile import compile_workflow
    from agentflow.runtime._run import run_workflow
    from agentflow.traces._base import check_reopenable

    trace = store.load_trace(run_id)
    check_reopenable(trace, None, (None, None))  # the store checks the process again when it reopens the run
    started = next((e.data for e in trace.events if e.type is EventType.RUN_STARTED), None)
    if started is None:
        raise TraceError(f"run {trace.run_id} has no run_started event; there is nothing to resume")
    path = Path(workflow) if workflow is not None else Path(str(started.get("workflow_file", "")))
    if not path.is_file():
        raise ConfigError(f"the workflow file of run {trace.run_id} is gone: {path}", fix="pass --workflow FILE")
    compiled = compile_workflow(path)
    if started.get("template_hash") != compiled.loaded.template_hash:
        raise ConfigError(
            f"{path} changed since run {trace.run_id} started (template hash {str(started.get('template_hash'))[:12]}"
            f" -> {compiled.loaded.template_hash[:12]}); its LangGraph checkpoint only fits the workflow it ran",
            fix="restore the workflow file the run started with, or start a new run",
        )
    async with open_checkpointer(store) as saver:
        graph = compiled.graph.copy(update={"checkpointer": saver})
        snapshot = await graph.aget_state({"configurable": {"thread_id": trace.run_id}})
        if snapshot.created_at is None:
            raise TraceError(
                f"run {trace.run_id} has no LangGraph checkpoint in {store.location}: only runs started with "
                "--resumable can be resumed"
            )
        point = ResumePoint.from_trace(
            trace, step=int(snapshot.metadata.get("step", -1)), state=dict(snapshot.values), config=snapshot.config
        )
        recorded_inputs = started.get("inputs")
        state_keys = compiled.loaded.spec.state
        inputs = {
            k: v for k, v in (recorded_inputs if isinstance(recorded_inputs, dict) else {}).items() if k in state_keys
        }
        override = started.get("model_override")
        sandbox_info = started.get("sandbox")
        backend = sandbox_info.get("backend") if isinstance(sandbox_info, dict) else None
        return await run_workflow(
            compiled,
            inputs=inputs,
            model=override if isinstance(override, str) else None,
            sandbox=backend if isinstance(backend, str) else None,
            store=store,
            checkpointer=saver,
            resume=point,
        )


@dataclass
class ResumePoint:
    """Where an interrupted run continues: the trace up to its last completed visit and the checkpointed state."""

    trace: Trace
    step: int
    state: dict[str, Any]
    checkpoint_id: str | None
    cut_seq: int  # the last event of the completed visits; later events belong to the visit that runs again
    prior_duration_s: float
    visits: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    model_calls: int = 0
    tokens: int = 0
    served: dict[str, deque[dict[str, Any]]] = field(default_factory=lambda: {})
    answered: Counter[str] = field(default_factory=Counter)  # model responses received so far, per model id
    served_count: int = 0

    @classmethod
    def from_trace(cls, trace: Trace, *, step: int, state: dict[str, Any], config: Any) -> ResumePoint:
        """Split the trace at the checkpoint: completed visits before ``cut_seq``, the interrupted one after."""
        events = [_resolved(trace, event) for event in trace.events]
        finished = [
            e
            for e in events
            if e.type is EventType.NODE_FINISHED and e.data.get("status") == "ok" and "/" not in (e.node or "")
        ]
        if step > len(finished):
            raise TraceError(
                f"the LangGraph checkpoint of run {trace.run_id} is {step} nodes in, but its trace records only "
                f"{len(finished)} finished nodes: the trace lost events, so the run is not resumed"
            )
        anchor = finished[step - 1].seq if step >= 1 else 0
        rerun = next(
            (e for e in events if e.seq > anchor and e.type is EventType.NODE_STARTED and "/" not in (e.node or "")),
            None,
        )
        cut = rerun.seq - 1 if rerun is not None else events[-1].seq
        configurable = config.get("configurable", {}) if isinstance(config, dict) else {}
        point = cls(
            trace=trace,
            step=step,
            state=state,
            checkpoint_id=configurable.get("checkpoint_id"),
            cut_seq=cut,
            prior_duration_s=_elapsed(events),
        )
        responses = {e.parent: e for e in events if e.type is EventType.MODEL_RESPONSE}
        seen_visits: set[tuple[str, int]] = set()
        for event in events:
            if event.type is EventType.MODEL_REQUEST:
                reply = responses.get(event.seq)
                if reply is None:
                    continue
                point.answered[str(event.data.get("model"))] += 1
                if event.seq > cut:
                    point.served.setdefault(str(event.data.get("request_hash")), deque()).append(dict(reply.data))
            if event.seq > cut:
                continue
            if event.type is EventType.NODE_STARTED and event.node is not None:
                visit = int(event.data.get("visit") or 1)
                point.visits[event.node] = max(point.visits[event.node], visit)
                seen_visits.add((event.node, visit))
            elif event.type is EventType.MODEL_REQUEST:
                point.model_calls += 1
            elif event.type is EventType.MODEL_RESPONSE:
                usage = event.data.get("usage") or {}
                point.tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        point.steps = len(seen_visits)
        return point

    def restore(self, ctx: RunContext) -> None:
        """Give a new run context the run's state, events and counters as of the checkpoint."""
        ctx.state.clear()
        ctx.state.update(self.state)
        ctx.events.extend(self.trace.events)
        ctx.visits.update(self.visits)
        ctx.limits.steps, ctx.limits.model_calls, ctx.limits.tokens = self.steps, self.model_calls, self.tokens
        ctx.resume = self

    async def begin(self, ctx: RunContext, compiled: CompiledWorkflow, recorder: Recorder) -> None:
        """Rebuild the sandbox from the completed visits' tool calls, then record ``run_resumed``."""
        import agentflow

        execs: list[tuple[Event, dict[str, Any]]] = []
        replayed, differed = await self._restore_sandbox(ctx, compiled, execs)
        ctx.emit(
            EventType.RUN_RESUMED,
            data={
                "checkpoint_id": self.checkpoint_id,
                "checkpoint_step": self.step,
                "resumed_after_seq": self.cut_seq,
                "abandoned_events": self.trace.events[-1].seq - self.cut_seq if self.trace.events else 0,
                "model_responses_on_tape": sum(len(queue) for queue in self.served.values()),
                "sandbox_restored": {"tool_calls": replayed, "differed": differed},
                "dropped_partial_line": getattr(recorder, "dropped_partial_line", None),
                "agentflow_version": agentflow.__version__,
            },
        )
        # after the marker, which must follow the killed process's last event: the commands the rebuild ran
        for call, data in execs:
            ctx.emit(EventType.SANDBOX_EXEC, node=call.node, parent=call.seq, data=data)

    async def _restore_sandbox(
        self, ctx: RunContext, compiled: CompiledWorkflow, execs: list[tuple[Event, dict[str, Any]]]
    ) -> tuple[int, list[int]]:
        from agentflow.tools._base import ToolContext

        tools = dict(_all_tools(compiled))
        events = [_resolved(self.trace, event) for event in self.trace.events if event.seq <= self.cut_seq]
        results = {e.parent: e for e in events if e.type is EventType.TOOL_RESULT}
        replayed, differed = 0, []
        for event in events:
            recorded = results.get(event.seq)
            tool = tools.get(str(event.data.get("tool")))
            if event.type is not EventType.TOOL_CALL or recorded is None or tool is None:
                continue
            tool_ctx = ToolContext(
                sandbox=ctx.sandbox,
                run_id=ctx.run_id,
                node=event.node or "",
                state=self.state,
                on_exec=_collector_of_rebuild(execs, event),
            )
            outcome = await tool.invoke(tool_ctx, str(event.data.get("arguments") or "{}"))
            replayed += 1
            if outcome.ok != recorded.data.get("ok") or outcome.content != recorded.data.get("content"):
                differed.append(event.seq)
        return replayed, differed

    def wrap(self, model: Model) -> Model:
        """``model``, answering first from the responses of the interrupted visit."""
        from agentflow.models._scripted import ScriptedModel

        if isinstance(model, ScriptedModel):
            # A script is the scripted model's conversation: continue it where the killed process left it.
            model._next_index = min(self.answered[model.model_id], len(model.responses))
        return ResumeModel(model, self)


class ResumeModel(Model):
    """A model that serves recorded responses to the requests of the visit that runs again, then calls through."""

    def __init__(self, inner: Model, point: ResumePoint) -> None:
        super().__init__(inner.name)
        self.provider = inner.provider
        self.inner = inner
        self.point = point

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """The recorded response to this request if the killed process already had one, else the model's."""
        digest = request_hash(self.model_id, messages, tools, settings.request_data())
        queue = self.point.served.get(digest)
        if not queue:
            return await self.inner.complete(messages, tools, settings)
        self.point.served_count += 1
        return ModelResponse.from_recorded(queue.popleft(), self.model_id)

    async def close(self) -> None:
        await self.inner.close()


def _collector_of_rebuild(execs: list[tuple[Event, dict[str, Any]]], call: Event) -> ExecObserver:
    """Keeps each command the sandbox rebuild runs (``by: "resume"``) with the recorded call it repeats."""

    def collect(cmd: list[str], result: ExecResult) -> None:
        execs.append((call, {"cmd": cmd, "by": "resume", "tool": call.data.get("tool"), **result.to_dict()}))

    return collect


def _all_tools(compiled: CompiledWorkflow) -> Iterator[tuple[str, Tool]]:
    for child in compiled.children.values():
        yield from _all_tools(child)
    yield from compiled.tools.items()  # last, so the top workflow's tools win a name clash


def _resolved(trace: Trace, event: Event) -> Event:
    if "$blob" not in json.dumps(event.data):
        return event
    return event.model_copy(update={"data": trace.resolve(event.data)})


def _elapsed(events: list[Event]) -> float:
    """Seconds from the first to the last event the killed process wrote."""
    from datetime import datetime

    if len(events) < 2:
        return 0.0
    first = datetime.fromisoformat(events[0].ts.replace("Z", "+00:00"))
    last = datetime.fromisoformat(events[-1].ts.replace("Z", "+00:00"))
    return max(0.0, (last - first).total_seconds())


async def invoke_checkpointed(
    compiled: CompiledWorkflow, ctx: RunContext, initial: dict[str, Any], checkpointer: Any
) -> dict[str, Any]:
    """Run the LangGraph graph with a LangGraph checkpoint saved after every node (thread id: the run id).

    ``durability="sync"`` writes each checkpoint before the next node starts, so a process killed at any point
    loses at most the node it was running. A resumed run passes no input: LangGraph continues from the checkpoint.
    """
    graph = compiled.graph.copy(update={"checkpointer": checkpointer})
    config = compiled.invoke_config(ctx)
    config["configurable"]["thread_id"] = ctx.run_id
    graph_input = None if ctx.resume is not None else initial
    final: dict[str, Any] = await graph.ainvoke(graph_input, config=config, durability="sync")
    return final
