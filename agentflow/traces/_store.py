"""The embedded trace store: one JSONL file per run, content-addressed blobs, and a SQLite index.

Layout under the store root (``.agentflow/`` in the working directory by default)::

    runs/<run_id>/trace.jsonl    one event per line, in seq order, each line one JSON object with its hash
    blobs/<ab>/<sha256>          payload strings larger than the spill threshold, named by their sha256
    index.sqlite                 one row per run (WAL mode) for ``agentflow runs``; derived, see ``reindex()``
                                 plus grading passes, rewards and realized graphs (not derived: back it up)

The JSONL files are the source of truth: the index only makes listing fast and is checked against the trace on load.

Durability (``fsync`` policy of :class:`TraceStore`):

- every event is written to the trace file with a single ``write(2)`` as soon as it is emitted, so a process killed
  with SIGKILL leaves every event it emitted readable, except at worst a partial last line, which
  :meth:`TraceStore.load_trace` skips and reports. Unless the recorder was told to hold events
  (:meth:`RunRecorder.hold_events`, which ``run_workflow`` does): then the events wait in memory until
  :meth:`RunRecorder.flush` writes them all with one ``write(2)``; ``run_started``, ``run_resumed``, ``error`` and
  ``run_finished`` are written at once, as are the held events when the recorder closes. The runtime flushes at the
  end of every node and before every effect outside the process (model call, sandbox command, file write or reset,
  tool or hook code, routing decision), so a killed run loses only events recorded after the last of those, which
  nothing outside the process followed (``fsync="always"`` holds nothing);
- ``"boundary"`` (default) also has the trace file (and a new run's directory) ``fsync``-ed after the events that end
  a run or report a failure (``run_finished``, ``error``), by a background thread, so that no run (nor the event
  loop it shares with others) waits for the disk; pending fsyncs are done before the process exits normally. A
  power loss or kernel crash can lose the events since the last completed fsync. Not after every node: an fsync
  costs about as much as LangGraph's whole per-node work, and a killed process (the common failure) loses nothing
  without it. An fsync that fails makes the run's next write fail (``TraceError``) and is reported at exit;
- ``"always"`` fsyncs after every event (and every blob); ``"never"`` leaves flushing to the OS entirely.

Run status in the index: ``running`` from :meth:`TraceStore.new_run` until :meth:`RunRecorder.finish` records
``succeeded``, ``failed``, ``limit_exceeded``, ``errored`` or ``cancelled``. A recorder closed without finishing, or
whose process died (found by :meth:`TraceStore.list_runs` on the same host), is marked ``interrupted``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from agentflow.errors import ConfigError, TraceError
from agentflow.traces._base import DEFAULT_SPILL_THRESHOLD, StoreBase, check_digest, check_run_id
from agentflow.traces._hashing import sha256_hex
from agentflow.traces._migrations import migrate_sqlite
from agentflow.traces._protocol import Trace
from agentflow.traces._recorder import BOUNDARY_EVENTS, FINISHED_STATUSES, EncodedEvent, RecorderBase, utc_now
from agentflow.traces._tables import StoreTables

__all__ = ["FsyncPolicy", "RunRecorder", "TraceStore"]

FsyncPolicy = Literal["always", "boundary", "never"]
TRACE_FILE = "trace.jsonl"
INDEX_FILE = "index.sqlite"

_BUSY_TIMEOUT_S = 10.0
# Idle index connections kept for the store's reads and writes and for the next recorders. Each recorder holds one
# while its run goes, so a wave of a bench run's runs gives back about its concurrency's worth as it ends: below that
# (the cap was 16, under benchmarks/bench.py's 50), the next wave opened again what the last one closed, 0.2 ms each.
_IDLE_CONNECTIONS = 64
# The folder store claims a run id by creating the run's directory, so its index row replaces one left behind by a
# run whose directory was deleted.
_SQLITE_TABLES = StoreTables("?", insert_run="INSERT OR REPLACE")


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


class TraceStore(StoreBase["RunRecorder"]):
    """Runs recorded as JSONL traces under ``root``, listed through a SQLite index.

    Args:
        root: the store directory; created on the first recorded run.
        fsync: when to fsync the trace file (see the module docstring); ``"boundary"`` by default.
        spill_threshold: payload strings larger than this many UTF-8 bytes go to a blob file.

    Safe to share between threads; several processes may record different runs into the same store at once.
    """

    _tables = _SQLITE_TABLES

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
        # One connection kept open while the store records, used for nothing: closing the *last* connection of a
        # WAL database checkpoints it (an fsync), which would cost every run milliseconds when its recorder closes.
        # (Handing a recorder's connection on to the next run instead of keeping one made every other run slower:
        # measured. Recorders do give their connections back, to the idle ones below, for the next recorder.)
        self._keeper: sqlite3.Connection | None = None
        self._keeper_lock = threading.Lock()
        self._keeper_pid = os.getpid()
        # Connections of the store's own reads and writes and of finished recorders, given back for the next one:
        # opening one (connect, pragmas, the schema version check) costs about as much as the statements of a
        # benchmark attempt (a tenth of its CPU).
        self._idle: list[sqlite3.Connection] = []
        self._idle_identity: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"TraceStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        """The store folder."""
        return str(self.root)

    def close(self) -> None:
        """Wait for the trace fsyncs still pending (``boundary`` policy) and close the index connections that
        finished recorders left for the next run (reads and writes of the store itself each open their own)."""
        _SYNCER.drain()
        with self._keeper_lock:
            keeper, self._keeper = self._keeper, None
            idle, self._idle = self._idle, []
        if self._keeper_pid == os.getpid():
            for connection in idle:
                connection.close()
            if keeper is not None:
                keeper.close()

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
        check_run_id(run_id)
        return self.runs_root / run_id

    def blob_path(self, digest: str) -> Path:
        """Return where the blob with this sha256 hex digest is stored."""
        check_digest(digest)
        return self.root / "blobs" / digest[:2] / digest

    # -- the index ---------------------------------------------------------------------------------------------

    def open_index(self) -> sqlite3.Connection:
        """A new autocommit connection to the SQLite index, created and migrated if need be."""
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

    def _lease_index(self) -> sqlite3.Connection:
        """A connection to the index for a recorder (given back by :meth:`_end_lease`), the keeper opened first."""
        with self._keeper_lock:
            self._forget_parent_connections()
            if self._keeper is None:
                self._keeper = self.open_index()
        return self._take_idle() or self.open_index()

    def _end_lease(self, connection: sqlite3.Connection) -> None:
        self._give_back(connection)

    def _take_idle(self) -> sqlite3.Connection | None:
        """A connection given back earlier, if one is still connected to the index file there is now (not one
        deleted or replaced since) and this process opened it."""
        identity = self._index_identity()
        connection = None
        stale: list[sqlite3.Connection] = []
        with self._keeper_lock:
            self._forget_parent_connections()
            if self._idle_identity != identity:
                stale, self._idle = self._idle, []
                self._idle_identity = identity
            if self._idle:
                connection = self._idle.pop()
        for old in stale:
            old.close()
        return connection

    def _give_back(self, connection: sqlite3.Connection) -> None:
        """Keep a connection for the next :meth:`_take_idle` (while fewer than ``_IDLE_CONNECTIONS`` are idle), else
        close it."""
        given_back = False
        if not connection.in_transaction:
            with self._keeper_lock:
                self._forget_parent_connections()
                if len(self._idle) < _IDLE_CONNECTIONS:
                    if self._idle_identity is None:
                        self._idle_identity = self._index_identity()
                    self._idle.append(connection)
                    given_back = True
        if not given_back:
            connection.close()

    def _forget_parent_connections(self) -> None:
        # Called under the keeper lock. A forked child must neither use nor close the connections its parent opened.
        if self._keeper_pid != os.getpid():
            self._keeper, self._idle, self._idle_identity = None, [], None
            self._keeper_pid = os.getpid()

    def _index_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.index_path)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one read or write of the store (one given back earlier, see :meth:`_take_idle`)."""
        connection = self._take_idle() or self.open_index()
        try:
            yield connection
        finally:
            self._give_back(connection)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _has_index(self) -> bool:
        return self.index_path.exists()

    def reindex(self) -> list[str]:
        """Add index rows for runs whose trace exists but that the index does not list.

        For a ``runs/`` folder copied from elsewhere, or after the index file was deleted: the traces are the source
        of truth, and each missing row is rebuilt from its trace (status from ``run_finished``, else
        ``interrupted``).

        Returns:
            The ids of the runs added, in id order.
        """
        added: list[str] = []
        with self._connection() as connection:
            known = {row[0] for row in connection.execute("SELECT run_id FROM runs")}
            for run_id in self.run_ids():
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
                self._tables.write_counts(
                    connection,
                    run_id,
                    status=status,
                    summary=summary,
                    events=len(trace.events),
                    last_hash=trace.events[-1].hash if trace.events else None,
                )
                added.append(run_id)
        return added

    # -- runs and their lines ----------------------------------------------------------------------------------

    def _start_run(self, run_id: str, workflow: str) -> RunRecorder | None:
        directory = self.run_dir(run_id)
        try:
            try:
                directory.mkdir()
            except FileNotFoundError:  # the store's first run (or its runs folder was removed): one mkdir more
                directory.parent.mkdir(parents=True, exist_ok=True)
                directory.mkdir()
        except FileExistsError:
            return None
        return RunRecorder(self, run_id, workflow)

    def _continue_run(self, trace: Trace, workflow: str) -> RunRecorder:
        # An incomplete last line (the writer was killed mid-write) is cut off first, kept as a blob whose digest the
        # recorder reports in `dropped_partial_line`; every complete event stays as it was.
        return RunRecorder(self, trace.run_id, workflow, resume=trace)

    def run_ids(self) -> list[str]:
        """Every run id with a trace, oldest first (run ids sort by start time)."""
        if not self.runs_root.is_dir():
            return []
        return sorted(entry.name for entry in self.runs_root.iterdir() if (entry / TRACE_FILE).is_file())

    def _has_run(self, run_id: str) -> bool:
        return (self.runs_root / run_id / TRACE_FILE).is_file()

    def _run_ids_starting(self, prefix: str) -> list[str]:
        return [name for name in self.run_ids() if name.startswith(prefix)]

    def _trace_path(self, run_id: str) -> Path:
        return self.runs_root / run_id / TRACE_FILE

    def _read_trace(self, run_id: str) -> bytes:
        try:
            return self._trace_path(run_id).read_bytes()
        except OSError as exc:
            raise TraceError(f"cannot read the trace of run {run_id}: {exc}") from exc

    def _read_trace_from(self, run_id: str, position: int) -> tuple[bytes, int]:
        # The position is a byte offset into trace.jsonl: only what was appended since is read.
        try:
            with self._trace_path(run_id).open("rb") as trace:
                trace.seek(position)
                appended = trace.read()
        except OSError as exc:
            raise TraceError(f"cannot read the trace of run {run_id}: {exc}") from exc
        complete = appended[: appended.rfind(b"\n") + 1]
        return complete, position + len(complete)

    # -- blobs -------------------------------------------------------------------------------------------------

    @property
    def _blobs_location(self) -> str:
        return str(self.root / "blobs")

    def write_blob(self, payload: bytes) -> str:
        """Store a payload under its sha256 (once) and return the digest."""
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

    def _fetch_blob(self, digest: str) -> bytes | None:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None


