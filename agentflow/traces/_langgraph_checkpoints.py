"""LangGraph checkpoints of resumable runs, kept next to their trace by the matching LangGraph checkpointer.

A resumable run (``agentflow run --resumable``, ``run_workflow(..., resumable=True)``) saves a LangGraph checkpoint
after every node, under the run's id as LangGraph's ``thread_id``; ``agentflow resume RUN_ID`` continues from the
last one. Where they go:

- the embedded store: ``<store>/checkpoints.sqlite``, through ``langgraph-checkpoint-sqlite``'s ``AsyncSqliteSaver``
  (a file of its own, so LangGraph's schema never mixes with the versioned index schema);
- PostgreSQL: the store's database, through ``langgraph-checkpoint-postgres``'s ``AsyncPostgresSaver`` (LangGraph's
  ``checkpoint*`` tables, created by its own migrations, beside agentflow's).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agentflow.errors import ConfigError, MissingExtraError, TraceError
from agentflow.traces._protocol import Store

CHECKPOINTS_FILE = "checkpoints.sqlite"


@contextlib.asynccontextmanager
async def open_checkpointer(store: Store) -> AsyncIterator[Any]:
    """The LangGraph checkpointer (a ``BaseCheckpointSaver``) matching ``store``, open for the block.

    Raises:
        ConfigError: the store is neither the embedded one nor PostgreSQL (no LangGraph checkpointer is known).
        MissingExtraError: the checkpointer package is not installed.
        TraceError: the PostgreSQL server cannot be reached (the message names the URL without its password).
    """
    from agentflow.traces._postgres import PostgresStore
    from agentflow.traces._store import TraceStore

    if isinstance(store, TraceStore):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # a core dependency

        store.root.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(store.root / CHECKPOINTS_FILE)) as saver:
            await saver.setup()
            # LangGraph commits each checkpoint; synchronous=NORMAL (WAL) keeps that commit off the disk's flush
            # path: a killed process loses nothing committed, only a power loss can drop the last checkpoints.
            await saver.conn.execute("PRAGMA synchronous = NORMAL")
            yield saver
        return
    if isinstance(store, PostgresStore):
        try:
            import psycopg
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise MissingExtraError("langgraph-checkpoint-postgres", "postgres") from exc
        try:
            async with AsyncPostgresSaver.from_conn_string(store.url) as saver:
                await saver.setup()
                yield saver
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()).replace(store.url, store.location)
            raise TraceError(f"cannot keep LangGraph checkpoints in {store.location}: {reason}") from None
        return
    raise ConfigError(
        f"the store {store.location} has no LangGraph checkpointer, so its runs cannot be resumable",
        fix="record resumable runs in a store folder or a postgresql:// store",
    )
