"""Helpers of the reward tests: trace events of a step, as the runtime records them."""

from __future__ import annotations

import json
from typing import Any

from agentflow.rewards import StepContext, StepKind
from agentflow.sandboxes import Sandbox
from agentflow.traces import Event, EventType


class StepEvents:
    """Builds tool_call / tool_result / reward events with increasing seq numbers."""

    def __init__(self, run_id: str = "run-test") -> None:
        self.run_id = run_id
        self.seq = 0

    def event(self, type: EventType, data: dict[str, Any], node: str | None = "code") -> Event:
        event = Event(
            run_id=self.run_id, seq=self.seq, type=type, ts="2026-01-01T00:00:00.000000Z", node=node, data=data
        )
        self.seq += 1
        return event

    def tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        ok: bool = True,
        result: Any = None,
        error: str | None = None,
        content: str = "",
    ) -> list[Event]:
        call_id = f"call_{self.seq}"
        call = self.event(EventType.TOOL_CALL, {"tool": tool, "call_id": call_id, "arguments": json.dumps(arguments)})
        done = self.event(
            EventType.TOOL_RESULT,
            {"tool": tool, "call_id": call_id, "ok": ok, "content": content, "result": result, "error": error},
        )
        return [call, done]

    def reward(
        self, hook: str, value: float | None, label: int | None = None, on: str = "step", target: int | None = None
    ) -> Event:
        return self.event(
            EventType.REWARD,
            {
                "hook": hook,
                "on": on,
                "value": value,
                "label": label,
                "target_seq": target if target is not None else self.seq,
            },
        )


def step(
    events: list[Event],
    sandbox: Sandbox | None,
    *,
    run_id: str = "run-test",
    kind: StepKind = "step",
    state: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    history: list[Event] | None = None,
) -> StepContext:
    return StepContext(
        run_id=run_id,
        kind=kind,
        node="code",
        events=events,
        state=state or {},
        options=options or {},
        sandbox=sandbox,
        history=history or [],
    )
