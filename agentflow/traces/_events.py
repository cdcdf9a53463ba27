"""The trace event model: what a run records, in order, each event content-hashed."""

from __future__ import annotations

import builtins
import enum
import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from agentflow.errors import TraceError
from agentflow.traces._payloads import (
    ErrorData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RewardData,
    RouteData,
    RunFinishedData,
    RunResumedData,
    RunStartedData,
    SandboxExecData,
    ToolCallData,
    ToolResultData,
)

DataT = TypeVar("DataT", bound=Mapping[str, object])


class EventType(enum.StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    RUN_RESUMED = "run_resumed"  # `agentflow resume`: the same run continues from its last LangGraph checkpoint
    NODE_STARTED = "node_started"
    NODE_FINISHED = "node_finished"
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    SANDBOX_EXEC = "sandbox_exec"
    REWARD = "reward"
    ROUTE = "route"
    ERROR = "error"


DATA_TYPES: Mapping[EventType, type[Mapping[str, object]]] = {
    EventType.RUN_STARTED: RunStartedData,
    EventType.RUN_FINISHED: RunFinishedData,
    EventType.RUN_RESUMED: RunResumedData,
    EventType.NODE_STARTED: NodeStartedData,
    EventType.NODE_FINISHED: NodeFinishedData,
    EventType.MODEL_REQUEST: ModelRequestData,
    EventType.MODEL_RESPONSE: ModelResponseData,
    EventType.TOOL_CALL: ToolCallData,
    EventType.TOOL_RESULT: ToolResultData,
    EventType.SANDBOX_EXEC: SandboxExecData,
    EventType.REWARD: RewardData,
    EventType.ROUTE: RouteData,
    EventType.ERROR: ErrorData,
}
"""The type of ``Event.data`` for each event type (see ``traces/_payloads.py``)."""


class Event(BaseModel):
    """One trace event.

    ``hash`` is the sha256 (hex) of the RFC 8785 canonical JSON of every other field, ``prev_hash`` chains each event
    to the one before it so a removed or reordered event is detected. Payloads larger than the store's spill
    threshold are replaced in ``data`` by ``{"$blob": "<sha256>", "size": n}`` before hashing; the blob file is
    content-addressed, so the chain still covers its content.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    seq: int = Field(ge=0, description="0-based position in the run's trace")
    type: EventType
    ts: str = Field(description="UTC timestamp, ISO 8601 with microseconds")
    node: str | None = None
    parent: int | None = Field(default=None, description="seq of the enclosing event (node_started, tool_call, ...)")
    data: dict[str, Any] = Field(default_factory=lambda: {})
    prev_hash: str | None = None
    hash: str = ""

    def data_as(self, data_type: builtins.type[DataT]) -> DataT:
        """The event's ``data``, typed as ``data_type``, the data type of the event's type (``DATA_TYPES``).

        ``trace_event.data_as(ToolResultData)["ok"]`` reads a field the type checker knows. The data itself is
        returned, neither copied nor validated (a stored trace is verified by its hashes, not by these types):
        keys marked ``NotRequired`` may be missing, and values of a trace written by hand may be anything.

        Raises:
            TraceError: ``data_type`` is not the data type of this event's type (a bug of the caller).
        """
        if DATA_TYPES[self.type] is not data_type:
            raise TraceError(
                f"event {self.seq} is a {self.type.value} event, whose data is "
                f"{DATA_TYPES[self.type].__name__}, not {data_type.__name__}"
            )
        return cast(DataT, self.data)

    @classmethod
    def trusted(cls, **fields: Any) -> Event:
        """Build an event from fields the recorder produced itself, skipping validation.

        The recorder emits every event of every run, and validation cost more than hashing and writing the event
        together; events read back from a file go through ``model_validate`` instead. Sets exactly the attributes
        ``model_construct`` sets, given every field.
        """
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        object.__setattr__(event, "__pydantic_fields_set__", set(fields))
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event


def seconds_since(start: float) -> float:
    """Seconds since a ``time.perf_counter()`` reading, at 0.1 ms resolution, for the ``duration_s`` of events.

    At this resolution a duration is 0 or at least 1e-4, where Python's float spelling is RFC 8785's: the event then
    hashes with the C JSON encoder instead of the pure-Python canonicaliser (several times faster per event).
    """
    # A duration under 0.05 ms rounds to 0.0, which the recorder would record as 0 anyway (JSON's one number type)
    # but only after a walk of the whole event (the C encoder writes it "0.0"): 0 takes the fast path.
    return round(time.perf_counter() - start, 4) or 0


def ran_by_hook(event: Event) -> bool:
    """Whether the event is a ``sandbox_exec`` a reward hook ran (``by: "hook:<name>"``), not a tool of the agent."""
    return event.type is EventType.SANDBOX_EXEC and str(event.data_as(SandboxExecData).get("by", "")).startswith(
        "hook:"
    )
