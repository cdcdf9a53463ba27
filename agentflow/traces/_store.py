"""The embedded trace store: one JSONL file per run, content-addressed blobs, and a SQLite index.

Layout under the store root (``.agentflow/`` in the working directory by default)::

    runs/<run_id>/trace.jsonl    one event per line, in seq order, each line one JSON object with its hash
    blobs/<ab>/<sha256>          payload strings larger than the spill threshold, named by their sha256
    index.sqlite                 one row per run (WAL mode) for ``agentflow runs``; derived, see ``reindex()``
                                 plus grading passes, rewards and realized graphs (not derived: back it up)

The JSONL files are the source of truth: the index only makes listing fast and is checked against the trace on load.

Durability (``fsync`` policy of :class:`TraceStore`):

- every event is written to the trace file with a single ``write(2)`` as soon as it is emitted (no user-space
  buffering), so a process killed with SIGKILL leaves every event it emitted readable, except at worst a partial
  last line, which :meth:`TraceStore.load_trace` skips and reports;
- ``"boundary"`` (default) also calls ``fsync`` after the events that end a run or report a failure
  (``run_finished``, ``error``); a power loss or kernel crash can lose the events since the last of those. Not after
  every node: an fsync costs about as much as LangGraph's whole per-node work, and a killed process (the common
  failure) loses nothing without it;
- ``"always"`` fsyncs after every event (and every blob); ``"never"`` leaves flushing to the OS entirely.

Run status in the index: ``running`` from :meth:`TraceStore.new_run` until :meth:`RunRecorder.finish` records
``succeeded``, ``failed``, ``limit_exceeded``, ``errored`` or ``cancelled``. A recorder closed without finishing, or
whose process died (found by :meth:`TraceStore.list_runs` on the same host), is marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from agentflow._processes import pid_alive
from agentflow.errors import ConfigError, TraceError
from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import event_hash, sha256_hex
from agentflow.traces._migrations import migrate_sqlite
from agentflow.traces._recorder import BOUNDARY_EVENTS, FINISHED_STATUSES, RecorderBase, utc_now
from agentflow.traces._sqlite_grading import SQLiteGradingMixin
from agentflow.traces._summary import RunSummary, summarize

if TYPE_CHECKING:
    from agentflow.traces._protocol import Store

__all__ = [
    "DEFAULT_SPILL_THRESHOLD",
    "FINISHED_STATUSES",
    "FsyncPolicy",
    "RunInfo",
    "RunRecorder",
    "Trace",
    "TraceProblem",
    "TraceStore",
]

FsyncPolicy = Literal["always", "boundary", "never"]
DEFAULT_SPILL_THRESHOLD = 64 * 1024
# "imported": a trajectory recorded elsewhere and imported (agentflow traces import), complete as it stands.
TRACE_FILE = "trace.jsonl"
INDEX_FILE = "index.sqlite"

_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_BUSY_TIMEOUT_S = 10.0


def _ensure_wal(connection: sqlite3.Connection) -> None:
    """Put the index in WAL mode. Switching needs the database to itself and SQLite answers "locked" at once
    instead of waiting, so many writers opening a new store together retry here for up to the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        if time.monotonic() > deadline:
            raise TraceError("cannot put the run index in WAL mode: the database stayed locked; retry")
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.01)


def _new_run_id() -> str:
    # Second-resolution time first so ids sort by start time; 32 random bits keep concurrent starts apart.
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunInfo:
    """One row of the run index, as ``agentflow runs`` lists it."""

    run_id: str
    workflow: str
    status: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    steps: int
    tool_calls: int
    model_calls: int
    tokens: int
    reward_mean: float | None
    error: str | None
    replay_of: str | None = None  # the run this one replays

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON-serialisable data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TraceProblem:
    """Something wrong in a stored trace, found by :meth:`TraceStore.load_trace`.

    ``kind`` is one of ``truncated`` (an incomplete last line, from a writer killed mid-write), ``corrupt`` (a line
    that is not a valid event), ``tampered`` (an event whose content does not match its hash), ``chain_broken`` (an
    event whose ``prev_hash`` is not the previous event's hash: one was removed, inserted or rewritten),
    ``seq_gap`` (events missing or out of order) and ``index_mismatch`` (the trace ends differently from what the
    index recorded when the run finished: events removed from the end, or the last one rewritten).
    """

    kind: Literal["truncated", "corrupt", "tampered", "chain_broken", "seq_gap", "index_mismatch"]
    line: int | None
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "trace"
        seq = f", seq {self.seq}" if self.seq is not None else ""
        return f"{where}{seq}: {self.kind}: {self.message}"