class RunRecorder(RecorderBase):
    """Appends the events of one run to its trace file; get one from :meth:`TraceStore.new_run`.

    Thread-safe: events from several threads get unique, increasing ``seq`` numbers in file order. Use it as a
    context manager, or call :meth:`finish` and then :meth:`close`.
    """

    _tables = _SQLITE_TABLES

    def __init__(self, store: TraceStore, run_id: str, workflow: str, *, resume: Trace | None = None) -> None:
        self.store = store
        self.trace_path = store.run_dir(run_id) / TRACE_FILE
        self._fsync_every_event = store.fsync == "always"
        self._may_hold = not self._fsync_every_event  # "always" promises each event on disk as it is emitted
        self._fsync_boundaries = store.fsync != "never"
        # O_APPEND + one os.write per event (or per flush of held events): no user-space buffer to lose beyond the
        # held events, and the lines land whole or not at all (short of the process dying inside the write call).
        create = os.O_CREAT | os.O_EXCL if resume is None else 0
        self._fd = os.open(self.trace_path, os.O_WRONLY | create | os.O_APPEND, 0o644)
        try:
            if self._fsync_boundaries:
                _SYNCER.sync_directory(self.trace_path.parent)
            self._index = store._lease_index()
            try:
                if resume is not None:
                    self._cut_partial_line()
                super().__init__(run_id, workflow, store.spill_threshold, index=self._index, resume=resume)
            except BaseException:
                self._index.close()
                raise
        except BaseException:
            os.close(self._fd)
            raise

    def __repr__(self) -> str:
        return f"RunRecorder({self.run_id!r}, events={self._next_seq})"

    def _cut_partial_line(self) -> None:
        # A partial last line would corrupt the next event: its bytes are kept as a blob, and the file cut before it.
        raw = self.trace_path.read_bytes()
        complete = raw.rfind(b"\n") + 1
        if complete < len(raw):
            partial = raw[complete:]
            self.dropped_partial_line = {"$blob": self.store.write_blob(partial), "size": len(partial)}
            os.ftruncate(self._fd, complete)

    @property
    def run_dir(self) -> Path:
        """The run's directory."""
        return self.trace_path.parent

    def _write_blob(self, payload: bytes) -> str:
        return self.store.write_blob(payload)

    def _append(self, events: list[EncodedEvent]) -> None:
        failed = _SYNCER.failure(self.trace_path)
        if failed is not None:
            raise TraceError(f"cannot make the trace of run {self.run_id} durable: {failed}")
        lines = events[0].line if len(events) == 1 else b"".join(event.line for event in events)
        try:
            written = os.write(self._fd, lines)
            while written < len(lines):  # only on exotic file systems; regular files write whole
                written += os.write(self._fd, lines[written:])
            if self._fsync_every_event:
                os.fsync(self._fd)
            elif self._fsync_boundaries and events[-1].type in BOUNDARY_EVENTS:  # held events end at a boundary
                _SYNCER.sync_file(self._fd, self.trace_path)
        except OSError as exc:
            raise TraceError(f"cannot write the trace of run {self.run_id}: {exc}") from exc

    def _release(self) -> None:
        os.close(self._fd)
        self.store._end_lease(self._index)  # never the index's last connection (the keeper is open): no checkpoint


