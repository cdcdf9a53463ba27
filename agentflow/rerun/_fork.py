"""``agentflow fork RUN_ID --at STEP -n K``: K new runs that share a recorded run's prefix and continue live.

**Steps.** A run's steps are its model turns (a ``model_request`` answered by a ``model_response``) and its tool
calls (a ``tool_call`` with its ``tool_result``: an agent's calls and tool nodes' alike), counted from 1 in trace
order. ``--at 15`` makes a prefix of the first 15 steps; ``--at seq:120`` a prefix of the steps whose last event
(the response, or the tool result) has seq ≤ 120. The prefix ends with the last of its steps and the reward-hook
events recorded right after it (its step rewards); ``forked_from.seq`` is the seq of that last event.

**Continuations.** Each continuation is a new run of the same workflow with the same inputs. It runs from the
start, but its first ``STEP`` steps are served from the parent's tape: the model responses (no model is called),
the tool results with the sandbox commands they recorded (no tool runs), and the reward-hook events recorded after
them (no hook runs); routers take the parent's decisions. Then it goes on live: real model calls (``--model``
replaces the model; a scripted model continues its script after the responses the prefix used), real tools, real
hooks. A STEP in the middle of a node is no special case: the node is entered again on the tape and its next
model turn or tool call is the first live one.

**Trace.** A continuation's trace is self-contained: it holds the prefix's events again (recorded as the
re-execution met them, so ``show``, ``verify`` and ``replay`` treat it as any run), and its ``run_started`` says
they were served from the parent: ``forked_from: {run_id, seq}``, ``fork_group`` (shared by the K continuations),
``fork_index`` (0..K-1), ``fork_step``, ``fork_sandbox``. Each continuation samples with its own ``seed``
(derived from the parent's seed, the group and its index; recorded as any run's), so the prefix's model requests
carry the continuation's seed and model while their responses are the parent's.

**Sandbox.** The sandbox at STEP is rebuilt once per fork, as ``resume`` rebuilds one: a fresh sandbox with the
workflow's files, in which the prefix's tool calls run again, in order (:func:`rebuild_sandbox`). Each
continuation gets a ``Sandbox.fork()`` copy of it; a backend that cannot fork gets a sandbox rebuilt the same way
for each continuation.

**Refused** (``TraceError``, before anything is recorded): an unknown run, a trace that fails verification, a STEP
past the last step, a run with concurrent branches (``data.branch``: parallel, map, best-of; not supported yet) or
a resumed run. A workflow file changed since the run (its template hash) is a ``ConfigError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from agentflow.errors import ConfigError, ReplayDivergence, SandboxError, TraceError
from agentflow.models import Message, Model, ModelResponse, ModelSettings, ScriptedModel, ToolCall
from agentflow.rerun._rebuild import Rebuilt, rebuild_sandbox
from agentflow.rerun._recorded import RecordedRun, ServedModel
from agentflow.rerun._replay import Tape, copy_hook_events
from agentflow.runtime import CompiledWorkflow, RunContext, RunPlan, RunResult, ServedTool
from agentflow.sandboxes import Sandbox
from agentflow.traces import Event, EventType, RunStartedData, Store
from agentflow.traces._events import ran_by_hook
from agentflow.traces._hashing import request_hash

StepKind = Literal["model_turn", "tool_call"]


@dataclass(frozen=True)
class Step:
    """One step of a run: a model turn or a tool call, ``index`` counted from 1 in trace order."""

    index: int
    kind: StepKind
    seq: int  # the step's last event: the model_response, or the tool_result
    first_seq: int  # its model_request, or its tool_call
    node: str | None


def steps_of(events: Sequence[Event]) -> list[Step]:
    """The steps of a run's events, in order (a request without a response, a call without a result, is none)."""
    found: list[Step] = []
    for event in events:
        if event.type is EventType.MODEL_RESPONSE and event.parent is not None:
            found.append(Step(len(found) + 1, "model_turn", event.seq, event.parent, event.node))
        elif event.type is EventType.TOOL_RESULT and event.parent is not None:
            found.append(Step(len(found) + 1, "tool_call", event.seq, event.parent, event.node))
    return found


