"""`agentflow sandbox exec`: run one command in a fresh sandbox, to check sandbox settings."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Sandboxes: run a command in one, check a backend.", no_args_is_help=True)


@app.command("exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def exec_command(
    cmd: Annotated[list[str], typer.Argument(help="the command and its arguments, after --", show_default=False)],
    backend: Annotated[str, typer.Option("--backend", help="local, docker or e2b")] = "local",
    timeout: Annotated[float | None, typer.Option("--timeout", help="wall-clock limit in seconds")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Run CMD in a fresh sandbox with the default limits; exit 0 when it exited 0, else 1."""
    from agentflow.sandboxes import exec_once

    result, isolation = asyncio.run(exec_once(cmd, backend=backend, timeout=timeout))
    if json_output:
        print(json.dumps({**result.to_dict(), "isolation": isolation.to_dict()}, indent=2))
    else:
        console = Console(highlight=False)
        if result.stdout:
            console.out(result.stdout, end="" if result.stdout.endswith("\n") else "\n", highlight=False)
        if result.stderr:
            Console(stderr=True, highlight=False).out(result.stderr, end="", highlight=False)
        flags = [name for name in ("timed_out", "truncated") if getattr(result, name)]
        console.print(
            f"exit_code {result.exit_code}  {' '.join(flags)}  {result.duration_s * 1000:.1f} ms  "
            f"[{isolation.backend}: network isolated {isolation.network_isolated}, "
            f"filesystem isolated {isolation.filesystem_isolated}]",
            style="dim",
            markup=False,
        )
    return 0 if result.exit_code == 0 and not result.timed_out else 1
