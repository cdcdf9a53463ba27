"""Deterministic replay of a stored run: the tape, the tape and verify plans, and ``replay_run``.

Two modes (``agentflow replay RUN_ID --mode tape|verify``):

- ``tape`` re-executes the workflow with every model response served from the trace (matched by the hash of the
  request content, in order) and every tool result served from the trace (with the sandbox commands it recorded):
  no model is called and nothing executes; the sandbox is a :class:`TapeSandbox` that refuses every operation, and
  what the reward hooks recorded is copied from the trace at its recorded places.
- ``verify`` serves the model from the tape but runs every tool again in a fresh sandbox, so a tool whose behaviour
  changed shows up as the first divergence.

The replay is recorded as a new run and compared with the recording event by event (``agentflow.traces``'
comparison: content digests without what differs by nature, volatile text masked).
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from agentflow.errors import ConfigError, ReplayDivergence, SandboxError, TraceError
from agentflow.models import Model, ReplayModel, ToolCall
from agentflow.rerun._recorded import RecordedRun
from agentflow.runtime import CompiledWorkflow, RunContext, RunPlan, ServedTool
from agentflow.runtime._branches import current_branch
from agentflow.sandboxes import ExecResult, IsolationReport, Sandbox
from agentflow.tools import ToolOutcome
from agentflow.traces import (
    VOLATILE_TEXT,
    Divergence,
    Event,
    EventData,
    EventType,
    RecordedResponses,
    RunStartedData,
    SandboxExecData,
    Store,
    content_digest,
    first_divergence,
    volatile_pattern,
    without_abandoned,
)
from agentflow.traces._events import ran_by_hook

ReplayMode = Literal["tape", "verify"]


class Tape:
    """The model responses, tool results and hook events of a recorded run, served back in order.

    Args:
        run_id: the recorded run.
        events: its events, blob references resolved; a resumed run's abandoned visit is left out here (see
            :func:`~agentflow.traces.without_abandoned`).
        mode: ``tape`` serves tool results too; ``verify`` serves only the model.
        volatile: in ``verify`` mode, text of tool output that may differ between executions (see
            ``VOLATILE_TEXT``): requests are matched with it masked, since the re-run tools' output reaches the
            model's next request.
    """

    def __init__(
        self, run_id: str, events: Sequence[Event], mode: ReplayMode, volatile: re.Pattern[str] | None = None
    ) -> None:
        self.run_id = run_id
        self.mode = mode
        self._recorded = without_abandoned(events)
        self.recorded_events: Sequence[Event] = self._recorded
        # a run with concurrent branches: each branch is served its own recorded responses and tool results, and
        # its hook events are found by its position in its own stream of events, whatever the interleaving
        self.branched = any(isinstance(event.data.get("branch"), str) for event in self._recorded)
        masking = volatile if mode == "verify" else None
        self.responses = RecordedResponses(run_id, self._recorded, masking)  # per branch, by the request's branch
        self.streams: dict[str | None, list[Event]] = {}
        for event in self._recorded:
            self.streams.setdefault(_branch_of(event), []).append(event)
        self.tool_results_served = 0
        self._tools: dict[tuple[str | None, str, str, str], deque[tuple[dict[str, Any], list[SandboxExecData]]]] = {}
        self.run_started: dict[str, Any] = {}
        self.original_duration_s: float | None = None
        self._load()

    def _load(self) -> None:
        by_parent: dict[int, list[Event]] = {}
        for event in self._recorded:
            if event.parent is not None:
                by_parent.setdefault(event.parent, []).append(event)
        for event in self._recorded:
            if event.type is EventType.RUN_STARTED:
                self.run_started = dict(event.data)
            elif event.type is EventType.RUN_FINISHED:
                duration = event.data.get("duration_s")
                self.original_duration_s = float(duration) if isinstance(duration, int | float) else None
            elif event.type is EventType.TOOL_CALL:
                children = by_parent.get(event.seq, [])
                result = next((e for e in children if e.type is EventType.TOOL_RESULT), None)
                if result is None:
                    continue
                # a step hook's commands hang under the call too; they come back with the hook's reward instead
                execs = [
                    e.data_as(SandboxExecData)
                    for e in children
                    if e.type is EventType.SANDBOX_EXEC and not ran_by_hook(e)
                ]
                key = (
                    _branch_of(event),
                    *_tool_key(event.data.get("tool"), event.data.get("call_id"), event.data.get("arguments")),
                )
                self._tools.setdefault(key, deque()).append((dict(result.data), execs))

    @property
    def model_calls_served(self) -> int:
        return self.responses.served

    def hook_events_after(self, seq: int) -> list[Event]:
        """The recorded events that reward hooks wrote right after event ``seq`` (rewards, failures, commands)."""
        found: list[Event] = []
        for event in self._recorded[seq + 1 :]:
            if not _is_hook_event(event):
                break
            found.append(event)
        return found

    def tool_outcome(self, call: ToolCall) -> ServedTool:
        """The recorded result of this tool call, with the sandbox commands it ran.

        Raises:
            ReplayDivergence: the tape holds no (more) result for this call.
        """
        branch = current_branch.get()
        queue = self._tools.get((None if branch is None else branch.id, *_tool_key(call.name, call.id, call.arguments)))
        if not queue:
            raise ReplayDivergence(
                f"tool call {call.name}({call.arguments[:200]}) with id {call.id!r} is not on the tape of run "
                f"{self.run_id}"
            )
        result, execs = queue.popleft()
        self.tool_results_served += 1
        outcome = ToolOutcome(
            ok=bool(result.get("ok")),
            content=str(result.get("content") or ""),
            result=result.get("result"),
            error=result.get("error"),
        )
        return ServedTool(outcome, execs)

    def recorded_isolation(self) -> Mapping[str, Any]:
        """The isolation report the recorded run's sandbox gave."""
        sandbox_info = self.run_started.get("sandbox")
        isolation = sandbox_info.get("isolation") if isinstance(sandbox_info, dict) else None
        return isolation if isinstance(isolation, dict) else {}