def first_error_step(events: Sequence[Event]) -> int | None:
    """The fork point ``first_error`` names: how many steps precede the model turn that made the run's first error.

    A step is an error when its tool result failed (``ok`` false) or a step reward scored it negative (a value
    below 0 or the label -1). The prefix stops just before the model turn responsible: the erring turn itself, or
    the turn that requested the erring tool call; a tool node's failing call has no turn, so the prefix stops
    just before the call. None when no step erred.
    """
    steps = steps_of(events)
    by_seq = {step.seq: step for step in steps}
    negative = {
        int(e.data["target_seq"])
        for e in events
        if e.type is EventType.REWARD
        and e.data.get("on") == "step"
        and isinstance(e.data.get("target_seq"), int)
        and ((isinstance(e.data.get("value"), int | float) and float(e.data["value"]) < 0) or e.data.get("label") == -1)
    }
    failed = {e.seq for e in events if e.type is EventType.TOOL_RESULT and e.data.get("ok") is False}
    parents = {e.seq: e.parent for e in events}
    for step in steps:
        if step.seq not in negative and step.seq not in failed:
            continue
        if step.kind == "model_turn":
            return step.index - 1
        requester = by_seq.get(parents.get(step.first_seq) or -1)  # the model_response that asked for the call
        return (requester.index if requester is not None else step.index) - 1
    return None


def resolve_at(at: int | str, steps: Sequence[Step], run_id: str, last_seq: int) -> int:
    """The number of steps a fork's prefix holds, for ``--at N`` or ``--at seq:N``.

    Raises:
        TraceError: ``at`` is not a step count or ``seq:N``, or lies past the run's last step.
    """
    text = str(at).strip()
    try:
        if text.startswith("seq:"):
            seq = int(text.removeprefix("seq:"))
            if seq < 0:
                raise ValueError(text)
            if seq > last_seq:
                raise TraceError(f"--at {text} is past the end of run {run_id}: its last event is seq {last_seq}")
            return sum(1 for step in steps if step.seq <= seq)
        count = int(text)
    except ValueError:
        raise TraceError(f"--at {text!r} is neither a step number nor seq:N (e.g. --at 15, --at seq:120)") from None
    if count < 0 or count > len(steps):
        raise TraceError(
            f"--at {count} is past the end of run {run_id}: it has {len(steps)} steps (model turns and tool calls)"
        )
    return count


@dataclass
class ForkPoint:
    """Where the continuations of a fork part from their parent: its first ``steps`` steps, up to ``cut_seq``."""

    recorded: RecordedRun
    steps: int
    cut_seq: int
    prefix: list[Event]
    schedule: list[Step]  # the prefix's steps, served in this order

    def tape(self) -> Tape:
        """A tape of the prefix for one continuation (a tape serves each tool result once)."""
        return Tape(self.recorded.run_id, self.prefix, "tape")

    @classmethod
    def of(cls, recorded: RecordedRun, at: int | str) -> ForkPoint:
        """The prefix of run ``recorded`` at ``at`` (see :func:`resolve_at`); refuses runs a fork cannot serve.

        Raises:
            TraceError: ``at`` is past the end, or the run has branches or was resumed.
        """
        events = recorded.events
        if any(e.type is EventType.RUN_RESUMED for e in events):
            raise TraceError(f"run {recorded.run_id} was resumed; forking a resumed run is not supported yet")
        if any("branch" in e.data for e in events):
            raise TraceError(
                f"run {recorded.run_id} has concurrent branches (parallel, map or best-of); forking such a run is "
                "not supported yet"
            )
        all_steps = steps_of(events)
        count = resolve_at(at, all_steps, recorded.run_id, events[-1].seq if events else 0)
        cut = all_steps[count - 1].seq if count else 0
        while cut + 1 < len(events) and _is_hook_event(events[cut + 1]):
            cut += 1  # the step's rewards belong to it
        prefix = [e for e in events if e.seq <= cut]
        return cls(recorded, count, cut, prefix, all_steps[:count])

    def model_responses(self) -> int:
        return sum(1 for step in self.schedule if step.kind == "model_turn")

    def answered_by(self, model_id: str) -> int:
        """How many of the prefix's model turns asked ``model_id`` (a scripted model skips as many responses)."""
        requests = {e.seq: e for e in self.prefix if e.type is EventType.MODEL_REQUEST}
        return sum(
            1
            for step in self.schedule
            if step.kind == "model_turn" and requests[step.first_seq].data.get("model") == model_id
        )


