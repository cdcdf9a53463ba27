"""The PostgreSQL trace store (``--store postgresql://user:password@host:port/db``, the ``postgres`` extra).

Same contract, same events and same verification as the embedded store: each event is stored as the exact JSON line
the JSONL store would write (``events.line``), with its seq, type, node and hash as columns for queries, so a trace
loaded from PostgreSQL goes through the very parser and hash checks of a JSONL trace. Every event is one autocommit
``INSERT``: a killed writer leaves every event it emitted, and no partial one; a recorder holding events
(``hold_events``, as a run does) writes those held since the last ``flush`` with one ``COPY`` in one transaction,
committed before ``flush`` returns (so before the effect the flush precedes), all or none: the embedded store's
promise of what a killed run keeps, at one commit per flush instead of one per event. The ``COPY`` is in the binary
format, its rows assembled here from the bytes the recorder already has (no per-value adaptation by psycopg, no
escaping, no parsing of text on the server), and sent through libpq itself. Payloads over the spill threshold go to
the ``blobs`` table, content-addressed. The schema is versioned (``agentflow/traces/_migrations.py``).

Connections are kept per store: each recorder has one to itself while it records, and gives it back when it is
closed, for the next run or the store's own reads; a store keeps a few idle ones (the first is the one that checked
the schema) and closes them with :meth:`PostgresStore.close`. Opening one costs the server a process and both
sides a password exchange, as much CPU as writing a few hundred events.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentflow.errors import MissingExtraError, TraceError
from agentflow.traces._base import DEFAULT_SPILL_THRESHOLD, StoreBase
from agentflow.traces._events import EventType
from agentflow.traces._hashing import scrub_surrogates, sha256_hex
from agentflow.traces._migrations import migrate_postgres
from agentflow.traces._protocol import Trace
from agentflow.traces._recorder import EncodedEvent, RecorderBase
from agentflow.traces._tables import StoreTables

__all__ = ["PostgresRecorder", "PostgresStore", "redact_url"]

_CONNECT_TIMEOUT_S = 5
_IDLE_CONNECTIONS = 4  # kept for the next lease; more only while that many are in use at once
_POSTGRES_TABLES = StoreTables("%s")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtraError("psycopg", "postgres") from exc
    return psycopg


def _still_connected(connection: Any) -> bool:
    """Whether an idle connection can be used: the server may have ended it meanwhile (a restart, an idle timeout,
    ``pg_terminate_backend``), which only its socket tells. An idle session gets nothing unasked (the store neither
    listens nor changes settings), so anything to read (the server's goodbye, the end of the stream) retires it."""
    if connection.closed:
        return False
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN)
    return not poller.poll(0)


def _insert_blob(connection: Any, payload: bytes) -> str:
    digest = sha256_hex(payload)
    connection.execute(
        "INSERT INTO blobs (digest, size, content) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (digest, len(payload), payload),
    )
    return digest


