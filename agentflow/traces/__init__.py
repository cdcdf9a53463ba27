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

Export for training and other tools (``agentflow traces export``)::

    export_openai_messages(store, [run_id])  # chat messages + tools, rewards and labels per assistant message
    export_atif(store, [run_id])             # Harbor's ATIF trajectories; import_atif(store, path) reads them back
    export_rollouts(store, [run_id])         # fork groups: shared prefix, continuations, group-normalized advantages
"""

from agentflow.traces._atif import ATIF_VERSION, export_atif, import_atif, validate_atif
from agentflow.traces._compare import (
    VOLATILE_TEXT,
    Divergence,
    content_digest,
    first_divergence,
    volatile_pattern,
    without_abandoned,
)
from agentflow.traces._cost import ModelUsage, token_cost, usage_cost
from agentflow.traces._events import DATA_TYPES, Event, EventType
from agentflow.traces._export import EXPORT_FORMATS, export_records, to_jsonl
from agentflow.traces._export_messages import export_openai_messages
from agentflow.traces._import import IMPORT_FORMATS, ImportReport, import_openai_messages
from agentflow.traces._open import open_store
from agentflow.traces._otel import OTLP_ENV, export_to_otlp
from agentflow.traces._payloads import (
    BenchTag,
    BestOfCandidateData,
    BestOfData,
    ErrorData,
    EventData,
    ForkedFrom,
    LimitData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    PriceData,
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
    VerifierTag,
    sandbox_exec_data,
)
from agentflow.traces._postgres import PostgresStore
from agentflow.traces._protocol import (
    LIVE_REWARDS,
    BenchItem,
    BenchRunInfo,
    GradingPass,
    Recorder,
    RunInfo,
    Store,
    StoredReward,
    Trace,
    TraceFollower,
    TraceProblem,
)
from agentflow.traces._qtable_tables import QTableChange, QTableEpisode, StoredQTable
from agentflow.traces._recorder import FINISHED_STATUSES
from agentflow.traces._relay import RelayStore
from agentflow.traces._responses import RecordedResponses
from agentflow.traces._rollouts import EPSILON as ADVANTAGE_EPSILON
from agentflow.traces._rollouts import export_rollouts, group_advantages
from agentflow.traces._store import FsyncPolicy, TraceStore
from agentflow.traces._summary import (
    SOLVED_OUTCOME,
    ErrorInfo,
    HookRewards,
    LimitInfo,
    NodeSummary,
    RewardInfo,
    RunSummary,
    realized_graph,
    summarize,
)
from agentflow.traces._tables import live_rewards
from agentflow.traces._verify import TraceVerification, VerificationProgress

__all__ = [
    "ADVANTAGE_EPSILON",
    "ATIF_VERSION",
    "DATA_TYPES",
    "EXPORT_FORMATS",
    "FINISHED_STATUSES",
    "IMPORT_FORMATS",
    "LIVE_REWARDS",
    "OTLP_ENV",
    "SOLVED_OUTCOME",
    "VOLATILE_TEXT",
    "BenchItem",
    "BenchRunInfo",
    "BenchTag",
    "BestOfCandidateData",
    "BestOfData",
    "Divergence",
    "ErrorData",
    "ErrorInfo",
    "Event",
    "EventData",
    "EventType",
    "ForkedFrom",
    "FsyncPolicy",
    "GradingPass",
    "HookRewards",
    "ImportReport",
    "LimitData",
    "LimitInfo",
    "ModelRequestData",
    "ModelResponseData",
    "ModelUsage",
    "NodeFinishedData",
    "NodeStartedData",
    "NodeSummary",
    "PostgresStore",
    "PriceData",
    "QTableChange",
    "QTableEpisode",
    "RecordedResponses",
    "Recorder",
    "RelayStore",
    "RequestedToolCall",
    "RewardData",
    "RewardInfo",
    "RouteData",
    "RunFinishedData",
    "RunInfo",
    "RunResumedData",
    "RunStartedData",
    "RunSummary",
    "SandboxExecData",
    "SandboxRestore",
    "Store",
    "StoredQTable",
    "StoredReward",
    "TokenUsage",
    "ToolCallData",
    "ToolResultData",
    "Trace",
    "TraceFollower",
    "TraceProblem",
    "TraceStore",
    "TraceVerification",
    "VerificationProgress",
    "VerifierTag",
    "content_digest",
    "export_atif",
    "export_openai_messages",
    "export_records",
    "export_rollouts",
    "export_to_otlp",
    "first_divergence",
    "group_advantages",
    "import_atif",
    "import_openai_messages",
    "live_rewards",
    "open_store",
    "realized_graph",
    "sandbox_exec_data",
    "summarize",
    "to_jsonl",
    "token_cost",
    "usage_cost",
    "validate_atif",
    "volatile_pattern",
    "without_abandoned",
]