def _is_hook_event(event: Event) -> bool:
    return (
        event.type is EventType.REWARD or (event.type is EventType.ERROR and "hook" in event.data) or ran_by_hook(event)
    )


def fork_seed(parent_seed: int | None, group: str, index: int) -> int:
    """The sampling seed of continuation ``index`` of fork group ``group``: 31 bits of a digest, stable."""
    digest = hashlib.sha256(f"{parent_seed}\0{group}\0{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class PrefixSandboxes:
    """The sandbox at the fork point, rebuilt once, and the copies of it the continuations work in."""

    def __init__(self, point: ForkPoint, backend: str, group: str) -> None:
        self.point = point
        self.backend = backend
        self.group = group
        self.base: Sandbox | None = None
        self.rebuilt = Rebuilt()
        self.rebuild_s = 0.0  # seconds the rebuilds took (once when the backend forks, else once per continuation)
        self.prepare_s = 0.0  # seconds the group's one rebuild took
        self.forks = 0
        self._lock = asyncio.Lock()

    async def _rebuilt_sandbox(self, compiled: CompiledWorkflow, run_id: str) -> tuple[Sandbox, Rebuilt]:
        clock = time.perf_counter()
        box = await RunPlan().open_sandbox(compiled, self.backend, run_id)
        try:
            rebuilt = await rebuild_sandbox(
                box,
                compiled,
                self.point.prefix,
                run_id=run_id,
                state=cast("Mapping[str, Any]", self.point.recorded.run_started.get("inputs") or {}),
            )
        except BaseException:
            await box.close()
            raise
        self.rebuild_s += time.perf_counter() - clock
        return box, rebuilt

    async def prepare(self, compiled: CompiledWorkflow) -> None:
        """Rebuild the prefix's sandbox (once for the whole group)."""
        clock = time.perf_counter()
        self.base, self.rebuilt = await self._rebuilt_sandbox(compiled, f"fork-{self.group}")
        self.prepare_s = time.perf_counter() - clock

    async def for_continuation(self, compiled: CompiledWorkflow, run_id: str) -> tuple[Sandbox, dict[str, Any]]:
        """A sandbox holding the prefix's workspace for one continuation, and how it was made."""
        async with self._lock:
            if self.base is None:
                await self.prepare(compiled)
            assert self.base is not None
            try:
                box = await self.base.fork()
                self.forks += 1
                return box, self._facts(True, self.rebuilt)
            except SandboxError:
                pass
        box, rebuilt = await self._rebuilt_sandbox(compiled, run_id)  # the backend cannot fork: rebuild again
        return box, self._facts(False, rebuilt)

    @staticmethod
    def _facts(forked: bool, rebuilt: Rebuilt) -> dict[str, Any]:
        return {"forked": forked, "rebuilt_tool_calls": rebuilt.tool_calls, "differed": list(rebuilt.differed)}

    async def close(self) -> None:
        if self.base is not None:
            await self.base.close()
            self.base = None


class ForkPlan(RunPlan):
    """The plan of one continuation: the prefix's steps from the parent's tape, then live."""

    def __init__(self, point: ForkPoint, sandboxes: PrefixSandboxes, *, group: str, index: int) -> None:
        self.point = point
        self.tape = point.tape()
        self.sandboxes = sandboxes
        self.group = group
        self.index = index
        self.served_steps = 0
        self.live = point.steps == 0
        self.in_graph = False  # past run_started and the hooks' start: what the hooks record may come from the tape
        self.sandbox_facts: dict[str, Any] = {}
        self.opened_at: float | None = None  # perf_counter() when the run asked for its sandbox
        self.live_at: float | None = None  # perf_counter() when its first live step began

    @property  # the runtime reads it at every hook; it changes when the run goes live
    def serves_hook_events(self) -> bool:
        return self.in_graph and not self.live

    @serves_hook_events.setter
    def serves_hook_events(self, value: bool) -> None:
        raise AttributeError("a fork plan serves hook events during its prefix only")

    def _go_live(self) -> None:
        if not self.live:
            self.live = True
            self.live_at = time.perf_counter()

    async def open_sandbox(self, compiled: CompiledWorkflow, backend: str, run_id: str) -> Sandbox:
        self.opened_at = time.perf_counter()
        box, self.sandbox_facts = await self.sandboxes.for_continuation(compiled, run_id)
        return box

    def model(self, model_string: str, base_dir: Path) -> Model:
        inner = super().model(model_string, base_dir)
        if isinstance(inner, ScriptedModel):
            # the script is the conversation: continue it after the responses the prefix took from it
            inner.skip(self.point.answered_by(inner.model_id))
        return ServedModel(inner, self.served_model_response)

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: RunStartedData) -> None:
        forked = run_started.copy()
        forked["forked_from"] = {"run_id": self.point.recorded.run_id, "seq": self.point.cut_seq}
        forked["fork_group"] = self.group
        forked["fork_index"] = self.index
        forked["fork_step"] = self.point.steps
        forked["fork_sandbox"] = self.sandbox_facts
        await super().start(ctx, compiled, forked)

    def after_event(self, ctx: RunContext, event: Event) -> None:
        if event.type is EventType.RUN_STARTED:
            return
        self.in_graph = True
        if not self.live:
            copy_hook_events(ctx, self.tape, event)

    def _next_step(self, kind: StepKind, what: str) -> Step | None:
        """The prefix step to serve now, or None when the prefix is done (the run goes live)."""
        if self.live or self.served_steps >= self.point.steps:
            self._go_live()
            return None
        step = self.point.schedule[self.served_steps]
        if step.kind != kind:
            raise ReplayDivergence(
                f"the prefix of fork of run {self.point.recorded.run_id} diverged at step {step.index}: the parent "
                f"made a {step.kind.replace('_', ' ')} there, this run {what}"
            )
        self.served_steps += 1
        return step

    def served_tool(self, call: ToolCall) -> ServedTool | None:
        if self._next_step("tool_call", f"called {call.name}") is None:
            return None
        return self.tape.tool_outcome(call)

    def served_model_response(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse | None:
        """The parent's response to this request while in the prefix (the request must be the parent's, model and
        seed aside), else None."""
        step = self._next_step("model_turn", "asked a model")
        if step is None:
            return None
        events = self.point.prefix
        request, response = events[step.first_seq], events[step.seq]
        expected = _content_hash(request.data.get("messages"), request.data.get("tools"), request.data.get("settings"))
        if _content_hash(messages, tools, settings.request_data()) != expected:
            raise ReplayDivergence(
                f"the prefix of fork of run {self.point.recorded.run_id} diverged at step {step.index}: the model "
                "request differs from the parent's"
            )
        return ModelResponse.from_recorded(response.data, str(request.data.get("model")))

    def served_route(self, node: str, index: int) -> Mapping[str, Any] | None:
        if self.live:
            return None
        routes = [e.data for e in self.point.prefix if e.type is EventType.ROUTE and e.node == node]
        return routes[index] if index < len(routes) and "qtable" in routes[index] else None


def _content_hash(messages: Any, tools: Any, settings: Any) -> str:
    """A request's content without its model and seed, which a continuation has its own of."""
    plain = {k: v for k, v in settings.items() if k != "seed"} if isinstance(settings, dict) else settings
    return request_hash("", messages, tools, plain)


@dataclass
class Fork:
    """A fork of a stored run in progress: its point, the prefix sandbox and the continuations' plans."""

    store: Store
    point: ForkPoint
    group: str
    sandboxes: PrefixSandboxes
    plans: list[ForkPlan] = field(default_factory=lambda: [])

    @classmethod
    def open(
        cls,
        store: Store,
        run_id: str,
        *,
        at: int | str,
        workflow: str | Path | None = None,
        group: str | None = None,
        compiled: CompiledWorkflow | None = None,
    ) -> Fork:
        """Load and check run ``run_id`` and its fork point; nothing is recorded or started yet.

        ``group`` names the fork group (default: a new random id); ``compiled`` is the workflow as the run ran it
        when that is not its file alone (a benchmark adds its outcome hook).

        Raises:
            TraceError: see the module (unknown run, damaged trace, step past the end, branches).
            ConfigError: the workflow file is gone, invalid or changed since the run.
        """
        recorded = RecordedRun.load(store, run_id, workflow=workflow, doing="fork")
        if compiled is not None:
            recorded = replace(recorded, compiled=compiled)
        if recorded.recorded_template_hash != recorded.compiled.loaded.template_hash:
            raise ConfigError(
                f"{recorded.workflow_path} changed since run {recorded.run_id} was recorded (template hash "
                f"{str(recorded.recorded_template_hash)[:12]} -> {recorded.compiled.loaded.template_hash[:12]}); "
                "its prefix only fits the workflow it ran",
                fix="restore the workflow file the run was recorded with",
            )
        point = ForkPoint.of(recorded, at)
        sandbox_info = recorded.run_started.get("sandbox")
        backend = sandbox_info.get("backend") if isinstance(sandbox_info, dict) else None
        backend = backend if isinstance(backend, str) else recorded.compiled.loaded.spec.sandbox.backend
        group = group or uuid.uuid4().hex[:16]
        return cls(store, point, group, PrefixSandboxes(point, backend, group))

    async def continue_runs(
        self,
        n: int,
        *,
        model: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        concurrency: int | None = None,
    ) -> list[RunResult]:
        """Run ``n`` continuations (concurrently, ``concurrency`` at a time); return them in index order."""
        if n < 1:
            raise ConfigError(f"-n {n}: a fork makes at least one continuation", fix="pass -n 1 or more")
        recorded = self.point.recorded
        parent_seed = recorded.run_started.get("seed")
        gate = asyncio.Semaphore(concurrency or n)
        try:
            await self.sandboxes.prepare(recorded.compiled)

            async def one(index: int) -> RunResult:
                plan = ForkPlan(self.point, self.sandboxes, group=self.group, index=index)
                self.plans.append(plan)
                seed = fork_seed(parent_seed if isinstance(parent_seed, int) else None, self.group, index)
                async with gate:
                    return await recorded.run(self.store, plan, on_event=on_event, model=model, seed=seed)

            return list(await asyncio.gather(*(one(index) for index in range(n))))
        finally:
            await self.sandboxes.close()


async def fork_run(
    store: Store,
    run_id: str,
    *,
    at: int | str,
    n: int = 1,
    model: str | None = None,
    workflow: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> list[RunResult]:
    """Fork run ``run_id`` after ``at`` steps into ``n`` continuations that go on live; return how each ended.

    Args:
        store: the store holding the run; the continuations are recorded there.
        run_id: the run's id or a unique prefix.
        at: a step count (``15``: the first 15 model turns and tool calls) or ``"seq:N"`` (the steps ended at or
            before event N); see the module for the exact definition.
        n: how many continuations (one fork group).
        model: a ``provider:model`` the continuations call once live (default: the parent's).
        workflow: the workflow file (default: the one the run recorded; it must not have changed).
        on_event: called with every event the continuations record; it must be quick.

    Raises:
        TraceError: an unknown run, a damaged trace, ``at`` past the end, a run with branches; nothing recorded.
        ConfigError: the workflow file is gone, invalid or changed; ``n`` below 1.
    """
    if n < 1:
        raise ConfigError(f"-n {n}: a fork makes at least one continuation", fix="pass -n 1 or more")
    fork = Fork.open(store, run_id, at=at, workflow=workflow)
    return await fork.continue_runs(n, model=model, on_event=on_event)
