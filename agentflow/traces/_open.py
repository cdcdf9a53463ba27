"""``open_store``: the store a ``--store`` value names, a folder or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from agentflow.traces._postgres import PostgresStore
from agentflow.traces._protocol import Store
from agentflow.traces._store import TraceStore


def is_postgres_url(location: str | Path) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a folder."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(location: str | Path) -> Store:
    """Open the store a ``--store`` value names: a folder (the embedded store) or a ``postgresql://`` URL.

    Call :meth:`Store.close` when done (a PostgreSQL store holds a connection).

    Raises:
        MissingExtraError: a PostgreSQL URL without the ``postgres`` extra installed.
        TraceError: the PostgreSQL server cannot be reached (the message names the URL without its password).
    """
    if is_postgres_url(location):
        return PostgresStore(str(location))
    return TraceStore(Path(location))
