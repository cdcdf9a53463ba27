"""`agentflow fork RUN_ID --at STEP [-n K]`: K new runs sharing a recorded run's prefix, continuing live from it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from agentflow.cli.runs import DEFAULT_STORE, JsonFlag, StoreOption, exit_code, opened_store


def fork(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    run_id: Annotated[str, typer.Argument(help="the run's id or a unique prefix", show_default=False)],
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="where the prefix ends: a step number (15: the first 15 model turns and tool calls) or seq:N "
            "(the steps ended at or before event N)",
            show_default=False,
        ),
    ],
    n: Annotated[int, typer.Option("-n", help="how many continuations")] = 1,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="the provider:model the continuations call once live")
    ] = None,
    workflow: Annotated[
        Path | None, typer.Option("--workflow", help="the workflow file (default: the one the run recorded)")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    json_output: JsonFlag = False,
) -> int:
    """Fork a run after STEP into K continuations that go on live (the prefix comes from the run's tape).

    Exit 0 when every continuation succeeded, 1 when one did not (failed, limit_exceeded), 3 when one errored or
    the fork was refused (unknown run, damaged trace, STEP past the end, a run with branches): nothing recorded.
    """
    from agentflow.rerun import Fork

    with opened_store(store) as trace_store:
        forking = Fork.open(trace_store, run_id, at=at, workflow=workflow)
        results = asyncio.run(forking.continue_runs(n, model=model))
    point = forking.point
    codes = [exit_code(result.status) for result in results]
    code = 3 if 3 in codes else max(codes)
    continuations = [
        {
            "run_id": result.run_id,
            "fork_index": index,
            "status": result.status,
            "error": result.error,
            "duration_s": round(result.duration_s, 4),
            "final_state": result.final_state,
        }
        for index, result in enumerate(results)
    ]
    if json_output:
        payload = {
            "forked_from": {"run_id": point.recorded.run_id, "seq": point.cut_seq},
            "fork_group": forking.group,
            "fork_step": point.steps,
            "sandbox": {
                "rebuilt_tool_calls": forking.sandboxes.rebuilt.tool_calls,
                "differed": forking.sandboxes.rebuilt.differed,
                "forked_copies": forking.sandboxes.forks,
            },
            "continuations": continuations,
        }
        print(json.dumps(payload, indent=2, default=str))
        return code
    print(
        f"fork of {point.recorded.run_id} after step {point.steps} (seq {point.cut_seq}): group {forking.group}, "
        f"{len(results)} continuation(s); prefix sandbox rebuilt from {forking.sandboxes.rebuilt.tool_calls} tool "
        f"call(s), {forking.sandboxes.forks} forked cop{'y' if forking.sandboxes.forks == 1 else 'ies'}"
    )
    if forking.sandboxes.rebuilt.differed:
        print(f"the rebuild's results differed from the recorded ones at seq {forking.sandboxes.rebuilt.differed}")
    for item in continuations:
        error = f": {item['error']}" if item["error"] else ""
        print(f"  #{item['fork_index']} {item['run_id']} {item['status']} {item['duration_s']:.2f}s{error}")
    return code


def register(app: typer.Typer) -> None:
    app.command()(fork)