class _BackgroundSync:
    """The fsyncs of the ``boundary`` policy, done one after another by a daemon thread (started on first use).

    ``os.fsync`` takes milliseconds on a real disk; done inline it would stall every run sharing the event loop.
    Each request holds its own duplicate of the file descriptor, so the recorder may close its own meanwhile.
    Pending requests are completed before the interpreter exits normally (``atexit``). A process forked from one
    that had started the thread starts afresh: it has no such thread, and the requests pending at the fork are the
    parent's to complete.
    """

    def __init__(self) -> None:
        self._start_afresh()

    def _start_afresh(self) -> None:
        self._requests: queue.Queue[tuple[int, Path]] = queue.Queue()
        self._failures: dict[Path, str] = {}
        self._reported: set[Path] = set()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def forget_after_fork(self) -> None:
        """In a forked child: close its copies of the descriptors pending in the parent, and start afresh."""
        # Read without the queue's lock, which another thread of the parent may have held at the fork; this
        # thread is now the only one, and holds the GIL it forked with.
        inherited = list(self._requests.queue)
        self._start_afresh()
        for descriptor, _path in inherited:
            os.close(descriptor)

    def sync_file(self, fd: int, path: Path) -> None:
        """Have the file open as ``fd`` fsynced (its duplicate: ``fd`` may be closed right after)."""
        self._submit(os.dup(fd), path)

    def sync_directory(self, directory: Path) -> None:
        """Have a directory fsynced, so a file just created in it stays named after a crash."""
        try:
            descriptor = os.open(directory, os.O_RDONLY)
        except OSError:  # some platforms cannot open directories, which is fine
            return
        self._submit(descriptor, directory)

    def _submit(self, descriptor: int, path: Path) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="agentflow-fsync", daemon=True)
                self._worker.start()
        self._requests.put((descriptor, path))

    def _work(self) -> None:
        while True:
            descriptor, path = self._requests.get()
            try:
                os.fsync(descriptor)
            except OSError as exc:
                with self._lock:
                    self._failures.setdefault(path.parent if path.name == TRACE_FILE else path, str(exc))
            finally:
                os.close(descriptor)
                self._requests.task_done()

    def failure(self, trace_path: Path) -> str | None:
        """Why an fsync of this trace file (or of its run's directory) failed, if one did."""
        if not self._failures:
            return None
        with self._lock:
            return self._failures.get(trace_path.parent)

    def drain(self) -> None:
        """Wait for every pending fsync (and say on stderr which failed)."""
        if self._worker is None:
            return
        self._requests.join()
        with self._lock:
            unreported = [(path, reason) for path, reason in self._failures.items() if path not in self._reported]
            self._reported.update(path for path, _ in unreported)
        for path, reason in unreported:
            print(f"agentflow: warning: could not fsync the trace in {path}: {reason}", file=sys.stderr)


_SYNCER = _BackgroundSync()
atexit.register(_SYNCER.drain)
if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_SYNCER.forget_after_fork)
