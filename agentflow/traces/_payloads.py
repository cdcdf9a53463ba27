"""What each event type holds in ``Event.data``: one ``TypedDict`` per :class:`~agentflow.traces.EventType`.

The types are the contract between the code that emits an event and every reader (summary, OTel export, reward
hooks, grading, the CLI): emit sites build the data by name (``ToolResultData(tool=..., ok=..., ...)``) and readers
get it typed from :meth:`Event.data_as <agentflow.traces.Event.data_as>`, so the type checker checks every key on
both sides. They are types only: at run time the data stays the plain dict the trace holds (nothing is copied or
validated per event, and the trace format on disk is what it was).

A key marked ``NotRequired`` is written by some emitters only (an importer, a replay, a failure) or is missing from
traces older than the key; a reader must not assume it. Two things a reader of a stored trace still meets whatever
the type says: a string larger than the store's spill threshold is a blob reference ``{"$blob": sha256, "size": n}``
until resolved (``Trace.resolve``), and a trace written by hand or by another tool may hold anything, so readers
that must not fail on such traces keep checking the values they read.

(No ``from __future__ import annotations`` here: Python 3.11 computes ``__required_keys__`` from the annotations
when the class is created, and sees ``NotRequired`` only when they are not strings.)
"""

from typing import Any, NotRequired, Protocol, TypeAlias, TypedDict

__all__ = [
    "BenchTag",
    "ErrorData",
    "EventData",
    "LimitData",
    "ModelRequestData",
    "ModelResponseData",
    "NodeFinishedData",
    "NodeStartedData",
    "PriceData",
    "RequestedToolCall",
    "RewardData",
    "RouteData",
    "RunFinishedData",
    "RunResumedData",
    "RunStartedData",
    "SandboxExecData",
    "SandboxRestore",
    "TokenUsage",
    "ToolCallData",
    "ToolResultData",
    "sandbox_exec_data",
]


class VerifierTag(TypedDict):
    """The verifier a benchmark task brings (a Harbor task's ``tests/``), run by the ``harbor_verifier`` hook in the
    run's sandbox after the agent: ``bash /tests/test.sh`` from ``workdir``, within ``timeout_s``, with ``env``, as
    ``user`` (absent or None: root)."""

    tests_dir: str
    timeout_s: float
    workdir: str
    env: dict[str, str]
    user: NotRequired[str | None]


