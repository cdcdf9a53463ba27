"""The SQL both stores run: the runs index, grading passes, rewards and realized graphs.

The folder store keeps these tables in its SQLite index, the PostgreSQL store in its database; the statements are
the same and differ only in the driver's parameter marker (``?`` for sqlite3, ``%s`` for psycopg). Each method takes
the DB-API connection to run on, so a store and its recorders choose their own connections and transactions.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import RewardData
from agentflow.traces._protocol import LIVE_REWARDS, GradingMode, GradingPass, RunInfo, StoredReward
from agentflow.traces._recorder import utc_now
from agentflow.traces._summary import RunSummary

_RUN_COLUMNS = (
    "run_id, workflow, status, started_at, finished_at, duration_s, steps, tool_calls, model_calls, tokens,"
    " reward_mean, error, replay_of, reward_min, first_error_seq, final_answer, forked_from, fork_group,"
    " outcome, cost"
)
FINAL_ANSWER_CHARS = 2000  # what the index keeps of a run's final answer (for the viewer's text filter)


class IndexRow(NamedTuple):
    """What the runs index knows of one run beyond its listing: the counts it finished with, and its writer."""

    status: str
    events: int
    last_hash: str | None
    host: str | None
    pid: int | None


class StoreTables:
    """The statements over the shared tables, in one driver's paramstyle.

    Args:
        placeholder: the driver's parameter marker (``?`` for sqlite3, ``%s`` for psycopg).
        insert_run: the statement verb that indexes a new run. A store that claims a run id elsewhere (the folder
            store, by creating the run's directory) replaces a row left behind by a deleted run
            (``INSERT OR REPLACE``); one whose claim is this very insert keeps ``INSERT``, failing on a taken id.
    """

    def __init__(self, placeholder: str, *, insert_run: str = "INSERT") -> None:
        self._placeholder = placeholder
        self._insert_run = insert_run

    @property
    def placeholder(self) -> str:
        """The driver's parameter marker, for the other tables' statements (benchmark runs)."""
        return self._placeholder

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._placeholder)

    # -- runs ----------------------------------------------------------------------------------------------------

    def insert_running(self, connection: Any, run_id: str, workflow: str) -> None:
        """Index a new run as ``running`` by this process."""
        connection.execute(
            self._sql(
                f"{self._insert_run} INTO runs (run_id, workflow, status, started_at, host, pid)"
                " VALUES (?, ?, 'running', ?, ?, ?)"
            ),
            (run_id, workflow, utc_now(), socket.gethostname(), os.getpid()),
        )

    def mark_running_again(self, connection: Any, run_id: str) -> None:
        """Index a reopened run as ``running`` by this process."""
        connection.execute(
            self._sql("UPDATE runs SET status = 'running', finished_at = NULL, host = ?, pid = ? WHERE run_id = ?"),
            (socket.gethostname(), os.getpid(), run_id),
        )

    def write_counts(
        self,
        connection: Any,
        run_id: str,
        *,
        status: str,
        summary: RunSummary,
        events: int,
        last_hash: str | None,
    ) -> None:
        """Update a run's index row: its status, the summary's counts, and how many events end in which hash."""
        connection.execute(
            self._sql(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, steps = ?, tool_calls = ?,"
                " model_calls = ?, tokens = ?, reward_mean = ?, error = ?, events = ?, last_hash = ?, replay_of = ?,"
                " reward_min = ?, first_error_seq = ?, final_answer = ?, forked_from = ?, fork_group = ?, outcome = ?,"
                " cost = ? WHERE run_id = ?"
            ),
            (
                status,
                summary.finished_at,
                summary.duration_s,
                summary.steps,
                summary.tool_calls,
                summary.model_calls,
                summary.tokens,
                summary.reward_mean,
                _index_error(summary),
                events,
                last_hash,
                summary.replay_of,
                summary.reward_min,
                summary.first_error_seq,
                summary.final_answer[:FINAL_ANSWER_CHARS] if summary.final_answer else None,
                summary.forked_from,
                summary.fork_group,
                summary.outcome,
                summary.cost,
                run_id,
            ),
        )

    def list_runs(
        self,
        connection: Any,
        limit: int,
        status: str | None,
        *,
        fork_group: str | None = None,
        forked_from: str | None = None,
    ) -> list[RunInfo]:
        """Indexed runs, newest first, of the status, fork group and parent asked for (None: any)."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 - a constant column list
        conditions: list[str] = []
        parameters: list[Any] = []
        for column, value in (("status", status), ("fork_group", fork_group), ("forked_from", forked_from)):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        parameters.append(limit)
        return [RunInfo(*row) for row in connection.execute(self._sql(query), parameters).fetchall()]

    def latest_run_id(self, connection: Any) -> str | None:
        """The id of the most recently started indexed run."""
        row = connection.execute("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def index_row(self, connection: Any, run_id: str) -> IndexRow | None:
        """The index row of one run, if it has one."""
        row = connection.execute(
            self._sql("SELECT status, events, last_hash, host, pid FROM runs WHERE run_id = ?"), (run_id,)
        ).fetchone()
        return None if row is None else IndexRow(str(row[0]), int(row[1]), row[2], row[3], row[4])

    def run_info(self, connection: Any, run_id: str) -> RunInfo | None:
        """One run's row as :meth:`list_runs` reads it, if it has one."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?"  # noqa: S608 - a constant column list
        row = connection.execute(self._sql(query), (run_id,)).fetchone()
        return None if row is None else RunInfo(*row)

    def running_here(self, connection: Any) -> list[tuple[str, int | None]]:
        """``(run_id, pid)`` of the runs indexed as ``running`` by a process of this host."""
        rows = connection.execute(
            self._sql("SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?"), (socket.gethostname(),)
        ).fetchall()
        return [(str(run_id), pid) for run_id, pid in rows]

    # -- grading -------------------------------------------------------------------------------------------------

    def create_pass(
        self,
        connection: Any,
        *,
        run_ids: Sequence[str],
        hooks: Sequence[str],
        checkpoints: str | None,
        mode: GradingMode,
    ) -> GradingPass:
        """Record a new grading pass and return it."""
        grading_pass = GradingPass(new_pass_id(), utc_now_iso(), mode, list(hooks), checkpoints, list(run_ids))
        connection.execute(
            self._sql(
                "INSERT INTO grading_passes (pass_id, created_at, mode, hooks, checkpoints, run_ids)"
                " VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (
                grading_pass.pass_id,
                grading_pass.created_at,
                mode,
                json.dumps(grading_pass.hooks),
                checkpoints,
                json.dumps(grading_pass.run_ids),
            ),
        )
        return grading_pass

    def add_rewards(self, connection: Any, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        """Store a pass's rewards; in ``overwrite`` mode first mark older rewards of its runs and hooks superseded."""
        if grading_pass.mode == "overwrite":
            run_ids = sorted({reward.run_id for reward in rewards} | set(grading_pass.run_ids))
            hooks = sorted({reward.hook for reward in rewards} | set(grading_pass.hooks))
            for run_id in run_ids:
                for hook in hooks:
                    connection.execute(
                        self._sql(
                            "UPDATE rewards SET superseded_by = ? WHERE run_id = ? AND hook = ?"
                            " AND pass_id <> ? AND superseded_by IS NULL"
                        ),
                        (grading_pass.pass_id, run_id, hook, grading_pass.pass_id),
                    )
        statement = self._sql(
            "INSERT INTO rewards (pass_id, run_id, hook, kind, node, target_seq, value, label, explanation,"
            " components) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for reward in rewards:
            connection.execute(
                statement,
                (
                    grading_pass.pass_id,
                    reward.run_id,
                    reward.hook,
                    reward.kind,
                    reward.node,
                    reward.target_seq,
                    reward.value,
                    reward.label,
                    reward.explanation,
                    json.dumps(reward.components, default=str),
                ),
            )

    def list_rewards(
        self, connection: Any, run_id: str, *, pass_id: str | None, include_superseded: bool
    ) -> list[StoredReward]:
        """The graded rewards of one run, oldest first."""
        query = (
            "SELECT pass_id, run_id, hook, kind, node, target_seq, value, label, explanation, components,"
            " superseded_by FROM rewards WHERE run_id = ?"
        )
        parameters: list[Any] = [run_id]
        if pass_id is not None:
            query += " AND pass_id = ?"
            parameters.append(pass_id)
        if not include_superseded:
            query += " AND superseded_by IS NULL"
        query += " ORDER BY id"
        rows = connection.execute(self._sql(query), parameters).fetchall()
        return [
            StoredReward(
                pass_id=row[0],
                run_id=row[1],
                hook=row[2],
                kind=row[3],
                node=row[4],
                target_seq=row[5],
                value=row[6],
                label=row[7],
                explanation=row[8],
                components=json.loads(row[9]),
                superseded_by=row[10],
            )
            for row in rows
        ]

    def list_passes(self, connection: Any) -> list[GradingPass]:
        """Every grading pass, oldest first."""
        rows = connection.execute(
            "SELECT pass_id, created_at, mode, hooks, checkpoints, run_ids FROM grading_passes"
            " ORDER BY created_at, pass_id"
        ).fetchall()
        return [GradingPass(row[0], row[1], row[2], json.loads(row[3]), row[4], json.loads(row[5])) for row in rows]

    def save_graph(self, connection: Any, run_id: str, graph: dict[str, Any]) -> None:
        """Keep a run's realized graph, replacing an earlier one."""
        connection.execute(self._sql("DELETE FROM realized_graphs WHERE run_id = ?"), (run_id,))
        connection.execute(
            self._sql("INSERT INTO realized_graphs (run_id, graph) VALUES (?, ?)"), (run_id, json.dumps(graph))
        )

    def load_graph(self, connection: Any, run_id: str) -> dict[str, Any] | None:
        """A run's realized graph, or None."""
        row = connection.execute(self._sql("SELECT graph FROM realized_graphs WHERE run_id = ?"), (run_id,)).fetchone()
        if row is None:
            return None
        loaded: dict[str, Any] = json.loads(row[0])
        return loaded


def _index_error(summary: RunSummary) -> str | None:
    # A finished run shows the error it finished with (None for a success, even after recovered errors); a run in
    # progress or interrupted shows the last error recorded so far.
    if summary.status != "incomplete":
        return summary.error
    return summary.errors[-1].message if summary.errors else None


def new_pass_id() -> str:
    """A grading pass id: ``gp-YYYYMMDD-HHMMSS-<8 hex>`` (sorts by creation time)."""
    return f"gp-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def live_rewards(events: Sequence[Event], passes: Sequence[GradingPass] = ()) -> list[StoredReward]:
    """The rewards a run's hooks recorded in its trace while it ran, as :class:`StoredReward` of pass ``live``.

    ``superseded_by`` names the first ``overwrite`` pass among ``passes`` that graded the run with the same hook
    (a pass's hooks are written ``NAME:on``).
    """
    found: list[StoredReward] = []
    for event in events:
        if event.type is not EventType.REWARD:
            continue
        data = event.data_as(RewardData)
        hook = str(data.get("hook"))
        components = dict(data.get("components") or {})
        if "aggregate" in data:
            components["aggregate"] = data["aggregate"]
        superseded_by = next(
            (
                grading_pass.pass_id
                for grading_pass in passes
                if grading_pass.mode == "overwrite"
                and event.run_id in grading_pass.run_ids
                and hook in {label.partition(":")[0] for label in grading_pass.hooks}
            ),
            None,
        )
        value, label = data.get("value"), data.get("label")
        found.append(
            StoredReward(
                pass_id=LIVE_REWARDS,
                run_id=event.run_id,
                hook=hook,
                kind=str(data.get("on") or "step"),
                node=event.node,
                target_seq=data.get("target_seq"),
                value=float(value) if isinstance(value, int | float) else None,
                label=label if isinstance(label, int) else None,
                explanation=str(data.get("explanation") or ""),
                components=components,
                superseded_by=superseded_by,
            )
        )
    return found
