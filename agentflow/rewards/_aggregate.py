"""Run-level aggregates of step rewards, computed from trace events alone (so offline re-grading gets the same).

Formulas (DESIGN.md, "Formulas"):

- ``mean``, ``min``: over the hook's step rewards, in step order.
- ``first_error``: the 0-based index of the first step labelled −1 (a value < 0 when the hook gives no label);
  −1 when no step is (the AgentProcessBench convention for ``first_neg1_idx``).
- ``discounted``: ``Σ_t γ^t · r_t``.
- ``grounded`` (GroundedPRM): ``V = Σ_{i<N} v_i·(N−i)/N² ; R = V + F/N`` with ``v_i`` the ternary label of step ``i``
  (0-based, so earlier steps weigh more), ``F`` the outcome as ±1, and ``R = F`` when ``N = 0``.
- ``hybrid`` (hybrid reward normalization): ``r_t = r_o + r_{p,t} − 1`` with ``r_o ∈ {0,1}`` the outcome and
  ``r_{p,t} ∈ [0,1]`` the step's process reward (a ternary label ℓ maps to ``(ℓ+1)/2``, a value is clipped).
- ``prof`` (PROF consistency): ``c = mean_t[2(v_t − v̄)(2o − 1)]`` with ``v_t`` the process rewards in [0,1] and
  ``o ∈ {0,1}`` the outcome. Within one run ``v̄`` is a fixed baseline (``prof_baseline``, default 0.5: the middle
  of the scale), because the mean over the run's own steps would make ``c`` zero by construction; across a group of
  runs of the same task, :func:`prof_group_consistency` uses the group mean as PROF does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import RewardData, RunFinishedData

AggregateName = Literal["mean", "min", "first_error", "discounted", "grounded", "hybrid", "prof"]
AGGREGATES: tuple[AggregateName, ...] = ("mean", "min", "first_error", "discounted", "grounded", "hybrid", "prof")
NEEDS_OUTCOME: frozenset[str] = frozenset({"grounded", "hybrid", "prof"})
"""Aggregates that combine the step rewards with the run's outcome."""


@dataclass(frozen=True)
class StepReward:
    """One step reward as aggregation sees it."""

    value: float
    label: int | None = None

    @property
    def ternary(self) -> int:
        """The label, or the sign of the value when the hook gave none."""
        if self.label is not None:
            return self.label
        return (self.value > 0) - (self.value < 0)

    @property
    def unit(self) -> float:
        """The process reward in [0, 1]: ``(label+1)/2`` for a labelled step, else the value clipped."""
        if self.label is not None:
            return (self.label + 1) / 2
        return min(max(self.value, 0.0), 1.0)


def step_rewards(events: Iterable[Event], hook: str) -> list[StepReward]:
    """The step and node rewards ``hook`` gave in a trace, in the order of the steps they score."""
    found: list[tuple[int, int, StepReward]] = []
    for event in events:
        if event.type is not EventType.REWARD:
            continue
        data = event.data_as(RewardData)
        if data.get("hook") != hook or data.get("on") == "run":
            continue
        value = data.get("value")
        if value is None or data.get("aggregate"):
            continue
        target = data.get("target_seq")
        label = data.get("label")
        found.append(
            (
                target if isinstance(target, int) else event.seq,
                event.seq,
                StepReward(float(value), int(label) if label is not None else None),
            )
        )
    found.sort(key=lambda item: (item[0], item[1]))  # background hooks may record out of step order
    return [reward for _, _, reward in found]


NOT_SCORED_STATUSES: frozenset[str] = frozenset({"errored"})
"""Run statuses that say nothing of the agent (the infrastructure failed): their runs get no run-level verdict."""


def not_scored_reason(events: Iterable[Event]) -> str | None:
    """The status of a run whose run-level hooks must not score it (``errored``), else None.

    Offline grading reads it from ``run_finished``; a live run's engine records the same reason itself (a reward
    event with ``value`` None and ``not_scored``), so pass@k and training data never count an outage as incorrect.
    """
    for event in events:
        if event.type is EventType.RUN_FINISHED:
            status = event.data_as(RunFinishedData).get("status")
            if status in NOT_SCORED_STATUSES:
                return str(status)
    return None


def run_outcome(events: Iterable[Event], hook: str) -> float | None:
    """The value of the last run-level reward ``hook`` gave (the run's outcome), or None when it gave none."""
    outcome: float | None = None
    for event in events:
        if event.type is not EventType.REWARD:
            continue
        data = event.data_as(RewardData)
        value = data.get("value")
        if data.get("hook") == hook and data.get("on") == "run" and value is not None and not data.get("aggregate"):
            outcome = float(value)
    return outcome


