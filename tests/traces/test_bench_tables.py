"""Benchmark runs in the store: both stores keep bench runs and their (task, epoch) attempts alike."""

from __future__ import annotations

import pytest

from agentflow.errors import TraceError
from agentflow.traces import BenchItem, Store


def _item(bench_run_id: str, task: str, epoch: int, attempt: int, **changes: object) -> BenchItem:
    fields: dict[str, object] = {
        "bench_run_id": bench_run_id,
        "task_id": task,
        "epoch": epoch,
        "attempt": attempt,
        "run_id": f"run-{task}-{epoch}-{attempt}",
        "seed": 7,
        "status": "running",
        "outcome": None,
        "started_at": "2026-12-01T00:00:00.000000Z",
    }
    fields.update(changes)
    return BenchItem(**fields)  # type: ignore[arg-type]


def test_bench_runs_and_items_round_trip(any_store: Store) -> None:
    assert any_store.list_bench_runs() == []
    config = {"workflow": "wf.yaml", "epochs": 2, "tasks": ["HumanEval/0", "t_1"]}
    first = any_store.create_bench_run(name="demo", config=config)
    second = any_store.create_bench_run(name="other", config={})
    assert first.bench_run_id.startswith("bench-") and first.bench_run_id != second.bench_run_id
    assert {info.bench_run_id for info in any_store.list_bench_runs()} == {first.bench_run_id, second.bench_run_id}
    assert any_store.get_bench_run(first.bench_run_id).config == config
    assert any_store.get_bench_run(first.bench_run_id).name == "demo"

    started = _item(first.bench_run_id, "HumanEval/0", 0, 1)
    any_store.start_bench_item(started)
    any_store.start_bench_item(_item(first.bench_run_id, "t_1", 1, 1))
    any_store.start_bench_item(_item(second.bench_run_id, "t_1", 0, 1))  # another bench run's, not listed below
    finished = _item(
        first.bench_run_id, "HumanEval/0", 0, 1, status="succeeded", outcome=1.0, finished_at="2026-12-01T00:00:01Z"
    )
    any_store.finish_bench_item(finished)
    items = any_store.list_bench_items(first.bench_run_id)
    assert items == [finished, _item(first.bench_run_id, "t_1", 1, 1)]

    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver raises its own integrity error
        any_store.start_bench_item(started)  # one row per attempt


def test_bench_run_ids_resolve_by_unique_prefix(any_store: Store) -> None:
    info = any_store.create_bench_run(name="demo", config={})
    assert any_store.get_bench_run(info.bench_run_id[:14]).bench_run_id == info.bench_run_id
    with pytest.raises(TraceError, match="no bench run 'bench-nope'"):
        any_store.get_bench_run("bench-nope")
    any_store.create_bench_run(name="again", config={})
    with pytest.raises(TraceError, match="ambiguous"):
        any_store.get_bench_run("bench-")
    with pytest.raises(TraceError, match="no bench run"):
        any_store.get_bench_run("bench_%")  # LIKE's wildcards are taken literally
