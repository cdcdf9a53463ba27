"""Benchmarks: a workflow run over a task set, ``epochs`` samples per task, scored, reported as pass@k; and grading
precomputed samples (HumanEval) in sandboxes.

    bench = BenchRun(load_bench("graphs/bench/arith.yaml"), open_store(".agentflow"))
    outcome = await bench.run()                       # every (task, epoch) pair as a run in the store
    report = await build_report(store, bench.info.bench_run_id)

    verdicts = await grade_samples(samples, load_problems(path), backend="local")   # `bench grade humaneval`
"""

from agentflow.bench._compare import BenchComparison, TaskDelta, compare_reports, paired_bootstrap
from agentflow.bench._grader import DEFAULT_TIMEOUT_S, GRADING_LIMITS, Verdict, grade_programs, grade_samples
from agentflow.bench._harbor import IMAGE_REPOSITORY as HARBOR_IMAGE_REPOSITORY
from agentflow.bench._harbor import read_harbor_tasks
from agentflow.bench._humaneval import LineError, Problem, Sample, checkout_problems, load_problems, read_samples
from agentflow.bench._humaneval_hook import HumanEvalHook
from agentflow.bench._passk import pass_at_k, pass_at_ks
from agentflow.bench._ray_executor import RayExecutor
from agentflow.bench._report import BenchReport, TaskResult, build_report
from agentflow.bench._rollouts import RolloutGroup, check_fork_at, rollout_points
from agentflow.bench._runner import (
    AttemptResult,
    BenchExecutor,
    BenchOptions,
    BenchPlan,
    BenchProgress,
    BenchRun,
    BenchRunOutcome,
    LocalExecutor,
    Pair,
    chosen_attempts,
    pair_seed,
)
from agentflow.bench._spec import BenchSpec, LoadedBench, load_bench
from agentflow.bench._tasks import Task, TaskEnvironment, TaskProblem, TaskSet, read_tasks, task_inputs

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRADING_LIMITS",
    "HARBOR_IMAGE_REPOSITORY",
    "AttemptResult",
    "BenchComparison",
    "BenchExecutor",
    "BenchOptions",
    "BenchPlan",
    "BenchProgress",
    "BenchReport",
    "BenchRun",
    "BenchRunOutcome",
    "BenchSpec",
    "HumanEvalHook",
    "LineError",
    "LoadedBench",
    "LocalExecutor",
    "Pair",
    "Problem",
    "RayExecutor",
    "RolloutGroup",
    "Sample",
    "Task",
    "TaskDelta",
    "TaskEnvironment",
    "TaskProblem",
    "TaskResult",
    "TaskSet",
    "Verdict",
    "build_report",
    "check_fork_at",
    "checkout_problems",
    "chosen_attempts",
    "compare_reports",
    "grade_programs",
    "grade_samples",
    "load_bench",
    "load_problems",
    "pair_seed",
    "paired_bootstrap",
    "pass_at_k",
    "pass_at_ks",
    "read_harbor_tasks",
    "read_samples",
    "read_tasks",
    "rollout_points",
    "task_inputs",
]
