"""Offline re-grading: run reward hooks (and benchmark checkpoints) over stored traces, as a new grading pass."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError
from agentflow.rewards import HookContext, RewardHook, StepContext, StepKind, create_reward_hook
from agentflow.rewards._aggregate import not_scored_reason
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import ModelResponseData, NodeFinishedData, RunStartedData
from agentflow.traces._protocol import GradingMode, GradingPass, Store, StoredReward

CHECKPOINT_HOOK = "checkpoints"
HOOK_ERROR = "hook_error"
"""The component naming the exception of a hook that failed on a step (its reward's value is None)."""


@dataclass(frozen=True)
class HookRequest:
    """A hook to run offline: ``NAME`` or ``NAME:on`` (``on`` is step, node or run; step by default).

    NAME is a registered hook or a plugin by path (``hooks/mine.py:fn``, relative to the current folder).
    ``nodes`` limits it to the steps of those nodes, as a workflow's ``rewards:`` entry does (empty: every node).
    """

    name: str
    on: StepKind = "step"
    options: Mapping[str, Any] = field(default_factory=lambda: {})
    nodes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> HookRequest:
        """Parse ``NAME[:step|node|run]``; NAME is a registered hook or a plugin like ``hooks/mine.py:fn``.

        Raises:
            ConfigError: an unknown ``on`` part.
        """
        head, _, tail = text.rpartition(":")
        on: StepKind = "step"
        if head and tail in ("step", "node", "run"):
            name, on = head, tail  # type: ignore[assignment]
        elif head and not (head.endswith(".py") or "." in head or "/" in head):  # not a plugin's file or module
            raise ConfigError(
                f"hook {text!r}: unknown step kind {tail!r}", fix="write NAME, NAME:step, NAME:node or NAME:run"
            )
        else:
            name = text
        return cls(name, on)

    @property
    def label(self) -> str:
        """The request as written (``NAME:on``)."""
        return f"{self.name}:{self.on}"


@dataclass
class GradingResult:
    """What one grading pass stored: its id, the rewards per run, and the runs that could not be graded."""

    grading_pass: GradingPass
    rewards: dict[str, list[StoredReward]]
    failures: dict[str, str]
    checkpoint_reports: dict[str, dict[str, Any]] = field(default_factory=lambda: {})

    @property
    def hook_failures(self) -> int:
        """How many times a hook raised instead of scoring (each is stored as a reward with value None)."""
        return sum(1 for rewards in self.rewards.values() for reward in rewards if reward.components.get(HOOK_ERROR))

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-serialisable data."""
        return {
            "pass_id": self.grading_pass.pass_id,
            "hook_failures": self.hook_failures,
            "mode": self.grading_pass.mode,
            "hooks": self.grading_pass.hooks,
            "checkpoints": self.grading_pass.checkpoints,
            "runs": {
                run_id: {
                    "rewards": [reward.to_dict() for reward in rewards],
                    "checkpoints": self.checkpoint_reports.get(run_id),
                }
                for run_id, rewards in self.rewards.items()
            },
            "failures": self.failures,
        }


def iter_steps(events: Sequence[Event], kind: StepKind) -> Iterator[tuple[str | None, list[Event]]]:
    """The steps of a stored trace, cut the way the runtime cuts them while running.

    ``step``: each tool call with its sandbox commands and result, and each final model answer (a response without
    tool calls); ``node``: each node visit, node_started to node_finished; ``run``: the whole trace.
    """
    if kind == "run":
        yield None, list(events)
        return
    if kind == "node":
        yield from _node_visits(events)
        return
    yield from _spans(events, EventType.TOOL_CALL, EventType.TOOL_RESULT, alone=_final_answer)


def _node_visits(events: Sequence[Event]) -> Iterator[tuple[str | None, list[Event]]]:
    """Each node visit with every event from its node_started to its node_finished, in the order visits finish.

    As the runtime gives a node hook, and not only the events parented to node_started: a tool's result hangs
    under its call, and the step rewards under their steps.
    """
    started_at: dict[int, int] = {}
    for index, event in enumerate(events):
        if event.type is EventType.NODE_STARTED:
            started_at[event.seq] = index
        elif event.type is EventType.NODE_FINISHED and event.parent in started_at:
            first = started_at.pop(event.parent)
            yield events[first].node, list(events[first : index + 1])


def _final_answer(event: Event) -> bool:
    return event.type is EventType.MODEL_RESPONSE and not event.data_as(ModelResponseData).get("tool_calls")


def _spans(
    events: Sequence[Event],
    opener: EventType,
    closer: EventType,
    alone: Callable[[Event], bool] = lambda _event: False,
) -> Iterator[tuple[str | None, list[Event]]]:
    """Each ``opener`` event with the events parented to it, up to its ``closer``, in the order they close; an
    event ``alone`` accepts is a span of its own."""
    open_spans: dict[int, list[Event]] = {}
    for event in events:
        if alone(event):
            yield event.node, [event]
        elif event.type is opener:
            open_spans[event.seq] = [event]
        elif event.parent in open_spans:
            open_spans[event.parent].append(event)
            if event.type is closer:
                span = open_spans.pop(event.parent)
                yield span[0].node, span


def _state_before(events: Sequence[Event], upto: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for event in events:
        if event.seq >= upto:
            break
        if event.type is EventType.RUN_STARTED:
            inputs = event.data_as(RunStartedData).get("inputs")
            if isinstance(inputs, dict):
                state.update(inputs)
        elif event.type is EventType.NODE_FINISHED:
            updates = event.data_as(NodeFinishedData).get("updates")
            if isinstance(updates, dict):
                state.update(updates)
    return state


async def score_trace(
    run_id: str, events: Sequence[Event], hooks: Sequence[tuple[HookRequest, RewardHook]]
) -> list[StoredReward]:
    """Score one trace offline with each hook over the steps of its kind (``sandbox=None``); a failing hook gives
    a reward with ``value`` None, the error as its explanation and the exception's name as ``hook_error``; run-level
    hooks do not score an ``errored`` run (a reward with ``value`` None and ``components.not_scored``)."""
    rewards: list[StoredReward] = []
    unscored = not_scored_reason(events)
    for request, hook in hooks:
        if request.on == "run" and unscored is not None:  # an errored run: no verdict, never a 0
            explanation = f"not scored: the run {unscored}"
            marker = {"not_scored": unscored}
            rewards.append(StoredReward("", run_id, request.name, "run", None, None, None, None, explanation, marker))
            continue
        for node, step_events in iter_steps(events, request.on):
            if request.nodes and request.on != "run" and node not in request.nodes:
                continue
            state = _state_before(events, step_events[-1].seq + 1 if step_events else 0)
            before = bisect.bisect_left(events, step_events[0].seq, key=lambda e: e.seq) if step_events else 0
            step = StepContext(
                run_id=run_id,
                kind=request.on,
                node=node,
                events=step_events,
                state=state,
                options=request.options,
                history=events[:before] if request.on != "run" else (),
            )
            try:
                reward = await hook.score(step)
            except Exception as exc:  # noqa: BLE001 - a failing hook is recorded, never fatal
                rewards.append(
                    StoredReward(
                        "",
                        run_id,
                        request.name,
                        request.on,
                        node,
                        step.target_seq,
                        None,
                        None,
                        f"hook failed: {type(exc).__name__}: {exc}",
                        {HOOK_ERROR: type(exc).__name__},
                    )
                )
                continue
            if reward is None:
                continue
            rewards.append(
                StoredReward(
                    "",
                    run_id,
                    request.name,
                    request.on,
                    node,
                    step.target_seq,
                    float(reward.value),
                    reward.label,
                    reward.explanation,
                    dict(reward.components),
                )
            )
    return rewards


async def grade_runs(
    store: Store,
    run_ids: Sequence[str],
    *,
    hooks: Sequence[str | HookRequest] = (),
    checkpoints: str | None = None,
    mode: GradingMode = "append",
    concurrency: int = 8,
) -> GradingResult:
    """Grade stored runs offline and store the rewards as a new grading pass.

    Args:
        store: where the runs are, and where the pass goes.
        run_ids: the runs (ids or unique prefixes).
        hooks: ``NAME[:step|node|run]`` or :class:`HookRequest`; each hook is built once with its default options.
            With no hooks and no checkpoints, each run is graded with its own workflow's ``rewards:`` (hooks, step
            kinds, nodes and options as declared), read from the workflow file its trace names.
        checkpoints: a benchmark checkpoints file (YAML/JSON); its report becomes a ``checkpoints`` reward (value PQS).
        mode: ``append`` keeps earlier rewards current; ``overwrite`` marks earlier rewards of the same runs and hooks
            superseded (they stay stored).
        concurrency: traces graded at once.

    Raises:
        ConfigError: an unknown hook, or a bad checkpoints file.
    """
    from agentflow.grading._checkpoints import evaluate_checkpoints, load_checkpoints

    requests = [hook if isinstance(hook, HookRequest) else HookRequest.parse(hook) for hook in hooks]
    own_rewards = not requests and checkpoints is None
    built = [(request, create_reward_hook(request.name, request.options)) for request in requests]
    spec = load_checkpoints(checkpoints) if checkpoints is not None else None
    full_ids = [store.resolve_run_id(run_id) for run_id in run_ids]
    by_workflow: dict[str, list[tuple[HookRequest, RewardHook]]] = {}
    rewards_of: dict[str, list[StoredReward]] = {}
    failures: dict[str, str] = {}
    reports: dict[str, dict[str, Any]] = {}
    limiter = asyncio.Semaphore(concurrency)

    async def grade_one(run_id: str) -> None:
        async with limiter:
            trace = await asyncio.to_thread(store.load_trace, run_id)
            if not trace.ok:
                failures[run_id] = "; ".join(str(problem) for problem in trace.problems)
                return
            events = [
                event.model_copy(update={"data": trace.resolve(event.data)}) if "$blob" in str(event.data) else event
                for event in trace.events
            ]
            hooks_of_run = built
            if own_rewards:
                try:
                    hooks_of_run = _workflow_hooks(events, by_workflow)
                except ConfigError as exc:
                    failures[run_id] = f"{exc} (name the hooks with --hooks)"
                    return
            rewards = await score_trace(run_id, events, hooks_of_run)
            if spec is not None:
                report = await evaluate_checkpoints(spec, events)
                reports[run_id] = report.to_dict()
                rewards.append(
                    StoredReward(
                        "",
                        run_id,
                        CHECKPOINT_HOOK,
                        "run",
                        None,
                        events[0].seq if events else None,
                        report.pqs,
                        None,
                        f"PQS {report.pqs:.3f}",
                        report.to_dict(),
                    )
                )
            rewards_of[run_id] = rewards

    await asyncio.gather(*(grade_one(run_id) for run_id in full_ids))
    used = requests if not own_rewards else [r for hooks_of in by_workflow.values() for r, _ in hooks_of]
    labels = list(dict.fromkeys(request.label for request in used)) + ([CHECKPOINT_HOOK] if spec else [])
    grading_pass = store.create_grading_pass(run_ids=full_ids, hooks=labels, checkpoints=checkpoints, mode=mode)
    result = GradingResult(grading_pass, {}, failures, reports)
    result.rewards = {
        run_id: [_in_pass(reward, grading_pass.pass_id) for reward in rewards_of[run_id]]
        for run_id in full_ids
        if run_id in rewards_of
    }
    stored = [reward for rewards in result.rewards.values() for reward in rewards]
    await asyncio.to_thread(store.add_rewards, grading_pass, stored)
    return result


def _workflow_hooks(
    events: Sequence[Event], cache: dict[str, list[tuple[HookRequest, RewardHook]]]
) -> list[tuple[HookRequest, RewardHook]]:
    """The hooks of the workflow a trace ran (its ``rewards:``), built once per workflow file.

    Raises:
        ConfigError: the trace names no workflow file, or the file is gone or invalid.
    """
    from agentflow.spec import load_workflow

    started = next((event for event in events if event.type is EventType.RUN_STARTED), None)
    file = started.data_as(RunStartedData).get("workflow_file") if started is not None else None
    if not isinstance(file, str) or not file:
        raise ConfigError("the run's trace names no workflow file to take its rewards from")
    if file not in cache:
        if not Path(file).is_file():
            raise ConfigError(f"the run's workflow file is gone: {file}")
        loaded = load_workflow(file)
        context = HookContext(loaded.base_dir, {name: config.model for name, config in loaded.spec.models.items()})
        requests = [
            HookRequest(reward.hook, reward.on, dict(reward.options), tuple(reward.nodes))
            for reward in loaded.spec.rewards
        ]
        cache[file] = [(request, create_reward_hook(request.name, request.options, context)) for request in requests]
    return cache[file]


def _in_pass(reward: StoredReward, pass_id: str) -> StoredReward:
    from dataclasses import replace

    return replace(reward, pass_id=pass_id)