def _branch_of(event: Event) -> str | None:
    tag = event.data.get("branch")
    return tag if isinstance(tag, str) else None


def _current_branch_id() -> str | None:
    """The id of the branch making the call (None on the run's main path): what a replay serves per branch."""
    branch = current_branch.get()
    return None if branch is None else branch.id


def _tool_key(tool: Any, call_id: Any, arguments: Any) -> tuple[str, str, str]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)
    return str(tool), str(call_id), text


def _is_hook_event(event: Event) -> bool:
    """A reward, the recorded failure of a reward hook (an error event naming its hook), or a hook's sandbox command."""
    return (
        event.type is EventType.REWARD or (event.type is EventType.ERROR and "hook" in event.data) or ran_by_hook(event)
    )


class VerifyPlan(RunPlan):
    """A replay in ``verify`` mode: the model answers from the tape, the tools run again in a fresh sandbox."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape

    def check(self, compiled: CompiledWorkflow, model_override: str | None) -> None:
        return None  # no model is called, so none needs a key or a script

    def model(self, model_string: str, base_dir: Path) -> Model:
        # impersonating the recorded model keeps the requests, and their hashes, the recorded ones
        return ReplayModel(self.tape.responses, impersonate=model_string, branch=_current_branch_id)

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: RunStartedData) -> None:
        replayed = run_started.copy()
        replayed["replay_of"], replayed["replay_mode"] = self.tape.run_id, self.tape.mode
        await super().start(ctx, compiled, replayed)

    def served_route(self, node: str, index: int) -> Mapping[str, Any] | None:
        # a learned router takes the recorded decision again (and learns nothing from a replay)
        routes = [e.data for e in self.tape.recorded_events if e.type is EventType.ROUTE and e.node == node]
        return routes[index] if index < len(routes) and "qtable" in routes[index] else None

    def sandbox_execs(self, events: Sequence[Event]) -> int:
        """The sandbox commands that really ran during the replay."""
        return sum(1 for event in events if event.type is EventType.SANDBOX_EXEC)


class TapePlan(VerifyPlan):
    """A replay in ``tape`` mode: model responses, tool results and hook events all come from the tape."""

    serves_hook_events = True

    def __init__(self, tape: Tape) -> None:
        super().__init__(tape)
        self.tape_sandbox = TapeSandbox(tape.recorded_isolation())
        self._positions: dict[str | None, int] = {}  # per branch stream: its events the replay recorded so far
        self._seqs: dict[int, int] = {}  # recorded seq -> the replay's seq of the same event

    async def open_sandbox(self, compiled: CompiledWorkflow, backend: str, run_id: str) -> Sandbox:
        return self.tape_sandbox

    def served_tool(self, call: ToolCall) -> ServedTool:
        return self.tape.tool_outcome(call)

    def after_event(self, ctx: RunContext, event: Event) -> None:
        if self.tape.branched:  # each branch's hook events are found at their place in that branch's stream
            self._copy_hook_events_of_stream(ctx, event)
            return
        copy_hook_events(ctx, self.tape, event)

    def _copy_hook_events_of_stream(self, ctx: RunContext, event: Event) -> None:
        """The hook events the recording has after ``event``'s counterpart: the event at the same position of the
        same branch's stream (branches interleave differently on replay; each branch's own order is the run's)."""
        stream = _branch_of(event)
        recorded_stream = self.tape.streams.get(stream, [])
        position = self._positions.get(stream, 0)
        self._positions[stream] = position + 1
        if position >= len(recorded_stream):
            return
        counterpart = recorded_stream[position]
        if counterpart.type is not event.type or counterpart.node != event.node:
            return  # the replay has diverged from the tape here
        self._seqs[counterpart.seq] = event.seq
        for recorded in recorded_stream[position + 1 :]:
            if not _is_hook_event(recorded):
                break
            data = dict(recorded.data)
            target = data.get("target_seq")
            if isinstance(target, int):
                data["target_seq"] = self._seqs.get(target, target)
            parent = self._seqs.get(recorded.parent, recorded.parent) if recorded.parent is not None else None
            copied = ctx.record(recorded.type, node=recorded.node, parent=parent, data=cast("EventData", data))
            self._seqs[recorded.seq] = copied.seq
            self._positions[stream] += 1

    def served_route(self, node: str, index: int) -> Mapping[str, Any] | None:
        # a learned router takes the recorded decision again (and learns nothing from a replay)
        routes = [e.data for e in self.tape.recorded_events if e.type is EventType.ROUTE and e.node == node]
        return routes[index] if index < len(routes) and "qtable" in routes[index] else None

    def sandbox_execs(self, events: Sequence[Event]) -> int:
        # the recorded commands are only re-emitted; what counts is what something tried to run anyway
        return self.tape_sandbox.execs


