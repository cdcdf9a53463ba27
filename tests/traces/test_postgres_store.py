"""PostgreSQL-only behaviour: connection errors, versioned migrations, and `--store postgresql://` in the CLI."""

from __future__ import annotations

import socket

import pytest

from agentflow.errors import TraceError
from agentflow.traces import PostgresStore, open_store
from agentflow.traces._migrations import POSTGRES_MIGRATIONS
from agentflow.traces._postgres import redact_url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    port = _free_port()
    url = f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/traces"
    with pytest.raises(TraceError) as caught:
        open_store(url)
    message = str(caught.value)
    assert f"postgresql://alice:***@127.0.0.1:{port}/traces" in message
    assert "s3cret-pw" not in message
    assert "cannot connect" in message


def test_redact_url_keeps_everything_but_the_password() -> None:
    assert redact_url("postgresql://u:p@h:5/db?x=1") == "postgresql://u:***@h:5/db?x=1"
    assert redact_url("postgresql://h/db") == "postgresql://h/db"


def test_migrations_are_versioned_and_applied_once(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    second = PostgresStore(postgres_url)  # an up-to-date database: nothing to apply
    try:
        with first.connect() as connection:
            versions = [row[0] for row in connection.execute("SELECT version FROM agentflow_schema_migrations")]
        assert versions == list(range(1, len(POSTGRES_MIGRATIONS) + 1))
        assert second.list_runs() == []
    finally:
        first.close()
        second.close()


def test_a_flush_is_one_transaction_all_of_its_events_or_none(postgres_url: str) -> None:
    from agentflow.traces import EventType, NodeStartedData, RouteData, RunStartedData

    store = PostgresStore(postgres_url)
    try:
        recorder = store.new_run(workflow="held")
        recorder.hold_events()
        recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="held", inputs={}))  # written at once
        node = recorder.emit(EventType.NODE_STARTED, node="a", data=NodeStartedData(visit=1, attempt=1))
        for _ in range(3):
            recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=RouteData(**{"from": "a", "to": "b"}))
        with store.connect() as intruder:  # another writer took seq 3: the COPY of seqs 1-4 must fail as a whole
            intruder.execute(
                "INSERT INTO events (run_id, seq, type, node, hash, line) VALUES (%s, 3, 'route', 'a', 'x', 'x')",
                (recorder.run_id,),
            )
        with pytest.raises(TraceError, match="event 1-4"):
            recorder.flush()
        with store.connect() as reader:
            seqs = [
                row[0]
                for row in reader.execute("SELECT seq FROM events WHERE run_id = %s ORDER BY seq", (recorder.run_id,))
            ]
        assert seqs == [0, 3]  # run_started and the intruder's row, none of the flushed batch
        recorder.close()
    finally:
        store.close()
