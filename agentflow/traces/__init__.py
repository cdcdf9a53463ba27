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

from agentflow.traces._base import DEFAULT_SPILL_THRESHOLD, check_reopenable
from agentflow.traces._compare import (
    VOLATILE_TEXT,
    Divergence,
    comparable,
    content_digest,
    first_divergence,
    volatile_pattern,
    without_abandoned,
)
from agentflow.traces._events import Event, EventType, ran_by_hook
from agentflow.traces._hashing import canonical_json, event_hash, request_hash, sha256_hex, to_json_value
from agentflow.traces._import import IMPORT_FORMATS, ImportReport, import_openai_messages
from agentflow.traces._langgraph_checkpoints import open_checkpointer
from agentflow.traces._open import open_store
from agentflow.traces._otel import OTLP_ENV, export_to_otlp
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
from agentflow.traces._responses import RecordedResponses
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
    "DEFAULT_SPILL_THRESHOLD",
    "FINISHED_STATUSES",
    "IMPORT_FORMATS",
    "LIVE_REWARDS",
    "OTLP_ENV",
    "VOLATILE_TEXT",
    "Divergence",
    "ErrorInfo",
    "Event",
    "EventType",
    "FsyncPolicy",
    "GradingPass",
    "HookRewards",
    "ImportReport",
    "LimitInfo",
    "NodeSummary",
    "PostgresRecorder",
    "PostgresStore",
    "RecordedResponses",
    "Recorder",
    "RewardInfo",
    "RunInfo",
    "RunRecorder",
    "RunSummary",
    "Store",
    "StoredReward",
    "Trace",
    "TraceProblem",
    "TraceStore",
    "canonical_json",
    "check_reopenable",
    "comparable",
    "content_digest",
    "event_hash",
    "export_to_otlp",
    "first_divergence",
    "import_openai_messages",
    "open_checkpointer",
    "open_store",
    "ran_by_hook",
    "realized_graph",
    "redact_url",
    "request_hash",
    "sha256_hex",
    "summarize",
    "to_json_value",
    "volatile_pattern",
    "without_abandoned",
]
