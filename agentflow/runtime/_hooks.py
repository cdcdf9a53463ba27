"""Reward hook bindings of a compiled workflow, and scoring steps while a run goes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentflow.errors import RewardHookError
from agentflow.rewards import RewardHook, StepContext, StepKind, reward_hooks
from agentflow.spec._models import RewardSpec, WorkflowSpec
from agentflow.traces._events import Event, EventType, seconds_since

if TYPE_CHECKING:
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
    """The hooks a workflow declares, instantiated once per compiled workflow."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.bindings = [
            HookBinding(reward, reward_hooks.get(reward.hook)(**reward.options)) for reward in spec.rewards
        ]

    def wants(self, kind: StepKind, node: str | None) -> bool:
        return any(binding.applies_to(kind, node) for binding in self.bindings)

    async def score(
        self, ctx: RunContext, *, kind: StepKind, node: str | None, label: str | None, events: Sequence[Event]
    ) -> list[Event]:
        """Run the hooks bound to this step concurrently; record each reward, or the hook's failure, in the trace."""
        bindings = [b for b in self.bindings if b.applies_to(kind, node)]
        if not bindings:
            return []
        step = StepContext(
            run_id=ctx.run_id, kind=kind, node=label, events=events, state=ctx.state, sandbox=ctx.sandbox
        )
        if len(bindings) == 1:  # one hook (the usual case) needs no task of its own
            results = [await self._score_one(bindings[0], step)]
        else:
            results = list(await asyncio.gather(*(self._score_one(b, step) for b in bindings)))
        recorded: list[Event] = []
        for binding, (reward, error, duration) in zip(bindings, results, strict=True):
            common: dict[str, Any] = {"hook": binding.spec.hook, "hook_version": binding.hook.version, "on": kind}
            if error is not None:
                data = {**common, "kind": "RewardHookError", "message": error, "target_seq": step.target_seq}
                recorded.append(ctx.emit(EventType.ERROR, node=label, parent=step.target_seq, data=data))
            elif reward is not None:
                data = {
                    **common,
                    "value": reward.value,
                    "weight": binding.spec.weight,
                    "label": reward.label,
                    "explanation": reward.explanation,
                    "components": dict(reward.components),
                    "target_seq": step.target_seq,
                    "duration_s": duration,
                }
                recorded.append(ctx.emit(EventType.REWARD, node=label, parent=step.target_seq, data=data))
        return recorded

    @staticmethod
    async def _score_one(binding: HookBinding, step: StepContext) -> tuple[Any, str | None, float]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(binding.spec.timeout_s):
                reward = await binding.hook.score(step)
        except TimeoutError:
            return None, f"hook {binding.spec.hook!r} timed out after {binding.spec.timeout_s:g}s", 0.0
        except Exception as exc:  # noqa: BLE001 - a failing hook is recorded and never fails the run
            error = RewardHookError(f"hook {binding.spec.hook!r} raised {type(exc).__name__}: {exc}")
            return None, str(error), seconds_since(started)
        return reward, None, seconds_since(started)
