"""Rollout groups of a benchmark run (``bench run --rollouts K --fork-at WHERE``): forks of each pair's run.

After a (task, epoch) pair's counted attempt finished (not errored), its run is forked at the chosen points into K
continuations each (``agentflow.rerun.Fork``): groups of runs that share a prefix and differ after it, the data
step-level trainers sample (GRPO-style group advantages). Where:

- ``first_error``: the prefix ends just before the model turn that made the run's first error (a failed tool
  result, or a step reward below 0 / label -1; see ``agentflow.rerun.first_error_step``); a run without an error
  gets no group.
- ``each_step``: one group before each step: prefixes of 0, 1, …, N−1 steps (N groups of K).
- ``STEP`` (a number) or ``seq:N``: one group at that point, as ``agentflow fork --at`` reads it; a run shorter
  than STEP gets none (said in the bench run's rollout problems).

The continuations are runs of the store, not attempts: they are not in the bench tables, so pass@k, the per-task
table and every other figure of the report are exactly what they are without rollouts. The report finds them
through the runs index (``forked_from`` = the pair's run) and shows each group's spread of outcomes. A group's id
is ``<bench run>/<task>#<epoch>@<at>``. Tasks with their own environment (Harbor task images) are not forked
(not supported yet: their sandbox comes from the task's image, which a fork does not rebuild).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agentflow.errors import AgentflowError
from agentflow.rerun import Fork, first_error_step, steps_of
from agentflow.runtime import CompiledWorkflow
from agentflow.traces import SOLVED_OUTCOME as SOLVED
from agentflow.traces import BenchItem, Event, Store

FORK_AT_CHOICES = ("first_error", "each_step")


def check_fork_at(fork_at: str) -> str:
    """``fork_at`` as given, once it is known to be ``first_error``, ``each_step``, a step number or ``seq:N``.

    Raises:
        ValueError: anything else (the CLI says it as a usage error).
    """
    text = fork_at.strip()
    if text in FORK_AT_CHOICES:
        return text
    number = text.removeprefix("seq:")
    if number.isdigit():
        return text
    raise ValueError(f"--fork-at {fork_at!r}: use first_error, each_step, a step number (15) or seq:N")


def rollout_points(events: Sequence[Event], fork_at: str) -> list[int | str]:
    """Where a run is forked for ``fork_at`` (see the module): step counts, or ``seq:N`` as given."""
    if fork_at == "first_error":
        first = first_error_step(events)
        return [] if first is None else [first]
    if fork_at == "each_step":
        return list(range(len(steps_of(events))))
    return [int(fork_at)] if fork_at.isdigit() else [fork_at]


def group_id(bench_run_id: str, item: BenchItem, at: int | str) -> str:
    return f"{bench_run_id}/{item.task_id}#{item.epoch}@{at}"


async def fork_pair(
    store: Store,
    bench_run_id: str,
    item: BenchItem,
    compiled: CompiledWorkflow,
    *,
    k: int,
    fork_at: str,
    concurrency: int,
) -> list[str]:
    """Fork the run of a pair's counted attempt into its rollout groups; return the problems met (one line each)."""
    events = store.load_trace(item.run_id).resolved_events()
    problems = []
    for at in rollout_points(events, fork_at):
        try:
            fork = Fork.open(store, item.run_id, at=at, group=group_id(bench_run_id, item, at), compiled=compiled)
            await fork.continue_runs(k, concurrency=concurrency)
        except AgentflowError as exc:  # e.g. a step past the end of this run, a run with branches
            problems.append(f"{item.task_id}#{item.epoch} (run {item.run_id}) not forked at {at}: {exc}")
    return problems


@dataclass
class RolloutGroup:
    """One fork group of a benchmark run: the K continuations of one pair's run at one point, and their spread.

    ``outcomes`` are the continuations' outcome rewards (None: errored or not scored), in fork index order; the
    figures are over the scored ones (``std`` the population standard deviation, as group-normalized advantages
    use); ``solved`` the share of scored ones at or above 0.5, ``succeeded`` the share whose run succeeded.
    """

    task_id: str
    epoch: int
    run_id: str  # the pair's run the group was forked from
    fork_group: str
    fork_step: int | None
    parent_outcome: float | None
    run_ids: list[str] = field(default_factory=lambda: [])
    outcomes: list[float | None] = field(default_factory=lambda: [])
    statuses: list[str] = field(default_factory=lambda: [])

    @property
    def scored(self) -> list[float]:
        return [value for value in self.outcomes if value is not None]

    def figures(self) -> dict[str, float | None]:
        scored = self.scored
        return {
            "mean": statistics.fmean(scored) if scored else None,
            "std": statistics.pstdev(scored) if scored else None,
            "min": min(scored) if scored else None,
            "max": max(scored) if scored else None,
            "solved": sum(value >= SOLVED for value in scored) / len(scored) if scored else None,
            "succeeded": sum(status == "succeeded" for status in self.statuses) / len(self.statuses)
            if self.statuses
            else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), **self.figures(), "errored": self.statuses.count("errored")}


def rollout_groups(
    store: Store,
    chosen: Mapping[tuple[str, int], BenchItem],
    outcome_of: Callable[[Sequence[Event]], float | None],
) -> list[RolloutGroup]:
    """The rollout groups forked from the counted attempts ``chosen``, in task, epoch and fork-point order.

    ``outcome_of`` reads a run's outcome reward from its events (the benchmark's outcome hook).
    """
    groups: list[RolloutGroup] = []
    for (task_id, epoch), item in sorted(chosen.items()):
        members: dict[str, list[tuple[int, str, float | None, str, int | None]]] = {}
        for info in store.list_runs(limit=1_000_000, forked_from=item.run_id):
            if info.fork_group is None:
                continue
            events = store.load_trace(info.run_id).events
            started = events[0].data if events else {}
            index, step = started.get("fork_index"), started.get("fork_step")
            outcome = None if info.status == "errored" else outcome_of(events)
            members.setdefault(info.fork_group, []).append(
                (
                    index if isinstance(index, int) else 0,
                    info.run_id,
                    outcome,
                    info.status,
                    step if isinstance(step, int) else None,
                )
            )
        found = []
        for name, runs in members.items():
            runs.sort()
            group = RolloutGroup(task_id, epoch, item.run_id, name, runs[0][4], item.outcome)
            group.run_ids = [run[1] for run in runs]
            group.outcomes = [run[2] for run in runs]
            group.statuses = [run[3] for run in runs]
            found.append(group)
        groups.extend(sorted(found, key=lambda group: (group.fork_step or 0, group.fork_group)))
    return groups
