"""`agentflow bench ...`: benchmarks. `bench grade humaneval` grades precomputed HumanEval samples in sandboxes."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

from agentflow.errors import ConfigError

app = typer.Typer(help="Benchmarks: grade samples.", no_args_is_help=True)
grade_app = typer.Typer(help="Grade precomputed samples of a benchmark.", no_args_is_help=True)
app.add_typer(grade_app, name="grade")


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
