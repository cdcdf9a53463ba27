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

A run whose workflow has parallel branches or map nodes is refused (``TraceError``, exit 3): several nodes share a
LangGraph step there, so a checkpoint's ``step`` no longer counts completed visits, and the branches' visits in
flight, their forked sandboxes and their per-branch model responses would all need restoring; none of that is done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import agentflow
from agentflow.errors import ConfigError, TraceError
from agentflow.models import Message, Model, ModelResponse, ModelSettings, ScriptedModel
from agentflow.rerun._rebuild import rebuild_sandbox
from agentflow.rerun._recorded import RecordedRun, ServedModel, ServeRecorded
from agentflow.runtime import CompiledWorkflow, RunContext, RunPlan, RunResult
from agentflow.sandboxes import ExecObserver, ExecResult
from agentflow.traces import (
    Event,
    EventType,
    RecordedResponses,
    Recorder,
    RunResumedData,
    RunStartedData,
    SandboxExecData,
    SandboxRestore,
    Store,
    ToolCallData,
    Trace,
    sandbox_exec_data,
)
from agentflow.traces._base import check_reopenable
from agentflow.traces._langgraph_checkpoints import open_checkpointer


async def resume_run(
    store: Store, run_id: str, *, workflow: str | Path | None = None, on_event: Callable[[Event], None] | None = None
) -> RunResult:
    """Continue an interrupted resumable run until it ends; return how it ended.

    Args:
        store: the store holding the run (and its LangGraph checkpoints).
        run_id: the run's id or a unique prefix.
        workflow: the workflow file; by default the one the run recorded. Its template hash must be the recorded
            one: a LangGraph checkpoint only fits the graph it was saved from.
        on_event: called with every event the resumed run records (the CLI's progress display); it must be quick.

    Raises:
        TraceError: no such run, the run finished or is still running, its trace is damaged, or it has no
            LangGraph checkpoint (it was not started with ``--resumable``).
        ConfigError: the workflow file is gone, invalid, or changed since the run started.
    """
    _refuse_branches(store.load_trace(run_id).events, run_id, [])
    # the store checks the process again when it reopens the run
    recorded = RecordedRun.load(
        store,
        run_id,
        workflow=workflow,
        doing="resume",
        verify=lambda trace: check_reopenable(trace, None, (None, None)),
    )
    compiled, path = recorded.compiled, recorded.workflow_path
    maps = [name for name, node in compiled.loaded.spec.nodes.items() if node.kind == "map"]
    _refuse_branches(recorded.events, recorded.run_id, sorted({*compiled.template.fanouts, *maps}))
    if recorded.recorded_template_hash != compiled.loaded.template_hash:
        raise ConfigError(
            f"{path} changed since run {recorded.run_id} started (template hash "
            f"{str(recorded.recorded_template_hash)[:12]} -> {compiled.loaded.template_hash[:12]}); its LangGraph "
            "checkpoint only fits the workflow it ran",
            fix="restore the workflow file the run started with, or start a new run",
        )
    async with open_checkpointer(store) as saver:
        graph = compiled.stepwise_graph.copy(update={"checkpointer": saver})
        snapshot = await graph.aget_state({"configurable": {"thread_id": recorded.run_id}})
        if snapshot.created_at is None:
            raise TraceError(
                f"run {recorded.run_id} has no LangGraph checkpoint in {store.location}: only runs started with "
                "--resumable can be resumed"
            )
        point = ResumePoint.from_trace(
            recorded, step=int(snapshot.metadata.get("step", -1)), state=dict(snapshot.values), config=snapshot.config
        )
        return await recorded.run(store, ResumePlan(point, saver), on_event=on_event)


def _refuse_branches(events: list[Event], run_id: str, branching: list[str]) -> None:
    """A run that ran concurrent branches, or whose workflow has fan-outs or maps (``branching``), is not resumed
    (see the module docstring).

    Raises:
        TraceError: it has some.
    """
    if branching or any(isinstance(event.data.get("branch"), str) for event in events):
        where = f" (at {', '.join(branching)})" if branching else ""
        raise TraceError(
            f"run {run_id} cannot be resumed: its workflow runs concurrent branches{where}, and resume continues "
            "one node per LangGraph step; the run is not resumed (start it again with `agentflow run`, or replay "
            "it with `agentflow replay`)"
        )


@dataclass
class ResumePoint:
    """Where an interrupted run continues: the trace up to its last completed visit and the checkpointed state.

    ``responses`` holds the model responses the killed process received during the visit that runs again;
    ``answered`` counts every response it received, per model id.
    """

    trace: Trace
    events: list[Event]  # the trace's, blob references resolved
    step: int
    state: dict[str, Any]
    checkpoint_id: str | None
    cut_seq: int  # the last event of the completed visits; later events belong to the visit that runs again
    prior_duration_s: float
    responses: RecordedResponses
    visits: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    model_calls: int = 0
    tokens: int = 0
    answered: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_trace(cls, recorded: RecordedRun, *, step: int, state: dict[str, Any], config: Any) -> ResumePoint:
        """Split the trace at the checkpoint: completed visits before ``cut_seq``, the interrupted one after."""
        trace, events = recorded.trace, recorded.events
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
            events=events,
            step=step,
            state=state,
            checkpoint_id=configurable.get("checkpoint_id"),
            cut_seq=cut,
            prior_duration_s=_elapsed(events),
            responses=RecordedResponses(trace.run_id, [event for event in events if event.seq > cut]),
        )
        answered = {e.parent for e in events if e.type is EventType.MODEL_RESPONSE}
        seen_visits: set[tuple[str, int]] = set()
        for event in events:
            if event.type is EventType.MODEL_REQUEST and event.seq in answered:
                point.answered[str(event.data.get("model"))] += 1
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


