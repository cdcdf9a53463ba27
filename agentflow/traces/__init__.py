"""Traces: the append-only, content-hashed record of every run, its store and its summary.

Record a run::

    store = TraceStore(".agentflow")
    with store.new_run(workflow="fix_failing_test") as recorder:
        started = recorder.emit(EventType.NODE_STARTED, node="plan", data={"visit": 1, "attempt": 1})
        ...
        recorder.finish("succeeded", final_state={...})

Read it back::

    trace = store.load_trace(run_id)      # verified: trace.problems lists truncation or tampering
    summary = summarize(trace.events)     # what `agentflow run` and `agentflow show` print
"""

from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import canonical_json, event_hash, sha256_hex, to_json_value
from agentflow.traces._store import (
    DEFAULT_SPILL_THRESHOLD,
    FINISHED_STATUSES,
    FsyncPolicy,
    RunInfo,
    RunRecorder,
    Trace,
    TraceProblem,
    TraceStore,
)
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
    "DEFAULT_SPILL_THRESHOLD",
    "FINISHED_STATUSES",
    "ErrorInfo",
    "Event",
    "EventType",
    "FsyncPolicy",
    "HookRewards",
    "LimitInfo",
    "NodeSummary",
    "RewardInfo",
    "RunInfo",
    "RunRecorder",
    "RunSummary",
    "Trace",
    "TraceProblem",
    "TraceStore",
    "canonical_json",
    "event_hash",
    "realized_graph",
    "sha256_hex",
    "summarize",
    "to_json_value",
]
