"""`agentflow grade RUN_ID... | --all` and `agentflow grade labels --reference REF --predictions PRED`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agentflow.errors import ConfigError


def grade(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="run ids (or prefixes); or `labels` to compare step labels")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="grade every stored run")] = False,
    hooks: Annotated[
        list[str] | None,
        typer.Option(
            "--hooks", help="a reward hook NAME[:step|node|run] (repeatable); default: the workflow's own rewards"
        ),
    ] = None,
    checkpoints: Annotated[Path | None, typer.Option("--checkpoints", help="a benchmark checkpoints file")] = None,
    append: Annotated[bool, typer.Option("--append", help="keep earlier rewards current (default)")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="mark earlier rewards of the same hooks superseded (kept)")
    ] = False,
    reference: Annotated[Path | None, typer.Option("--reference", help="labels: the reference JSONL")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="labels: the predicted JSONL")] = None,
    store: Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")] = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Grade stored runs offline as a new grading pass, or compare step labels (`grade labels`).

    Without --hooks and --checkpoints each run is graded with its workflow's own `rewards:`. Exit 1 when a run could
    not be graded or a hook failed on some step.
    """
    if run_ids == ["labels"]:
        return _labels(reference, predictions, json_output)
    if append and overwrite:
        raise ConfigError("--append and --overwrite exclude each other", fix="pass one of them")
    if bool(run_ids) == all_runs:
        raise ConfigError("name the runs to grade, or pass --all", fix="agentflow grade RUN_ID... or --all")
    from agentflow.grading import grade_runs
    from agentflow.traces import open_store

    trace_store = open_store(store)
    targets = trace_store.run_ids() if all_runs else list(run_ids or [])
    result = asyncio.run(
        grade_runs(
            trace_store,
            targets,
            hooks=hooks or [],
            checkpoints=str(checkpoints) if checkpoints is not None else None,
            mode="overwrite" if overwrite else "append",
        )
    )
    if json_output:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(f"grading pass {result.grading_pass.pass_id} ({result.grading_pass.mode}): {len(result.rewards)} runs")
        for run_id, rewards in result.rewards.items():
            scored = [r for r in rewards if r.value is not None]
            mean = sum(r.value or 0.0 for r in scored) / len(scored) if scored else None
            shown = "-" if mean is None else f"{mean:.3f}"
            print(f"  {run_id}  rewards {len(rewards)}  mean {shown}")
            report = result.checkpoint_reports.get(run_id)
            if report is not None:
                _print_checkpoints(report)
        for run_id, why in result.failures.items():
            print(f"  {run_id}  not graded: {why}")
        if result.hook_failures:
            print(
                f"{result.hook_failures} hook failures in this pass (stored as rewards without a value;"
                f" see `agentflow show RUN_ID`)"
            )
    return 1 if result.failures or result.hook_failures else 0


def _print_checkpoints(report: dict[str, Any]) -> None:
    for item in report["results"]:
        mark = "pass" if item["passed"] else "FAIL"
        where = f" (event {item['event_seq']})" if item["event_seq"] is not None else ""
        print(f"    {mark}  {item['id']} [{item['axis']}]{where}")
    rates = ", ".join(f"{axis} {rate:.2f}" for axis, rate in report["axis_pass_rates"].items())
    ordering = "-" if report["ordering_score"] is None else f"{report['ordering_score']:.2f}"
    over = "-" if report["overthinking"] is None else f"{report['overthinking']:.2f}"
    print(
        f"    axes: {rates}; ordering {ordering}; tool calls {report['tool_calls']}; penalty {report['penalty']:.2f};"
        f" PQS {report['pqs']:.3f}; overthinking {over}"
    )


def _labels(reference: Path | None, predictions: Path | None, json_output: bool) -> int:
    from agentflow.grading import compare_label_files

    if reference is None or predictions is None:
        raise ConfigError("grade labels needs both files", fix="pass --reference REF.jsonl --predictions PRED.jsonl")
    metrics = compare_label_files(reference, predictions)
    if json_output:
        print(json.dumps(metrics.to_dict()))
        return 0
    for name in ("step_micro_acc", "step_exact_acc", "first_neg1_idx_acc", "missing_or_failed", "processbench_f1"):
        print(f"{name:<20} {getattr(metrics, name):.4f}")
    print(f"records {metrics.records}, steps {metrics.steps}, matched by {metrics.match_key}")
    return 0


def register(app: typer.Typer) -> None:
    app.command()(grade)