class PriceData(TypedDict):
    """What a model's tokens cost, in dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float


class BenchTag(TypedDict):
    """Which benchmark run, task, epoch and attempt a run is (``agentflow bench run``), and the task's verifier
    when it brings one.

    Keys:
        outcome_hook: the benchmark's outcome scorer: its run-level reward is the run's outcome.
        prices: the benchmark's prices (``provider:model`` -> price), which the run's cost is computed at.
    """

    bench_run_id: str
    task_id: str
    epoch: int
    attempt: int
    verifier: NotRequired[VerifierTag]
    outcome_hook: NotRequired[str]
    prices: NotRequired[dict[str, PriceData]]


class ForkedFrom(TypedDict):
    """Where a forked run's prefix comes from: the parent run and the seq of the prefix's last event in it."""

    run_id: str
    seq: int


class RunStartedData(TypedDict):
    """``run_started``: the first event of a run; what replay and resume rebuild the run from.

    Keys:
        inputs: the run's initial state (the workflow's defaults with the caller's inputs over them).
        workflow_file, template_hash: the workflow file and the hash of its template (missing in imported runs).
        model_override: the ``provider:model`` that replaced every model of the workflow, or None.
        sandbox: ``{"backend": name, "isolation": {...}}``, the isolation the sandbox actually obtained.
        limits: the workflow's limits as declared.
        replay_of, replay_mode: a replay's original run and mode (``tape`` | ``verify``).
        resumable: LangGraph checkpoints were saved after every node (``agentflow resume`` can continue the run).
        imported_from, metadata: an imported run's source (``file:line``) and the source record's metadata.
        seed: the sampling seed every model call of the run asked for (a benchmark's, per task and epoch).
        bench: the benchmark run, task, epoch and attempt the run is (``agentflow bench run``), with the
            benchmark's outcome hook and prices (the run's outcome and cost).
        forked_from: a forked run's parent and the seq of the parent's last event its prefix holds
            (``{"run_id", "seq"}``); its events up to that seq were served from the parent's tape.
        fork_group, fork_index: the group id the continuations of one fork share, and this one's index (0..K-1).
        fork_step: how many steps (model turns and tool calls) of the parent the prefix holds.
        fork_sandbox: how the continuation's sandbox was made: ``{"forked": bool, "rebuilt_tool_calls": int,
            "differed": [seq, ...]}`` (forked: a copy of the prefix sandbox rebuilt once for the group).
    """

    workflow: str
    inputs: dict[str, Any]
    workflow_file: NotRequired[str]
    template_hash: NotRequired[str]
    model_override: NotRequired[str | None]
    sandbox: NotRequired[dict[str, Any]]
    limits: NotRequired[dict[str, Any]]
    agentflow_version: NotRequired[str]
    replay_of: NotRequired[str]
    replay_mode: NotRequired[str]
    resumable: NotRequired[bool]
    imported_from: NotRequired[str]
    metadata: NotRequired[dict[str, Any]]
    seed: NotRequired[int]
    bench: NotRequired[BenchTag]
    forked_from: NotRequired[ForkedFrom]
    fork_group: NotRequired[str]
    fork_index: NotRequired[int]
    fork_step: NotRequired[int]
    fork_sandbox: NotRequired[dict[str, Any]]


class RunFinishedData(TypedDict):
    """``run_finished``: the last event of a finished run.

    Keys:
        status: succeeded | failed | limit_exceeded | errored | cancelled | imported.
        error: why the run did not succeed, or None.
        duration_s: the run's wall time (a resumed run's includes the time it ran before it was interrupted).
        final_state: the state the run ended with (missing when a recorder was closed by an exception).
    """

    status: str
    error: str | None
    duration_s: float
    final_state: NotRequired[dict[str, Any]]


class SandboxRestore(TypedDict):
    """How ``agentflow resume`` rebuilt the sandbox: the tool calls it ran again, and the seqs whose result differed."""

    tool_calls: int
    differed: list[int]


class RunResumedData(TypedDict):
    """``run_resumed``: ``agentflow resume`` continues the same run from its last LangGraph checkpoint.

    Keys:
        checkpoint_id, checkpoint_step: the LangGraph checkpoint the run continues from.
        resumed_after_seq: the last event the checkpoint covers; the events after it up to this marker were
            abandoned (``abandoned_events`` of them).
        model_responses_on_tape: recorded model responses of the interrupted visit, served back instead of calling.
        dropped_partial_line: the blob reference of a partial last line cut off the trace file, or None.
    """

    checkpoint_id: str | None
    checkpoint_step: int
    resumed_after_seq: int
    abandoned_events: int
    model_responses_on_tape: int
    sandbox_restored: SandboxRestore
    dropped_partial_line: dict[str, Any] | None
    agentflow_version: str


class NodeStartedData(TypedDict):
    """``node_started``: one attempt at one node begins; a retry has the same ``visit`` and a higher ``attempt``."""

    visit: int
    attempt: int


class BestOfCandidateData(TypedDict):
    """One candidate of a best-of-N visit: its branch id (``<node>#<i>``), the ``by`` hook's score of it (None when
    the candidate failed or the hook failed or abstained: ``error`` says which), and what it sampled with."""

    branch: str
    score: float | None
    error: str | None
    seed: NotRequired[int]
    temperature: NotRequired[float]


class BestOfData(TypedDict):
    """The choice of a best-of-N visit (``node_finished.best_of``): the hook, every candidate, the kept one."""

    by: str
    vary: str
    sandbox: str
    candidates: list[BestOfCandidateData]
    chosen: str | None


class NodeFinishedData(TypedDict):
    """``node_finished``: the attempt ended (``status`` ``ok`` or ``failed``) with the state updates it made.

    ``error`` is the failure's message (failed attempts only); ``duration_s`` is missing in imported runs;
    ``best_of`` is the choice of a node with ``best_of`` (its updates are the chosen candidate's).
    """

    status: str
    updates: dict[str, Any]
    duration_s: NotRequired[float]
    error: NotRequired[str]
    best_of: NotRequired[BestOfData]


class ModelRequestData(TypedDict):
    """``model_request``: what an agent node sent to its model.

    Keys:
        tools: the OpenAI tool schemas offered.
        settings: the model settings the request used (the retry policy left out: it changes no answer).
        request_hash: the hash of model, messages, tools and settings that a replay matches responses by.
        (``settings`` and ``request_hash`` are missing in imported runs.)
    """

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    settings: NotRequired[dict[str, Any]]
    request_hash: NotRequired[str]


class RequestedToolCall(TypedDict):
    """One tool call a model asked for; ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


class TokenUsage(TypedDict):
    """The tokens of one model call."""

    input_tokens: int
    output_tokens: int


class ModelResponseData(TypedDict):
    """``model_response``: the model's answer to the ``model_request`` that is its parent.

    Keys:
        model: the model that answered, as the provider named it.
        message: the assistant message (OpenAI chat format).
        retries: the failed attempts tried again before this answer (``ModelRetry.to_dict``), only when any.
        message_index: an imported run's position of the message in its source conversation.
    """

    model: str
    message: dict[str, Any]
    tool_calls: list[RequestedToolCall]
    usage: TokenUsage
    duration_s: NotRequired[float]
    retries: NotRequired[list[dict[str, Any]]]
    message_index: NotRequired[int]


class ToolCallData(TypedDict):
    """``tool_call``: a tool is called (by a model, or by a ``tool`` node).

    ``arguments`` is the JSON text of the arguments; ``host`` is set for a plugin tool that runs outside the sandbox.
    """

    tool: str
    call_id: str
    arguments: str
    host: NotRequired[bool]


class ToolResultData(TypedDict):
    """``tool_result``: what the ``tool_call`` that is its parent returned.

    Keys:
        content: the text the model is given back.
        result: the tool's structured result (what a ``tool`` node's output expressions read), or None.
        error: why the call failed (``ok`` false), or None.
        duration_s: missing in imported runs.
    """

    tool: str
    call_id: str
    ok: bool
    content: str
    result: Any
    error: str | None
    duration_s: NotRequired[float]


class SandboxExecData(TypedDict):
    """``sandbox_exec``: one command that ran in the sandbox, with its result (``ExecResult.to_dict``).

    Keys:
        by: who ran it: ``tool:<name>``, ``hook:<name>`` (a reward hook) or ``resume`` (rebuilding the sandbox).
        workdir: ``copy`` when a hook ran it on a copy of the workdir.
        cwd: the working directory it ran in, when not the sandbox's.
        sandbox: ``fresh`` when a hook ran it in a fresh sandbox of its own.
        tool: the tool whose call ``agentflow resume`` ran again.
    """

    cmd: list[str]
    by: str
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_s: float
    workdir: NotRequired[str]
    cwd: NotRequired[str]
    sandbox: NotRequired[str]
    tool: NotRequired[str | None]


class RewardData(TypedDict):
    """``reward``: a reward hook's score of a step (``on``: ``step`` | ``node``) or of the run (``run``).

    Keys:
        value, label: the reward and its ternary label (+1/0/-1); None when the hook abstained.
        target_seq: the event the scored step ends with (the parent), None for the run.
        weight: the weight the workflow gave the hook.
        aggregate: on a run-level event with ``value`` None: the figures of the hook's ``aggregate:`` setting over
            its step rewards (not a reward, not counted in means).
        not_scored: the run gave no verdict (``errored``: the infrastructure failed), with ``value`` None.
    """

    hook: str
    hook_version: str
    on: str
    value: float | None
    label: int | None
    explanation: str
    components: dict[str, Any]
    target_seq: int | None
    duration_s: float
    weight: NotRequired[float]
    aggregate: NotRequired[dict[str, Any]]
    not_scored: NotRequired[str]


RouteData = TypedDict(
    "RouteData", {"from": str, "to": str, "condition": str | None, "qtable": NotRequired[dict[str, Any]]}
)
RouteData.__doc__ = """``route``: a node's way out was chosen: ``from`` node, ``to`` node (or ``END``), by ``condition``
(the ``when`` expression that held, None for the default edge); a ``policy: qtable`` router adds ``qtable``: the
state, the Q-values it saw, epsilon, the candidates offered, who chose (``chosen_by``: greedy, random, ucb, model,
cold_start, fallback, early_stop, retry) and the episode so far. A functional TypedDict (``from`` is a keyword):
build it as an annotated literal, ``route: RouteData = {"from": ..., "to": ..., "condition": ...}``."""


class LimitData(TypedDict):
    """The declared limit a run exceeded: its name, the value declared and the value observed."""

    name: str
    value: Any
    observed: Any


class ErrorData(TypedDict):
    """``error``: a failure the run recorded (a node's, the run's, or a reward hook's).

    Keys:
        kind: the exception's class name (``RewardHookError`` for a hook).
        limit: the declared limit that was exceeded (a ``LimitExceeded``).
        status_code, retries: a model provider's failure: its HTTP status and the attempts tried.
        hook, hook_version, on, target_seq: a reward hook's failure: which hook, scoring what.
    """

    kind: str
    message: str
    limit: NotRequired[LimitData]
    status_code: NotRequired[int | None]
    retries: NotRequired[list[dict[str, Any]]]
    hook: NotRequired[str]
    hook_version: NotRequired[str]
    on: NotRequired[str]
    target_seq: NotRequired[int | None]


EventData: TypeAlias = (
    RunStartedData
    | RunFinishedData
    | RunResumedData
    | NodeStartedData
    | NodeFinishedData
    | ModelRequestData
    | ModelResponseData
    | ToolCallData
    | ToolResultData
    | SandboxExecData
    | RewardData
    | RouteData
    | ErrorData
)
"""The data of any event."""


class _ExecOutcome(Protocol):
    """What a ``sandbox_exec`` records of a command's result (``agentflow.sandboxes.ExecResult``)."""

    @property
    def exit_code(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def duration_s(self) -> float: ...


def sandbox_exec_data(cmd: list[str], by: str, result: _ExecOutcome) -> SandboxExecData:
    """The data of the ``sandbox_exec`` event of one command, ``by`` whoever ran it (``tool:<name>``, ...)."""
    return SandboxExecData(
        cmd=cmd,
        by=by,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        timed_out=result.timed_out,
        truncated=result.truncated,
        duration_s=round(result.duration_s, 4),  # 0.1 ms, as seconds_since() records durations
    )
