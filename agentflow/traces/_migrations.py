"""Versioned schema migrations of the stores: the SQLite index and the PostgreSQL database.

Each store applies, in order, the migrations its database has not seen yet, inside one transaction that holds a
lock (``BEGIN IMMEDIATE`` in SQLite, an advisory lock in PostgreSQL), so several processes opening the same store
at once migrate it exactly once. SQLite records the version in ``PRAGMA user_version``, PostgreSQL in the table
``agentflow_schema_migrations``. A migration is never edited once released: a schema change is a new entry.

Both stores keep the same tables for what grading adds (grading passes, rewards, realized graphs); PostgreSQL also
holds the runs' events and blobs, which the embedded store keeps as JSONL files and blob files.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agentflow.traces._bench_tables import BENCH_TABLES
from agentflow.traces._qtable_tables import QTABLE_TABLES

# -- SQLite (the index of the embedded store) ---------------------------------------------------------------------

_SQLITE_RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    duration_s  REAL,
    steps       INTEGER NOT NULL DEFAULT 0,
    tool_calls  INTEGER NOT NULL DEFAULT 0,
    model_calls INTEGER NOT NULL DEFAULT 0,
    tokens      INTEGER NOT NULL DEFAULT 0,
    reward_mean REAL,
    error       TEXT,
    events      INTEGER NOT NULL DEFAULT 0,
    last_hash   TEXT,
    host        TEXT,
    pid         INTEGER
)"""

