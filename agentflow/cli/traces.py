"""`agentflow traces import FILE --format openai-messages`: bring trajectories recorded elsewhere into the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentflow.errors import ConfigError

app = typer.Typer(help="Traces: import trajectories, export runs.", no_args_is_help=True)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a JSONL file, one trajectory per line", show_default=False)],
    format_name: Annotated[str, typer.Option("--format", help="the file's format")] = "openai-messages",
    workflow: Annotated[str | None, typer.Option("--workflow", help="the name the runs get")] = None,
    store: Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")] = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Import each record as a run (status `imported`); exit 1 when a malformed record was skipped."""
    from agentflow.traces import IMPORT_FORMATS, import_openai_messages, open_store

    if format_name not in IMPORT_FORMATS:
        raise ConfigError(f"unknown trace format {format_name!r}", fix=f"use --format {' | '.join(IMPORT_FORMATS)}")
    report = import_openai_messages(open_store(store), file, workflow=workflow)
    if json_output:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"imported {len(report.run_ids)} runs from {file}")
        for line, error in report.skipped:
            print(f"  {file}:{line}: skipped: {error}")
    return 1 if report.skipped else 0


@app.command("export")
def export_command(
    run_id: Annotated[str, typer.Argument(help="the run's id or a unique prefix", show_default=False)],
    otlp: Annotated[
        str | None, typer.Option("--otlp", help="OTLP/HTTP endpoint (default: $AGENTFLOW_OTLP_ENDPOINT)")
    ] = None,
    store: Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")] = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Send a stored run to an OpenTelemetry collector as GenAI spans, rewards as evaluation events."""
    import os

    from agentflow.traces import OTLP_ENV, export_to_otlp, open_store

    endpoint = otlp or os.environ.get(OTLP_ENV)
    if not endpoint:
        raise ConfigError("no OTLP endpoint", fix=f"pass --otlp http://host:4318 or set {OTLP_ENV}")
    trace = open_store(store).load_trace(run_id)
    spans = export_to_otlp(trace, endpoint)
    if json_output:
        print(json.dumps({"run_id": trace.run_id, "spans": spans, "endpoint": endpoint}))
    else:
        print(f"exported {spans} spans of run {trace.run_id} to {endpoint}")
    return 0
