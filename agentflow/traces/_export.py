"""``agentflow traces export``: the formats a stored run exports to, behind one function.

``openai-messages`` (``_export_messages.py``), ``atif`` (``_atif.py``) and ``rollouts`` (``_rollouts.py``) write
JSON lines; ``otlp`` sends spans to a collector (``_otel.py``) and is handled by its own function.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentflow.errors import ConfigError
from agentflow.traces._atif import export_atif
from agentflow.traces._export_messages import export_openai_messages
from agentflow.traces._protocol import Store
from agentflow.traces._rollouts import export_rollouts

EXPORT_FORMATS = ("openai-messages", "atif", "rollouts", "otlp")
"""What ``traces export --format`` takes; every one but ``otlp`` writes JSON lines."""


def bench_run_ids(store: Store, bench_run_id: str) -> list[str]:
    """The runs of a benchmark run, every attempt of every (task, epoch) pair, in its order."""
    bench = store.get_bench_run(bench_run_id)
    return [item.run_id for item in store.list_bench_items(bench.bench_run_id)]


def export_records(
    store: Store,
    format_name: str,
    run_ids: Sequence[str] = (),
    *,
    bench_run_id: str | None = None,
    outcome_hook: str | None = None,
) -> list[dict[str, Any]]:
    """The records of ``run_ids`` (or of the runs of ``bench_run_id``) in one of the JSON-lines formats.

    Raises:
        ConfigError: an unknown format, or neither runs nor a bench run (or both) given.
        TraceError: an unknown run or bench run, a damaged trace, a run in no fork group (``rollouts``).
    """
    if format_name not in EXPORT_FORMATS or format_name == "otlp":
        choices = " | ".join(f for f in EXPORT_FORMATS if f != "otlp")
        raise ConfigError(f"unknown export format {format_name!r}", fix=f"use --format {choices}")
    if bool(run_ids) == (bench_run_id is not None):
        raise ConfigError("name the runs to export, or one bench run", fix="pass RUN_ID... or --bench ID, not both")
    if format_name == "rollouts":
        return export_rollouts(store, run_ids, bench_run_id=bench_run_id, outcome_hook=outcome_hook)
    ids = list(run_ids) if bench_run_id is None else bench_run_ids(store, bench_run_id)
    if format_name == "atif":
        return export_atif(store, ids)
    return export_openai_messages(store, ids)


def to_jsonl(records: Sequence[dict[str, Any]]) -> str:
    """Records as JSON lines (UTF-8 text, one record per line, a newline after each)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
