"""PostgreSQL-only behaviour: connection errors, versioned migrations, and `--store postgresql://` in the CLI."""

from __future__ import annotations

import socket
from typing import Any

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


def test_a_database_of_version_8_loses_the_events_foreign_key_and_keeps_its_runs(postgres_url: str) -> None:
    import psycopg

    from agentflow.traces import EventType

    with psycopg.connect(postgres_url, autocommit=True) as connection:  # the schema as migration 8 left it
        connection.execute("CREATE TABLE agentflow_schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
        for version, statements in enumerate(POSTGRES_MIGRATIONS[:8], start=1):
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO agentflow_schema_migrations (version) VALUES (%s)", (version,))
        connection.execute(
            "INSERT INTO runs (run_id, workflow, status, started_at) VALUES ('old', 'w', 'running', 't')"
        )

    def foreign_keys(connection: psycopg.Connection[Any]) -> list[str]:
        rows = connection.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'f'"
        ).fetchall()
        return [str(row[0]) for row in rows]

    with psycopg.connect(postgres_url) as connection:
        assert foreign_keys(connection) == ["events_run_id_fkey"]
    store = PostgresStore(postgres_url)
    try:
        with store.connect() as connection:
            assert foreign_keys(connection) == []
        assert [run.run_id for run in store.list_runs()] == ["old"]
        with store.new_run(workflow="after") as recorder:
            recorder.hold_events()
            for index in range(3):
                recorder.emit(EventType.ROUTE, node="a", data={"from": "a", "to": "b", "i": index})
            recorder.finish("succeeded")
        assert [event.seq for event in store.load_trace(recorder.run_id).events] == [0, 1, 2, 3]
    finally:
        store.close()


def test_events_are_written_as_utf8_whatever_client_encoding_the_url_asks_for(postgres_url: str) -> None:
    from agentflow.traces import EventType

    latin1_url = f"{postgres_url}&client_encoding=LATIN1"
    store = PostgresStore(latin1_url)
    texts = ["café", "日本語", "emoji \U0001f600", "tab\tback\\slash\nnewline"]
    try:
        with store.new_run(workflow="encodings") as recorder:
            recorder.hold_events()
            for text in texts:  # held, then written by one COPY
                recorder.emit(EventType.ROUTE, node=f"nœud {text}", data={"from": text, "to": "b"})
            recorder.flush()
            recorder.emit(EventType.ROUTE, node="ß", data={"from": "é", "to": "b"})  # alone: one INSERT
            recorder.flush()
            recorder.finish("succeeded")
        trace = store.load_trace(recorder.run_id)  # verifies every hash against the stored lines
        assert [event.data["from"] for event in trace.events[:5]] == [*texts, "é"]
        assert [event.node for event in trace.events[:5]] == [*(f"nœud {text}" for text in texts), "ß"]
        with store.connect() as connection:
            nodes = [row[0] for row in connection.execute("SELECT node FROM events ORDER BY seq").fetchall()]
        assert nodes[:5] == [*(f"nœud {text}" for text in texts), "ß"]
    finally:
        store.close()


def test_a_node_name_with_a_lone_surrogate_is_stored_as_the_trace_line_holds_it(postgres_url: str) -> None:
    from agentflow.traces import EventType

    store = PostgresStore(postgres_url)
    try:
        with store.new_run(workflow="surrogates") as recorder:
            recorder.hold_events()
            for _ in range(2):  # held, then written by one COPY
                recorder.emit(EventType.ROUTE, node="file-\udcff", data={"from": "a", "to": "b"})
            recorder.finish("succeeded")
        trace = store.load_trace(recorder.run_id)
        assert [event.node for event in trace.events[:2]] == ["file-\ufffd", "file-\ufffd"]
        with store.connect() as connection:
            nodes = [row[0] for row in connection.execute("SELECT node FROM events ORDER BY seq").fetchall()]
        assert nodes[:2] == ["file-\ufffd", "file-\ufffd"]
    finally:
        store.close()
