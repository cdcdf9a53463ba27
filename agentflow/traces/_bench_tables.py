"""The SQL of benchmark runs: one row per bench run, one per attempt at each (task, epoch) pair.

A bench run's runs are ordinary runs of the store; these tables say which bench run, task and epoch each belongs to
and how it ended, so that ``agentflow bench run --resume`` can tell finished pairs from unfinished ones and a report
can pick exactly one run per pair. An attempt's row is written ``running`` when its run starts, before anything can
be lost, and updated when the run ends; a bench process killed in between leaves ``running`` rows whose runs the
index shows as interrupted (or, killed right after the run ended, as finished), which resume reads as they are.
"""

from __future__ import annotations

import json
from typing import Any

from agentflow.traces._protocol import BenchItem, BenchRunInfo
from agentflow.traces._recorder import utc_now

BENCH_TABLES = [
    """CREATE TABLE IF NOT EXISTS bench_runs (
        bench_run_id TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        config       TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bench_items (
        bench_run_id TEXT NOT NULL REFERENCES bench_runs (bench_run_id),
        task_id      TEXT NOT NULL,
        epoch        INTEGER NOT NULL,
        attempt      INTEGER NOT NULL,
        run_id       TEXT NOT NULL,
        seed         INTEGER,
        status       TEXT NOT NULL,
        outcome      {real},
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        PRIMARY KEY (bench_run_id, task_id, epoch, attempt)
    )""",
]

_ITEM_COLUMNS = "bench_run_id, task_id, epoch, attempt, run_id, seed, status, outcome, started_at, finished_at"


class BenchTables:
    """The statements over the bench tables, in one driver's paramstyle (``?`` or ``%s``)."""

    def __init__(self, placeholder: str) -> None:
        self._placeholder = placeholder

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._placeholder)

    def create_run(self, connection: Any, bench_run_id: str, name: str, config: dict[str, Any]) -> BenchRunInfo:
        info = BenchRunInfo(bench_run_id, name, utc_now(), config)
        connection.execute(
            self._sql("INSERT INTO bench_runs (bench_run_id, name, created_at, config) VALUES (?, ?, ?, ?)"),
            (bench_run_id, name, info.created_at, json.dumps(config, sort_keys=True, default=str)),
        )
        return info

    def list_runs(self, connection: Any, like: str | None = None) -> list[BenchRunInfo]:
        query = "SELECT bench_run_id, name, created_at, config FROM bench_runs"
        parameters: tuple[Any, ...] = ()
        if like is not None:
            query += " WHERE bench_run_id LIKE ?"
            parameters = (like.replace("%", "").replace("_", "\\_") + "%",)
            query += " ESCAPE '\\'"
        rows = connection.execute(self._sql(query + " ORDER BY created_at DESC, bench_run_id DESC"), parameters)
        return [BenchRunInfo(row[0], row[1], row[2], json.loads(row[3])) for row in rows.fetchall()]

    def start_item(self, connection: Any, item: BenchItem) -> None:
        connection.execute(
            self._sql(f"INSERT INTO bench_items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),  # noqa: S608
            (
                item.bench_run_id,
                item.task_id,
                item.epoch,
                item.attempt,
                item.run_id,
                item.seed,
                item.status,
                item.outcome,
                item.started_at,
                item.finished_at,
            ),
        )

    def finish_item(self, connection: Any, item: BenchItem) -> None:
        connection.execute(
            self._sql(
                "UPDATE bench_items SET status = ?, outcome = ?, finished_at = ?"
                " WHERE bench_run_id = ? AND task_id = ? AND epoch = ? AND attempt = ?"
            ),
            (item.status, item.outcome, item.finished_at, item.bench_run_id, item.task_id, item.epoch, item.attempt),
        )

    def list_items(self, connection: Any, bench_run_id: str) -> list[BenchItem]:
        query = f"SELECT {_ITEM_COLUMNS} FROM bench_items WHERE bench_run_id = ?"  # noqa: S608 - constant columns
        rows = connection.execute(self._sql(query + " ORDER BY task_id, epoch, attempt"), (bench_run_id,)).fetchall()
        return [BenchItem(*row) for row in rows]
