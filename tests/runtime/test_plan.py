"""Run plans: run_workflow asks its plan for the model, the tool results, the sandbox and what follows each event.

A plan written outside the runtime (as ``agentflow.rerun``'s are) changes where a run gets what it needs without
the runtime knowing why; these tests drive the interface with one, on a real scripted run in a local sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentflow.models import Model, ToolCall
from agentflow.runtime import CompiledWorkflow, RunContext, RunPlan, ServedTool, run_workflow
from agentflow.tools import ToolOutcome
from agentflow.traces import Event, EventType, TraceStore
from tests.rerun.test_replay import workflow  # noqa: F401 - the fixture: the echo workflow in a folder


class ServesReadFile(RunPlan):
    """Answers every read_file call itself, and notes what it was asked and told."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.seen: list[int] = []
        self.started_with: dict[str, Any] = {}

    def model(self, model_string: str, base_dir: Path) -> Model:
        self.models.append(model_string)
        return super().model(model_string, base_dir)

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: dict[str, Any]) -> None:
        self.started_with = run_started
        await super().start(ctx, compiled, {**run_started, "planned_by": "test"})

    def served_tool(self, call: ToolCall) -> ServedTool | None:
        if call.name != "read_file":
            return None
        outcome = ToolOutcome(ok=True, content="served, not read", result="served, not read")
        return ServedTool(outcome, execs=[{"cmd": ["served"], "by": f"tool:{call.name}", "exit_code": 0}])

    def after_event(self, ctx: RunContext, event: Event) -> None:
        self.seen.append(event.seq)


async def test_a_plan_supplies_tool_results_and_sees_every_event(
    workflow: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    store = TraceStore(tmp_path / "store")
    plan = ServesReadFile()
    result = await run_workflow(workflow, store=store, plan=plan)
    assert result.status == "succeeded", result.error
    events = store.load_trace(result.run_id).events
    assert plan.models == ["scripted:echo.script.yaml"]  # one model built through the plan, reused for each turn
    started = events[0]
    assert started.type is EventType.RUN_STARTED
    assert started.data["planned_by"] == "test"
    assert plan.started_with["workflow"] == "echo_twice"
    # every event the run recorded passed through after_event, in order, except run_finished (the recorder's own)
    assert plan.seen == [event.seq for event in events if event.type is not EventType.RUN_FINISHED]
    results = {e.data["tool"]: e.data for e in events if e.type is EventType.TOOL_RESULT}
    assert results["read_file"]["content"] == "served, not read"  # the agent's call and the tool node's
    assert result.final_state["answer"] == "served, not read"
    # the shell call ran for real in the sandbox; the served calls' commands are the plan's
    execs = [e.data for e in events if e.type is EventType.SANDBOX_EXEC]
    assert [data["cmd"] for data in execs if data["by"] == "tool:read_file"] == [["served"], ["served"]]
    assert any(data["by"] == "tool:shell" and "hello" in data["stdout"] for data in execs)


async def test_the_live_plan_is_the_default(
    workflow: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    store = TraceStore(tmp_path / "store")
    result = await run_workflow(workflow, store=store)
    assert result.status == "succeeded", result.error
    assert result.final_state["answer"] == "hello\n"  # read from the sandbox's file
    started = store.load_trace(result.run_id).events[0]
    assert "replay_of" not in started.data
    assert "planned_by" not in started.data