class PostgresStore(StoreBase["PostgresRecorder"]):
    """Runs, events, blobs, grading passes and realized graphs in one PostgreSQL database.

    Args:
        url: a libpq URL, ``postgresql://user:password@host:port/database``.
        spill_threshold: payload strings larger than this many UTF-8 bytes go to the ``blobs`` table.

    Raises:
        MissingExtraError: psycopg is not installed (``pip install 'agentflow[postgres]'``).
        TraceError: the server cannot be reached or refuses the login; the message names the URL without its
            password.
    """

    _tables = _POSTGRES_TABLES

    def __init__(self, url: str, *, spill_threshold: int = DEFAULT_SPILL_THRESHOLD) -> None:
        self.url = url
        self.spill_threshold = spill_threshold
        self.fsync = "boundary"  # PostgreSQL commits each event durably; kept for parity with TraceStore
        self._lock = threading.Lock()  # guards the idle connections and the closed flag
        self._closed = False
        self._pid = os.getpid()
        # Connections nobody uses right now, given back by the store's reads and by finished recorders for the next
        # ones: a new connection costs a server process and a password exchange, about 9 ms of CPU here, as much as
        # writing 250 events. The one that migrated the schema is the first.
        self._idle: list[Any] = []
        self._parents_connections: list[Any] = []
        connection = self.connect()
        try:
            migrate_postgres(connection)
        except Exception:
            connection.close()
            raise
        self._idle.append(connection)

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        """The URL without its password."""
        return redact_url(self.url)

    def connect(self) -> Any:
        """Open a new autocommit psycopg connection to the store's database (client encoding UTF-8)."""
        psycopg = _psycopg()
        try:
            # UTF-8 whatever the URL or the server's default says: recorders send the trace lines' UTF-8 bytes as
            # they are (binary COPY), and the server reads them in the client encoding.
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S, client_encoding="UTF8"
            )
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()).replace(self.url, self.location)
            password = urlsplit(self.url).password
            if password:
                reason = reason.replace(password, "***")
            raise TraceError(f"cannot connect to the PostgreSQL store {self.location}: {reason}") from None

    def close(self) -> None:
        """Close the store's idle connections; a recorder still open keeps its own until it is closed."""
        with self._lock:
            self._forget_parent_connections()
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _forget_parent_connections(self) -> None:
        # Called under the lock. A forked child shares its parent's sockets: it must neither use nor close (end) the
        # sessions its parent opened, and keeps them referenced so that they are not reported as left open.
        if self._pid != os.getpid():
            self._parents_connections, self._idle = [*self._parents_connections, *self._idle], []
            self._pid = os.getpid()

    def _lease(self) -> tuple[Any, int]:
        """A connection for the caller alone, and the process it belongs to, until :meth:`_give_back`: an idle one
        still connected, else a new one.

        Raises:
            TraceError: the store is closed, or no new connection can be opened.
        """
        found, stale = None, []
        with self._lock:
            if self._closed:
                raise TraceError(f"the store {self.location} is closed")
            self._forget_parent_connections()
            while self._idle and found is None:
                connection = self._idle.pop()  # the most recently used one
                if _still_connected(connection):
                    found = connection
                else:
                    stale.append(connection)
        for connection in stale:
            connection.close()
        return (found if found is not None else self.connect()), os.getpid()

    def _give_back(self, connection: Any, owner: int) -> None:
        """Keep a connection leased by process ``owner`` for the next lease, or close it (closed store, broken
        connection, one left inside a transaction, enough idle ones); one of a parent process is left alone."""
        if owner != os.getpid():
            return
        with self._lock:
            self._forget_parent_connections()
            if (
                not self._closed
                and len(self._idle) < _IDLE_CONNECTIONS
                and not connection.closed
                and connection.pgconn.transaction_status == _psycopg().pq.TransactionStatus.IDLE
            ):
                self._idle.append(connection)
                return
        connection.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        connection, owner = self._lease()
        try:
            yield connection
        finally:
            self._give_back(connection, owner)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connection() as connection, connection.transaction():
            yield connection

    def _rows(self, statement: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as connection:
            rows: list[tuple[Any, ...]] = connection.execute(statement, parameters).fetchall()
        return rows

    # -- runs and their lines ----------------------------------------------------------------------------------

    def _start_run(self, run_id: str, workflow: str) -> PostgresRecorder | None:
        try:
            return PostgresRecorder(self, run_id, workflow)  # its INSERT of the run's row claims the id
        except _psycopg().errors.UniqueViolation:
            return None

    def _continue_run(self, trace: Trace, workflow: str) -> PostgresRecorder:
        return PostgresRecorder(self, trace.run_id, workflow, resume=trace)

    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""
        return [str(row[0]) for row in self._rows("SELECT run_id FROM runs ORDER BY started_at, run_id")]

    def _has_run(self, run_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)))

    def _run_ids_starting(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows("SELECT run_id FROM runs WHERE run_id LIKE %s ORDER BY run_id", (escaped + "%",))
        return [str(row[0]) for row in rows]

    def _read_trace(self, run_id: str) -> bytes:
        lines = self._rows("SELECT line FROM events WHERE run_id = %s ORDER BY seq", (run_id,))
        return "".join(str(row[0]) for row in lines).encode("utf-8")

    def _read_trace_from(self, run_id: str, position: int) -> tuple[bytes, int]:
        # The position is the number of events already read (the next seq): only the rows after them are fetched.
        lines = self._rows("SELECT line FROM events WHERE run_id = %s AND seq >= %s ORDER BY seq", (run_id, position))
        return "".join(str(row[0]) for row in lines).encode("utf-8"), position + len(lines)

    def _trace_path(self, run_id: str) -> Path:
        # A path-like name for messages: postgresql/<host>/<database>/runs/<run_id>.
        parts = urlsplit(self.url)
        return Path("postgresql") / (parts.hostname or "localhost") / parts.path.strip("/") / "runs" / run_id

    # -- blobs ---------------------------------------------------------------------------------------------------

    def write_blob(self, payload: bytes) -> str:
        """Store a payload under its sha256 (once) and return the digest."""
        with self._connection() as connection:
            return _insert_blob(connection, payload)

    def _fetch_blob(self, digest: str) -> bytes | None:
        rows = self._rows("SELECT content FROM blobs WHERE digest = %s", (digest,))
        return bytes(rows[0][0]) if rows else None


_INSERT_EVENT = "INSERT INTO events (run_id, seq, type, node, hash, line) VALUES (%s, %s, %s, %s, %s, %s)"
_COPY_EVENTS = b"COPY events (run_id, seq, type, node, hash, line) FROM STDIN (FORMAT BINARY)"


def _copy_in(connection: Any, data: bytes) -> None:
    """Run ``_COPY_EVENTS`` with ``data`` as all of its input, on libpq itself (psycopg's ``pq`` wrapper).

    The same messages as ``cursor.copy()`` (the statement, the data, its end, then the outcome), without the cursor,
    copy object and generators around them, which cost a writer more CPU than the rows it copies. Every wait is
    on the socket, with the GIL released, and can be interrupted (see ``PostgresRecorder._append``).

    Raises:
        psycopg.Error: the server refused the COPY or a row of it, or the connection failed.
    """
    psycopg = _psycopg()
    pgconn, status = connection.pgconn, psycopg.pq.ExecStatus
    pgconn.send_query(_COPY_EVENTS)
    _flush(pgconn)
    result = _next_result(pgconn)
    if result is None or result.status != status.COPY_IN:
        _drain(pgconn)
        raise _error(psycopg, pgconn, result)
    if pgconn.put_copy_data(data) != 1 or pgconn.put_copy_end() != 1:
        raise psycopg.OperationalError(pgconn.get_error_message())
    _flush(pgconn)
    outcome = _next_result(pgconn)
    _drain(pgconn)
    if outcome is None or outcome.status != status.COMMAND_OK:
        raise _error(psycopg, pgconn, outcome)


def _wait(pgconn: Any, events: int) -> None:
    poller = select.poll()
    poller.register(pgconn.socket, events)
    poller.poll()


def _flush(pgconn: Any) -> None:
    while pgconn.flush():  # 1: not all of it is sent yet (psycopg connections are non-blocking)
        _wait(pgconn, select.POLLOUT)


def _next_result(pgconn: Any) -> Any:
    while pgconn.is_busy():
        _wait(pgconn, select.POLLIN)
        pgconn.consume_input()
    return pgconn.get_result()


def _drain(pgconn: Any) -> None:
    while _next_result(pgconn) is not None:
        pass


def _error(psycopg: Any, pgconn: Any, result: Any) -> Exception:
    error: Exception = (
        psycopg.OperationalError(pgconn.get_error_message())
        if result is None
        else psycopg.errors.error_from_result(result, encoding="utf-8")
    )
    return error


# PostgreSQL's binary COPY format: a signature, flags and header extension length (both 0), then per row its field
# count and each field as a length (-1 for NULL) and that many bytes, then -1 as the trailer. A text or integer
# field's bytes are its value's binary form: UTF-8 text (in the client encoding), a big-endian int4.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack(">h", -1)
_FIELD_LENGTH = struct.Struct(">i")
_SEQ_FIELD = struct.Struct(">ii")  # the length 4, then the seq
_NULL_FIELD = _FIELD_LENGTH.pack(-1)
_EVENT_COLUMNS = struct.pack(">h", 6)


def _copy_field(value: bytes) -> bytes:
    return _FIELD_LENGTH.pack(len(value)) + value


_TYPE_FIELDS = {event_type: _copy_field(event_type.value.encode("ascii")) for event_type in EventType}


class PostgresRecorder(RecorderBase):
    """Appends the events of one run to PostgreSQL; the same contract as :class:`~agentflow.traces.RunRecorder`.

    Each recorder has a connection of its own (leased from its store until it is closed), so concurrent runs write
    in parallel; events of one recorder from several threads get unique, increasing seq numbers. Each event is one
    committed INSERT (held events: one COPY in one transaction per flush), so a killed writer loses nothing it wrote.
    """

    spill_under_lock = True  # spilled blobs go through the recorder's one connection
    _tables = _POSTGRES_TABLES

    def __init__(self, store: PostgresStore, run_id: str, workflow: str, *, resume: Trace | None = None) -> None:
        self.store = store
        # What every COPY row of this run starts with (the field count and the run id), and the node fields seen.
        self._row_start = _EVENT_COLUMNS + _copy_field(run_id.encode("utf-8"))
        self._node_fields: dict[str | None, bytes] = {None: _NULL_FIELD}
        self._connection, self._owner = store._lease()
        try:
            super().__init__(run_id, workflow, store.spill_threshold, index=self._connection, resume=resume)
        except BaseException:
            store._give_back(self._connection, self._owner)
            raise

    def __repr__(self) -> str:
        return f"PostgresRecorder({self.run_id!r}, events={self._next_seq})"

    def _write_blob(self, payload: bytes) -> str:
        return _insert_blob(self._connection, payload)

    def _append(self, events: list[EncodedEvent]) -> None:
        try:
            if len(events) == 1:  # autocommit: one statement is its own transaction
                event = events[0]
                row = (self.run_id, event.seq, str(event.type), event.node, event.hash, event.line.decode("utf-8"))
                self._connection.execute(_INSERT_EVENT, row)
            else:  # autocommit: one COPY is one statement, so one transaction (all rows or none) and one commit
                _copy_in(self._connection, self._copy_rows(events))
        except _psycopg().Error as exc:
            seqs = f"{events[0].seq}" if len(events) == 1 else f"{events[0].seq}-{events[-1].seq}"
            raise TraceError(f"cannot write event {seqs} of run {self.run_id} to {self.store.location}: {exc}") from exc
        except BaseException:
            # Interrupted (a signal) inside the statement: the server may still commit it or not, and the connection
            # is in the middle of it, so it is closed; every later write fails, and the trace ends before these.
            if self._connection.pgconn.transaction_status == _psycopg().pq.TransactionStatus.ACTIVE:
                self._connection.pgconn.finish()
            raise

    def _update_index(self, status: str) -> None:
        if self._connection.closed:  # closed by an interrupted write: the index row still gets its final counts
            self.store._give_back(self._connection, self._owner)
            self._connection, self._owner = self.store._lease()
            self._index_connection = self._connection
        super()._update_index(status)

    def _copy_rows(self, events: list[EncodedEvent]) -> bytes:
        """The events as the data of one binary COPY, header and trailer included."""
        parts = [_COPY_HEADER]
        row_start, node_fields = self._row_start, self._node_fields
        for event in events:
            node_field = node_fields.get(event.node)
            if node_field is None:
                node = str(event.node)  # not None: None is in the table from the start
                # The line holds lone surrogates as U+FFFD (see encode_event); so does the column.
                node_field = _copy_field((node if node.isascii() else scrub_surrogates(node)).encode("utf-8"))
                node_fields[event.node] = node_field
            parts += (
                row_start,
                _SEQ_FIELD.pack(4, event.seq),
                _TYPE_FIELDS[event.type],
                node_field,
                _copy_field(event.hash.encode("ascii")),
                _FIELD_LENGTH.pack(len(event.line)),
                event.line,
            )
        parts.append(_COPY_TRAILER)
        return b"".join(parts)

    def _release(self) -> None:
        self.store._give_back(self._connection, self._owner)
