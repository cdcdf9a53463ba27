"""`agentflow qtable show | reset | migrate FILE`: what a workflow's Q-table routers learned, and managing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentflow.cli._console import console

app = typer.Typer(help="Q-tables of `policy: qtable` routers: show, reset, migrate.", no_args_is_help=True)

FileArgument = Annotated[Path, typer.Argument(help="the workflow file", show_default=False)]
RouterOption = Annotated[str | None, typer.Option("--router", help="one router node (default: every one)")]
StoreOption = Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")]
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """The values as one line of block characters, averaged into at most ``width`` buckets."""
    if not values:
        return ""
    size = max(1, -(-len(values) // width))
    buckets = [sum(values[i : i + size]) / len(values[i : i + size]) for i in range(0, len(values), size)]
    low, high = min(buckets), max(buckets)
    span = (high - low) or 1.0
    return "".join(_BARS[int((v - low) / span * (len(_BARS) - 1))] for v in buckets)


@app.command("show")
def show_command(
    file: FileArgument,
    router: RouterOption = None,
    store: StoreOption = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Print each router's table (Q and update counts), its pruned actions and its learning curve."""
    from rich.table import Table

    from agentflow.routing import describe_qtables, epsilon_after, settings_of
    from agentflow.traces import open_store

    opened = open_store(store)
    try:
        reports = describe_qtables(file, opened, router)  # type: ignore[arg-type]
    finally:
        opened.close()
    if json_output:
        print(json.dumps([report.to_dict() for report in reports], indent=2))
        return 0
    out = console()
    for report in reports:
        settings = settings_of(file, report.router)
        out.print(
            f"[bold]{report.workflow}[/bold] router [bold]{report.router}[/bold]: {len(report.episodes)} episodes"
        )
        if report.stored_hash is not None and report.stored_hash != report.template_hash:
            out.print(
                f"[yellow]learned on template {report.stored_hash[:12]}, the file is {report.template_hash[:12]}: "
                "runs refuse it until `agentflow qtable migrate`[/yellow]"
            )
        if not report.values:
            out.print("  nothing learned yet")
            continue
        table = Table("state", *report.candidates, title="Q(state, action)  (updates)")
        for state in sorted(report.values):
            row = report.values[state]
            cells = []
            for action in report.candidates:
                if action not in row:
                    cells.append("")
                    continue
                mark = " [red](pruned)[/red]" if row[action] <= settings.prune_below else ""
                cells.append(f"{row[action]:.2f} ({report.updates[state][action]}){mark}")
            table.add_row(state, *cells)
        out.print(table)
        if report.pruned:
            pruned = ", ".join(f"{s} -> {a} ({q:.1f})" for s, a, q in report.pruned)
            out.print(f"pruned (Q <= {settings.prune_below:g}): {pruned}")
        else:
            out.print(f"pruned (Q <= {settings.prune_below:g}): none")
        curve = report.curve
        if curve:
            out.print(
                f"reward per episode ({len(curve)}): min {min(curve):.1f}  mean {sum(curve) / len(curve):.1f}  "
                f"max {max(curve):.1f}  last {curve[-1]:.1f}"
            )
            out.print(f"  {sparkline(curve)}")
        out.print(f"epsilon now {epsilon_after(settings, len(report.episodes)):.3f}")
    return 0


@app.command("reset")
def reset_command(file: FileArgument, router: RouterOption = None, store: StoreOption = ".agentflow") -> int:
    """Forget what the routers learned (their values and history)."""
    from agentflow.routing import reset_qtables
    from agentflow.traces import open_store

    opened = open_store(store)
    try:
        removed = reset_qtables(file, opened, router)  # type: ignore[arg-type]
    finally:
        opened.close()
    print(f"removed {removed} Q-table{'s' if removed != 1 else ''} of {file}")
    return 0


@app.command("migrate")
def migrate_command(file: FileArgument, router: RouterOption = None, store: StoreOption = ".agentflow") -> int:
    """Move the tables learned on an earlier version of the file to this one, keeping the values of the states
    and actions that are still candidates."""
    from agentflow.routing import migrate_qtables
    from agentflow.traces import open_store

    opened = open_store(store)
    try:
        moved = migrate_qtables(file, opened, router)  # type: ignore[arg-type]
    finally:
        opened.close()
    for name, (kept, dropped) in moved.items():
        print(f"router {name}: kept {kept} values, dropped {dropped}")
    if not moved:
        print("nothing to migrate")
    return 0
