"""A store that keeps its runs in memory until they are taken elsewhere: for a process that records runs on another
store's behalf (a Ray bench worker whose driver owns the folder store).

Its recorders encode and hash every event exactly as a folder or PostgreSQL recorder does; instead of a file or a
table, each run's lines and spilled blobs go to memory, where :meth:`RelayStore.take` hands over what a run wrote
since the last take, ready for :meth:`~agentflow.traces.Recorder.append_encoded` of the same run in the real store.
Nothing is re-encoded or re-hashed on the way, so the trace there is the one written here, timestamps included.
Writes are as durable as the process: a recorder holding events (``hold_events``) hands its lines over at each
flush, as a folder recorder writes its file then, so what a take returns is what a file would hold.

The runs index (and the bench, grading and Q-table tables) is an SQLite database in memory, so the whole store
contract holds while a run is here; :meth:`RelayStore.forget` drops a run once the real store has it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentflow.errors import TraceError
from agentflow.traces._base import DEFAULT_SPILL_THRESHOLD, StoreBase
from agentflow.traces._hashing import sha256_hex
from agentflow.traces._migrations import migrate_sqlite
from agentflow.traces._protocol import Trace
from agentflow.traces._recorder import EncodedEvent, RecorderBase
from agentflow.traces._tables import StoreTables

__all__ = ["RelayRecorder", "RelayStore"]

# A run's id is claimed in the store's dictionary of runs, so its index row replaces any left by a forgotten run.
_RELAY_TABLES = StoreTables("?", insert_run="INSERT OR REPLACE")


class _RelayedRun:
    """One run's lines and blobs, and how much of them was taken already."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[bytes] = []
        self.taken = 0
        self.blobs: dict[str, bytes] = {}
        self.untaken_blobs: dict[str, bytes] = {}

    def add_lines(self, lines: list[bytes]) -> None:
        with self.lock:
            self.lines.extend(lines)

    def add_blob(self, digest: str, payload: bytes) -> None:
        with self.lock:
            if digest not in self.blobs:
                self.blobs[digest] = payload
                self.untaken_blobs[digest] = payload

    def take(self) -> tuple[bytes, dict[str, bytes]]:
        with self.lock:
            lines = b"".join(self.lines[self.taken :])
            self.taken = len(self.lines)
            blobs, self.untaken_blobs = self.untaken_blobs, {}
        return lines, blobs


class _SharedIndex:
    """The store's one in-memory connection, each statement under the store's lock (recorders of several threads
    write through it, and a transaction of the store must not take in their statements)."""

    def __init__(self, connection: sqlite3.Connection, lock: threading.RLock) -> None:
        self._connection = connection
        self._lock = lock

    def execute(self, statement: str, parameters: Any = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._connection.execute(statement, parameters)


class RelayStore(StoreBase["RelayRecorder"]):
    """Runs recorded in memory until taken (see the module).

    Args:
        spill_threshold: payload strings larger than this many UTF-8 bytes go to a blob (shipped with the lines).

    Safe to share between threads; its runs live as long as this object, or until :meth:`forget`.
    """

    _tables = _RELAY_TABLES

    def __init__(self, *, spill_threshold: int = DEFAULT_SPILL_THRESHOLD) -> None:
        self.spill_threshold = spill_threshold
        self._lock = threading.RLock()
        self._index = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        migrate_sqlite(self._index)
        self._shared_index = _SharedIndex(self._index, self._lock)
        self._runs: dict[str, _RelayedRun] = {}

    def __repr__(self) -> str:
        return f"RelayStore(runs={len(self._runs)})"

    @property
    def location(self) -> str:
        """A name for messages (the store has no place outside this process)."""
        return "memory (relayed)"

    def take(self, run_id: str) -> tuple[bytes, dict[str, bytes]]:
        """The lines a run wrote since the last take (each ending in a newline; empty when there are none), and
        the blobs they spilled, by digest.

        Raises:
            TraceError: no such run here.
        """
        return self._run(run_id).take()

    def forget(self, run_id: str) -> None:
        """Drop a run: its lines, blobs and index row (nothing happens if it is not here)."""
        with self._lock:
            self._runs.pop(run_id, None)
            self._index.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def close(self) -> None:
        """Close the in-memory index (the runs still here are lost)."""
        with self._lock:
            self._index.close()

    def _run(self, run_id: str) -> _RelayedRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise TraceError(f"no run {run_id!r} in {self.location}") from None

    # -- the hooks of StoreBase ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            yield self._index

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            self._index.execute("BEGIN IMMEDIATE")
            try:
                yield self._index
            except BaseException:
                self._index.execute("ROLLBACK")
                raise
            self._index.execute("COMMIT")

    def _start_run(self, run_id: str, workflow: str) -> RelayRecorder | None:
        with self._lock:
            if run_id in self._runs:
                return None
            run = self._runs[run_id] = _RelayedRun()
        try:
            return RelayRecorder(self, run_id, workflow, run, index=self._shared_index)
        except BaseException:
            self.forget(run_id)
            raise

    def _continue_run(self, trace: Trace, workflow: str) -> RelayRecorder:
        return RelayRecorder(
            self, trace.run_id, workflow, self._run(trace.run_id), index=self._shared_index, resume=trace
        )

    def run_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._runs)

    def _has_run(self, run_id: str) -> bool:
        return run_id in self._runs

    def _run_ids_starting(self, prefix: str) -> list[str]:
        return [run_id for run_id in self.run_ids() if run_id.startswith(prefix)]

    def _read_trace(self, run_id: str) -> bytes:
        run = self._run(run_id)
        with run.lock:
            return b"".join(run.lines)

    def _trace_path(self, run_id: str) -> Path:
        return Path("relay") / run_id

    def _fetch_blob(self, digest: str) -> bytes | None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            payload = run.blobs.get(digest)
            if payload is not None:
                return payload
        return None


class RelayRecorder(RecorderBase):
    """Records one run of a :class:`RelayStore` in memory; get one from :meth:`RelayStore.new_run`."""

    _tables = _RELAY_TABLES

    def __init__(
        self,
        store: RelayStore,
        run_id: str,
        workflow: str,
        run: _RelayedRun,
        *,
        index: _SharedIndex,
        resume: Trace | None = None,
    ) -> None:
        self.store = store
        self._run = run
        super().__init__(run_id, workflow, store.spill_threshold, index=index, resume=resume)

    def __repr__(self) -> str:
        return f"RelayRecorder({self.run_id!r}, events={self._next_seq})"

    def _write_blob(self, payload: bytes) -> str:
        digest = sha256_hex(payload)
        self._run.add_blob(digest, payload)
        return digest

    def _append(self, events: list[EncodedEvent]) -> None:
        self._run.add_lines([event.line for event in events])

    def _release(self) -> None:
        return None  # the index connection is the store's
