"""A run's outcome and cost, from its trace alone: in its summary, in the runs index of both stores, and in an index
created before they were indexed (migration 8)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentflow.traces import (
    BenchTag,
    Event,
    EventType,
    PostgresStore,
    Recorder,
    RunStartedData,
    Store,
    TraceStore,
    summarize,
)
from agentflow.traces._migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS

PRICED = "openai:priced-model"
PRICES = {PRICED: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}


def _bench_tag(*, prices: dict[str, Any] | None = None, outcome_hook: str | None = "outcome") -> BenchTag:
    tag = BenchTag(bench_run_id="b1", task_id="t1", epoch=0, attempt=1)
    if outcome_hook is not None:
        tag["outcome_hook"] = outcome_hook
    if prices is not None:
        tag["prices"] = prices
    return tag


def _record(
    recorder: Recorder,
    *,
    bench: BenchTag | None,
    calls: list[tuple[str, int, int]],
    run_rewards: list[tuple[str, float | None]],
    status: str = "succeeded",
) -> None:
    """A run as the runtime records it: each model call a request and its response (the response's parent is the
    request), then the run-level rewards."""
    started = RunStartedData(workflow="priced", inputs={})
    if bench is not None:
        started["bench"] = bench
    recorder.emit(EventType.RUN_STARTED, data=started)
    node = recorder.emit(EventType.NODE_STARTED, node="think", data={"visit": 1, "attempt": 1})
    for model, tokens_in, tokens_out in calls:
        request = recorder.emit(
            EventType.MODEL_REQUEST, node="think", parent=node.seq, data={"model": model, "messages": [], "tools": []}
        )
        recorder.emit(
            EventType.MODEL_RESPONSE,
            node="think",
            parent=request.seq,
            data={
                "model": model,
                "message": {"role": "assistant", "content": "4"},
                "tool_calls": [],
                "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
            },
        )
    recorder.emit(EventType.NODE_FINISHED, node="think", parent=node.seq, data={"visit": 1, "status": "ok"})
    for hook, value in run_rewards:
        recorder.emit(
            EventType.REWARD,
            data={"hook": hook, "on": "run", "value": value, "label": None, "components": {}, "target_seq": None},
        )
    recorder.finish(status)


def _events(tmp_path: Path, **kwargs: Any) -> list[Event]:
    store = TraceStore(tmp_path / "store")
    with store.new_run(workflow="priced") as recorder:
        _record(recorder, **kwargs)
    return store.load_trace(recorder.run_id).events


def test_cost_prices_each_models_tokens_and_leaves_unpriced_models_out(tmp_path: Path) -> None:
    summary = summarize(
        _events(
            tmp_path,
            bench=_bench_tag(prices=PRICES),
            calls=[(PRICED, 1000, 500), ("openai:free-lunch", 7000, 7000), (PRICED, 3000, 0)],
            run_rewards=[("outcome", 1.0)],
        )
    )
    assert summary.usage_by_model[PRICED].input_tokens == 4000 and summary.usage_by_model[PRICED].calls == 2
    assert summary.cost == pytest.approx(4000 * 2.0 / 1e6 + 500 * 8.0 / 1e6)
    assert summary.to_dict()["cost"] == summary.cost


def test_a_run_no_price_covers_has_no_cost_not_a_free_one(tmp_path: Path) -> None:
    unpriced_model = summarize(
        _events(tmp_path / "a", bench=_bench_tag(prices=PRICES), calls=[("scripted:x", 10, 10)], run_rewards=[])
    )
    no_prices = summarize(_events(tmp_path / "b", bench=None, calls=[(PRICED, 10, 10)], run_rewards=[]))
    no_call = summarize(_events(tmp_path / "c", bench=_bench_tag(prices=PRICES), calls=[], run_rewards=[]))
    assert (unpriced_model.cost, no_prices.cost, no_call.cost) == (None, None, None)
    assert unpriced_model.tokens == 20  # the tokens are counted all the same


def test_the_outcome_is_the_outcome_hooks_run_reward(tmp_path: Path) -> None:
    # a benchmark's outcome hook decides, whatever other run-level hooks gave
    benched = summarize(
        _events(
            tmp_path / "a",
            bench=_bench_tag(outcome_hook="harbor_verifier"),
            calls=[],
            run_rewards=[("judge", 0.9), ("harbor_verifier", 0.0)],
        )
    )
    assert benched.outcome == 0.0
    # outside a benchmark: the one run-level hook, or the lowest of several (the run passed only if each did)
    single = summarize(_events(tmp_path / "b", bench=None, calls=[], run_rewards=[("outcome", 1.0)]))
    several = summarize(_events(tmp_path / "c", bench=None, calls=[], run_rewards=[("tests", 1.0), ("judge", 0.25)]))
    assert (single.outcome, several.outcome) == (1.0, 0.25)
    assert single.to_dict()["outcome"] == 1.0
    # no verdict: no run-level reward, or the outcome hook abstained
    none = summarize(_events(tmp_path / "d", bench=None, calls=[], run_rewards=[]))
    abstained = summarize(_events(tmp_path / "e", bench=_bench_tag(), calls=[], run_rewards=[("outcome", None)]))
    assert (none.outcome, abstained.outcome) == (None, None)


def test_an_errored_run_that_was_not_scored_has_no_outcome(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    with store.new_run(workflow="priced") as recorder:
        recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="priced", inputs={}, bench=_bench_tag()))
        recorder.emit(
            EventType.REWARD,
            data={
                "hook": "outcome",
                "on": "run",
                "value": None,
                "label": None,
                "components": {},
                "not_scored": "errored",
            },
        )
        recorder.finish("errored", error="the model API did not answer")
    [info] = store.list_runs()
    assert (info.status, info.outcome) == ("errored", None)


def test_both_stores_index_outcome_and_cost(any_store: Store) -> None:
    with any_store.new_run(workflow="priced", run_id="priced") as recorder:
        _record(recorder, bench=_bench_tag(prices=PRICES), calls=[(PRICED, 1000, 250)], run_rewards=[("outcome", 1.0)])
    with any_store.new_run(workflow="priced", run_id="unpriced") as recorder:
        _record(recorder, bench=None, calls=[("scripted:x", 1000, 250)], run_rewards=[("outcome", 0.0)])
    rows = {info.run_id: info for info in any_store.list_runs()}
    assert rows["priced"].cost == pytest.approx(1000 * 2.0 / 1e6 + 250 * 8.0 / 1e6)
    assert rows["priced"].outcome == 1.0
    assert (rows["unpriced"].cost, rows["unpriced"].outcome) == (None, 0.0)
    assert rows["priced"].to_dict()["cost"] == rows["priced"].cost


def _old_row(run_id: str) -> tuple[Any, ...]:
    return (run_id, "old", "succeeded", "2025-01-01T00:00:00Z", 3, 40)


def test_an_sqlite_index_of_migration_7_gains_the_columns(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    with sqlite3.connect(root / "index.sqlite") as old:
        for version, statements in enumerate(SQLITE_MIGRATIONS[:7], start=1):
            for statement in statements:
                old.execute(statement)
            old.execute(f"PRAGMA user_version = {version}")
        old.execute(
            "INSERT INTO runs (run_id, workflow, status, started_at, steps, tokens) VALUES (?, ?, ?, ?, ?, ?)",
            _old_row("old-run"),
        )
    old.close()
    store = TraceStore(root)
    with store.new_run(workflow="priced", run_id="new-run") as recorder:
        _record(recorder, bench=_bench_tag(prices=PRICES), calls=[(PRICED, 500, 0)], run_rewards=[("outcome", 1.0)])
    rows = {info.run_id: info for info in store.list_runs()}
    assert (rows["old-run"].steps, rows["old-run"].tokens) == (3, 40)  # kept as it was, with nothing new to say
    assert (rows["old-run"].outcome, rows["old-run"].cost) == (None, None)
    assert (rows["new-run"].outcome, rows["new-run"].cost) == (1.0, pytest.approx(500 * 2.0 / 1e6))
    with sqlite3.connect(store.index_path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
    connection.close()


def test_a_postgresql_database_of_migration_7_gains_the_columns(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as old:
        old.execute("CREATE TABLE agentflow_schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        for version, statements in enumerate(POSTGRES_MIGRATIONS[:7], start=1):
            for statement in statements:
                old.execute(statement)
            old.execute("INSERT INTO agentflow_schema_migrations (version) VALUES (%s)", (version,))
        old.execute(
            "INSERT INTO runs (run_id, workflow, status, started_at, steps, tokens) VALUES (%s, %s, %s, %s, %s, %s)",
            _old_row("old-run"),
        )
    store = PostgresStore(postgres_url)
    try:
        with store.new_run(workflow="priced", run_id="new-run") as recorder:
            _record(recorder, bench=_bench_tag(prices=PRICES), calls=[(PRICED, 0, 100)], run_rewards=[("outcome", 0.0)])
        rows = {info.run_id: info for info in store.list_runs()}
        assert (rows["old-run"].tokens, rows["old-run"].outcome, rows["old-run"].cost) == (40, None, None)
        assert (rows["new-run"].outcome, rows["new-run"].cost) == (0.0, pytest.approx(100 * 8.0 / 1e6))
        with store.connect() as connection:
            versions = [row[0] for row in connection.execute("SELECT version FROM agentflow_schema_migrations")]
        assert versions == list(range(1, len(POSTGRES_MIGRATIONS) + 1))
    finally:
        store.close()
