"""Reward hook bindings of a compiled workflow, and scoring steps while a run goes."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from agentflow.errors import ConfigError, RewardHookError
from agentflow.rewards import HookContext, RewardHook, StepContext, StepKind, create_reward_hook
from agentflow.rewards._aggregate import NEEDS_OUTCOME, aggregate_trace
from agentflow.rewards._sandbox import HookSandbox
from agentflow.sandboxes._base import ObservedSandbox
from agentflow.spec._models import RewardSpec, WorkflowSpec
from agentflow.traces._events import Event, EventType, seconds_since
from agentflow.traces._payloads import ErrorData, RewardData, SandboxExecData

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow
    from agentflow.runtime._context import RunContext


@dataclass(frozen=True)
class HookBinding:
    spec: RewardSpec
    hook: RewardHook

    def applies_to(self, kind: StepKind, node: str | None) -> bool:
        if self.spec.on != kind:
            return False
        return kind == "run" or not self.spec.nodes or node in self.spec.nodes


class RewardEngine:
    """The hooks a workflow declares, instantiated once per compiled workflow.

    Blocking hooks (the default: they may read the sandbox) are awaited after each step, concurrently with each
    other; non-blocking ones (``RewardHook.blocking = False``) score in background tasks while the run goes on, and
    are awaited before the run-level hooks and before the run ends, so every reward lands in the trace.
    """

    def __init__(self, spec: WorkflowSpec, base_dir: Path | None = None) -> None:
        context = HookContext(base_dir, {name: config.model for name, config in spec.models.items()})
        self.bindings = [
            HookBinding(reward, create_reward_hook(reward.hook, reward.options, context)) for reward in spec.rewards
        ]
        run_hooks = {b.spec.hook for b in self.bindings if b.spec.on == "run"}
        for reward in spec.rewards:
            needs = sorted(NEEDS_OUTCOME.intersection(reward.aggregate))
            if needs and reward.outcome is None:
                raise ConfigError(
                    f"reward {reward.hook!r}: aggregate {', '.join(needs)} needs the run's outcome",
                    fix="add `outcome: HOOK` naming a hook declared with `on: run` (e.g. an outcome scorer)",
                )
            if reward.outcome is not None and reward.outcome not in run_hooks:
                raise ConfigError(
                    f"reward {reward.hook!r}: outcome {reward.outcome!r} is not a hook declared with `on: run`",
                    fix=f"declare {{hook: {reward.outcome}, on: run}} under rewards",
                )
        self._pending: dict[str, set[asyncio.Task[list[Event]]]] = {}
        self._wants: dict[tuple[StepKind, str | None], bool] = {}

    def wants(self, kind: StepKind, node: str | None) -> bool:
        key = (kind, node)
        known = self._wants.get(key)
        if known is None:  # asked for every node visit and step: the bindings never change, so once is enough
            known = (kind == "run" and any(binding.spec.aggregate for binding in self.bindings)) or any(
                binding.applies_to(kind, node) for binding in self.bindings
            )
            self._wants[key] = known
        return known

    async def start_run(self, ctx: RunContext) -> None:
        """Let each hook prepare for a run (e.g. snapshot the workspace); a failure is recorded, never raised."""
        if ctx.replays_hooks:
            return
        ctx.flush()  # hooks' code may act outside the process
        step = StepContext(run_id=ctx.run_id, kind="run", node=None, events=(), state=ctx.state, sandbox=ctx.sandbox)
        for index, binding in enumerate(self.bindings):
            try:
                async with asyncio.timeout(binding.spec.timeout_s):
                    await binding.hook.start_run(self._hook_view(ctx, index, step, scratch="start"))
            except Exception as exc:  # noqa: BLE001 - a failing hook is recorded and never fails the run
                message = f"hook {binding.spec.hook!r} could not start: {type(exc).__name__}: {exc}"
                self._record_failure(ctx, binding, "run", None, target=None, message=message)

    async def finish_run(self, ctx: RunContext, *, cancel: bool = False) -> None:
        """Record every background reward still pending (or cancel them), then let each hook release its state."""
        if ctx.replays_hooks:
            return
        await self.drain(ctx.run_id, cancel=cancel)
        for binding in self.bindings:
            with contextlib.suppress(Exception):  # releasing resources must not mask how the run ended
                await binding.hook.finish_run(ctx.run_id)

    async def drain(self, run_id: str, *, cancel: bool = False) -> None:
        """Wait for this engine's background rewards of a run (each records itself), or cancel them."""
        pending = self._pending.pop(run_id, set())
        if cancel:
            for task in pending:
                task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def score(
        self, ctx: RunContext, *, kind: StepKind, node: str | None, label: str | None, events: Sequence[Event]
    ) -> list[Event]:
        """Score this step with its hooks; record each reward, or the hook's failure, in the trace.

        Returns the events recorded before returning (background hooks record theirs later). A tape replay runs no
        hook: the rewards it recorded come back from the tape, at their recorded places (see ``RunContext.emit``).
        """
        if ctx.replays_hooks:
            return []
        if kind == "run":
            await self.drain(ctx.run_id)  # run hooks and aggregates see every step reward (see drain_background)
        bindings = [b for b in self.bindings if b.applies_to(kind, node)]
        recorded: list[Event] = []
        if bindings:
            ctx.flush()  # the hooks' code may act outside the process (a judge model, a sandbox command)
            # hooks that never read the sandbox (the usual case: exit codes, test reports, judges) share one step
            # without it, and need no guarded view of their own
            sandbox = ctx.current_sandbox() if any(b.hook.uses_sandbox for b in bindings) else None
            step = StepContext(
                run_id=ctx.run_id,
                kind=kind,
                node=label,
                events=events,
                state=ctx.state,
                sandbox=sandbox,
                history=_EventsBefore(ctx.events, events[0].seq) if kind != "run" and events else (),
            )
            background = [b for b in bindings if not b.hook.blocking]
            if background:
                # the run goes on and changes state: the background hooks get a snapshot of this step
                snapshot = StepContext(
                    run_id=ctx.run_id,
                    kind=kind,
                    node=label,
                    events=tuple(events),
                    state=dict(ctx.state),
                    sandbox=sandbox,
                    history=step.history,  # a fixed prefix of an append-only list: the later events do not show
                )
                tasks = self._pending.setdefault(ctx.run_id, set())
                for binding in background:
                    task = asyncio.create_task(self._score_and_record(ctx, binding, snapshot))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            blocking = [b for b in bindings if b.hook.blocking]
            if len(blocking) == 1:  # one hook (the usual case) needs no task of its own
                recorded.extend(await self._score_and_record(ctx, blocking[0], step))
            elif blocking:
                for events_of_hook in await asyncio.gather(*(self._score_and_record(ctx, b, step) for b in blocking)):
                    recorded.extend(events_of_hook)
        if kind == "run":
            recorded.extend(self._record_aggregates(ctx))
        return recorded

    def _hook_view(self, ctx: RunContext, index: int, step: StepContext, *, scratch: str) -> StepContext:
        """``step`` with the sandbox as this hook may use it: every exec recorded and run on a copy of the workdir.

        The recorded ``sandbox_exec`` names the hook (``by``) and hangs under the step it scores; a tape replay
        serves it back like the hook's reward (see ``agentflow.rerun``). ``scratch`` makes the copy's folder name
        unique per hook binding and step, and the same in every replay.
        """
        binding = self.bindings[index]
        if step.sandbox is None:
            return step
        if not binding.hook.uses_sandbox:
            return dataclasses.replace(step, sandbox=None)
        label, target = step.node, step.target_seq

        def record(data: SandboxExecData) -> None:
            ctx.emit(EventType.SANDBOX_EXEC, node=label, parent=target, data=data)

        view = HookSandbox(
            ObservedSandbox(step.sandbox, None, before=ctx.flush),  # each command's forerunners written first
            by=f"hook:{binding.spec.hook}",
            report=record,
            scratch_prefix=f"hook{index}-{binding.spec.hook}-{scratch}",
        )
        return dataclasses.replace(step, sandbox=view)

    async def _score_and_record(self, ctx: RunContext, binding: HookBinding, step: StepContext) -> list[Event]:
        scratch = f"{step.kind}-{step.target_seq}"
        reward, error, duration = await self._score_one(
            binding, self._hook_view(ctx, self.bindings.index(binding), step, scratch=scratch)
        )
        label = step.node
        if error is not None:
            return [self._record_failure(ctx, binding, step.kind, label, target=step.target_seq, message=error)]
        if reward is None:
            return []
        data = RewardData(
            hook=binding.spec.hook,
            hook_version=binding.hook.version,
            on=step.kind,
            value=reward.value,
            weight=binding.spec.weight,
            label=reward.label,
            explanation=reward.explanation,
            components=dict(reward.components),
            target_seq=step.target_seq,
            duration_s=duration,
        )
        return [ctx.emit(EventType.REWARD, node=label, parent=step.target_seq, data=data)]

    @staticmethod
    def _record_failure(
        ctx: RunContext,
        binding: HookBinding,
        kind: StepKind,
        label: str | None,
        *,
        target: int | None,
        message: str,
    ) -> Event:
        data = ErrorData(
            hook=binding.spec.hook,
            hook_version=binding.hook.version,
            on=kind,
            kind="RewardHookError",
            message=message,
            target_seq=target,
        )
        return ctx.emit(EventType.ERROR, node=label, parent=target, data=data)

    def record_not_scored(self, ctx: RunContext, *, reason: str, detail: str | None = None) -> list[Event]:
        """Record, instead of scoring the run, that its run-level hooks and aggregates did not score it.

        For a run that ``errored`` (the infrastructure failed): an outcome of 0 or a grounded −1 would count an
        outage as the agent's failure. Each run-level hook and each hook with ``aggregate:`` gets one ``reward``
        event with ``value`` None and ``not_scored`` set to ``reason``, which the summary, grading and pass@k read
        as "no verdict" (never as incorrect).
        """
        if ctx.replays_hooks:
            return []
        recorded: list[Event] = []
        for binding in self.bindings:
            if binding.spec.on != "run" and not binding.spec.aggregate:
                continue
            data = _valueless_run_reward(binding, f"not scored: the run {reason}" + (f" ({detail})" if detail else ""))
            data["not_scored"] = reason
            recorded.append(ctx.emit(EventType.REWARD, data=data))
        return recorded

    def _record_aggregates(self, ctx: RunContext) -> list[Event]:
        """One reward event per hook with `aggregate:` settings; value None so run means do not count it twice."""
        recorded: list[Event] = []
        for binding in self.bindings:
            if not binding.spec.aggregate:
                continue
            figures = aggregate_trace(
                ctx.events,
                binding.spec.hook,
                binding.spec.aggregate,
                discount=binding.spec.discount,
                outcome_hook=binding.spec.outcome,
                prof_baseline=binding.spec.prof_baseline,
            )
            data = _valueless_run_reward(
                binding,
                f"aggregates of {figures['steps']} step rewards",
                components={"discount": binding.spec.discount, "outcome_hook": binding.spec.outcome},
            )
            data["aggregate"] = figures
            recorded.append(ctx.emit(EventType.REWARD, data=data))
        return recorded

    @staticmethod
    async def _score_one(binding: HookBinding, step: StepContext) -> tuple[Any, str | None, float]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(binding.spec.timeout_s):
                reward = await binding.hook.score(step)
        except TimeoutError:
            message = f"hook {binding.spec.hook!r} timed out after {binding.spec.timeout_s:g}s"
            return None, message, seconds_since(started)
        except Exception as exc:  # noqa: BLE001 - a failing hook is recorded and never fails the run
            error = RewardHookError(f"hook {binding.spec.hook!r} raised {type(exc).__name__}: {exc}")
            return None, str(error), seconds_since(started)
        return reward, None, seconds_since(started)


