"""What one run did, computed from its trace events alone: the table ``agentflow run`` and ``agentflow show`` print.

Everything here is a pure function of the events, so a summary of a stored trace, of a trace being recorded and of a
trace imported from another tool agree. Definitions (the CLI and the index use the same ones):

- a **visit** of a node is a ``node_started`` event with a new ``visit`` number for that node (a retry has the same
  visit and a higher ``attempt``); a **step** is one node execution, i.e. any ``node_started`` (retries included);
- a **tool call** is a ``tool_call`` event; it is ok or failed by the ``ok`` flag of its ``tool_result``;
- a **model call** is a ``model_request`` (importers that record only responses count their ``model_response``);
  tokens come from ``model_response.usage``, and are kept per model: the model its ``model_request`` parent names;
- the **cost** is those tokens in dollars, at the prices the run's ``run_started`` carries (``bench.prices``: a
  benchmark's ``prices:``), see :mod:`agentflow.traces._cost`; ``None`` when no answering model has a price;
- the **outcome** is the run's verdict: the value of its outcome hook's run-level reward (``on: run``), the last
  one if it gave several. The outcome hook is the one ``run_started.bench.outcome_hook`` names (a benchmark's
  outcome scorer, so the outcome is the one its report counts); a run outside a benchmark has the lowest value
  of its run-level rewards (one hook in the usual case; with several, the run passed only if each passed).
  ``None`` when there is none (the hook abstained, or the run errored and was not scored);
- a **reward** is a ``reward`` event; means ignore rewards whose value is ``None`` (a hook that abstained); a
  ``reward`` event carrying ``aggregate`` figures is the run's aggregate of a hook's rewards, kept apart, not counted;
  one carrying ``not_scored`` (the run ``errored``: its run-level hooks and aggregates gave no verdict) is neither a
  reward nor an aggregate: its hook is listed in ``not_scored`` with the reason;
- a **model retry** is one entry of the ``retries`` of a ``model_response`` (a call that failed transiently and
  was tried again) or of an ``error`` (a call whose retries ran out);
- events are attributed to the node named on them, or else to the node of their ``parent`` event.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from agentflow.traces._cost import ModelUsage, usage_cost
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import (
    ErrorData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RewardData,
    RouteData,
    RunFinishedData,
    RunStartedData,
    SandboxExecData,
    ToolCallData,
    ToolResultData,
)

__all__ = [
    "SOLVED_OUTCOME",
    "ErrorInfo",
    "HookRewards",
    "LimitInfo",
    "NodeSummary",
    "RewardInfo",
    "RunSummary",
    "SummaryBuilder",
    "realized_graph",
    "summarize",
]

SOLVED_OUTCOME = 0.5
"""An outcome at or above it is a solved run: a correct sample of a benchmark, a passed run in the viewer."""

END_NODE_NAMES = frozenset({"END", "__end__"})
"""Route targets that mean "the run ends here" (the YAML's ``END`` and LangGraph's ``__end__``)."""


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class RewardInfo:
    """One reward a hook gave."""

    hook: str
    value: float | None
    label: int | None
    on: str
    seq: int
    node: str | None


@dataclass(frozen=True)
class ErrorInfo:
    """One ``error`` event."""

    kind: str
    message: str
    node: str | None
    seq: int


@dataclass(frozen=True)
class LimitInfo:
    """The declared limit a run exceeded."""

    name: str
    value: float | None
    observed: float | None


@dataclass
class NodeSummary:
    """What happened inside one node over all of its visits."""

    visits: int = 0
    attempts: int = 0
    failures: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    duration_s: float = 0.0
    rewards: list[RewardInfo] = field(default_factory=lambda: [])

    @property
    def reward_mean(self) -> float | None:
        """Mean value of this node's rewards (``None`` when it has none)."""
        return _mean(reward.value for reward in self.rewards)

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out