class ResumePlan(RunPlan):
    """The plan of a resumed run: the same run id and trace, the checkpointed state, the interrupted visit's model
    responses from the trace, a sandbox rebuilt from the completed visits' tool calls."""

    def __init__(self, point: ResumePoint, checkpointer: Any) -> None:
        self.point = point
        self.checkpointer = checkpointer
        self.prior_duration_s = point.prior_duration_s

    def check(self, compiled: CompiledWorkflow, model_override: str | None) -> None:
        return None  # the run was checked when it started; a model that fails now errors the resumed run

    def open_recorder(self, store: Store, workflow: str) -> Recorder:
        return store.reopen_run(self.point.trace.run_id)

    def model(self, model_string: str, base_dir: Path) -> Model:
        """The model, answering first from the responses of the interrupted visit."""
        model = super().model(model_string, base_dir)
        if isinstance(model, ScriptedModel):
            # A script is the scripted model's conversation: continue it where the killed process left it.
            model.skip(self.point.answered[model.model_id])
        return ServedModel(model, self._served_response(model))

    def _served_response(self, model: Model) -> ServeRecorded:
        """The killed process's response to a request of the visit that runs again, when it already had one."""
        responses = self.point.responses

        def serve(
            messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
        ) -> ModelResponse | None:
            key = responses.request_key(model.model_id, messages, tools, settings.request_data())
            recorded = responses.take([key])
            return None if recorded is None else ModelResponse.from_recorded(recorded, model.model_id)

        return serve

    def graph_input(self, initial: dict[str, Any]) -> dict[str, Any] | None:
        return None  # LangGraph continues from the checkpoint

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: RunStartedData) -> None:
        """Restore the state and counters as of the checkpoint, rebuild the sandbox, then record ``run_resumed``."""
        point = self.point
        ctx.state.clear()
        ctx.state.update(point.state)
        ctx.events.extend(point.trace.events)
        ctx.visits.update(point.visits)
        ctx.limits.steps, ctx.limits.model_calls, ctx.limits.tokens = point.steps, point.model_calls, point.tokens
        execs: list[tuple[Event, SandboxExecData]] = []
        replayed, differed = await self._restore_sandbox(ctx, compiled, execs)
        ctx.emit(
            EventType.RUN_RESUMED,
            data=RunResumedData(
                checkpoint_id=point.checkpoint_id,
                checkpoint_step=point.step,
                resumed_after_seq=point.cut_seq,
                abandoned_events=point.trace.events[-1].seq - point.cut_seq if point.trace.events else 0,
                model_responses_on_tape=len(point.responses),
                sandbox_restored=SandboxRestore(tool_calls=replayed, differed=differed),
                dropped_partial_line=getattr(ctx.recorder, "dropped_partial_line", None),
                agentflow_version=agentflow.__version__,
            ),
        )
        # after the marker, which must follow the killed process's last event: the commands the rebuild ran
        for call, data in execs:
            ctx.emit(EventType.SANDBOX_EXEC, node=call.node, parent=call.seq, data=data)

    async def _restore_sandbox(
        self, ctx: RunContext, compiled: CompiledWorkflow, execs: list[tuple[Event, SandboxExecData]]
    ) -> tuple[int, list[int]]:
        events = [event for event in self.point.events if event.seq <= self.point.cut_seq]
        rebuilt = await rebuild_sandbox(
            ctx.sandbox,
            compiled,
            events,
            run_id=ctx.run_id,
            state=self.point.state,
            observer_of=lambda call: _collector_of_rebuild(execs, call),
        )
        return rebuilt.tool_calls, rebuilt.differed


def _collector_of_rebuild(execs: list[tuple[Event, SandboxExecData]], call: Event) -> ExecObserver:
    """Keeps each command the sandbox rebuild runs (``by: "resume"``) with the recorded call it repeats."""

    def collect(cmd: list[str], cwd: str | None, result: ExecResult) -> None:
        data = sandbox_exec_data(cmd, "resume", result)
        data["tool"] = call.data_as(ToolCallData).get("tool")
        execs.append((call, data))

    return collect


def _elapsed(events: list[Event]) -> float:
    """Seconds from the first to the last event the killed process wrote."""
    if len(events) < 2:
        return 0.0
    first = datetime.fromisoformat(events[0].ts.replace("Z", "+00:00"))
    last = datetime.fromisoformat(events[-1].ts.replace("Z", "+00:00"))
    return max(0.0, (last - first).total_seconds())
