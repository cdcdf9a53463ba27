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


def _sessions(postgres_url: str, application: str) -> list[int]:
    """The server processes of the sessions opened with this application name, seen from a connection of its own."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (application,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def _named_url(postgres_url: str) -> tuple[str, str]:
    import secrets

    application = f"agentflow-pool-{secrets.token_hex(4)}"
    return f"{postgres_url}&application_name={application}", application


def test_runs_recorded_one_after_another_reuse_the_session_the_store_opened(postgres_url: str) -> None:
    from agentflow.traces import EventType

    url, application = _named_url(postgres_url)
    with PostgresStore(url) as store:
        [opened] = _sessions(postgres_url, application)  # the one that checked the schema
        for index in range(3):
            with store.new_run(workflow="pooled") as recorder:
                recorder.hold_events()
                for step in range(4):
                    recorder.emit(EventType.ROUTE, node="a", data={"from": "a", "to": "b", "i": step})
                assert _sessions(postgres_url, application) == [opened]  # the recorder writes on it
                recorder.finish("succeeded")
            assert len(store.list_runs()) == index + 1
        assert _sessions(postgres_url, application) == [opened]
        with store.new_run(workflow="first") as first, store.new_run(workflow="second") as second:
            assert len(_sessions(postgres_url, application)) == 2  # runs at once: one session each
            first.finish("succeeded")
            second.finish("succeeded")
        assert all(store.load_trace(run.run_id).ok for run in store.list_runs())
    assert _sessions(postgres_url, application) == []  # closing the store ends the sessions it kept


def test_a_session_the_server_ended_while_idle_is_not_used_again(postgres_url: str) -> None:
    import psycopg

    url, application = _named_url(postgres_url)
    with PostgresStore(url) as store:
        with store.new_run(workflow="before") as recorder:
            recorder.finish("succeeded")
        [idle] = _sessions(postgres_url, application)
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # as a restart or an idle timeout would
            admin.execute("SELECT pg_terminate_backend(%s)", (idle,))
        for _ in range(50):  # the session ends soon after the signal
            if idle not in _sessions(postgres_url, application):
                break
        assert [run.workflow for run in store.list_runs()] == ["before"]
        with store.new_run(workflow="after") as recorder:
            recorder.finish("succeeded")
        assert store.load_trace(recorder.run_id).ok
        assert idle not in _sessions(postgres_url, application)


def _record_and_close_in_a_child(store: PostgresStore, done: Any) -> None:
    try:
        with store.new_run(workflow="child") as recorder:
            recorder.finish("succeeded")
        store.list_runs()
        store.close()
    except BaseException as exc:
        done.put(f"{type(exc).__name__}: {exc}")
        raise
    done.put(None)


def test_a_forked_child_neither_uses_nor_ends_its_parents_sessions(postgres_url: str) -> None:
    import multiprocessing

    url, application = _named_url(postgres_url)
    with PostgresStore(url) as store:
        [parents] = _sessions(postgres_url, application)
        context = multiprocessing.get_context("fork")
        done = context.Queue()
        child = context.Process(target=_record_and_close_in_a_child, args=(store, done))
        child.start()
        assert done.get(timeout=60) is None
        child.join(timeout=60)
        assert _sessions(postgres_url, application) == [parents]  # the child's own session is gone, not this one
        with store.new_run(workflow="parent") as recorder:
            recorder.finish("succeeded")
        assert sorted(run.workflow for run in store.list_runs()) == ["child", "parent"]


def test_an_interrupted_flush_closes_its_connection_and_the_trace_ends_before_it(postgres_url: str) -> None:
    import signal

    import psycopg

    from agentflow.traces import EventType

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    with PostgresStore(postgres_url) as store:
        recorder = store.new_run(workflow="interrupted")
        recorder.hold_events()
        recorder.emit(EventType.ROUTE, node="a", data={"from": "a", "to": "b"})
        recorder.flush()
        for step in "bc":  # two events: one COPY
            recorder.emit(EventType.ROUTE, node="a", data={"from": step, "to": "d"})
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            with psycopg.connect(postgres_url) as locker:  # the COPY waits for this lock until the alarm
                locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                signal.setitimer(signal.ITIMER_REAL, 0.3)
                with pytest.raises(Interrupted):
                    recorder.flush()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        with pytest.raises(TraceError, match=r"writing events 1-2 was interrupted \(Interrupted\)"):
            recorder.emit(EventType.ROUTE, node="a", data={"from": "d", "to": "e"})  # no gap after the lost ones
        recorder.close()
        trace = store.load_trace(recorder.run_id)
        assert [event.data.get("from") for event in trace.events] == ["a"]
        assert trace.ok  # the index agrees: one event, ending in its hash
        assert [run.status for run in store.list_runs()] == ["interrupted"]
