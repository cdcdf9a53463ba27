"""The PostgreSQL trace store (``--store postgresql://user:password@host:port/db``, the ``postgres`` extra).

Same contract, same events and same verification as the embedded store: each event is stored as the exact JSON line
the JSONL store would write (``events.line``), with its seq, type, node and hash as columns for queries, so a trace
loaded from PostgreSQL goes through the very parser and hash checks of a JSONL trace. Every event is one autocommit
``INSERT``: a killed writer leaves every event it emitted, and no partial one. Payloads over the spill threshold go
to the ``blobs`` table, content-addressed. The schema is versioned (``agentflow/traces/_migrations.py``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentflow._processes import pid_alive
from agentflow.errors import MissingExtraError, TraceError
from agentflow.traces._events import EventType
from agentflow.traces._hashing import sha256_hex
from agentflow.traces._migrations import migrate_postgres
from agentflow.traces._protocol import GradingMethods, GradingTables
from agentflow.traces._recorder import RecorderBase, utc_now
from agentflow.traces._store import (
    _DIGEST_PATTERN,
    _RUN_ID_PATTERN,
    DEFAULT_SPILL_THRESHOLD,
    RunInfo,
    Trace,
    _check_against_index,
    _check_run_id,
    _new_run_id,
    _parse_and_verify,
    _write_counts,
    check_reopenable,
)
from agentflow.traces._summary import RunSummary

__all__ = ["PostgresRecorder", "PostgresStore", "redact_url"]

_CONNECT_TIMEOUT_S = 5
_RUN_COLUMNS = (
    "run_id, workflow, status, started_at, finished_at, duration_s, steps, tool_calls, model_calls, tokens,"
    " reward_mean, error, replay_of"
)


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


class PostgresStore(GradingMethods):
    """Runs, events, blobs, grading passes and realized graphs in one PostgreSQL database.

    Args:
        url: a libpq URL, ``postgresql://user:password@host:port/database``.
        spill_threshold: payload strings larger than this many UTF-8 bytes go to the ``blobs`` table.

    Raises:
        MissingExtraError: psycopg is not installed (``pip install 'agentflow[postgres]'``).
        TraceError: the server cannot be reached or refuses the login; the message names the URL without its
            password.
    """

    def __init__(self, url: str, *, spill_threshold: int = DEFAULT_SPILL_THRESHOLD) -> None:
        self.url = url
        self.spill_threshold = spill_threshold
        self.fsync = "boundary"  # PostgreSQL commits each event durably; kept for parity with TraceStore
        self._lock = threading.Lock()
        self._connection = self.connect()
        try:
            migrate_postgres(self._connection)
        except Exception:
            self._connection.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        """The URL without its password."""
        return redact_url(self.url)

    def connect(self) -> Any:
        """Open a new autocommit psycopg connection to the store's database."""
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()).replace(self.url, self.location)
            password = urlsplit(self.url).password
            if password:
                reason = reason.replace(password, "***")
            raise TraceError(f"cannot connect to the PostgreSQL store {self.location}: {reason}") from None

    def close(self) -> None:
        """Close the store's shared connection (recorders have their own)."""
        with self._lock:
            self._connection.close()

    @contextlib.contextmanager
    def _unit(self) -> Iterator[Any]:
        with self._lock, self._connection.transaction():
            yield self._connection

    def _query(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._connection.execute(statement, parameters).fetchall()
        return rows

    # -- runs ----------------------------------------------------------------------------------------------------

    def new_run(self, *, workflow: str, run_id: str | None = None) -> PostgresRecorder:
        """Start recording a run, indexed as ``running``.

        Raises:
            TraceError: a run with this id already exists.
        """
        psycopg = _psycopg()
        for _ in range(100):
            candidate = run_id if run_id is not None else _new_run_id()
            _check_run_id(candidate)
            try:
                with self._lock:
                    self._connection.execute(
                        "INSERT INTO runs (run_id, workflow, status, started_at, host, pid)"
                        " VALUES (%s, %s, 'running', %s, %s, %s)",
                        (candidate, workflow, utc_now(), socket.gethostname(), os.getpid()),
                    )
            except psycopg.errors.UniqueViolation:
                if run_id is not None:
                    raise TraceError(f"run {run_id!r} already exists in {self.location}") from None
                continue
            return PostgresRecorder(self, candidate, workflow)
        raise TraceError(f"could not find a free run id in {self.location}")  # pragma: no cover

    def reopen_run(self, run_id: str) -> PostgresRecorder:
        """Continue recording an unfinished run (``agentflow resume``); see :meth:`TraceStore.reopen_run`.

        Raises:
            TraceError: the run finished, its trace fails verification, or its process is still alive.
        """
        trace = self.load_trace(run_id)
        rows = self._query("SELECT status, host, pid FROM runs WHERE run_id = %s", (trace.run_id,))
        status, host, pid = rows[0] if rows else (None, None, None)
        check_reopenable(trace, status, (host, pid))
        recorder = PostgresRecorder(self, trace.run_id, trace.summary().workflow or "unknown")
        if trace.events:
            recorder._next_seq = trace.events[-1].seq + 1
            recorder._last_hash = trace.events[-1].hash
        recorder._unsummarized.extend(trace.events)
        with self._lock:
            self._connection.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, host = %s, pid = %s WHERE run_id = %s",
                (socket.gethostname(), os.getpid(), trace.run_id),
            )
        return recorder

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunInfo]:
        """Runs, newest first; runs whose recording process died (same host) are first marked ``interrupted``."""
        self._mark_dead_runs_interrupted()
        query = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 - a constant column list
        parameters: list[Any] = []
        if status is not None:
            query += " WHERE status = %s"
            parameters.append(status)
        query += " ORDER BY started_at DESC, run_id DESC LIMIT %s"
        parameters.append(limit)
        return [RunInfo(*row) for row in self._query(query, parameters)]

    def _mark_dead_runs_interrupted(self) -> None:
        rows = self._query(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND host = %s", (socket.gethostname(),)
        )
        for run_id, pid in rows:
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            trace = self.load_trace(run_id)
            with self._lock:
                _write_counts(
                    self._connection,
                    run_id,
                    status="interrupted",
                    summary=trace.summary(),
                    events=len(trace.events),
                    last_hash=trace.events[-1].hash if trace.events else None,
                    placeholder="%s",
                )

    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""
        return [str(row[0]) for row in self._query("SELECT run_id FROM runs ORDER BY started_at, run_id")]

    def latest_run_id(self) -> str | None:
        """The id of the most recently started run."""
        rows = self._query("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run named by ``run_id`` or by a unique prefix of it.

        Raises:
            TraceError: no run matches (the message lists the closest ids), or the prefix is ambiguous.
        """
        if _RUN_ID_PATTERN.match(run_id) and self._query("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)):
            return run_id
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = [
            str(row[0])
            for row in self._query("SELECT run_id FROM runs WHERE run_id LIKE %s ORDER BY run_id", (escaped + "%",))
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise TraceError(f"run id prefix {run_id!r} is ambiguous in {self.location}: {shown}")
        names = self.run_ids()
        closest = difflib.get_close_matches(run_id, names, n=3, cutoff=0.4)
        hint = f"; closest: {', '.join(closest)}" if closest else (f"; latest: {names[-1]}" if names else "")
        raise TraceError(f"no run {run_id!r} in {self.location}{hint}")

    def load_trace(self, run_id: str) -> Trace:
        """Load and verify one run's events (hashes, chain, seq order, and the counts the run finished with)."""
        full_id = self.resolve_run_id(run_id)
        lines = self._query("SELECT line FROM events WHERE run_id = %s ORDER BY seq", (full_id,))
        raw = "".join(str(row[0]) for row in lines).encode("utf-8")
        events, problems = _parse_and_verify(raw, full_id)
        indexed = self._query("SELECT status, events, last_hash FROM runs WHERE run_id = %s", (full_id,))
        if indexed and indexed[0][0] != "running":
            _check_against_index(events, int(indexed[0][1]), indexed[0][2], problems)
        parts = urlsplit(self.url)  # a path-like name for messages: postgresql/<host>/<database>/runs/<run_id>
        path = Path("postgresql") / (parts.hostname or "localhost") / parts.path.strip("/") / "runs" / full_id
        return Trace(run_id=full_id, path=path, events=events, problems=problems, store=self)

    # -- blobs ---------------------------------------------------------------------------------------------------

    def write_blob(self, payload: bytes, connection: Any | None = None) -> str:
        """Store a payload under its sha256 (once) and return the digest."""
        digest = sha256_hex(payload)
        statement = "INSERT INTO blobs (digest, size, content) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
        if connection is not None:
            connection.execute(statement, (digest, len(payload), payload))
        else:
            with self._lock:
                self._connection.execute(statement, (digest, len(payload), payload))
        return digest

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a spilled payload, checked against its digest.

        Raises:
            TraceError: no blob has this digest, or its content does not match it.
        """
        if not _DIGEST_PATTERN.match(digest):
            raise TraceError(f"not a blob digest (64 lowercase hex digits): {digest!r}")
        rows = self._query("SELECT content FROM blobs WHERE digest = %s", (digest,))
        if not rows:
            raise TraceError(f"blob {digest} is missing from {self.location}")
        payload = bytes(rows[0][0])
        if hashlib.sha256(payload).hexdigest() != digest:
            raise TraceError(f"blob {digest} was modified: its content no longer matches its sha256")
        return payload

    def resolve_blobs(self, obj: Any) -> Any:
        """``obj`` with every ``{"$blob": sha256, "size": n}`` replaced by the text it stands for."""
        if isinstance(obj, dict):
            if obj.keys() == {"$blob", "size"} and isinstance(obj["$blob"], str):
                return self.read_blob(obj["$blob"]).decode("utf-8")
            return {key: self.resolve_blobs(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.resolve_blobs(item) for item in obj]
        return obj

    # -- grading -------------------------------------------------------------------------------------------------

    @property
    def _grading(self) -> GradingTables:
        return GradingTables(self._unit, "%s")


class PostgresRecorder(RecorderBase):
    """Appends the events of one run to PostgreSQL; the same contract as :class:`~agentflow.traces.RunRecorder`.

    Each recorder has its own connection, so concurrent runs write in parallel; events of one recorder from several
    threads get unique, increasing seq numbers. Each event is one committed INSERT: a killed writer loses nothing.
    """

    spill_under_lock = True  # spilled blobs go through the recorder's one connection

    def __init__(self, store: PostgresStore, run_id: str, workflow: str) -> None:
        super().__init__(run_id, workflow, store.spill_threshold)
        self.store = store
        self._connection = store.connect()
        self.dropped_partial_line: dict[str, Any] | None = None  # never: each event is one atomic INSERT

    def __repr__(self) -> str:
        return f"PostgresRecorder({self.run_id!r}, events={self._next_seq})"

    def _write_blob(self, payload: bytes) -> str:
        return self.store.write_blob(payload, self._connection)

    def _append(self, *, seq: int, event_type: EventType, node: str | None, digest: str, line: bytes) -> None:
        try:
            self._connection.execute(
                "INSERT INTO events (run_id, seq, type, node, hash, line) VALUES (%s, %s, %s, %s, %s, %s)",
                (self.run_id, seq, str(event_type), node, digest, line.decode("utf-8")),
            )
        except _psycopg().Error as exc:
            raise TraceError(f"cannot write event {seq} of run {self.run_id} to {self.store.location}: {exc}") from exc

    def _write_counts(self, status: str, summary: RunSummary) -> None:
        _write_counts(
            self._connection,  # the recorder's own; the caller holds the recorder's lock
            self.run_id,
            status=status,
            summary=summary,
            events=self._next_seq,
            last_hash=self._last_hash,
            placeholder="%s",
        )

    def _release(self) -> None:
        self._connection.close()
