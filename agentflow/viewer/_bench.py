"""The data of a bench page: the report of ``agentflow bench report``, and what the page draws besides.

Besides the report, the page gets every attempt of every pair (the links to their runs), each counted run's mean
reward per process-reward hook and its outcome (the histograms), and, when a Q-table router learned during the
benchmark, the episodes it learned from (the learning curve). All of it comes from one read of each counted run's
trace, the one the report makes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agentflow.bench import build_report
from agentflow.traces import BenchItem, Event, QTableEpisode, RunSummary, Store, StoredQTable


@runtime_checkable
class QTableHistory(Protocol):
    """What a learning curve needs of a store (both built-in stores have it; another store shows no curve)."""

    def list_qtables(self, workflow: str | None = None) -> list[StoredQTable]: ...

    def qtable_episodes(self, workflow: str, router: str) -> list[QTableEpisode]: ...


class _PerRun:
    """Collects, attempt by attempt as the report reads them, what the report does not keep."""

    def __init__(self, outcome_hook: str) -> None:
        self.outcome_hook = outcome_hook
        self.counted: set[str] = set()
        self.workflows: set[str] = set()
        self.outcomes: list[dict[str, Any]] = []
        self.rewards: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, item: BenchItem, events: Sequence[Event], summary: RunSummary) -> None:
        self.counted.add(item.run_id)
        if summary.workflow:
            self.workflows.add(summary.workflow)
        if item.status == "errored":  # not a sample: the report leaves it out of pass@k and of the rewards
            return
        where = {"run_id": item.run_id, "task_id": item.task_id, "epoch": item.epoch}
        self.outcomes.append({**where, "value": item.outcome})
        # as the report averages a hook's rewards: the run's mean of the values given (abstentions left out)
        for hook, rewards in summary.rewards_by_hook.items():
            values = [value for value in rewards.values if value is not None]
            if hook != self.outcome_hook and values:
                self.rewards.setdefault(hook, []).append({**where, "mean": statistics.fmean(values)})


def _learning(store: Store, workflows: set[str], items: Sequence[BenchItem]) -> list[dict[str, Any]]:
    """The episodes each Q-table of the benchmark's workflow learned from the benchmark's own runs, in order."""
    if not isinstance(store, QTableHistory):
        return []
    by_run = {item.run_id: item for item in items}
    curves = []
    for workflow in sorted(workflows):
        for table in store.list_qtables(workflow):
            points = []
            for episode in store.qtable_episodes(table.workflow, table.router):
                item = by_run.get(episode.run_id or "")
                if item is None:  # learned from a run of another benchmark, or outside one
                    continue
                points.append(
                    {
                        "episode": episode.episode,
                        "run_id": item.run_id,
                        "task_id": item.task_id,
                        "epoch": item.epoch,
                        "total_reward": episode.total_reward,
                        "epsilon": episode.epsilon,
                        "outcome": item.outcome,
                    }
                )
            if points:
                curves.append({"workflow": table.workflow, "router": table.router, "episodes": points})
    return curves


async def bench_page(store: Store, bench_run_id: str) -> dict[str, Any]:
    """The bench page of ``bench_run_id``: its report (``BenchReport.to_dict``) with ``attempts``, ``outcomes``,
    ``run_rewards`` (hook -> each counted run's mean) and ``learning`` (one curve per Q-table router).

    Raises:
        TraceError: no such benchmark run.
    """
    info = store.get_bench_run(bench_run_id)
    per_run = _PerRun(str(info.config["outcome"]["hook"]))
    report = await build_report(store, info.bench_run_id, on_attempt=per_run)
    items = store.list_bench_items(info.bench_run_id)
    data = report.to_dict()
    data["attempts"] = [
        {
            "task_id": item.task_id,
            "epoch": item.epoch,
            "attempt": item.attempt,
            "run_id": item.run_id,
            "status": item.status,
            "outcome": item.outcome,
            "counted": item.run_id in per_run.counted,
        }
        for item in items
    ]
    data["outcomes"] = per_run.outcomes
    data["run_rewards"] = per_run.rewards
    data["learning"] = _learning(store, per_run.workflows, items)
    return data


def bench_page_key(items: Sequence[BenchItem]) -> tuple[tuple[str, str, str | None], ...]:
    """What a bench page depends on: once no attempt changes, neither do its runs, report nor episodes."""
    return tuple((item.run_id, item.status, item.finished_at) for item in items)
