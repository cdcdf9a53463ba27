"""The report of a benchmark run: pass@k, per-task results, process rewards, checkpoints, cost, graph structure.

One attempt counts per (task, epoch) pair (see ``chosen_attempts``): the last that finished, else the last one. A
pair whose every attempt errored is *errored*: it is reported apart and left out of pass@k (an outage says nothing
of the agent). A sample is *correct* when its outcome reward is at least 0.5.

pass@k uses the unbiased estimator of Chen et al. (2021): for a task with ``n`` scored samples of which ``c`` are
correct, ``pass@k = 1 − C(n−c, k) / C(n, k)``, averaged over the tasks; it is given for k = 1 … the fewest scored
scored samples any task has, over the tasks with at least one scored sample.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from agentflow.bench._passk import pass_at_k
from agentflow.bench._rollouts import RolloutGroup, rollout_groups
from agentflow.bench._runner import FINISHED, _outcome_of, chosen_attempts
from agentflow.grading import evaluate_checkpoints, load_checkpoints
from agentflow.traces import SOLVED_OUTCOME as SOLVED
from agentflow.traces import (
    BenchItem,
    BenchRunInfo,
    Event,
    RunSummary,
    Store,
    realized_graph,
    summarize,
    usage_cost,
)


@dataclass
class TaskResult:
    """One task's samples: how many were scored, correct and errored, and what they cost."""

    task_id: str
    samples: int
    correct: int
    errored: int
    outcomes: list[float | None]
    pass_at_k: dict[int, float]
    tokens: int
    cost: float | None
    run_ids: list[str]


