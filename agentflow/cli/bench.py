"""`agentflow bench run | report | compare | runs | grade`: run a benchmark over its task set, report a bench run,
compare two, list them; grade precomputed samples of a benchmark (HumanEval) in sandboxes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from agentflow.cli._console import console, is_terminal
from agentflow.cli._interrupt import Interrupted
from agentflow.cli.runs import JsonFlag, StoreOption, opened_store
from agentflow.errors import ConfigError

app = typer.Typer(
    help="Benchmarks: a workflow over a task set, several samples per task, pass@k; grading samples.",
    no_args_is_help=True,
)
grade_app = typer.Typer(help="Grade precomputed samples of a benchmark.", no_args_is_help=True)
app.add_typer(grade_app, name="grade")

EXIT_OK, EXIT_FAILED, EXIT_RUNTIME = 0, 1, 3
DEFAULT_STORE = ".agentflow"
FORMATS = ("md", "json", "csv")


class _BenchProgressDisplay:
    """A live bar on a terminal (done/total, pass rate, errored, tokens, ETA); otherwise a line every few seconds
    and at the end, on stderr."""

    def __init__(self, name: str, *, quiet: bool, interval_s: float = 5.0) -> None:
        self.name = name
        self.quiet = quiet
        self.interval_s = interval_s
        self._last_line = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _BenchProgressDisplay:
        if not self.quiet and is_terminal(stderr=True):
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=False,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, progress: object) -> None:
        from agentflow.bench import BenchProgress

        assert isinstance(progress, BenchProgress)
        rate = "n/a" if progress.pass_rate is None else f"{progress.pass_rate:.1%}"
        figures = f"pass {rate}  errored {progress.errored}  tokens {progress.tokens}"
        if progress.cost is not None:
            figures += f"  cost ${progress.cost:.4f}"
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.name, total=progress.total, figures=figures)
            self._bar.update(self._task, completed=progress.done, figures=figures)
            return
        now = time.monotonic()
        if self.quiet or (now - self._last_line < self.interval_s and progress.done < progress.total):
            return
        self._last_line = now
        eta = "" if progress.eta_s is None else f", about {progress.eta_s:.0f} s left"
        print(f"{self.name}: {progress.done}/{progress.total} done, {figures}{eta}", file=sys.stderr, flush=True)


@app.command("run")
def run_command(  # noqa: PLR0917 - typer maps each parameter to an option
    bench_file: Annotated[Path, typer.Argument(help="the benchmark file (graphs/bench/NAME.yaml)", show_default=False)],
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N tasks", min=1)] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", help="only these task ids, comma-separated")] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="samples per task (default: the file's)", min=1)
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="runs at once (default: the file's)", min=1)
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="provider:model for every model")] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help="sandbox backend for every run")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="the seed the pairs' seeds derive from")] = None,
    task_file: Annotated[
        Path | None, typer.Option("--task-file", help="the task file instead of the benchmark's tasks.path")
    ] = None,
    retry_errored: Annotated[
        int | None, typer.Option("--retry-errored", help="new attempts for an errored run (default: 2)", min=0)
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="continue this bench run: only its unfinished pairs run")
    ] = None,
    oracle: Annotated[
        bool,
        typer.Option(
            "--oracle",
            help="run each task's reference solution (solution/solve.sh) instead of the workflow, scored the same "
            "way: checks that the tasks can be solved (task directories only)",
        ),
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="local: runs in this process; ray: on a Ray cluster (the ray extra)")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="the Ray cluster (auto: the one on this machine; ip:port); default: a local one"
        ),
    ] = None,
    learn: Annotated[
        bool, typer.Option("--learn", help="Q-table routers update their table after each episode (run)")
    ] = False,
    freeze: Annotated[
        bool, typer.Option("--freeze", help="Q-table routers route greedily (epsilon 0) and learn nothing")
    ] = False,
    rollouts: Annotated[
        int,
        typer.Option(
            "--rollouts",
            help="fork each pair's run into K continuations per fork point (rollout groups, not counted in pass@k)",
            min=0,
        ),
    ] = 0,
    fork_at: Annotated[
        str,
        typer.Option("--fork-at", help="where --rollouts forks: first_error, each_step, a step number or seq:N"),
    ] = "first_error",
    store: StoreOption = DEFAULT_STORE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="show no progress")] = False,
    json_output: JsonFlag = False,
) -> int:
    """Run every (task, epoch) pair of a benchmark as a run in the store, then print its report.

    Exit 0 when every pair finished, 1 when lines of the task file (or task directories; under --oracle, tasks
    without a solution) could not be used (the other tasks ran), 3 when
    pairs errored after their retries (an outage, not the agent), 130 when interrupted (it says how to resume).
    """
    from agentflow.bench import (
        BenchExecutor,
        BenchOptions,
        BenchRun,
        LocalExecutor,
        RayExecutor,
        build_report,
        load_bench,
    )
    from agentflow.traces import PostgresStore

    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}", fix="use --executor local or --executor ray")
    if ray_address is not None and executor != "ray":
        raise ConfigError("--ray-address is for --executor ray", fix="add --executor ray, or drop --ray-address")
    if resume is not None and (oracle or rollouts or any(value is not None for value in (limit, tasks, epochs, seed))):
        raise ConfigError(
            "--resume continues a bench run with the tasks, epochs, seed, --oracle and --rollouts it started with",
            fix="drop --limit, --tasks, --epochs, --seed, --oracle and --rollouts when resuming",
        )
    from agentflow.bench import check_fork_at

    try:
        fork_at = check_fork_at(fork_at)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if learn and freeze:
        raise ConfigError("--learn and --freeze exclude each other", fix="pass one of them")
    task_ids = None if tasks is None else [part.strip() for part in tasks.split(",") if part.strip()]
    if task_ids == []:  # (an empty shell variable, say): not "every task", which may cost a real model's bill
        raise ConfigError(
            "--tasks names no task", fix="give task ids of the task file, comma-separated, or drop --tasks"
        )
    loaded = load_bench(bench_file, check_tasks=task_file is None and resume is None)
    options = BenchOptions(
        routing="learn" if learn else "freeze" if freeze else None,
        limit=limit,
        task_ids=task_ids,
        epochs=epochs,
        concurrency=concurrency,
        model=model,
        sandbox=sandbox,
        seed=seed,
        retry_errored=retry_errored,
        task_file=str(task_file) if task_file is not None else None,
        oracle=oracle,
        rollouts=rollouts,
        fork_at=fork_at,
    )
    with opened_store(store) as trace_store:
        runner: BenchExecutor = LocalExecutor()
        if executor == "ray":
            url = trace_store.url if isinstance(trace_store, PostgresStore) else None
            runner = RayExecutor(ray_address, store_url=url)
        with _BenchProgressDisplay(loaded.spec.name, quiet=quiet or json_output) as display:
            bench = BenchRun(loaded, trace_store, options=options, resume=resume, on_progress=display, executor=runner)
            for problem in bench.task_set.problems:
                print(f"{problem.located(bench.task_set.path)}: skipped: {problem.message}", file=sys.stderr)
            for warning in bench.task_set.warnings:
                print(f"{warning.located(bench.task_set.path)}: warning: {warning.message}", file=sys.stderr)
            try:
                outcome = asyncio.run(bench.run())
            except KeyboardInterrupt:
                outcome = None
        bench_run_id = bench.info.bench_run_id
        if outcome is None or outcome.cancelled:
            where = "" if store == DEFAULT_STORE else f" --store {store}"
            raise Interrupted(f"resume with: agentflow bench run {bench_file} --resume {bench_run_id}{where}")
        for rollout_problem in outcome.rollout_problems:
            print(f"rollouts: {rollout_problem}", file=sys.stderr)
        report = asyncio.run(build_report(trace_store, bench_run_id))
    _print_report(report, "json" if json_output else "md")
    if report.errored:
        return EXIT_RUNTIME
    return EXIT_FAILED if outcome.task_problems else EXIT_OK


@app.command("report")
def report_command(
    bench_run_id: Annotated[str, typer.Argument(help="a bench run id (or a unique prefix)", show_default=False)],
    output_format: Annotated[str, typer.Option("--format", help="md | json | csv")] = "md",
    store: StoreOption = DEFAULT_STORE,
) -> int:
    """Print the report of a bench run: pass@k, per-task results, process rewards, cost, graph structure."""
    from agentflow.bench import build_report

    if output_format not in FORMATS:
        raise ConfigError(f"unknown report format {output_format!r}", fix=f"use --format {' | '.join(FORMATS)}")
    with opened_store(store) as trace_store:
        report = asyncio.run(build_report(trace_store, bench_run_id))
    _print_report(report, output_format)
    return EXIT_OK


@app.command("compare")
def compare_command(
    run_a: Annotated[str, typer.Argument(help="the bench run to compare against (A)", show_default=False)],
    run_b: Annotated[str, typer.Argument(help="the bench run compared (B)", show_default=False)],
    store: StoreOption = DEFAULT_STORE,
    json_output: JsonFlag = False,
) -> int:
    """Two bench runs side by side on their common tasks: per-task deltas, the pass@1 difference with a paired
    bootstrap 95% interval, token and cost differences."""
    from agentflow.bench import build_report, compare_reports

    with opened_store(store) as trace_store:
        report_a = asyncio.run(build_report(trace_store, run_a))
        report_b = asyncio.run(build_report(trace_store, run_b))
    comparison = compare_reports(report_a, report_b)
    if json_output:
        print(json.dumps(comparison.to_dict(), indent=2, default=str))
    else:
        sys.stdout.write(comparison.to_markdown())
    return EXIT_OK


@app.command("runs")
def runs_command(store: StoreOption = DEFAULT_STORE, json_output: JsonFlag = False) -> int:
    """List bench runs, newest first."""
    with opened_store(store) as trace_store:
        infos = trace_store.list_bench_runs()
        where = trace_store.location  # (a PostgreSQL URL without its password)
    if json_output:
        print(json.dumps([info.to_dict() for info in infos], indent=2, default=str))
        return EXIT_OK
    out = console()
    if not infos:
        out.print(f"no bench runs in {where} yet: `agentflow bench run BENCH.yaml` starts one", markup=False)
    for info in infos:
        config = info.config
        out.print(
            f"{info.bench_run_id}  {info.name}  {info.created_at}  tasks {len(config.get('task_ids', []))} × "
            f"epochs {config.get('epochs')}  model {config.get('model') or '(workflow)'}",
            markup=False,
        )
    return EXIT_OK


def _print_report(report: object, output_format: str) -> None:
    from agentflow.bench import BenchReport

    assert isinstance(report, BenchReport)
    if output_format == "json":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    elif output_format == "csv":
        sys.stdout.write(report.to_csv())
    else:
        sys.stdout.write(report.to_markdown())


def _problems_path(given: Path | None) -> Path:
    from agentflow.bench import checkout_problems

    if given is not None:
        return given
    found = checkout_problems()
    if found is None:
        raise ConfigError(
            "no HumanEval problems file", fix="pass --problems PATH (HumanEval.jsonl or HumanEval.jsonl.gz)"
        )
    return found


@grade_app.command("humaneval")
def humaneval_command(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    samples: Annotated[
        Path, typer.Option("--samples", help="JSONL, one {task_id, completion} per line", show_default=False)
    ],
    problems: Annotated[
        Path | None,
        typer.Option(
            "--problems",
            help="HumanEval problems, .jsonl or .jsonl.gz (default: shared/data/humaneval/HumanEval.jsonl.gz beside "
            "this agentflow checkout, when there is one; otherwise required)",
            show_default=False,
        ),
    ] = None,
    sandbox: Annotated[str, typer.Option("--sandbox", help="sandbox backend: local or docker")] = "local",
    timeout: Annotated[float, typer.Option("--timeout", help="seconds each sample may run", min=0.001)] = 3.0,
    workers: Annotated[int, typer.Option("--workers", help="sandboxes grading at the same time", min=1)] = 4,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="where the results go (default: SAMPLES_results.jsonl)", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Grade each sample by running prompt + completion + test + check(entry_point) in a sandbox.

    A sample passes only if check returns normally within the timeout (exiting early, printing a success line or
    killing the grader does not pass). The results repeat each sample, in input order, with passed, result
    (passed, failed: <reason>, timed out) and duration_s. Lines that are malformed or name an unknown task are
    reported with their line numbers and not graded; the rest is. Exit 0 when every line was graded, 1 when a line
    was skipped.
    """
    from agentflow.bench import grade_samples, load_problems, pass_at_ks, read_samples

    problems_path = _problems_path(problems)
    known = load_problems(problems_path)
    graded, skipped = read_samples(samples, known)
    out_path = out or samples.with_name(samples.name + "_results.jsonl")
    started = time.monotonic()
    verdicts = asyncio.run(grade_samples(graded, known, backend=sandbox, timeout=timeout, workers=workers))
    wall = time.monotonic() - started
    outcomes: dict[str, list[bool]] = defaultdict(list)
    with out_path.open("w", encoding="utf-8") as handle:
        for sample, verdict in zip(graded, verdicts, strict=True):
            handle.write(json.dumps({**sample.record, **verdict.to_dict()}) + "\n")
            outcomes[sample.task_id].append(verdict.passed)
    passed = sum(verdict.passed for verdict in verdicts)
    timed_out = sum(verdict.result == "timed out" for verdict in verdicts)
    summary: dict[str, Any] = {
        "samples": str(samples),
        "problems": str(problems_path),
        "results": str(out_path),
        "sandbox": sandbox,
        "pass_at_k": pass_at_ks(outcomes),
        "counts": {
            "graded": len(verdicts),
            "passed": passed,
            "failed": len(verdicts) - passed - timed_out,
            "timed_out": timed_out,
            "skipped_lines": len(skipped),
            "tasks": len(outcomes),
            "problems": len(known),
        },
        "skipped": [{"line": error.line, "message": error.message} for error in skipped],
        "wall_s": round(wall, 3),
    }
    if json_output:
        print(json.dumps(summary, indent=2))
    else:
        for error in skipped:
            print(f"{samples}:{error.line}: skipped: {error.message}")
        counts = summary["counts"]
        scores = "  ".join(f"{name} {value:.4f}" for name, value in summary["pass_at_k"].items())
        print(
            f"graded {counts['graded']} samples of {counts['tasks']} tasks in {wall:.2f} s: {passed} passed, "
            f"{counts['failed']} failed, {timed_out} timed out"
            + (f", {len(skipped)} lines skipped" if skipped else "")
            + (f"; {scores}" if scores else "")
        )
        print(f"results: {out_path}")
    return 1 if skipped else 0