@dataclass
class Trace:
    """The events of one stored run, verified.

    ``events`` holds every line that parsed as an event, in file order; ``problems`` lists what verification found
    (empty for an intact trace). An event named in a ``tampered`` problem is still in ``events``, so a viewer can
    show it, but nothing should trust it.
    """

    run_id: str
    path: Path
    events: list[Event]
    problems: list[TraceProblem]
    store: Store = field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether the trace verified without any problem."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise :class:`TraceError` listing the problems, if there are any."""
        if self.problems:
            listed = "; ".join(str(problem) for problem in self.problems)
            raise TraceError(f"trace of run {self.run_id} failed verification: {listed}")

    def resolve(self, data: Any) -> Any:
        """Return ``data`` with every spilled payload (``{"$blob": sha256, "size": n}``) replaced by its text."""
        return self.store.resolve_blobs(data)

    def summary(self) -> RunSummary:
        """Summarise the run (see :func:`agentflow.traces.summarize`)."""
        return summarize(self.events)


class TraceStore(SQLiteGradingMixin):
    """Runs recorded as JSONL traces under ``root``, listed through a SQLite index.

    Args:
        root: the store directory; created on the first recorded run.
        fsync: when to fsync the trace file (see the module docstring); ``"boundary"`` by default.
        spill_threshold: payload strings larger than this many UTF-8 bytes go to a blob file.

    Safe to share between threads; several processes may record different runs into the same store at once.
    """

    def __init__(
        self,
        root: Path | str = ".agentflow",
        *,
        fsync: FsyncPolicy = "boundary",
        spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
    ) -> None:
        if fsync not in ("always", "boundary", "never"):
            raise ConfigError(f"unknown fsync policy {fsync!r}", fix="use one of: always, boundary, never")
        if spill_threshold < 1:
            raise ConfigError(f"spill threshold must be positive, got {spill_threshold}")
        self.root = Path(root)
        self.fsync: FsyncPolicy = fsync
        self.spill_threshold = spill_threshold

    def __repr__(self) -> str:
        return f"TraceStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------------------------

    @property
    def runs_root(self) -> Path:
        """The directory holding one subdirectory per run."""
        return self.root / "runs"

    @property
    def index_path(self) -> Path:
        """The SQLite index file."""
        return self.root / INDEX_FILE

    def run_dir(self, run_id: str) -> Path:
        """Return the directory of the run ``run_id`` (it may not exist)."""
        _check_run_id(run_id)
        return self.runs_root / run_id

    def blob_path(self, digest: str) -> Path:
        """Return where the blob with this sha256 hex digest is stored."""
        if not _DIGEST_PATTERN.match(digest):
            raise TraceError(f"not a blob digest (64 lowercase hex digits): {digest!r}")
        return self.root / "blobs" / digest[:2] / digest

    # -- index -------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = self._open_index()
        try:
            yield connection
        finally:
            connection.close()

    def _open_index(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): every statement here is a single-row write, committed at once.
        connection = sqlite3.connect(
            self.index_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            # synchronous=NORMAL is durable enough in WAL mode: the index is derived data, rebuilt from traces.
            connection.execute("PRAGMA synchronous = NORMAL")
            # Every time, not once per store object: cheap, and survives the index file being deleted meanwhile.
            _ensure_wal(connection)
            migrate_sqlite(connection)  # versioned schema (agentflow/traces/_migrations.py)
        except BaseException:
            connection.close()
            raise
        return connection

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunInfo]:
        """List runs from the index, newest first.

        Runs still marked ``running`` whose process is gone (same host) are first marked ``interrupted``, with
        their counts taken from the trace.

        Args:
            limit: at most this many runs.
            status: only runs with this status (``running``, ``succeeded``, ``failed``, ``limit_exceeded``,
                ``errored``, ``cancelled``, ``interrupted``).
        """
        if not self.index_path.exists():
            return []
        with self._connect() as connection:
            self._mark_dead_runs_interrupted(connection)
            query = (
                "SELECT run_id, workflow, status, started_at, finished_at, duration_s, steps, tool_calls,"
                " model_calls, tokens, reward_mean, error, replay_of FROM runs"
            )
            parameters: list[Any] = []
            if status is not None:
                query += " WHERE status = ?"
                parameters.append(status)
            query += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
            parameters.append(limit)
            rows = connection.execute(query, parameters).fetchall()
        return [RunInfo(*row) for row in rows]

    def latest_run_id(self) -> str | None:
        """Return the id of the most recently started run, or ``None`` when the store has none."""
        if self.index_path.exists():
            with self._connect() as connection:
                row = connection.execute("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
                found = row.fetchone()
            if found is not None:
                return str(found[0])
        # No index (deleted, or a copied runs/ folder): run ids sort by start time.
        names = self._run_names()
        return names[-1] if names else None

    def reindex(self) -> list[str]:
        """Add index rows for runs whose trace exists but that the index does not list.

        For a ``runs/`` folder copied from elsewhere, or after the index file was deleted: the traces are the source
        of truth, and each missing row is rebuilt from its trace (status from ``run_finished``, else
        ``interrupted``).

        Returns:
            The ids of the runs added, in id order.
        """
        added: list[str] = []
        with self._connect() as connection:
            known = {row[0] for row in connection.execute("SELECT run_id FROM runs")}
            for run_id in self._run_names():
                if run_id in known:
                    continue
                trace = self.load_trace(run_id)
                summary = trace.summary()
                status = summary.status if summary.status in FINISHED_STATUSES else "interrupted"
                started_at = summary.started_at or (trace.events[0].ts if trace.events else utc_now())
                connection.execute(
                    "INSERT INTO runs (run_id, workflow, status, started_at) VALUES (?, ?, ?, ?)",
                    (run_id, summary.workflow or "unknown", status, started_at),
                )
                last_hash = trace.events[-1].hash if trace.events else None
                _write_counts(
                    connection,
                    run_id,
                    status=status,
                    summary=summary,
                    events=len(trace.events),
                    last_hash=last_hash,
                )
                added.append(run_id)
        return added

    def _mark_dead_runs_interrupted(self, connection: sqlite3.Connection) -> None:
        rows = connection.execute(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?", (socket.gethostname(),)
        ).fetchall()
        for run_id, pid in rows:
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            try:
                trace = self.load_trace(run_id)
            except TraceError:
                continue
            last_hash = trace.events[-1].hash if trace.events else None
            _write_counts(
                connection,
                run_id,
                status="interrupted",
                summary=trace.summary(),
                events=len(trace.events),
                last_hash=last_hash,
            )

    def _index_row(self, run_id: str) -> tuple[str, int, str | None] | None:
        if not self.index_path.exists():
            return None
        with self._connect() as connection:
            row = connection.execute("SELECT status, events, last_hash FROM runs WHERE run_id = ?", (run_id,))
            found = row.fetchone()
        return None if found is None else (str(found[0]), int(found[1]), found[2])

    # -- recording ---------------------------------------------------------------------------------------------

    def new_run(self, *, workflow: str, run_id: str | None = None) -> RunRecorder:
        """Start recording a run: create its directory and trace file, and index it as ``running``.

        Args:
            workflow: the workflow's name, shown by ``agentflow runs``.
            run_id: a chosen id (letters, digits, ``.``, ``_``, ``-``); by default ``YYYYMMDD-HHMMSS-<8 hex>`` in
                UTC, which sorts by start time.

        Raises:
            TraceError: a run with this id already exists.
        """
        for _ in range(100):
            candidate = run_id if run_id is not None else _new_run_id()
            directory = self.run_dir(candidate)
            directory.parent.mkdir(parents=True, exist_ok=True)
            try:
                directory.mkdir()
            except FileExistsError:
                if run_id is not None:
                    raise TraceError(f"run {run_id!r} already exists in {self.root}") from None
                continue
            return RunRecorder(self, candidate, workflow)
        raise TraceError(f"could not find a free run id in {self.runs_root}")  # pragma: no cover (2**32 ids/s)

    def reopen_run(self, run_id: str) -> RunRecorder:
        """Continue recording an unfinished run (``agentflow resume``): its next event follows its last one.

        An incomplete last line (the writer was killed mid-write) is cut off first, kept as a blob whose digest the
        recorder reports in ``dropped_partial_line``; every complete event stays as it was.

        Raises:
            TraceError: the run finished, its trace fails verification, or its process is still alive.
        """
        trace = self.load_trace(run_id)
        indexed = self._index_row(trace.run_id)
        check_reopenable(trace, indexed[0] if indexed else None, self._index_owner(trace.run_id))
        return RunRecorder(self, trace.run_id, trace.summary().workflow or "unknown", resume=trace)

    def _index_owner(self, run_id: str) -> tuple[str | None, int | None]:
        with self._connect() as connection:
            found = connection.execute("SELECT host, pid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return (None, None) if found is None else (found[0], found[1])

    def _write_blob(self, payload: bytes) -> str:
        digest = sha256_hex(payload)
        target = self.blob_path(digest)
        if target.exists():  # content-addressed: the same name means the same bytes
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary name and renamed, so a reader never sees a partial blob under its digest.
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{digest[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                if self.fsync == "always":
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return digest

    # -- reading -----------------------------------------------------------------------------------------------

    def read_blob(self, digest: str) -> bytes:
        """Return the bytes of a spilled payload, checked against its digest.

        Raises:
            TraceError: no blob has this digest, or its content does not match it.
        """
        path = self.blob_path(digest)
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise TraceError(f"blob {digest} is missing from {self.root / 'blobs'}") from None
        if hashlib.sha256(payload).hexdigest() != digest:
            raise TraceError(f"blob {digest} was modified: its content no longer matches its sha256")
        return payload

    def resolve_blobs(self, obj: Any) -> Any:
        """Return ``obj`` with every ``{"$blob": sha256, "size": n}`` replaced by the text it stands for.

        Raises:
            TraceError: a referenced blob is missing or modified.
        """
        if isinstance(obj, dict):
            if obj.keys() == {"$blob", "size"} and isinstance(obj["$blob"], str):
                return self.read_blob(obj["$blob"]).decode("utf-8")
            return {key: self.resolve_blobs(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.resolve_blobs(item) for item in obj]
        return obj

    def _run_names(self) -> list[str]:
        if not self.runs_root.is_dir():
            return []
        return sorted(entry.name for entry in self.runs_root.iterdir() if (entry / TRACE_FILE).is_file())

    def resolve_run_id(self, run_id: str) -> str:
        """Return the full id of the run named by ``run_id`` or by a unique prefix of it.

        Raises:
            TraceError: no run matches (the message lists the closest ids), or the prefix is ambiguous.
        """
        if _RUN_ID_PATTERN.match(run_id) and (self.runs_root / run_id / TRACE_FILE).is_file():
            return run_id
        names = self._run_names()
        matches = [name for name in names if name.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise TraceError(f"run id prefix {run_id!r} is ambiguous in {self.root}: {shown}")
        closest = difflib.get_close_matches(run_id, names, n=3, cutoff=0.4)
        hint = f"; closest: {', '.join(closest)}" if closest else (f"; latest: {names[-1]}" if names else "")
        raise TraceError(f"no run {run_id!r} in {self.root}{hint}")

    def load_trace(self, run_id: str) -> Trace:
        """Load and verify the trace of one run.

        Every event's hash is recomputed and the ``prev_hash`` chain and ``seq`` order are checked; what fails is
        reported in :attr:`Trace.problems` (with the line and seq) rather than raised, so a damaged trace can still
        be inspected. Call :meth:`Trace.raise_for_problems` to insist on an intact one.

        Args:
            run_id: the run's id, or a unique prefix of it.

        Raises:
            TraceError: no such run (the message lists the closest run ids), or its trace file cannot be read.
        """
        full_id = self.resolve_run_id(run_id)
        path = self.runs_root / full_id / TRACE_FILE
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TraceError(f"cannot read the trace of run {full_id}: {exc}") from exc
        events, problems = _parse_and_verify(raw, full_id)
        indexed = self._index_row(full_id)
        if indexed is not None and indexed[0] != "running":
            _check_against_index(events, indexed[1], indexed[2], problems)
        return Trace(run_id=full_id, path=path, events=events, problems=problems, store=self)


def _check_run_id(run_id: str) -> None:
    if not _RUN_ID_PATTERN.match(run_id):
        raise ConfigError(
            f"invalid run id {run_id!r}",
            fix="use up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def _parse_and_verify(raw: bytes, run_id: str) -> tuple[list[Event], list[TraceProblem]]:
    events: list[Event] = []
    problems: list[TraceProblem] = []
    lines = raw.split(b"\n")
    ends_with_newline = raw.endswith(b"\n")
    previous_hash: str | None = None
    expected_seq = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        unterminated = number == len(lines) and not ends_with_newline
        try:
            event = Event.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            if unterminated:
                message = f"incomplete last line ({len(line)} bytes), the writer stopped mid-write; skipped"
                problems.append(TraceProblem("truncated", number, None, message))
            else:
                reason = str(exc).splitlines()[0]
                problems.append(TraceProblem("corrupt", number, None, f"not a valid event: {reason}"))
            continue
        seq = event.seq
        if event.run_id != run_id:
            problems.append(TraceProblem("corrupt", number, seq, f"event belongs to run {event.run_id!r}"))
        if event_hash(event.model_dump(mode="json")) != event.hash:
            problems.append(TraceProblem("tampered", number, seq, "content does not match the event's hash"))
        if event.prev_hash != previous_hash:
            problems.append(
                TraceProblem("chain_broken", number, seq, "prev_hash is not the hash of the event before it")
            )
        if seq != expected_seq:
            problems.append(TraceProblem("seq_gap", number, seq, f"expected seq {expected_seq}"))
        events.append(event)
        previous_hash = event.hash
        expected_seq = seq + 1
    return events, problems


def _check_against_index(
    events: list[Event], indexed_events: int, indexed_last_hash: str | None, problems: list[TraceProblem]
) -> None:
    last_hash = events[-1].hash if events else None
    if len(events) != indexed_events or last_hash != indexed_last_hash:
        problems.append(
            TraceProblem(
                "index_mismatch",
                None,
                events[-1].seq if events else None,
                f"the index recorded {indexed_events} events ending in {str(indexed_last_hash)[:12]}, "
                f"the trace has {len(events)} ending in {str(last_hash)[:12]}",
            )
        )


def _write_counts(
    connection: Any,
    run_id: str,
    *,
    status: str,
    summary: RunSummary,
    events: int,
    last_hash: str | None,
    placeholder: str = "?",
) -> None:
    """Update a run's index row (SQLite, or PostgreSQL with ``placeholder="%s"``: same table, same SQL)."""
    connection.execute(
        (
            "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, steps = ?, tool_calls = ?, model_calls = ?,"
            " tokens = ?, reward_mean = ?, error = ?, events = ?, last_hash = ?, replay_of = ? WHERE run_id = ?"
        ).replace("?", placeholder),
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
            run_id,
        ),
    )


def _index_error(summary: RunSummary) -> str | None:
    # A finished run shows the error it finished with (None for a success, even after recovered errors); a run in
    # progress or interrupted shows the last error recorded so far.
    if summary.status != "incomplete":
        return summary.error
    return summary.errors[-1].message if summary.errors else None


class RunRecorder(RecorderBase):
    """Appends the events of one run to its trace file; get one from :meth:`TraceStore.new_run`.

    Thread-safe: events from several threads get unique, increasing ``seq`` numbers in file order. Use it as a
    context manager, or call :meth:`finish` and then :meth:`close`.
    """

    def __init__(self, store: TraceStore, run_id: str, workflow: str, *, resume: Trace | None = None) -> None:
        super().__init__(run_id, workflow, store.spill_threshold)
        self.store = store
        self.trace_path = store.run_dir(run_id) / TRACE_FILE
        self.dropped_partial_line: dict[str, Any] | None = None  # set when reopening cut off a partial last line
        self._fsync_every_event = store.fsync == "always"
        self._fsync_boundaries = store.fsync != "never"
        # O_APPEND + one os.write per event: no user-space buffer to lose, and each line lands whole or not at all
        # (short of the process dying inside the write call).
        create = os.O_CREAT | os.O_EXCL if resume is None else 0
        self._fd = os.open(self.trace_path, os.O_WRONLY | create | os.O_APPEND, 0o644)
        try:
            if self._fsync_boundaries:
                _fsync_directory(self.trace_path.parent)
            self._index = store._open_index()
        except BaseException:
            os.close(self._fd)
            raise
        if resume is not None:
            self._continue(resume)
            return
        try:
            # REPLACE: a row left behind by a run whose directory was deleted must not block reusing its id.
            self._index.execute(
                "INSERT OR REPLACE INTO runs (run_id, workflow, status, started_at, host, pid)"
                " VALUES (?, ?, 'running', ?, ?, ?)",
                (run_id, workflow, utc_now(), socket.gethostname(), os.getpid()),
            )
        except BaseException:
            os.close(self._fd)
            self._index.close()
            raise

    def __repr__(self) -> str:
        return f"RunRecorder({self.run_id!r}, events={self._next_seq})"

    def _continue(self, trace: Trace) -> None:
        """Pick up after the last complete event of ``trace`` (same run), marking the run ``running`` again."""
        try:
            raw = self.trace_path.read_bytes()
            complete = raw.rfind(b"\n") + 1
            if complete < len(raw):  # a partial line would corrupt the next event: keep its bytes as a blob
                partial = raw[complete:]
                self.dropped_partial_line = {"$blob": self.store._write_blob(partial), "size": len(partial)}
                os.ftruncate(self._fd, complete)
            if trace.events:
                self._next_seq = trace.events[-1].seq + 1
                self._last_hash = trace.events[-1].hash
            self._unsummarized.extend(trace.events)
            self._index.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, host = ?, pid = ? WHERE run_id = ?",
                (socket.gethostname(), os.getpid(), self.run_id),
            )
        except BaseException:
            os.close(self._fd)
            self._index.close()
            raise

    @property
    def run_dir(self) -> Path:
        """The run's directory."""
        return self.trace_path.parent

    def _write_blob(self, payload: bytes) -> str:
        return self.store._write_blob(payload)

    def _append(self, *, seq: int, event_type: EventType, node: str | None, digest: str, line: bytes) -> None:
        boundary = event_type in BOUNDARY_EVENTS
        try:
            written = os.write(self._fd, line)
            while written < len(line):  # only on exotic file systems; regular files write whole
                written += os.write(self._fd, line[written:])
            if self._fsync_every_event or (boundary and self._fsync_boundaries):
                os.fsync(self._fd)
        except OSError as exc:
            raise TraceError(f"cannot write the trace of run {self.run_id}: {exc}") from exc

    def _write_counts(self, status: str, summary: RunSummary) -> None:
        _write_counts(
            self._index, self.run_id, status=status, summary=summary, events=self._next_seq, last_hash=self._last_hash
        )

    def _release(self) -> None:
        os.close(self._fd)
        self._index.close()


def _fsync_directory(directory: Path) -> None:
    # Makes the new trace file's directory entry durable; some platforms cannot open directories, which is fine.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_reopenable(trace: Trace, status: str | None, owner: tuple[str | None, int | None]) -> None:
    """Refuse to continue a run that finished, whose trace fails verification, or whose process still runs.

    A partial last line (``truncated``) is the one problem allowed: it is what a killed writer leaves.
    """
    if any(event.type is EventType.RUN_FINISHED for event in trace.events):
        finished = trace.summary().status
        raise TraceError(f"run {trace.run_id} already finished ({finished}); there is nothing to resume")
    damaged = [problem for problem in trace.problems if problem.kind != "truncated"]
    if damaged:
        listed = "; ".join(str(problem) for problem in damaged)
        raise TraceError(f"trace of run {trace.run_id} failed verification, so it is not resumed: {listed}")
    host, pid = owner
    if status == "running" and pid is not None and host == socket.gethostname() and pid_alive(pid):
        raise TraceError(f"run {trace.run_id} is still running (process {pid}); stop it before resuming")
