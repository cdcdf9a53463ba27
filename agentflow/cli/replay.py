"""`agentflow replay RUN_ID [--mode tape|verify]`: re-execute a stored run from its tape and compare every event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, cast

import typer

StoreOption = Annotated[str, typer.Option("--store", help="the trace store: a folder or a postgresql:// URL")]


def replay(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    run_id: Annotated[str, typer.Argument(help="the run's id or a unique prefix", show_default=False)],
    mode: Annotated[str, typer.Option("--mode", help="tape: nothing executes; verify: tools run again")] = "tape",
    workflow: Annotated[
        Path | None, typer.Option("--workflow", help="the workflow file (default: the one the run recorded)")
    ] = None,
    store: StoreOption = ".agentflow",
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
            help="a regular expression of output text that may differ between executions (repeatable; added to "
            "the test runners' timings, which are always ignored unless --exact)",
        ),
    ] = None,
    exact: Annotated[bool, typer.Option("--exact", help="compare every character, timings included")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Replay a run; exit 0 when every event is identical, 1 at the first divergence (which is printed).

    A forked run's prefix is also compared with its parent's trace; one that differs exits 1 (a parent that is gone
    is said, and is no failure: the forked run's trace is self-contained).
    """
    from agentflow.rerun import ReplayMode, replay_run
    from agentflow.traces import VOLATILE_TEXT, open_store

    patterns = [*(() if exact else VOLATILE_TEXT), *(ignore or [])]
    trace_store = open_store(store)
    # replay_run refuses a mode other than tape or verify with the fix to apply
    replaying = replay_run(trace_store, run_id, mode=cast("ReplayMode", mode), workflow=workflow, ignore=patterns)
    report = asyncio.run(replaying)
    prefix_ok = not report.prefix_differs
    if json_output:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.identical and prefix_ok else 1
    verdict = "identical" if report.identical else "diverged"
    print(f"replay ({report.mode}) of {report.run_id}: {verdict}; replay run {report.replay_run_id}")
    print(
        f"events {report.events_actual}/{report.events_expected}  model calls served {report.model_calls_served}"
        f"  tool results served {report.tool_results_served}  sandbox execs {report.sandbox_execs}"
    )
    original = "-" if report.original_wall_s is None else f"{report.original_wall_s:.3f}s"
    print(f"wall time: original {original}, replay {report.replay_wall_s:.3f}s")
    if report.template_changed:
        print(
            f"the workflow changed since the run was recorded: template hash "
            f"{str(report.recorded_template_hash)[:12]} -> {report.current_template_hash[:12]}"
        )
    if report.prefix_of_parent is not None:
        print(f"forked run: its prefix against its parent's trace: {report.prefix_of_parent}")
    if report.divergence is not None:
        divergence = report.divergence
        print(f"first divergence at event {divergence.index} (node {divergence.node or '-'}):")
        print(divergence.diff)
    return 0 if report.identical and prefix_ok else 1


def register(app: typer.Typer) -> None:
    app.command()(replay)
