"""``agentflow bench compare A B``: two bench runs on the same tasks, side by side.

The difference in pass@1 comes with a paired bootstrap 95% interval: the tasks both runs scored are resampled with
replacement (10,000 times, from a fixed seed, so the interval is the same every time), and the interval is the
2.5th to 97.5th percentile of the mean per-task difference. Paired, because the same task is hard or easy for both
workflows: resampling tasks keeps each task's two results together, which is what makes the interval narrow
enough to mean something on a few hundred tasks.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from agentflow.bench._report import BenchReport

RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass
class TaskDelta:
    """One task in both runs: its pass@1 in each and the difference (B − A)."""

    task_id: str
    pass_a: float
    pass_b: float
    delta: float


@dataclass
class BenchComparison:
    """Bench run B against bench run A on the tasks both scored."""

    run_a: str
    run_b: str
    tasks: list[TaskDelta]
    only_in_a: list[str]
    only_in_b: list[str]
    pass_at_1_a: float | None
    pass_at_1_b: float | None
    pass_at_1_delta: float | None
    interval: tuple[float, float] | None  # the paired bootstrap 95% interval of the delta
    tokens_a: int
    tokens_b: int
    cost_a: float | None
    cost_b: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as JSON-serialisable data."""
        return asdict(self)

    def to_markdown(self) -> str:
        """The comparison as Markdown: the headline difference, then each task that differs."""
        interval = "n/a" if self.interval is None else f"[{self.interval[0]:+.4f}, {self.interval[1]:+.4f}]"
        delta = "n/a" if self.pass_at_1_delta is None else f"{self.pass_at_1_delta:+.4f}"
        lines = [
            f"# B {self.run_b} against A {self.run_a}",  # named: B − A is what every figure below says
            "",
            f"- tasks in both: {len(self.tasks)} (only in A: {len(self.only_in_a)}, only in B: {len(self.only_in_b)})",
            f"- pass@1: A {_number(self.pass_at_1_a)}, B {_number(self.pass_at_1_b)}, B − A {delta} "
            f"(paired bootstrap {CONFIDENCE:.0%} interval {interval})",
            f"- tokens: A {self.tokens_a}, B {self.tokens_b} (B − A {self.tokens_b - self.tokens_a:+d})",
            f"- cost: A {_money(self.cost_a)}, B {_money(self.cost_b)}",
            "",
            "| task | pass@1 A | pass@1 B | B − A |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {task.task_id} | {task.pass_a:.3f} | {task.pass_b:.3f} | {task.delta:+.3f} |"
            for task in self.tasks
            if task.delta != 0
        ]
        return "\n".join(lines) + "\n"


def compare_reports(a: BenchReport, b: BenchReport, *, resamples: int = RESAMPLES, seed: int = 0) -> BenchComparison:
    """Compare two bench runs' reports task by task (the tasks each scored at least once)."""
    pass_a = {task.task_id: task.correct / task.samples for task in a.tasks if task.samples}
    pass_b = {task.task_id: task.correct / task.samples for task in b.tasks if task.samples}
    common = [task_id for task_id in pass_a if task_id in pass_b]
    deltas = [
        TaskDelta(task_id, pass_a[task_id], pass_b[task_id], pass_b[task_id] - pass_a[task_id]) for task_id in common
    ]
    mean_a = statistics.fmean(pass_a[task_id] for task_id in common) if common else None
    mean_b = statistics.fmean(pass_b[task_id] for task_id in common) if common else None
    return BenchComparison(
        run_a=a.bench_run_id,
        run_b=b.bench_run_id,
        tasks=deltas,
        only_in_a=[task_id for task_id in pass_a if task_id not in pass_b],
        only_in_b=[task_id for task_id in pass_b if task_id not in pass_a],
        pass_at_1_a=mean_a,
        pass_at_1_b=mean_b,
        pass_at_1_delta=None if mean_a is None or mean_b is None else mean_b - mean_a,
        interval=paired_bootstrap([delta.delta for delta in deltas], resamples=resamples, seed=seed),
        tokens_a=a.tokens,
        tokens_b=b.tokens,
        cost_a=a.cost,
        cost_b=b.cost,
    )


def paired_bootstrap(
    differences: list[float], *, resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of per-task differences (None without any task)."""
    if not differences:
        return None
    rng = random.Random(seed)  # noqa: S311 - a reproducible resampling, not a secret
    count = len(differences)
    means = sorted(statistics.fmean(rng.choices(differences, k=count)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int((1 - tail) * (resamples - 1))]
    return low, high


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"
