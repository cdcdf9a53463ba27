"""What the export tests share: the committed example run in a store of its own, and runs made through the store API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agentflow.traces import (
    EventType,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RequestedToolCall,
    RewardData,
    RunStartedData,
    Store,
    TokenUsage,
    ToolCallData,
    ToolResultData,
    TraceStore,
)

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE_RUN = "20261201-180152-e8aea711"  # the shipped fix_failing_test example, recorded by agentflow 0.1.0


def example_store(tmp_path: Path) -> TraceStore:
    """A store holding the recorded example run: three agent visits, a tool node, step/node/run rewards."""
    shutil.copytree(FIXTURES / "fix_failing_test-0.1", tmp_path / "example")
    store = TraceStore(tmp_path / "example")
    assert store.reindex() == [EXAMPLE_RUN]
    return store


SYSTEM = {"role": "system", "content": "You fix bugs with tools."}
USER = {"role": "user", "content": "Make the tests pass."}
TOOL = {"type": "function", "function": {"name": "run", "description": "run a command", "parameters": {}}}


def call(call_id: str, command: str) -> dict[str, Any]:
    """An OpenAI tool call of the `run` tool."""
    return {"id": call_id, "type": "function", "function": {"name": "run", "arguments": json.dumps({"cmd": command})}}


def reward(hook: str, on: str, value: float, label: int | None, target: int | None) -> RewardData:
    """A reward event's data."""
    return RewardData(
        hook=hook,
        hook_version="1",
        on=on,
        value=value,
        label=label,
        explanation="",
        components={},
        target_seq=target,
        duration_s=0,
    )


def record_run(
    store: Store,
    turns: list[tuple[str, str | None, float]],
    *,
    started_extra: dict[str, Any] | None = None,
    conversation: list[dict[str, Any]] | None = None,
    outcome: float | None = None,
    status: str = "succeeded",
) -> str:
    """Record an agent run through the store API: each turn ``(command, call id or None, step reward)``.

    A turn with a call id asks for the `run` tool (its result is ``out:<command>``) and gets a step reward with a
    label (+1 for a reward ≥ 0.5, −1 otherwise); one without is the final answer ``command``. ``conversation`` is
    what the first request sends (by default the system and user messages); ``outcome`` adds a run reward.
    """
    messages = list(conversation or [SYSTEM, USER])
    data: dict[str, Any] = {"workflow": "fixer", "inputs": {"task": "fix"}, **(started_extra or {})}
    with store.new_run(workflow="fixer") as recorder:
        started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(**data))  # type: ignore[typeddict-item]
        node = recorder.emit(
            EventType.NODE_STARTED, node="coder", parent=started.seq, data=NodeStartedData(visit=1, attempt=1)
        )
        for command, call_id, value in turns:
            request = recorder.emit(
                EventType.MODEL_REQUEST,
                node="coder",
                parent=node.seq,
                data=ModelRequestData(model="scripted:fixer", messages=list(messages), tools=[TOOL]),
            )
            calls = [call(call_id, command)] if call_id else []
            message: dict[str, Any] = {"role": "assistant", "content": "" if call_id else command}
            if calls:
                message["tool_calls"] = calls
            response = recorder.emit(
                EventType.MODEL_RESPONSE,
                node="coder",
                parent=request.seq,
                data=ModelResponseData(
                    model="scripted:fixer",
                    message=message,
                    tool_calls=[
                        RequestedToolCall(id=c["id"], name="run", arguments=c["function"]["arguments"]) for c in calls
                    ],
                    usage=TokenUsage(input_tokens=10, output_tokens=3),
                ),
            )
            messages.append(message)
            for c in calls:
                tool_call = recorder.emit(
                    EventType.TOOL_CALL,
                    node="coder",
                    parent=response.seq,
                    data=ToolCallData(tool="run", call_id=c["id"], arguments=c["function"]["arguments"]),
                )
                recorder.emit(
                    EventType.TOOL_RESULT,
                    node="coder",
                    parent=tool_call.seq,
                    data=ToolResultData(
                        tool="run", call_id=c["id"], ok=True, content=f"out:{command}", result=None, error=None
                    ),
                )
                recorder.emit(
                    EventType.REWARD,
                    node="coder",
                    parent=tool_call.seq,
                    data=reward("exit_code", "step", value, 1 if value >= 0.5 else -1, tool_call.seq),
                )
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": f"out:{command}"})
        recorder.emit(
            EventType.NODE_FINISHED, node="coder", parent=node.seq, data=NodeFinishedData(status="ok", updates={})
        )
        if outcome is not None:
            recorder.emit(EventType.REWARD, data=reward("outcome", "run", outcome, 1 if outcome else -1, None))
        recorder.finish(status, final_state={"done": True})
        return recorder.run_id
