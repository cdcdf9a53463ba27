"""The SQL of learned Q-tables: one row per table, one per (state, action) value, one per episode learned from.

A table is keyed by workflow name and router node; it remembers the template hash it was learned on, and an update
for another hash is refused (``agentflow qtable migrate`` moves a table to a new version). Updates run inside one
transaction that holds the table's lock (``BEGIN IMMEDIATE`` in SQLite, ``SELECT … FOR UPDATE`` on the table's row
in PostgreSQL): two runs that finish at once both read the values the other wrote, so no update is lost. Every
update is stored with its episode (the run, its transitions and their rewards), so the table's history can be
replayed and plotted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentflow.errors import ConfigError
from agentflow.traces._recorder import utc_now

QTABLE_TABLES = [
    """CREATE TABLE IF NOT EXISTS qtables (
        workflow      TEXT NOT NULL,
        router        TEXT NOT NULL,
        template_hash TEXT NOT NULL,
        episodes      INTEGER NOT NULL DEFAULT 0,
        decisions     INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (workflow, router)
    )""",
    """CREATE TABLE IF NOT EXISTS qtable_values (
        workflow TEXT NOT NULL,
        router   TEXT NOT NULL,
        state    TEXT NOT NULL,
        action   TEXT NOT NULL,
        q        {real} NOT NULL,
        updates  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (workflow, router, state, action)
    )""",
    """CREATE TABLE IF NOT EXISTS qtable_episodes (
        workflow      TEXT NOT NULL,
        router        TEXT NOT NULL,
        episode       INTEGER NOT NULL,
        run_id        TEXT,
        template_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        total_reward  {real},
        epsilon       {real},
        record        TEXT NOT NULL,
        PRIMARY KEY (workflow, router, episode)
    )""",
]


@dataclass
class StoredQTable:
    """A Q-table as the store holds it: ``values`` maps (state, action) to (Q, number of updates)."""

    workflow: str
    router: str
    template_hash: str
    episodes: int = 0
    decisions: int = 0
    values: dict[tuple[str, str], tuple[float, int]] = field(default_factory=lambda: {})
    updated_at: str | None = None
    # Inside an update only: reads earlier episodes of this table by number, those learned on the table's current
    # template hash (a migrated table's older episodes are not recalled), in the update's transaction.
    recall: Callable[[Sequence[int]], dict[int, dict[str, Any]]] | None = field(default=None, repr=False, compare=False)


@dataclass
class QTableEpisode:
    """One update of a table: the episode it learned from. ``record`` holds the transitions and what was ignored."""

    episode: int
    run_id: str | None
    template_hash: str
    created_at: str
    total_reward: float | None
    epsilon: float | None
    record: dict[str, Any]


@dataclass
class QTableChange:
    """What an update writes: the new values of the (state, action) pairs it touched, and its episode."""

    values: dict[tuple[str, str], tuple[float, int]]
    decisions: int
    run_id: str | None
    total_reward: float | None
    epsilon: float | None
    record: dict[str, Any]


def version_refused(workflow: str, router: str, stored: str, wanted: str) -> ConfigError:
    """The error for a table learned on another version of the workflow."""
    return ConfigError(
        f"the Q-table of router {router!r} of workflow {workflow!r} was learned on template {stored[:12]}, "
        f"not on this version ({wanted[:12]}); its values may not fit the changed workflow",
        fix="run `agentflow qtable migrate FILE` to keep the values of the states and actions that still exist, "
        "or `agentflow qtable reset FILE` to start over",
    )


# Earlier episodes' records by number; the IN list gets one placeholder per number asked for.
_RECALL = (
    "SELECT episode, record FROM qtable_episodes WHERE workflow = ? AND router = ? AND template_hash = ?"
    " AND episode IN ({numbers})"
)


class QTableTables:
    """The statements over the Q-table tables, in one driver's paramstyle (``?`` or ``%s``)."""

    def __init__(self, placeholder: str) -> None:
        self._placeholder = placeholder
        # PostgreSQL locks the table's row; SQLite's BEGIN IMMEDIATE already holds the database's write lock.
        self._lock = " FOR UPDATE" if placeholder == "%s" else ""

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._placeholder)

    def _header(self, connection: Any, workflow: str, router: str, *, lock: bool = False) -> StoredQTable | None:
        query = "SELECT template_hash, episodes, decisions, updated_at FROM qtables WHERE workflow = ? AND router = ?"
        lock_clause = self._lock if lock else ""  # a constant: FOR UPDATE or nothing
        row = connection.execute(self._sql(query) + lock_clause, (workflow, router)).fetchone()
        if row is None:
            return None
        return StoredQTable(workflow, router, row[0], int(row[1]), int(row[2]), updated_at=row[3])

    def load(self, connection: Any, workflow: str, router: str) -> StoredQTable | None:
        table = self._header(connection, workflow, router)
        if table is None:
            return None
        rows = connection.execute(
            self._sql("SELECT state, action, q, updates FROM qtable_values WHERE workflow = ? AND router = ?"),
            (workflow, router),
        ).fetchall()
        table.values = {(row[0], row[1]): (float(row[2]), int(row[3])) for row in rows}
        return table

    def list_tables(self, connection: Any, workflow: str | None = None) -> list[StoredQTable]:
        query = "SELECT workflow, router, template_hash, episodes, decisions, updated_at FROM qtables"
        parameters: tuple[Any, ...] = ()
        if workflow is not None:
            query += " WHERE workflow = ?"
            parameters = (workflow,)
        rows = connection.execute(self._sql(query + " ORDER BY workflow, router"), parameters).fetchall()
        return [StoredQTable(r[0], r[1], r[2], int(r[3]), int(r[4]), updated_at=r[5]) for r in rows]

    def update(
        self,
        connection: Any,
        workflow: str,
        router: str,
        template_hash: str,
        change: Callable[[StoredQTable], QTableChange],
    ) -> StoredQTable:
        """Apply ``change`` to the table as it is now, inside the caller's transaction (which this locks)."""
        now = utc_now()
        connection.execute(
            self._sql(
                "INSERT INTO qtables (workflow, router, template_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (workflow, router) DO NOTHING"
            ),
            (workflow, router, template_hash, now, now),
        )
        header = self._header(connection, workflow, router, lock=True)
        assert header is not None  # inserted above, or there already
        if header.template_hash != template_hash:
            raise version_refused(workflow, router, header.template_hash, template_hash)
        table = self.load(connection, workflow, router)
        assert table is not None
        table.recall = lambda numbers: self._recall(connection, workflow, router, template_hash, numbers)
        result = change(table)
        table.recall = None  # the transaction ends with this call
        for (state, action), (q, updates) in result.values.items():
            connection.execute(
                self._sql(
                    "INSERT INTO qtable_values (workflow, router, state, action, q, updates) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (workflow, router, state, action) DO UPDATE SET q = excluded.q,"
                    " updates = excluded.updates"
                ),
                (workflow, router, state, action, q, updates),
            )
            table.values[(state, action)] = (q, updates)
        table.episodes += 1
        table.decisions += result.decisions
        table.updated_at = now
        connection.execute(
            self._sql(
                "UPDATE qtables SET episodes = ?, decisions = ?, updated_at = ? WHERE workflow = ? AND router = ?"
            ),
            (table.episodes, table.decisions, now, workflow, router),
        )
        connection.execute(
            self._sql(
                "INSERT INTO qtable_episodes (workflow, router, episode, run_id, template_hash, created_at,"
                " total_reward, epsilon, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                workflow,
                router,
                table.episodes,
                result.run_id,
                template_hash,
                now,
                result.total_reward,
                result.epsilon,
                json.dumps(result.record, sort_keys=True, allow_nan=False),
            ),
        )
        return table

    def _recall(
        self, connection: Any, workflow: str, router: str, template_hash: str, numbers: Sequence[int]
    ) -> dict[int, dict[str, Any]]:
        if not numbers:
            return {}
        query = self._sql(_RECALL.format(numbers=", ".join("?" for _ in numbers)))
        rows = connection.execute(query, (workflow, router, template_hash, *numbers)).fetchall()
        return {int(row[0]): json.loads(row[1]) for row in rows}

    def episodes(self, connection: Any, workflow: str, router: str) -> list[QTableEpisode]:
        rows = connection.execute(
            self._sql(
                "SELECT episode, run_id, template_hash, created_at, total_reward, epsilon, record"
                " FROM qtable_episodes WHERE workflow = ? AND router = ? ORDER BY episode"
            ),
            (workflow, router),
        ).fetchall()
        return [QTableEpisode(int(r[0]), r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def reset(self, connection: Any, workflow: str, router: str | None) -> int:
        where = "workflow = ?" + (" AND router = ?" if router is not None else "")
        parameters: tuple[Any, ...] = (workflow,) if router is None else (workflow, router)
        removed = connection.execute(self._sql(f"DELETE FROM qtables WHERE {where}"), parameters).rowcount  # noqa: S608
        connection.execute(self._sql(f"DELETE FROM qtable_values WHERE {where}"), parameters)  # noqa: S608
        connection.execute(self._sql(f"DELETE FROM qtable_episodes WHERE {where}"), parameters)  # noqa: S608
        return int(removed)

    def migrate(
        self, connection: Any, workflow: str, router: str, template_hash: str, keep: Callable[[str, str], bool]
    ) -> tuple[int, int]:
        """Move a table to ``template_hash``, dropping the values ``keep`` rejects; (kept, dropped) values."""
        table = self.load(connection, workflow, router)
        if table is None:
            return (0, 0)
        self._header(connection, workflow, router, lock=True)
        dropped = [pair for pair in table.values if not keep(*pair)]
        for state, action in dropped:
            connection.execute(
                self._sql("DELETE FROM qtable_values WHERE workflow = ? AND router = ? AND state = ? AND action = ?"),
                (workflow, router, state, action),
            )
        connection.execute(
            self._sql("UPDATE qtables SET template_hash = ?, updated_at = ? WHERE workflow = ? AND router = ?"),
            (template_hash, utc_now(), workflow, router),
        )
        return (len(table.values) - len(dropped), len(dropped))