class _EventsBefore(Sequence[Event]):
    """The run's events before a seq, read from the run's growing event list without copying it.

    The list only grows at its end, so the prefix stays what it was when the step was scored, also for a
    background hook that reads it later.
    """

    def __init__(self, events: list[Event], seq: int) -> None:
        self._events = events
        self._end = bisect.bisect_left(events, seq, key=lambda event: event.seq)

    def __len__(self) -> int:
        return self._end

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        if isinstance(index, slice):
            return self._events[: self._end][index]
        if not -self._end <= index < self._end:
            raise IndexError("event index out of range")
        return self._events[index % self._end]


def _engines(compiled: CompiledWorkflow) -> list[RewardEngine]:
    """The reward engines of a workflow and of its subgraphs, depth first."""
    found = [compiled.hooks]
    for child in compiled.children.values():
        found.extend(_engines(child))
    return found


async def start_run_hooks(compiled: CompiledWorkflow, ctx: RunContext) -> None:
    """Call ``start_run`` of every hook of the workflow and its subgraphs."""
    for engine in _engines(compiled):
        if engine.bindings:
            await engine.start_run(ctx)


async def drain_background(compiled: CompiledWorkflow, ctx: RunContext) -> None:
    """Wait for the background rewards of the workflow's and its subgraphs' hooks.

    Before the run-level hooks score: their aggregates count a subgraph's step rewards under the same hook name.
    """
    if ctx.replays_hooks:
        return
    for engine in _engines(compiled):
        await engine.drain(ctx.run_id)


async def finish_run_hooks(compiled: CompiledWorkflow, ctx: RunContext, *, cancel: bool = False) -> None:
    """Record pending background rewards (or cancel them) and release every hook's run state."""
    for engine in _engines(compiled):
        if engine.bindings:
            await engine.finish_run(ctx, cancel=cancel)


def _valueless_run_reward(
    binding: HookBinding, explanation: str, components: dict[str, Any] | None = None
) -> RewardData:
    """A run-level reward event without a value (a run not scored, or a hook's aggregates): run means skip it."""
    return RewardData(
        hook=binding.spec.hook,
        hook_version=binding.hook.version,
        on="run",
        value=None,
        label=None,
        explanation=explanation,
        components=components or {},
        target_seq=None,
        duration_s=0.0,
    )