def copy_hook_events(ctx: RunContext, tape: Tape, event: Event) -> None:
    """Record again what the reward hooks recorded on ``tape`` right after ``event`` (a tape replay, a fork's prefix).

    Hooks may need the sandbox or a model, which a tape replay must not touch, and background hooks record at
    moments no replay can reproduce: so what the hooks recorded right after an event is copied from the tape.
    """
    for recorded in tape.hook_events_after(event.seq):
        if recorded.seq != ctx.events[-1].seq + 1:
            break  # the replay has diverged: its own events no longer line up with the tape's
        # the data of its type, as the hook that recorded it wrote it
        ctx.record(recorded.type, node=recorded.node, parent=recorded.parent, data=cast("EventData", recorded.data))


class TapeSandbox(Sandbox):
    """The sandbox of a tape replay: tool results come from the trace, so any use of it is a replay bug.

    ``execs`` counts the commands something tried to run anyway (a reward hook that executes, say); each attempt
    raises :class:`~agentflow.errors.SandboxError`.
    """

    backend = "tape"

    def __init__(self, isolation: Mapping[str, Any]) -> None:
        self._isolation = dict(isolation)
        self.execs = 0

    def _refuse(self, what: str) -> SandboxError:
        return SandboxError(f"replay in tape mode serves tool results from the trace; nothing may {what}")

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        self.execs += 1
        raise self._refuse(f"execute {cmd!r}")

    async def read_file(self, path: str) -> bytes:
        raise self._refuse(f"read {path!r}")

    async def write_file(self, path: str, data: str | bytes) -> None:
        raise self._refuse(f"write {path!r}")

    async def list_files(self, path: str = ".") -> list[str]:
        raise self._refuse(f"list {path!r}")

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        raise self._refuse(f"copy {source_dir!r} in")

    def isolation(self) -> IsolationReport:
        fields = {"backend", "network_isolated", "filesystem_isolated", "pid_namespace", "resource_limits", "details"}
        if fields >= self._isolation.keys() and {"backend"} <= self._isolation.keys():
            return IsolationReport(**self._isolation)
        return IsolationReport("tape", False, False, False, False, {"replay": "tape mode: nothing executes"})

    async def fork(self) -> Sandbox:
        """A branch's ``sandbox: fork`` on replay: nothing executes, so the fork is this sandbox again."""
        return self

    @property
    def workdir(self) -> str:
        return "/tape"

    async def close(self) -> None:
        return None


