"""`agentflow traces import|export`: bring trajectories recorded elsewhere into the store, and export runs.

`traces import FILE --format openai-messages|atif`; `traces export RUN_ID... | --bench ID --format
openai-messages|atif|rollouts|otlp [-o FILE]` (JSON lines on stdout without `-o`; `otlp` sends spans instead).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentflow.errors import ConfigError

if TYPE_CHECKING:
    from agentflow.traces import Store

app = typer.Typer(help="Traces: import trajectories, export runs.", no_args_is_help=True)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a JSONL file, one trajectory per line", show_default=False)],
    format_name: Annotated[
        str, typer.Option("--format", help="the file's format: openai-messages (JSONL) or atif")
    ] = "openai-messages",
    workflow: Annotated[str | None, typer.Option("--workflow", help="the name the runs get")] = None,
    store: Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")] = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Import each record as a run (status `imported`); exit 1 when a malformed record was skipped."""
    from agentflow.traces import IMPORT_FORMATS, import_atif, import_openai_messages, open_store

    if format_name not in IMPORT_FORMATS:
        raise ConfigError(f"unknown trace format {format_name!r}", fix=f"use --format {' | '.join(IMPORT_FORMATS)}")
    importer = import_atif if format_name == "atif" else import_openai_messages
    report = importer(open_store(store), file, workflow=workflow)
    if json_output:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"imported {len(report.run_ids)} runs from {file}")
        for line, error in report.skipped:
            print(f"  {file}:{line}: skipped: {error}")
    return 1 if report.skipped else 0


@app.command("export")
def export_command(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    run_ids: Annotated[list[str] | None, typer.Argument(help="run ids or unique prefixes", show_default=False)] = None,
    bench: Annotated[str | None, typer.Option("--bench", help="export the runs of this bench run")] = None,
    format_name: Annotated[
        str | None,
        typer.Option("--format", help="openai-messages | atif | rollouts | otlp (default: otlp, as before)"),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write to this file instead of stdout")] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="rollouts: the run reward hook that is R (default: outcome)")
    ] = None,
    otlp: Annotated[
        str | None, typer.Option("--otlp", help="OTLP/HTTP endpoint (default: $AGENTFLOW_OTLP_ENDPOINT)")
    ] = None,
    store: Annotated[str, typer.Option("--store", help="a folder or a postgresql:// URL")] = ".agentflow",
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object (with -o or otlp)")] = False,
) -> int:
    """Export stored runs: chat messages, ATIF trajectories or fork-group rollouts as JSON lines, or OTel spans."""
    from agentflow.traces import EXPORT_FORMATS, export_records, open_store, to_jsonl

    chosen = format_name or "otlp"
    if chosen not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {chosen!r}", fix=f"use --format {' | '.join(EXPORT_FORMATS)}")
    if otlp is not None and chosen != "otlp":
        raise ConfigError(f"--otlp sends spans: it does not go with --format {chosen}", fix="leave out --otlp")
    opened = open_store(store)
    if chosen == "otlp":
        if output is not None or outcome is not None:
            raise ConfigError("--format otlp sends spans to a collector", fix="leave out -o and --outcome")
        return _export_otlp(opened, list(run_ids or []), bench, otlp, json_output)
    records = export_records(opened, chosen, run_ids or [], bench_run_id=bench, outcome_hook=outcome)
    text = to_jsonl(records)
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
    if json_output:
        print(json.dumps({"format": chosen, "records": len(records), "output": str(output)}))
    else:
        print(f"exported {len(records)} {chosen} records to {output}")
    return 0


def _export_otlp(opened: Store, run_ids: list[str], bench: str | None, otlp: str | None, json_output: bool) -> int:
    import os

    from agentflow.traces import OTLP_ENV, export_to_otlp

    endpoint = otlp or os.environ.get(OTLP_ENV)
    if not endpoint:
        raise ConfigError("no OTLP endpoint", fix=f"pass --otlp http://host:4318 or set {OTLP_ENV}")
    if bool(run_ids) == (bench is not None):
        raise ConfigError("name the runs to export, or one bench run", fix="pass RUN_ID... or --bench ID, not both")
    if bench is not None:
        found = opened.get_bench_run(bench)
        run_ids = [item.run_id for item in opened.list_bench_items(found.bench_run_id)]
    sent = []
    for run_id in run_ids:
        trace = opened.load_trace(run_id)
        sent.append((trace.run_id, export_to_otlp(trace, endpoint)))
    if json_output:
        if len(sent) == 1:  # the shape this command printed before it took several runs
            print(json.dumps({"run_id": sent[0][0], "spans": sent[0][1], "endpoint": endpoint}))
        else:
            runs = [{"run_id": run_id, "spans": spans} for run_id, spans in sent]
            print(json.dumps({"runs": runs, "endpoint": endpoint}))
    else:
        for run_id, spans in sent:
            print(f"exported {spans} spans of run {run_id} to {endpoint}")
    return 0