def grounded_return(labels: Sequence[int], outcome: int) -> float:
    """GroundedPRM's run reward ``R = V + F/N`` with ``V = Σ_{i<N} v_i·(N−i)/N²``; ``R = F`` when ``N = 0``."""
    n = len(labels)
    if n == 0:
        return float(outcome)
    v = sum(label * (n - i) for i, label in enumerate(labels)) / n**2
    return v + outcome / n


def hybrid_rewards(process: Sequence[float], outcome: int) -> list[float]:
    """Hybrid normalization ``r_t = r_o + r_{p,t} − 1`` (``r_o ∈ {0,1}``, ``r_{p,t} ∈ [0,1]``)."""
    return [outcome + p - 1 for p in process]


def prof_consistency(process: Sequence[float], outcome: int, baseline: float = 0.5) -> float | None:
    """PROF's ``mean_t[2(v_t − v̄)(2o − 1)]`` with ``v̄ = baseline``; None without steps."""
    if not process:
        return None
    return sum(2 * (v - baseline) * (2 * outcome - 1) for v in process) / len(process)


def prof_group_consistency(runs: Sequence[tuple[float, int]]) -> list[float]:
    """PROF consistency of each run in a group of runs of one task: ``2(v_t − v̄)(2o_t − 1)``, ``v̄`` the group mean.

    Args:
        runs: per run, its mean process reward in [0, 1] and its outcome in {0, 1}.
    """
    if not runs:
        return []
    mean = sum(v for v, _ in runs) / len(runs)
    return [2 * (v - mean) * (2 * o - 1) for v, o in runs]


def aggregate(
    rewards: Sequence[StepReward],
    methods: Iterable[str],
    *,
    discount: float = 0.9,
    outcome: float | None = None,
    prof_baseline: float = 0.5,
) -> dict[str, Any]:
    """Compute the named aggregates of one hook's step rewards.

    Args:
        rewards: the step rewards in step order (see :func:`step_rewards`).
        methods: names from :data:`AGGREGATES`.
        discount: γ of ``discounted``.
        outcome: the run's outcome value; ≥ 0.5 counts as success (``o = 1``, ``F = +1``). Aggregates that need it
            are None when it is None.
        prof_baseline: ``v̄`` of ``prof`` within one run.

    Returns:
        ``{method: figure}``; ``hybrid`` is ``{"mean": ..., "steps": [...]}``; None where there is nothing to
        aggregate (no steps, or no outcome).
    """
    values = [r.value for r in rewards]
    success = None if outcome is None else int(outcome >= 0.5)
    result: dict[str, Any] = {}
    for method in methods:
        if method == "mean":
            result[method] = sum(values) / len(values) if values else None
        elif method == "min":
            result[method] = min(values) if values else None
        elif method == "first_error":
            result[method] = next((i for i, r in enumerate(rewards) if r.ternary == -1), -1)
        elif method == "discounted":
            result[method] = sum(discount**t * v for t, v in enumerate(values))
        elif method == "grounded":
            result[method] = None if success is None else grounded_return([r.ternary for r in rewards], 2 * success - 1)
        elif method == "hybrid":
            if success is None:
                result[method] = None
            else:
                steps = hybrid_rewards([r.unit for r in rewards], success)
                result[method] = {"mean": sum(steps) / len(steps) if steps else None, "steps": steps}
        elif method == "prof":
            result[method] = (
                None if success is None else prof_consistency([r.unit for r in rewards], success, prof_baseline)
            )
        else:
            raise ValueError(f"unknown aggregate {method!r}; choose from {', '.join(AGGREGATES)}")
    return result


def aggregate_trace(
    events: Sequence[Event],
    hook: str,
    methods: Iterable[str],
    *,
    discount: float = 0.9,
    outcome_hook: str | None = None,
    prof_baseline: float = 0.5,
) -> dict[str, Any]:
    """Aggregate the rewards ``hook`` gave in a trace, with the outcome from ``outcome_hook``'s run reward."""
    outcome = run_outcome(events, outcome_hook) if outcome_hook else None
    figures = aggregate(
        step_rewards(events, hook), methods, discount=discount, outcome=outcome, prof_baseline=prof_baseline
    )
    return {"steps": len(step_rewards(events, hook)), "outcome": outcome, **figures}


def describe_aggregates(figures: Mapping[str, Any]) -> str:
    """One line for `agentflow show`: ``mean 0.50  min -1.00  first_error 2 ...``."""
    parts: list[str] = []
    for key, value in figures.items():
        if key in ("steps", "outcome") or value is None:
            continue
        shown = value["mean"] if isinstance(value, dict) else value
        if shown is None:
            continue
        parts.append(f"{key} {shown}" if isinstance(shown, int) else f"{key} {shown:.3f}")
    return "  ".join(parts) or "(no steps)"