_GRADING_TABLES = [
    """CREATE TABLE IF NOT EXISTS grading_passes (
        pass_id     TEXT PRIMARY KEY,
        created_at  TEXT NOT NULL,
        mode        TEXT NOT NULL,
        hooks       TEXT NOT NULL,
        checkpoints TEXT,
        run_ids     TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rewards (
        id            {serial},
        pass_id       TEXT NOT NULL REFERENCES grading_passes (pass_id),
        run_id        TEXT NOT NULL,
        hook          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        node          TEXT,
        target_seq    INTEGER,
        value         {real},
        label         INTEGER,
        explanation   TEXT NOT NULL DEFAULT '',
        components    TEXT NOT NULL DEFAULT '{{}}',
        superseded_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS rewards_by_run ON rewards (run_id, pass_id)",
    """CREATE TABLE IF NOT EXISTS realized_graphs (
        run_id TEXT PRIMARY KEY,
        graph  TEXT NOT NULL
    )""",
]

_RUN_VIEW_COLUMNS = [
    "ALTER TABLE runs ADD COLUMN reward_min {real}",
    "ALTER TABLE runs ADD COLUMN first_error_seq INTEGER",
    "ALTER TABLE runs ADD COLUMN final_answer TEXT",
]

_FORK_COLUMNS = [
    "ALTER TABLE runs ADD COLUMN forked_from TEXT",
    "ALTER TABLE runs ADD COLUMN fork_group TEXT",
    "CREATE INDEX IF NOT EXISTS runs_by_fork_group ON runs (fork_group)",
]

_OUTCOME_COLUMNS = [
    "ALTER TABLE runs ADD COLUMN outcome {real}",
    "ALTER TABLE runs ADD COLUMN cost {real}",
]

SQLITE_MIGRATIONS: list[list[str]] = [
    # 1: the run index of the foundation.
    [_SQLITE_RUNS, "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at)"],
    # 2: offline grading (passes and their rewards) and realized graphs.
    [statement.format(serial="INTEGER PRIMARY KEY", real="REAL") for statement in _GRADING_TABLES],
    # 3: which run a replay replays, so `agentflow runs` marks replays.
    ["ALTER TABLE runs ADD COLUMN replay_of TEXT"],
    # 4: benchmark runs and their (task, epoch) attempts.
    [statement.format(real="REAL") for statement in BENCH_TABLES],
    # 5: learned Q-tables of `policy: qtable` routers, their values and the episodes they learned from.
    [statement.format(real="REAL") for statement in QTABLE_TABLES],
    # 6: what the viewer's runs list sorts and filters on beyond the counts: lowest reward, first error, answer.
    [statement.format(real="REAL") for statement in _RUN_VIEW_COLUMNS],
    # 7: which run a forked run was forked from, and its fork group, so `agentflow runs` lists a group.
    _FORK_COLUMNS,
    # 8: the run's outcome reward and its cost in dollars, the last columns of the viewer's runs list.
    [statement.format(real="REAL") for statement in _OUTCOME_COLUMNS],
    # 9: nothing; PostgreSQL's 9 drops a constraint of its events table, which the SQLite index does not have.
    [],
]


def migrate_sqlite(connection: sqlite3.Connection) -> None:
    """Bring an SQLite index (opened in autocommit mode) to the latest schema version.

    The fast path, taken by every connection of an up-to-date store, is one ``PRAGMA user_version`` read.
    """
    latest = len(SQLITE_MIGRATIONS)
    if _sqlite_version(connection) >= latest:
        return
    connection.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait on the busy timeout
    try:
        current = _sqlite_version(connection)  # another process may have migrated while we waited
        for version in range(current + 1, latest + 1):
            for statement in SQLITE_MIGRATIONS[version - 1]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _sqlite_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


# -- PostgreSQL ---------------------------------------------------------------------------------------------------

POSTGRES_MIGRATIONS: list[list[str]] = [
    # 1: runs, their events (each stored as its exact trace line, so verification is the JSONL store's) and blobs.
    [
        """CREATE TABLE runs (
            run_id      TEXT PRIMARY KEY,
            workflow    TEXT NOT NULL,
            status      TEXT NOT NULL,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            duration_s  DOUBLE PRECISION,
            steps       INTEGER NOT NULL DEFAULT 0,
            tool_calls  INTEGER NOT NULL DEFAULT 0,
            model_calls INTEGER NOT NULL DEFAULT 0,
            tokens      INTEGER NOT NULL DEFAULT 0,
            reward_mean DOUBLE PRECISION,
            error       TEXT,
            events      INTEGER NOT NULL DEFAULT 0,
            last_hash   TEXT,
            host        TEXT,
            pid         INTEGER
        )""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            seq    INTEGER NOT NULL,
            type   TEXT NOT NULL,
            node   TEXT,
            hash   TEXT NOT NULL,
            line   TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, content BYTEA NOT NULL)",
    ],
    # 2: the same grading tables as the SQLite index.
    [statement.format(serial="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION") for statement in _GRADING_TABLES],
    # 3: as SQLite's 3.
    ["ALTER TABLE runs ADD COLUMN replay_of TEXT"],
    # 4: as SQLite's 4.
    [statement.format(real="DOUBLE PRECISION") for statement in BENCH_TABLES],
    # 5: as SQLite's 5.
    [statement.format(real="DOUBLE PRECISION") for statement in QTABLE_TABLES],
    # 6: as SQLite's 6.
    [statement.format(real="DOUBLE PRECISION") for statement in _RUN_VIEW_COLUMNS],
    # 7: as SQLite's 7.
    _FORK_COLUMNS,
    # 8: as SQLite's 8.
    [statement.format(real="DOUBLE PRECISION") for statement in _OUTCOME_COLUMNS],
    # 9: events without the foreign key to runs. Its check ran once per inserted event (a lookup and a lock of the
    # run's row, each a query of its own on the server) and took a third of the server's time per event of a
    # recorder's COPY, to guard what the store already ensures: a recorder inserts its run's row, claiming the id,
    # before its first event, and nothing deletes runs (its ON DELETE CASCADE had nothing to do).
    ["ALTER TABLE events DROP CONSTRAINT IF EXISTS events_run_id_fkey"],
]

_POSTGRES_LOCK_KEY = 0x6167_666C  # "agfl": the advisory lock that serialises migrators


def migrate_postgres(connection: Any) -> None:
    """Bring a PostgreSQL database to the latest schema version (``connection`` is a psycopg 3 connection)."""
    with connection.transaction():
        # Locked before anything else: two first openings at once must not both create the version table.
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_POSTGRES_LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS agentflow_schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT coalesce(max(version), 0) FROM agentflow_schema_migrations").fetchone()
        current = int(row[0])
        for version in range(current + 1, len(POSTGRES_MIGRATIONS) + 1):
            for statement in POSTGRES_MIGRATIONS[version - 1]:
                connection.execute(statement)
            connection.execute("INSERT INTO agentflow_schema_migrations (version) VALUES (%s)", (version,))