@dataclass
class ReplayReport:
    """What a replay found. ``identical`` is True when every event's content digest matched, in order."""

    run_id: str
    replay_run_id: str
    mode: ReplayMode
    identical: bool
    events_expected: int
    events_actual: int
    template_changed: bool
    recorded_template_hash: str | None
    current_template_hash: str
    divergence: Divergence | None
    model_calls_served: int
    tool_results_served: int
    sandbox_execs: int
    original_wall_s: float | None
    replay_wall_s: float
    status: str
    problems: list[str] = field(default_factory=lambda: [])
    ignored: list[str] = field(default_factory=lambda: [])  # the volatile-text patterns masked before comparing
    # a forked run's prefix against its parent's trace: "identical", "differs: ..." or "parent gone: ..." (None: the
    # run is no fork)
    prefix_of_parent: str | None = None

    @property
    def prefix_differs(self) -> bool:
        """Whether a forked run's prefix is not its parent's (a parent that is gone is no difference)."""
        return self.prefix_of_parent is not None and self.prefix_of_parent.startswith("differs")

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data."""
        data = asdict(self)
        data["divergence"] = self.divergence.to_dict() if self.divergence else None
        return data


async def replay_run(
    store: Store,
    run_id: str,
    *,
    mode: ReplayMode = "tape",
    workflow: str | Path | None = None,
    ignore: Sequence[str] = VOLATILE_TEXT,
) -> ReplayReport:
    """Replay a stored run and compare the new trace with the recorded one, event by event.

    The replay is recorded as a new run in the same store (its ``run_started`` names ``replay_of``).

    Args:
        store: where the run is (and where the replay is recorded).
        run_id: the run's id or a unique prefix.
        mode: ``tape`` (nothing executes) or ``verify`` (tools run again in a fresh sandbox).
        workflow: the workflow file to replay with; by default the file the run recorded.
        ignore: regular expressions of text that may differ between executions (masked on both sides before
            comparing); by default ``VOLATILE_TEXT``, the test runners' timings. Pass ``()`` to compare exactly.

    Raises:
        TraceError: the run is missing, or its trace fails verification (a tampered trace is never replayed).
        ConfigError: the workflow file is gone or invalid.
    """
    if mode not in ("tape", "verify"):
        raise ConfigError(f"unknown replay mode {mode!r}", fix="use --mode tape or --mode verify")
    volatile = volatile_pattern(ignore)
    recorded = RecordedRun.load(store, run_id, workflow=workflow, doing="replay")
    tape = Tape(recorded.run_id, recorded.events, mode, volatile)
    plan = TapePlan(tape) if mode == "tape" else VerifyPlan(tape)
    clock = time.perf_counter()
    result = await recorded.run(store, plan)
    replay_wall = time.perf_counter() - clock
    replayed = store.load_trace(result.run_id)
    expected = without_abandoned(recorded.trace.events)
    forked_from = recorded.run_started.get("forked_from")
    divergence = first_divergence(expected, replayed.events, volatile)
    return ReplayReport(
        run_id=recorded.run_id,
        replay_run_id=result.run_id,
        mode=mode,
        identical=divergence is None,
        events_expected=len(expected),
        events_actual=len(replayed.events),
        template_changed=recorded.recorded_template_hash != recorded.compiled.loaded.template_hash,
        recorded_template_hash=recorded.recorded_template_hash,
        current_template_hash=recorded.compiled.loaded.template_hash,
        divergence=divergence,
        model_calls_served=tape.model_calls_served,
        tool_results_served=tape.tool_results_served,
        sandbox_execs=plan.sandbox_execs(replayed.events),
        original_wall_s=tape.original_duration_s,
        replay_wall_s=round(replay_wall, 6),
        status=result.status,
        problems=[str(problem) for problem in replayed.problems],
        ignored=list(ignore),
        prefix_of_parent=compare_with_parent(store, recorded.events, forked_from) if forked_from else None,
    )


# what a fork's prefix shares with its parent: all but run_started and the model requests, whose seed and model are
# the continuation's own
_UNSHARED = (EventType.RUN_STARTED, EventType.MODEL_REQUEST)


def compare_with_parent(store: Store, events: Sequence[Event], forked_from: Any) -> str:
    """How a forked run's prefix (its events up to ``forked_from["seq"]``) compares with its parent's trace.

    Returns ``identical``; ``differs: ...`` with the first seq whose content differs (or a parent that fails
    verification); or ``parent gone: ...`` (the prefix stands on its own: the trace is self-contained).
    """
    parent_id, cut = (
        (forked_from.get("run_id"), forked_from.get("seq")) if isinstance(forked_from, dict) else (None, None)
    )
    if not isinstance(parent_id, str) or not isinstance(cut, int):
        return f"differs: forked_from {forked_from!r} names no parent run and seq"
    try:
        parent = store.load_trace(parent_id)
    except TraceError as exc:
        return f"parent gone: the parent run {parent_id} cannot be read: {exc}"
    if parent.problems:
        return f"differs: the parent run {parent_id} fails verification: {parent.problems[0]}"
    mine = [e for e in events if e.seq <= cut and e.type not in _UNSHARED]
    theirs = [e for e in parent.resolved_events() if e.seq <= cut and e.type not in _UNSHARED]
    for own, recorded in zip(mine, theirs, strict=False):
        if own.seq != recorded.seq or content_digest(own) != content_digest(recorded):
            return f"differs: from parent run {parent_id} at seq {own.seq}"
    if len(mine) != len(theirs):
        return f"differs: from parent run {parent_id}: {len(mine)} prefix events against {len(theirs)}"
    return "identical"
