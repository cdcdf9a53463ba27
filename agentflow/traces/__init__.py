"""Traces: the append-only, content-hashed record of every run, its store and its summary.

Record a run::

    store = TraceStore(".agentflow")
    with store.new_run(workflow="fix_failing_test") as recorder:
        started = recorder.emit(EventType.NODE_STARTED, node="plan", data=NodeStartedData(visit=1, attempt=1))
        ...
        recorder.finish("succeeded", final_state={...})

Read it back::

    trace = store.load_trace(run_id)      # verified: trace.problems lists truncation or tampering
    summary = summarize(trace.events)     # what `agentflow run` and `agentflow show` print
    for event in trace.events:
        if event.type is EventType.TOOL_RESULT:
            result = event.data_as(ToolResultData)   # typed: one TypedDict per event type (DATA_TYPES)
"""

from agentflow.traces._base import DEFAULT_SPILL_THRESHOLD
from agentflow.traces._events import DATA_TYPES, Event, EventType
from agentflow.traces._hashing import canonical_json, event_hash, sha256_hex, to_json_value
from agentflow.traces._open import open_store
from agentflow.traces._payloads import (
    ErrorData,
    EventData,
    LimitData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RequestedToolCall,
    RewardData,
    RouteData,
    RunFinishedData,
    RunResumedData,
    RunStartedData,
    SandboxExecData,
    SandboxRestore,
    TokenUsage,
    ToolCallData,
    ToolResultData,
)
from agentflow.traces._postgres import PostgresRecorder, PostgresStore, redact_url
from agentflow.traces._protocol import (
    LIVE_REWARDS,
    GradingPass,
    Recorder,
    RunInfo,
    Store,
    StoredReward,
    Trace,
    TraceProblem,
)
from agentflow.traces._recorder import FINISHED_STATUSES
from agentflow.traces._replay import Divergence, ReplayReport, Tape, content_digest, first_divergence, replay_run
from agentflow.traces._resume import ResumePoint, resume_run
from agentflow.traces._store import FsyncPolicy, RunRecorder, TraceStore
from agentflow.traces._summary import (
    ErrorInfo,
    HookRewards,
    LimitInfo,
    NodeSummary,
    RewardInfo,
    RunSummary,
    realized_graph,
    summarize,
)

__all__ = [
    "DATA_TYPES",
    "DEFAULT_SPILL_THRESHOLD",
    "FINISHED_STATUSES",
    "LIVE_REWARDS",
    "Divergence",
    "ErrorData",
    "ErrorInfo",
    "Event",
    "EventData",
    "EventType",
    "FsyncPolicy",
    "GradingPass",
    "HookRewards",
    "LimitData",
    "LimitInfo",
    "ModelRequestData",
    "ModelResponseData",
    "NodeFinishedData",
    "NodeStartedData",
    "NodeSummary",
    "PostgresRecorder",
    "PostgresStore",
    "Recorder",
    "ReplayReport",
    "RequestedToolCall",
    "ResumePoint",
    "RewardData",
    "RewardInfo",
    "RouteData",
    "RunFinishedData",
    "RunInfo",
    "RunRecorder",
    "RunResumedData",
    "RunStartedData",
    "RunSummary",
    "SandboxExecData",
    "SandboxRestore",
    "Store",
    "StoredReward",
    "Tape",
    "TokenUsage",
    "ToolCallData",
    "ToolResultData",
    "Trace",
    "TraceProblem",
    "TraceStore",
    "canonical_json",
    "content_digest",
    "event_hash",
    "first_divergence",
    "open_store",
    "realized_graph",
    "redact_url",
    "replay_run",
    "resume_run",
    "sha256_hex",
    "summarize",
    "to_json_value",
]