@dataclass
class BenchReport:
    """Everything ``agentflow bench report`` shows of one benchmark run (``to_dict``, ``to_markdown``, ``to_csv``)."""

    bench_run_id: str
    name: str
    config: dict[str, Any]
    pairs: int
    finished: int
    scored: int
    correct: int
    errored: int
    unfinished: int
    pass_at_k: dict[int, float]
    tasks: list[TaskResult]
    tokens: int
    model_calls: int
    cost: float | None
    cost_per_success: float | None
    wall_s: float | None
    process_rewards: dict[str, dict[str, float | None]]
    checkpoints: dict[str, float | None] | None
    structure: dict[str, Any]
    retried: int = 0
    unpriced_models: list[str] = field(default_factory=lambda: [])
    rollouts: list[RolloutGroup] = field(default_factory=lambda: [])  # never counted above (see bench._rollouts)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (pass@k keyed ``pass@1`` ...)."""
        data = asdict(self)
        data["rollouts"] = [group.to_dict() for group in self.rollouts]
        data["pass_at_k"] = {f"pass@{k}": value for k, value in self.pass_at_k.items()}
        for task in data["tasks"]:
            task["pass_at_k"] = {f"pass@{k}": value for k, value in task["pass_at_k"].items()}
        return data

    def to_markdown(self) -> str:
        """The report as Markdown: the summary, pass@k, per-task table, process rewards and structure."""
        lines = [f"# {self.name}: bench run {self.bench_run_id}", ""]
        lines += [
            f"- pairs (task × epoch): {self.pairs}; finished {self.finished}, scored {self.scored}, "
            f"correct {self.correct}, errored {self.errored} (retried {self.retried}), unfinished {self.unfinished}",
            f"- tokens {self.tokens}, model calls {self.model_calls}, cost {_money(self.cost)}, "
            f"cost per success {_money(self.cost_per_success)}, wall {_seconds(self.wall_s)}",
            f"- model {self.config.get('model') or 'as in the workflow'}, sandbox {self.config.get('sandbox')}, "
            f"epochs {self.config.get('epochs')}, seed {self.config.get('seed')}, "
            f"agentflow {self.config.get('agentflow_version')}",
        ]
        if self.unpriced_models:
            lines.append(f"- no price for: {', '.join(self.unpriced_models)} (cost left out)")
        lines += ["", "| k | pass@k |", "|---|---|"]
        lines += [f"| {k} | {value:.4f} |" for k, value in self.pass_at_k.items()]
        lines += [
            "",
            "| task | samples | correct | errored | pass@1 | tokens | cost |",
            "|---|---|---|---|---|---|---|",
        ]
        for task in self.tasks:
            first = task.pass_at_k.get(1)
            lines.append(
                f"| {task.task_id} | {task.samples} | {task.correct} | {task.errored} | "
                f"{'' if first is None else f'{first:.3f}'} | {task.tokens} | {_money(task.cost)} |"
            )
        if self.process_rewards:
            lines += ["", "| hook | mean of run means | min | mean first-error index |", "|---|---|---|---|"]
            for hook, figures in self.process_rewards.items():
                lines.append(
                    f"| {hook} | {_number(figures['mean_of_run_means'])} | {_number(figures['min'])} | "
                    f"{_number(figures['first_error_index'])} |"
                )
        if self.checkpoints is not None:
            lines += [
                "",
                f"Checkpoints: PQS {_number(self.checkpoints['pqs'])}, overthinking "
                f"{_number(self.checkpoints['overthinking'])}",
            ]
        structure = self.structure
        lines += [
            "",
            f"Realized graphs: steps mean {_number(structure['steps_mean'])} (variance across tasks "
            f"{_number(structure['steps_variance_across_tasks'])}), distinct nodes {_number(structure['nodes_mean'])}, "
            f"edges {_number(structure['edges_mean'])}, loop iterations {_number(structure['loop_iterations_mean'])}",
        ]
        for path, count in structure["common_paths"]:
            lines.append(f"- {count} × {path}")
        if self.rollouts:
            lines += [
                "",
                f"Rollout groups ({len(self.rollouts)}; not counted in pass@k): outcome of each group's runs",
                "",
            ]
            lines += [
                "| task | epoch | fork at step | runs | mean | std | min | max | solved | succeeded | parent |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for group in self.rollouts:
                figures = group.figures()
                lines.append(
                    f"| {group.task_id} | {group.epoch} | {group.fork_step} | {len(group.run_ids)} | "
                    + " | ".join(_number(figures[key]) for key in ("mean", "std", "min", "max", "solved", "succeeded"))
                    + f" | {_number(group.parent_outcome)} |"
                )
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The per-task table as CSV (one row per task)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        ks = list(self.pass_at_k)
        writer.writerow(["task_id", "samples", "correct", "errored", *[f"pass@{k}" for k in ks], "tokens", "cost"])
        for task in self.tasks:
            writer.writerow(
                [
                    task.task_id,
                    task.samples,
                    task.correct,
                    task.errored,
                    *[task.pass_at_k.get(k, "") for k in ks],
                    task.tokens,
                    "" if task.cost is None else f"{task.cost:.6f}",
                ]
            )
        return buffer.getvalue()


AttemptObserver = Callable[[BenchItem, Sequence[Event], RunSummary], None]


async def build_report(store: Store, bench_run_id: str, *, on_attempt: AttemptObserver | None = None) -> BenchReport:
    """Build the report of a benchmark run from the store (its attempts and their traces).

    ``on_attempt`` is given each counted attempt that finished (errored ones too) with its events and summary, as
    the report reads them: figures the report does not keep (the viewer's per-run rewards) need no second read of
    every trace.

    Raises:
        TraceError: no such benchmark run.
    """
    info = store.get_bench_run(bench_run_id)
    config = info.config
    items = store.list_bench_items(info.bench_run_id)
    chosen = chosen_attempts(items)
    tally = _Tally(config)
    checkpoint_spec = load_checkpoints(config["checkpoints"]) if config.get("checkpoints") else None
    for task_id in config["task_ids"]:
        for epoch in range(int(config["epochs"])):
            item = chosen.get((task_id, epoch))
            if item is None or item.status not in FINISHED:
                tally.unfinished += 1
                continue
            events = store.load_trace(item.run_id).events
            summary = tally.add(item, events)
            if on_attempt is not None:
                on_attempt(item, events, summary)
            if checkpoint_spec is not None and item.status != "errored":
                checked = await evaluate_checkpoints(checkpoint_spec, events)
                tally.pqs.append(checked.pqs)
                if checked.overthinking is not None:
                    tally.overthinking.append(checked.overthinking)
    report = tally.report(info, items, chosen, checkpoints=checkpoint_spec is not None)
    if config.get("rollouts"):
        hook = tally.outcome_hook
        report.rollouts = rollout_groups(store, chosen, lambda events: _outcome_of(events, hook))
    return report


class _Tally:
    """The figures of a report, summed attempt by attempt."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.prices: Mapping[str, Mapping[str, float]] = config.get("prices") or {}
        self.outcome_hook = str(config["outcome"]["hook"])
        self.tasks = {
            task_id: TaskResult(task_id, 0, 0, 0, [], {}, 0, 0.0 if self.prices else None, [])
            for task_id in config["task_ids"]
        }
        self.finished = self.unfinished = self.errored = self.tokens = self.model_calls = 0
        self.cost: float | None = 0.0 if self.prices else None
        self.unpriced: set[str] = set()
        self.priced: set[str] = set()  # the priced models the runs called: without any, there is no cost to tell
        self.run_means: dict[str, list[float]] = {}
        self.mins: dict[str, list[float]] = {}
        self.first_errors: dict[str, list[int]] = {}
        self.pqs: list[float] = []
        self.overthinking: list[float] = []
        self.steps: dict[str, list[int]] = {}
        self.nodes: list[int] = []
        self.edges: list[int] = []
        self.loops: list[int] = []
        self.paths: Counter[str] = Counter()

    def add(self, item: BenchItem, events: Sequence[Event]) -> RunSummary:
        """Count one finished attempt (errored ones count for tokens and cost, not as samples); return its
        summary."""
        task = self.tasks[item.task_id]
        self.finished += 1
        task.run_ids.append(item.run_id)
        summary = summarize(events)
        self.tokens += summary.tokens
        self.model_calls += summary.model_calls
        task.tokens += summary.tokens
        if self.prices and task.cost is not None and self.cost is not None:
            used = summary.usage_by_model
            self.priced.update(used.keys() & self.prices.keys())
            self.unpriced.update(used.keys() - self.prices.keys())
            run_cost = usage_cost(used, self.prices) or 0.0  # None: no priced model here, maybe in other runs
            task.cost += run_cost
            self.cost += run_cost
        if item.status == "errored":
            self.errored += 1
            task.errored += 1
            return summary
        task.samples += 1
        task.outcomes.append(item.outcome)
        task.correct += item.outcome is not None and item.outcome >= SOLVED
        for hook, rewards in summary.rewards_by_hook.items():
            values = [value for value in rewards.values if value is not None]
            if hook == self.outcome_hook or not values:
                continue
            self.run_means.setdefault(hook, []).append(statistics.fmean(values))
            self.mins.setdefault(hook, []).append(min(values))
            first_error = next((index for index, value in enumerate(values) if value < SOLVED), None)
            if first_error is not None:
                self.first_errors.setdefault(hook, []).append(first_error)
        graph = realized_graph(events)
        path = [str(node) for node in graph.get("path", [])]
        self.steps.setdefault(item.task_id, []).append(len(path))
        self.nodes.append(len(graph.get("nodes", {})))
        self.edges.append(len(graph.get("edges", [])))
        self.loops.append(len(path) - len(set(path)))
        self.paths[" → ".join(path)] += 1
        return summary

    def report(
        self,
        info: BenchRunInfo,
        items: Sequence[BenchItem],
        chosen: Mapping[tuple[str, int], BenchItem],
        *,
        checkpoints: bool,
    ) -> BenchReport:
        tasks = list(self.tasks.values())
        if not self.priced:  # no model the benchmark prices was called: a cost of 0 would say it was free
            self.cost = None
            for task in tasks:
                task.cost = None
        # a task without a scored sample (all errored, or not run yet) has no verdict: it is left out of pass@k
        scored = [task for task in tasks if task.samples]
        max_k = min(task.samples for task in scored) if scored else 0  # pass@k needs k samples of every task
        for task in scored:
            task.pass_at_k = {k: pass_at_k(task.samples, task.correct, k) for k in range(1, max_k + 1)}
        correct = sum(task.correct for task in tasks)
        task_steps = [statistics.fmean(values) for values in self.steps.values() if values]
        all_steps = [value for values in self.steps.values() for value in values]
        return BenchReport(
            bench_run_id=info.bench_run_id,
            name=info.name,
            config=dict(self.config),
            pairs=len(tasks) * int(self.config["epochs"]),
            finished=self.finished,
            scored=self.finished - self.errored,
            correct=correct,
            errored=self.errored,
            unfinished=self.unfinished,
            pass_at_k={k: statistics.fmean(task.pass_at_k[k] for task in scored) for k in range(1, max_k + 1)},
            tasks=tasks,
            tokens=self.tokens,
            model_calls=self.model_calls,
            cost=self.cost,
            cost_per_success=(self.cost / correct) if self.cost is not None and correct else None,
            wall_s=_wall(items),
            process_rewards={
                hook: {
                    "mean_of_run_means": statistics.fmean(means),
                    "min": min(self.mins[hook]),
                    "first_error_index": _mean(self.first_errors.get(hook, [])),
                }
                for hook, means in self.run_means.items()
            },
            checkpoints={"pqs": _mean(self.pqs), "overthinking": _mean(self.overthinking)} if checkpoints else None,
            structure={
                "steps_mean": _mean(all_steps),
                "steps_variance_across_tasks": statistics.pvariance(task_steps) if len(task_steps) > 1 else None,
                "nodes_mean": _mean(self.nodes),
                "edges_mean": _mean(self.edges),
                "loop_iterations_mean": _mean(self.loops),
                "common_paths": self.paths.most_common(3),
            },
            retried=max(0, len(items) - len(chosen)),
            unpriced_models=sorted(self.unpriced),
        )


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _wall(items: Sequence[BenchItem]) -> float | None:
    """Seconds from the first attempt's start to the last one's end (across resumes: the sum of each stretch is
    not known, so this is the span)."""
    starts = [item.started_at for item in items]
    ends = [item.finished_at for item in items if item.finished_at]
    if not starts or not ends:
        return None
    first = datetime.fromisoformat(min(starts).replace("Z", "+00:00"))
    last = datetime.fromisoformat(max(ends).replace("Z", "+00:00"))
    return max(0.0, (last - first).total_seconds())


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"
