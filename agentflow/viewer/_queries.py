"""The runs list as the viewer pages it: filters, sort and LIMIT/OFFSET in SQL over the runs index.

The folder store's SQLite index is read directly (one read-only connection per request), so a page of 100,000 runs
costs one indexed query, not a load of every row. Other stores are listed through :meth:`Store.list_runs` and
filtered here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from agentflow.traces import SOLVED_OUTCOME, RunInfo, Store, TraceStore

# The sortable columns, by the name the front end sends; only these names ever reach the SQL text.
SORT_COLUMNS = {
    "started_at": "started_at",
    "status": "status",
    "workflow": "workflow",
    "reward": "reward_mean",
    "reward_min": "reward_min",
    "first_error": "first_error_seq",
    "tokens": "tokens",
    "duration": "duration_s",
    "steps": "steps",
    "outcome": "outcome",
    "cost": "cost",
}
# The outcome filter: a solved run has an outcome of at least SOLVED_OUTCOME (as a benchmark counts a correct sample).
OUTCOME_FILTERS = ("passed", "failed", "none")
MAX_PAGE = 500


@dataclass(frozen=True)
class RunsQuery:
    """One page request of the runs list."""

    workflow: str | None = None
    status: str | None = None
    bench_run: str | None = None
    since: str | None = None  # ISO date or time, inclusive
    until: str | None = None  # ISO date or time, exclusive
    text: str | None = None  # substring of the run's final answer or its error
    outcome: str | None = None  # passed | failed | none (no outcome)
    sort: str = "started_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORT_COLUMNS:
            raise ValueError(f"unknown sort column {self.sort!r} (one of {', '.join(SORT_COLUMNS)})")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        if self.offset < 0:
            raise ValueError("offset must be >= 0")
        if self.outcome is not None and self.outcome not in OUTCOME_FILTERS:
            raise ValueError(f"unknown outcome filter {self.outcome!r} (one of {', '.join(OUTCOME_FILTERS)})")


_COLUMNS = (
    "run_id, workflow, status, started_at, finished_at, duration_s, steps, tool_calls, model_calls, tokens,"
    " reward_mean, error, replay_of, reward_min, first_error_seq, final_answer, forked_from, fork_group,"
    " outcome, cost"
)


def _where(query: RunsQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflow:
        clauses.append("workflow = ?")
        params.append(query.workflow)
    if query.status:
        clauses.append("status = ?")
        params.append(query.status)
    if query.bench_run:
        clauses.append("run_id IN (SELECT run_id FROM bench_items WHERE bench_run_id = ?)")
        params.append(query.bench_run)
    if query.since:
        clauses.append("started_at >= ?")
        params.append(query.since)
    if query.until:
        clauses.append("started_at < ?")
        params.append(query.until)
    if query.text:
        clauses.append(
            "(instr(lower(coalesce(final_answer, '')), lower(?)) > 0"
            " OR instr(lower(coalesce(error, '')), lower(?)) > 0)"
        )
        params.extend([query.text, query.text])
    if query.outcome == "passed":
        clauses.append("outcome >= ?")
        params.append(SOLVED_OUTCOME)
    elif query.outcome == "failed":
        clauses.append("outcome < ?")
        params.append(SOLVED_OUTCOME)
    elif query.outcome == "none":
        clauses.append("outcome IS NULL")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _outcome_kept(wanted: str | None, outcome: float | None) -> bool:
    if wanted == "passed":
        return outcome is not None and outcome >= SOLVED_OUTCOME
    if wanted == "failed":
        return outcome is not None and outcome < SOLVED_OUTCOME
    if wanted == "none":
        return outcome is None
    return True


def _sqlite_page(store: TraceStore, query: RunsQuery) -> tuple[int, list[RunInfo]]:
    where, params = _where(query)
    column = SORT_COLUMNS[query.sort]
    direction = "DESC" if query.descending else "ASC"
    # NULLs last either way, run_id as the tie-breaker so pages never overlap.
    order = f"{column} IS NULL, {column} {direction}, run_id {direction}"
    connection = sqlite3.connect(f"file:{store.index_path}?mode=ro", uri=True, check_same_thread=False)
    try:
        counted = connection.execute(f"SELECT count(*) FROM runs{where}", params)  # noqa: S608 - fixed clauses
        (total,) = counted.fetchone()
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM runs{where} ORDER BY {order} LIMIT ? OFFSET ?",  # noqa: S608 - whitelisted
            [*params, query.limit, query.offset],
        ).fetchall()
    finally:
        connection.close()
    return int(total), [RunInfo(*row) for row in rows]


def _generic_page(store: Store, query: RunsQuery) -> tuple[int, list[RunInfo]]:
    infos = store.list_runs(limit=10**9, status=query.status)
    bench_runs: set[str] | None = None
    if query.bench_run:
        bench_runs = {item.run_id for item in store.list_bench_items(query.bench_run)}

    def keep(info: RunInfo) -> bool:
        return (
            (not query.workflow or info.workflow == query.workflow)
            and (bench_runs is None or info.run_id in bench_runs)
            and (not query.since or info.started_at >= query.since)
            and (not query.until or info.started_at < query.until)
            and (not query.text or query.text.lower() in f"{info.final_answer or ''}\n{info.error or ''}".lower())
            and _outcome_kept(query.outcome, info.outcome)
        )

    kept = [info for info in infos if keep(info)]
    attribute = SORT_COLUMNS[query.sort]
    present = [info for info in kept if getattr(info, attribute) is not None]
    present.sort(key=lambda info: (getattr(info, attribute), info.run_id), reverse=query.descending)
    absent = [info for info in kept if getattr(info, attribute) is None]
    absent.sort(key=lambda info: info.run_id, reverse=query.descending)  # as in SQL: run_id breaks the tie
    ordered = present + absent
    return len(ordered), ordered[query.offset : query.offset + query.limit]


def runs_page(store: Store, query: RunsQuery) -> tuple[int, list[RunInfo]]:
    """The total number of runs the filters keep, and the page ``query`` asks for."""
    if isinstance(store, TraceStore) and store.index_path.exists():
        return _sqlite_page(store, query)
    return _generic_page(store, query)
