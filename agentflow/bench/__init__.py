"""Benchmarks: a workflow run over a task set, ``epochs`` samples per task, scored, reported as pass@k.

bench = BenchRun(load_bench("graphs/bench/arith.yaml"), open_store(".agentflow"))
outcome = await bench.run()                       # every (task, epoch) pair as a run in the store
report = await build_report(store, bench.info.bench_run_id)
"""

from agentflow.bench._compare import BenchComparison, TaskDelta, compare_reports, paired_bootstrap
from agentflow.bench._report import BenchReport, TaskResult, build_report, pass_at_k
from agentflow.bench._runner import (
    BenchOptions,
    BenchPlan,
    BenchProgress,
    BenchRun,
    BenchRunOutcome,
    Pair,
    chosen_attempts,
    pair_seed,
)
from agentflow.bench._spec import BenchSpec, LoadedBench, load_bench
from agentflow.bench._tasks import Task, TaskProblem, TaskSet, read_tasks, task_inputs

__all__ = [
    "BenchComparison",
    "BenchOptions",
    "BenchPlan",
    "BenchProgress",
    "BenchReport",
    "BenchRun",
    "BenchRunOutcome",
    "BenchSpec",
    "LoadedBench",
    "Pair",
    "Task",
    "TaskDelta",
    "TaskProblem",
    "TaskResult",
    "TaskSet",
    "build_report",
    "chosen_attempts",
    "compare_reports",
    "load_bench",
    "pair_seed",
    "paired_bootstrap",
    "pass_at_k",
    "read_tasks",
    "task_inputs",
]