@dataclass
class HookRewards:
    """The rewards one hook gave over the run."""

    count: int = 0
    values: list[float] = field(default_factory=lambda: [])
    labels: dict[str, int] = field(default_factory=lambda: {})  # "1" | "0" | "-1" -> count
    # the run-level figures of the hook's `aggregate:` setting (the last aggregate event); not a reward, not counted
    aggregate: dict[str, Any] | None = None
    # why the hook gave the run no verdict ("errored": the infrastructure failed); None when it scored
    not_scored: str | None = None

    @property
    def mean(self) -> float | None:
        """Mean of the non-``None`` values."""
        return _mean(self.values)


@dataclass
class RunSummary:
    """The numbers of one run; build it with :func:`summarize`, serialise it with :meth:`to_dict`.

    ``status`` is the one recorded by ``run_finished``, or ``"incomplete"`` when the trace has none (a run still in
    progress, or killed).
    """

    run_id: str | None = None
    workflow: str | None = None
    replay_of: str | None = None  # the run this one replays (``agentflow replay``), from its run_started
    forked_from: str | None = None  # the run this one was forked from (``agentflow fork``), from its run_started
    fork_group: str | None = None  # its fork group, from its run_started
    status: str = "incomplete"
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    events: int = 0
    nodes_visited: list[str] = field(default_factory=lambda: [])
    nodes: dict[str, NodeSummary] = field(default_factory=lambda: {})
    steps: int = 0
    tool_calls: int = 0
    tool_calls_ok: int = 0
    tool_calls_failed: int = 0
    model_calls: int = 0
    model_retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    sandbox_execs: int = 0
    rewards: list[RewardInfo] = field(default_factory=lambda: [])
    rewards_by_hook: dict[str, HookRewards] = field(default_factory=lambda: {})
    errors: list[ErrorInfo] = field(default_factory=lambda: [])
    limit_exceeded: LimitInfo | None = None
    not_scored: dict[str, str] = field(default_factory=lambda: {})  # hook -> why it gave the run no verdict
    final_answer: str | None = None  # the text of the last model answer that called no tool
    usage_by_model: dict[str, ModelUsage] = field(default_factory=lambda: {})  # model requested -> its tokens
    prices: dict[str, dict[str, float]] = field(default_factory=lambda: {})  # model -> price, from run_started
    outcome_hook: str | None = None  # the hook whose run-level reward is the outcome, from run_started

    @property
    def tokens(self) -> int:
        """Input plus output tokens of every model call."""
        return self.tokens_in + self.tokens_out

    @property
    def reward_mean(self) -> float | None:
        """Mean of every reward value in the run, any hook and level (``None`` when there is none)."""
        return _mean(reward.value for reward in self.rewards)

    @property
    def reward_min(self) -> float | None:
        """The lowest reward value in the run, any hook and level (``None`` when there is none)."""
        return min((reward.value for reward in self.rewards if reward.value is not None), default=None)

    @property
    def first_error_seq(self) -> int | None:
        """The seq of the run's first error: an ``error`` event or a reward labelled -1 (a step a hook refuted),
        whichever came first; ``None`` when there is neither."""
        first_error = self.errors[0].seq if self.errors else None
        first_refuted = next((reward.seq for reward in self.rewards if reward.label == -1), None)
        return min((seq for seq in (first_error, first_refuted) if seq is not None), default=None)

    @property
    def outcome(self) -> float | None:
        """The run's outcome reward (see the module): its outcome hook's run-level value, else the lowest
        run-level value; ``None`` when there is none."""
        run_rewards = [reward for reward in self.rewards if reward.on == "run"]
        if self.outcome_hook is not None:
            return next((r.value for r in reversed(run_rewards) if r.hook == self.outcome_hook), None)
        return min((reward.value for reward in run_rewards if reward.value is not None), default=None)

    @property
    def cost(self) -> float | None:
        """Dollars of the run's model calls at the prices it was run with; ``None`` when none of them is priced."""
        return usage_cost(self.usage_by_model, self.prices) if self.prices else None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-serialisable data, derived values (means, token totals) included."""
        data = asdict(self)
        data["tokens"] = self.tokens
        data["reward_mean"] = self.reward_mean
        data["reward_min"] = self.reward_min
        data["first_error_seq"] = self.first_error_seq
        data["outcome"] = self.outcome
        data["cost"] = self.cost
        for name, node in self.nodes.items():
            data["nodes"][name]["reward_mean"] = node.reward_mean
            data["nodes"][name]["tokens"] = node.tokens
        for hook, rewards in self.rewards_by_hook.items():
            data["rewards_by_hook"][hook]["mean"] = rewards.mean
        return data


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _price(value: Any) -> dict[str, float] | None:
    """A recorded price as numbers, or None when it is not one."""
    if not isinstance(value, dict):
        return None
    price = {key: _as_number(value.get(key)) for key in ("input_per_mtok", "output_per_mtok")}
    return None if None in price.values() else {key: number for key, number in price.items() if number is not None}


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class SummaryBuilder:
    """Accumulates a :class:`RunSummary` one event at a time.

    The recorder feeds it every event it writes (so the index can be updated without re-reading the trace), and
    :func:`summarize` feeds it a whole list; both therefore count the same way.
    """

    def __init__(self) -> None:
        self._summary = RunSummary()
        self._node_of_seq: dict[int, str] = {}
        self._visits_seen: dict[str, set[int]] = {}
        self._model_requests: dict[str | None, int] = {}
        self._model_responses: dict[str | None, int] = {}
        self._model_of_request: dict[int | None, str] = {}  # model_request seq -> the model it asked
        self._tool_results: dict[str | None, int] = {}
        self._first_ts: str | None = None
        self._last_ts: str | None = None

    def add(self, event: Event) -> None:
        """Account for one event (events must come in trace order)."""
        summary = self._summary
        summary.events += 1
        if self._first_ts is None:
            self._first_ts = event.ts
            summary.run_id = event.run_id
        self._last_ts = event.ts
        node = event.node
        if node is None and event.parent is not None:
            node = self._node_of_seq.get(event.parent)
        if node is not None:
            self._node_of_seq[event.seq] = node
        handler = self._HANDLERS.get(event.type)
        if handler is not None:  # each handler takes the data of the one event type it is registered for
            handler(self, event, node, event.data)

    def _node(self, name: str) -> NodeSummary:
        found = self._summary.nodes.get(name)
        if found is None:
            found = self._summary.nodes[name] = NodeSummary()
        return found

    def _on_run_started(self, event: Event, node: str | None, data: RunStartedData) -> None:
        workflow = data.get("workflow")
        self._summary.workflow = workflow if isinstance(workflow, str) else None
        replay_of = data.get("replay_of")
        self._summary.replay_of = replay_of if isinstance(replay_of, str) else None
        forked_from = data.get("forked_from")
        parent = forked_from.get("run_id") if isinstance(forked_from, dict) else None
        self._summary.forked_from = parent if isinstance(parent, str) else None
        fork_group = data.get("fork_group")
        self._summary.fork_group = fork_group if isinstance(fork_group, str) else None
        self._summary.started_at = event.ts
        bench = data.get("bench")
        if isinstance(bench, dict):
            outcome_hook = bench.get("outcome_hook")
            self._summary.outcome_hook = outcome_hook if isinstance(outcome_hook, str) else None
            prices = bench.get("prices")
            if isinstance(prices, dict):
                read = {str(model): _price(price) for model, price in prices.items()}
                self._summary.prices = {model: price for model, price in read.items() if price is not None}

    def _on_run_finished(self, event: Event, node: str | None, data: RunFinishedData) -> None:
        summary = self._summary
        summary.status = str(data.get("status", "unknown"))
        error = data.get("error")
        summary.error = str(error) if error is not None else None
        summary.finished_at = event.ts
        duration = _as_number(data.get("duration_s"))
        if duration is not None:
            summary.duration_s = duration
        if summary.status == "limit_exceeded" and summary.limit_exceeded is None:
            summary.limit_exceeded = LimitInfo(name="unknown", value=None, observed=None)

    def _on_node_started(self, event: Event, node: str | None, data: NodeStartedData) -> None:
        if node is None:
            return
        stats = self._node(node)
        stats.attempts += 1
        self._summary.steps += 1
        visit = data.get("visit")
        branch = event.data.get("branch")  # the items of a map run one node, each its own first visit
        seen = self._visits_seen.setdefault(node if not isinstance(branch, str) else f"{branch}:{node}", set())
        # Without a visit number every start is a new visit; with one, a retry (same visit) is not.
        if not isinstance(visit, int) or visit not in seen:
            if isinstance(visit, int):
                seen.add(visit)
            stats.visits += 1
            self._summary.nodes_visited.append(node)

    def _on_node_finished(self, event: Event, node: str | None, data: NodeFinishedData) -> None:
        if node is None:
            return
        stats = self._node(node)
        if data.get("status") == "failed":
            stats.failures += 1
        stats.duration_s += _as_number(data.get("duration_s")) or 0.0

    def _on_model_request(self, event: Event, node: str | None, data: ModelRequestData) -> None:
        self._model_requests[node] = self._model_requests.get(node, 0) + 1
        model = data.get("model")
        if isinstance(model, str):
            self._model_of_request[event.seq] = model
        self._recount_model_calls(node)

    def _on_model_response(self, event: Event, node: str | None, data: ModelResponseData) -> None:
        self._model_responses[node] = self._model_responses.get(node, 0) + 1
        self._recount_model_calls(node)
        self._count_retries(data)
        message = data.get("message")
        if isinstance(message, dict) and not data.get("tool_calls") and not message.get("tool_calls"):
            content = message.get("content")
            if isinstance(content, str) and content.strip():
                self._summary.final_answer = content
        usage = data.get("usage")
        if isinstance(usage, dict):
            tokens_in, tokens_out = _as_int(usage.get("input_tokens")), _as_int(usage.get("output_tokens"))
            self._summary.tokens_in += tokens_in
            self._summary.tokens_out += tokens_out
            model = self._model_of_request.get(event.parent)
            if model is not None:
                used = self._summary.usage_by_model.get(model)
                if used is None:
                    used = self._summary.usage_by_model[model] = ModelUsage()
                used.calls += 1
                used.input_tokens += tokens_in
                used.output_tokens += tokens_out
            if node is not None:
                stats = self._node(node)
                stats.tokens_in += tokens_in
                stats.tokens_out += tokens_out

    def _count_retries(self, data: ModelResponseData | ErrorData) -> None:
        retries = data.get("retries")
        if isinstance(retries, list):
            self._summary.model_retries += len(retries)

    def _recount_model_calls(self, node: str | None) -> None:
        calls = max(self._model_requests.get(node, 0), self._model_responses.get(node, 0))
        if node is not None:
            self._node(node).model_calls = calls
        self._summary.model_calls = sum(
            max(self._model_requests.get(key, 0), self._model_responses.get(key, 0))
            for key in self._model_requests.keys() | self._model_responses.keys()
        )

    def _on_tool_call(self, event: Event, node: str | None, data: ToolCallData) -> None:
        self._summary.tool_calls += 1
        if node is not None:
            self._node(node).tool_calls += 1

    def _on_tool_result(self, event: Event, node: str | None, data: ToolResultData) -> None:
        summary = self._summary
        if data.get("ok") is False:
            summary.tool_calls_failed += 1
            if node is not None:
                self._node(node).tool_failures += 1
        else:
            summary.tool_calls_ok += 1

    def _on_sandbox_exec(self, event: Event, node: str | None, data: SandboxExecData) -> None:
        self._summary.sandbox_execs += 1

    def _on_reward(self, event: Event, node: str | None, data: RewardData) -> None:
        hook = str(data.get("hook", "unknown"))
        figures = data.get("aggregate")
        if isinstance(figures, dict):  # the engine's run-level aggregate of this hook's rewards, not a reward itself
            self._summary.rewards_by_hook.setdefault(hook, HookRewards()).aggregate = figures
            return
        not_scored = data.get("not_scored")
        if isinstance(not_scored, str):  # no verdict (the run errored): not a reward, not a value of None either
            self._summary.rewards_by_hook.setdefault(hook, HookRewards()).not_scored = not_scored
            self._summary.not_scored[hook] = not_scored
            return
        label = data.get("label")
        reward = RewardInfo(
            hook=hook,
            value=_as_number(data.get("value")),
            label=label if isinstance(label, int) and not isinstance(label, bool) else None,
            on=str(data.get("on", "step")),
            seq=event.seq,
            node=node,
        )
        self._summary.rewards.append(reward)
        if node is not None and reward.on != "run":
            self._node(node).rewards.append(reward)
        by_hook = self._summary.rewards_by_hook.setdefault(hook, HookRewards())
        by_hook.count += 1
        if reward.value is not None:
            by_hook.values.append(reward.value)
        if reward.label is not None:
            by_hook.labels[str(reward.label)] = by_hook.labels.get(str(reward.label), 0) + 1

    def _on_error(self, event: Event, node: str | None, data: ErrorData) -> None:
        summary = self._summary
        self._count_retries(data)
        summary.errors.append(
            ErrorInfo(
                kind=str(data.get("kind", "Error")), message=str(data.get("message", "")), node=node, seq=event.seq
            )
        )
        limit = data.get("limit")
        if isinstance(limit, dict):
            summary.limit_exceeded = LimitInfo(
                name=str(limit.get("name", "unknown")),
                value=_as_number(limit.get("value")),
                observed=_as_number(limit.get("observed")),
            )

    _HANDLERS: ClassVar[dict[EventType, Any]] = {
        EventType.RUN_STARTED: _on_run_started,
        EventType.RUN_FINISHED: _on_run_finished,
        EventType.NODE_STARTED: _on_node_started,
        EventType.NODE_FINISHED: _on_node_finished,
        EventType.MODEL_REQUEST: _on_model_request,
        EventType.MODEL_RESPONSE: _on_model_response,
        EventType.TOOL_CALL: _on_tool_call,
        EventType.TOOL_RESULT: _on_tool_result,
        EventType.SANDBOX_EXEC: _on_sandbox_exec,
        EventType.REWARD: _on_reward,
        EventType.ERROR: _on_error,
    }

    def build(self, *, snapshot: bool = True) -> RunSummary:
        """Return the summary of the events added so far.

        Args:
            snapshot: deep-copy it, so adding more events does not change it. ``False`` returns a shallow copy that
                shares its lists with the builder, for a caller that only reads it at once (the recorder's index
                updates, which would otherwise copy every reward of the run at every node boundary).
        """
        summary = copy.deepcopy(self._summary) if snapshot else copy.copy(self._summary)
        if summary.duration_s is None and self._first_ts is not None and self._last_ts is not None:
            summary.duration_s = _seconds_between(self._first_ts, self._last_ts)
        return summary


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def summarize(events: Iterable[Event]) -> RunSummary:
    """Summarise a run from its events.

    Args:
        events: the run's events in trace order (``Trace.events``, or any list of :class:`Event`).

    Returns:
        The run's :class:`RunSummary`; ``duration_s`` comes from ``run_finished``, else from the first and last
        timestamps.
    """
    builder = SummaryBuilder()
    for event in events:
        builder.add(event)
    return builder.build()


class _BranchStreams:
    """Where each visit of a realized graph comes from when branches (``data.branch``) interleave.

    Each branch is its own stream of visits, starting after the last visit of the stream it branched from; the next
    visit of that stream (a join, a map's collection) follows the last visit of every branch that started since.
    """

    def __init__(self) -> None:
        self.last: dict[str | None, str] = {}
        self.open_children: dict[str | None, list[str]] = {}
        self.branches: dict[str, list[str]] = {}  # branch id -> its nodes in visit order

    def visit(self, stream: str | None, node: str) -> list[str]:
        """Record a visit of ``node`` in ``stream``; return the nodes it follows."""
        sources: list[str] = []
        children = self.open_children.pop(stream, [])
        if children:
            sources = [self.last[child] for child in children if child in self.last]
        elif stream in self.last:
            sources = [self.last[stream]]
        elif stream is not None:
            parent = stream.rsplit("/", 1)[0] if "/" in stream else None
            if parent in self.last:
                sources = [self.last[parent]]
            self.open_children.setdefault(parent, []).append(stream)
        self.last[stream] = node
        if stream is not None and node not in self.branches.setdefault(stream, []):
            self.branches[stream].append(node)
        return sources


def _best_of_visits(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Each visit of a ``best_of`` node: its node, hook, candidates and the one kept (its ``node_finished``)."""
    return [
        {"node": event.node, **event.data_as(NodeFinishedData)["best_of"]}
        for event in events
        if event.type is EventType.NODE_FINISHED and "best_of" in event.data
    ]


def realized_graph(events: Iterable[Event]) -> dict[str, Any]:
    """Return the part of the template graph one run actually took, with visit and edge counts.

    An edge ``a -> b`` is counted each time a visit of ``b`` starts after a visit of ``a`` (retries are not new
    visits, so they add no edge). ``route`` events add the conditions that chose an edge, and the edges that no node
    start shows: a route to ``END`` / ``__end__``, or a route whose target never started (the run stopped first).

    A visit of a node with ``best_of`` is one visit on the path; its candidates are listed under ``best_of``, one
    entry per such visit, in order: ``{"node", "by", "candidates": [{"branch", "score", "error", ...}], "chosen"}``
    (what its ``node_finished`` recorded).

    Returns:
        ``{"start": first node or None, "path": [node, ...] in visit order, "nodes": {name: {"visits": n}},
        "edges": [{"from": a, "to": b, "count": n, "conditions": [...]}], "best_of": [...]}``, JSON-serialisable;
        edges in the order they were first taken. A run with parallel branches or map items also has ``"branches":
        {branch id: [node, ...]}`` (the branches side by side), and each node inside one lists its ``"branches"``.
    """
    path: list[str] = []
    visits_seen: dict[str, set[int]] = {}
    edge_counts: dict[tuple[str, str], int] = {}
    conditions: dict[tuple[str, str], list[Any]] = {}
    routes: list[tuple[str, str, Any]] = []
    streams = _BranchStreams()
    events = list(events)
    for event in events:
        if event.type is EventType.NODE_STARTED and event.node is not None:
            visit = event.data_as(NodeStartedData).get("visit")
            tag = event.data.get("branch")
            stream = tag if isinstance(tag, str) else None
            seen = visits_seen.setdefault(event.node if stream is None else f"{stream}:{event.node}", set())
            if isinstance(visit, int) and visit in seen:
                continue  # a retry of the same visit
            if isinstance(visit, int):
                seen.add(visit)
            for source in streams.visit(stream, event.node):
                edge = (source, event.node)
                edge_counts[edge] = edge_counts.get(edge, 0) + 1
            path.append(event.node)
        elif event.type is EventType.ROUTE:
            route = event.data_as(RouteData)
            source, target = route.get("from"), route.get("to")
            if isinstance(source, str) and isinstance(target, str):
                routes.append((source, target, route.get("condition")))
    started_edges = set(edge_counts)
    for source, target, condition in routes:
        edge = (source, target)
        if edge not in started_edges or target in END_NODE_NAMES:
            edge_counts[edge] = edge_counts.get(edge, 0) + 1
        if condition is not None and condition not in conditions.setdefault(edge, []):
            conditions[edge].append(condition)
    nodes: dict[str, dict[str, Any]] = {}
    for name in path:
        nodes.setdefault(name, {"visits": 0})["visits"] += 1
    branches = streams.branches
    for stream, names in branches.items():
        for name in names:
            nodes[name].setdefault("branches", []).append(stream)
    result: dict[str, Any] = {
        "start": path[0] if path else None,
        "path": path,
        "nodes": nodes,
        "edges": [
            {"from": source, "to": target, "count": count, "conditions": conditions.get((source, target), [])}
            for (source, target), count in edge_counts.items()
        ],
        "best_of": _best_of_visits(events),
    }
    if branches:  # concurrent branches, side by side: id -> its nodes in visit order
        result["branches"] = branches
    return result
