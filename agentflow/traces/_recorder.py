"""What every store's run recorder shares: the seq and hash chain, payload normalisation and spilling, the lazy run
summary, the run's index row and the finish/close lifecycle. Stores supply where an event line and a blob go."""

from __future__ import annotations

import abc
import asyncio
import json
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self, cast

from agentflow.errors import TraceError
from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import encode_event, encode_if_plain, normalise_json_value, sha256_hex
from agentflow.traces._payloads import EventData, RunFinishedData
from agentflow.traces._summary import RunSummary, SummaryBuilder

if TYPE_CHECKING:
    from agentflow.traces._protocol import Trace
    from agentflow.traces._tables import StoreTables

FINISHED_STATUSES = frozenset({"succeeded", "failed", "limit_exceeded", "errored", "cancelled", "imported"})
"""The statuses ``finish`` accepts (``running`` and ``interrupted`` are the store's to set)."""

# The events after which a store makes the trace durable (fsync for files): the end of a run and reported failures.
BOUNDARY_EVENTS = frozenset({EventType.RUN_FINISHED, EventType.ERROR})

# The events a recorder holding events (see `RecorderBase.hold_events`) still writes at once, with every event held
# before them: how a run starts or continues, how it ends, and reported failures.
WRITTEN_AT_ONCE = frozenset({EventType.RUN_STARTED, EventType.RUN_RESUMED, *BOUNDARY_EVENTS})

# How often a run in progress refreshes its index row (counts for `agentflow runs`), at most: a commit per node
# would cost more than the node's own bookkeeping.
INDEX_REFRESH_S = 1.0

# How many events wait, at most, to be added to the run's summary: adding them in batches keeps that work off each
# emit, and bounding the batch keeps a run's memory from growing with its events (they are dropped once summarised,
# and new ones reuse their memory: a writer holding all its events until the end spent a fifth of its time more).
SUMMARY_BATCH = 64

_second_prefix: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """ISO 8601 UTC with microseconds; formats the date part once per second (this runs for every event)."""
    global _second_prefix  # noqa: PLW0603 - a one-entry cache of the formatted second
    now_us = time.time_ns() // 1000
    second, micro = divmod(now_us, 1_000_000)
    if _second_prefix[0] != second:
        _second_prefix = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_prefix[1]}.{micro:06d}Z"


class EncodedEvent(NamedTuple):
    """One event as a store writes it: its trace line and the columns a store indexes it by."""

    seq: int
    type: EventType
    node: str | None
    hash: str
    line: bytes


class RecorderBase(abc.ABC):
    """Appends the events of one run; thread-safe: events from several threads get unique, increasing seqs.

    Each event is written as it is emitted, unless :meth:`hold_events` was called: then events wait in memory until
    :meth:`flush` (or an event of ``WRITTEN_AT_ONCE``, :meth:`finish`, :meth:`close`) writes them all in one write.

    Use it as a context manager, or call :meth:`finish` and then :meth:`close`.
    """

    # Whether normalising a payload must hold the recorder's lock (a store whose blob writes share the recorder's
    # one database connection).
    spill_under_lock = False

    # Whether :meth:`hold_events` holds events (a store may promise every event durable as it is emitted).
    _may_hold = True

    dropped_partial_line: dict[str, Any] | None = None
    """The blob reference of a partial last line cut off when the run was reopened (a store writing lines to a file)."""

    _tables: ClassVar[StoreTables]
    """The runs index's statements, in the store's paramstyle."""

    def __init__(self, run_id: str, workflow: str, spill_threshold: int, *, index: Any, resume: Trace | None) -> None:
        """Index the run as ``running``: a new run, or ``resume``, the trace of an unfinished one it continues.

        Args:
            run_id: the run's id.
            workflow: the workflow's name.
            spill_threshold: payload strings larger than this many UTF-8 bytes go to a blob.
            index: the recorder's own DB-API connection to the runs index (the recorder's ``_release`` closes it).
            resume: the verified trace to continue after its last event.
        """
        self.run_id = run_id
        self.workflow = workflow
        self._spill_threshold = spill_threshold
        self._index_connection = index
        self._lock = threading.Lock()
        self._next_seq = 0
        self._last_hash: str | None = None
        self._summary = SummaryBuilder()
        # Events wait here until a summary is needed (index refresh, finish): summarising is not on emit's hot path.
        self._unsummarized: list[Event] = []
        self._started = time.monotonic()
        self._index_refreshed = time.monotonic()
        self._finishing = False
        self._finished = False
        self._closed = False
        # The events emitted and not yet written (None: each event is written as it is emitted).
        self._held: list[EncodedEvent] | None = None
        self._write_failure: str | None = None  # why writing held events failed: the trace ends before them
        self._hash_before_held: str | None = None  # the hash the first held event follows
        if resume is None:
            self._tables.insert_running(index, run_id, workflow)
            return
        if resume.events:
            self._next_seq = resume.events[-1].seq + 1
            self._last_hash = resume.events[-1].hash
        self._unsummarized.extend(resume.events)
        self._tables.mark_running_again(index, run_id)

    # -- what a store supplies ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _write_blob(self, payload: bytes) -> str:
        """Store a spilled payload content-addressed; return its sha256."""

    @abc.abstractmethod
    def _append(self, events: list[EncodedEvent]) -> None:
        """Write encoded events, in seq order, in one write (a file) or transaction (a database), and make them
        durable as the store promises; all of them or, on failure, none that a reader would take as complete.
        Called under the lock."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Close files and connections, the index connection too (called once, under the lock)."""

    # -- shared -------------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` has recorded ``run_finished``."""
        return self._finished

    def hold_events(self) -> None:
        """From now on keep emitted events in memory until :meth:`flush`, instead of one write per event.

        For a caller that knows its external effects (the runtime: model calls, sandbox commands, reward hooks,
        the end of each node) and calls :meth:`flush` before each, so that a process killed at any point loses
        only events that nothing outside the process followed. ``run_started``, ``run_resumed``, ``error`` and
        ``run_finished`` are still written at once, with everything held before them, as are :meth:`finish` and
        :meth:`close`. The events returned by :meth:`emit` are the same (seq, hash chain), written or not.
        """
        with self._lock:
            if self._held is None and self._may_hold:
                self._held = []

    def flush(self) -> None:
        """Write the events held since the last write, in one write (nothing to do when none are held).

        Raises:
            TraceError: the store cannot be written (the trace then ends before the held events, and every later
                emit raises too).
        """
        with self._lock:
            self._write_held()

    def _write_held(self) -> None:
        # Called under the lock.
        held = self._held
        if not held:
            return
        self._held = []
        try:
            self._append(held)
        except BaseException as exc:
            # The trace ends before these events (an interruption, a signal or a cancelled thread, may have stored
            # them or not: they are no longer held, and writing later ones could leave a gap in the chain), and the
            # index records the trace as it is without them.
            self._write_failure = (
                str(exc)
                if isinstance(exc, TraceError)
                else f"writing events {held[0].seq}-{held[-1].seq} was interrupted ({type(exc).__name__})"
            )
            self._next_seq, self._last_hash = held[0].seq, self._hash_before_held
            raise

    def _spill(self, text: str) -> Any:
        # A str of n characters has between n and 4n UTF-8 bytes: only measure the ones that could be over.
        if len(text) * 4 <= self._spill_threshold:
            return text
        payload = text.encode("utf-8")
        if len(payload) <= self._spill_threshold:
            return text
        return {"$blob": self._write_blob(payload), "size": len(payload)}

    def emit(
        self,
        type: EventType | str,  # named like the Event field it fills; shadows the builtin only in this method
        *,
        node: str | None = None,
        parent: int | None = None,
        data: EventData | None = None,
    ) -> Event:
        """Append one event to the trace and return it (with its seq, timestamp and hashes).

        ``data`` is normalised to JSON (see :func:`agentflow.traces.to_json_value`) and large strings are spilled
        to blobs before hashing, so the returned event's ``data`` is what the trace holds. When ``data`` is already
        plain JSON the event keeps that very dict: do not change it after emitting.

        Raises:
            TraceError: the recorder is closed, ``data`` holds a value that cannot be recorded, ``parent`` names no
                earlier event, or the store cannot be written.
        """
        if type.__class__ is EventType:
            event_type = type
        else:
            try:
                event_type = EventType(type)
            except ValueError:
                raise TraceError(f"unknown event type {type!r}; use an EventType") from None
        payload: dict[str, Any] = {}
        plain = True
        encoded: str | None = "{}"
        if data:
            if not isinstance(data, dict):
                raise TraceError(f"event data must be a dict, got {data.__class__.__name__}")
            given = cast(dict[str, Any], data)  # the typed data is a plain dict at run time
            payload, plain, encoded = self._normalise(given)
        if node is not None and not isinstance(node, str):
            raise TraceError(f"event node must be a str, got {node.__class__.__name__}")
        with self._lock:
            if self._closed:
                raise TraceError(f"run {self.run_id} is closed; no more events can be recorded")
            if self._write_failure is not None:
                raise TraceError(f"run {self.run_id} cannot record more events: {self._write_failure}")
            seq = self._next_seq
            if parent is not None and not 0 <= parent < seq:
                raise TraceError(f"parent {parent} of a {event_type} event is not an earlier event's seq")
            ts = utc_now()
            digest, line = encode_event(
                run_id=self.run_id,
                seq=seq,
                event_type=str(event_type),
                ts=ts,
                node=node,
                parent=parent,
                data=payload,
                prev_hash=self._last_hash,
                plain=plain,
                encoded=encoded,
            )
            encoded_event = EncodedEvent(seq, event_type, node, digest, line)
            self._hold_or_write(encoded_event)
            event = Event.trusted(
                run_id=self.run_id,
                seq=seq,
                type=event_type,
                ts=ts,
                node=node,
                parent=parent,
                data=payload,
                prev_hash=self._last_hash,
                hash=digest,
            )
            self._next_seq = seq + 1
            self._last_hash = digest
            unsummarized = self._unsummarized
            unsummarized.append(event)
            if len(unsummarized) >= SUMMARY_BATCH:
                self._catch_up_summary()
            if event_type is EventType.NODE_FINISHED and time.monotonic() - self._index_refreshed >= INDEX_REFRESH_S:
                self._update_index("running")  # keeps `agentflow runs` current for a run in progress
        return event

    def append_encoded(self, lines: bytes, blobs: Mapping[str, bytes] | None = None) -> list[Event]:
        """Append events of this run that a recorder elsewhere encoded and hashed (a process recording the run on
        this store's behalf, such as a Ray bench worker over a :class:`~agentflow.traces.RelayStore`): each line is
        written as it is, with its timestamp and hash; ``blobs`` (digest to payload) are the spilled payloads they
        refer to, stored first.

        The lines must continue this trace: this run's id, the next seq, ``prev_hash`` the hash of the event before.
        Each is parsed, for the run's summary and index row, but not hashed again: loading the trace verifies every
        hash, as it does for events emitted here. Events held here (:meth:`hold_events`) are written first, and a
        ``run_finished`` line finishes the run as :meth:`finish` does.

        Args:
            lines: the events' trace lines, each ending in a newline.
            blobs: the payloads the lines spilled, by sha256 (each checked against its digest).

        Returns:
            The events appended.

        Raises:
            TraceError: the recorder is closed or the run finished, a line is not an event continuing the trace, a
                blob does not match its digest, or the store cannot be written.
        """
        if lines and not lines.endswith(b"\n"):
            raise TraceError(f"the lines given for run {self.run_id} do not end with a newline")
        raw_lines = lines.splitlines(keepends=True)
        try:
            stored_events = [json.loads(line) for line in raw_lines]
        except ValueError as exc:
            raise TraceError(f"the lines given for run {self.run_id} are not JSON: {exc}") from None
        with self._lock:
            if self._closed or self._finishing:
                state = "closed" if self._closed else "finished"
                raise TraceError(f"run {self.run_id} is {state}; no more events can be recorded")
            if self._write_failure is not None:
                raise TraceError(f"run {self.run_id} cannot record more events: {self._write_failure}")
            events = self._continuing(stored_events)
            for digest, payload in (blobs or {}).items():
                if sha256_hex(payload) != digest:
                    raise TraceError(f"the blob given as {digest} for run {self.run_id} does not match its digest")
                self._write_blob(payload)
            self._write_held()
            if not events:
                return []
            try:
                self._append(
                    [
                        EncodedEvent(event.seq, event.type, event.node, event.hash, line)
                        for event, line in zip(events, raw_lines, strict=True)
                    ]
                )
            except TraceError as exc:
                self._write_failure = str(exc)
                raise
            self._next_seq = events[-1].seq + 1
            self._last_hash = events[-1].hash
            self._unsummarized.extend(events)
            last = events[-1]
            if last.type is EventType.RUN_FINISHED:
                self._finishing = self._finished = True
                self._update_index(str(last.data["status"]))
            elif time.monotonic() - self._index_refreshed >= INDEX_REFRESH_S:
                self._update_index("running")
        return events

    def _continuing(self, stored_events: list[Any]) -> list[Event]:
        """The parsed lines as events, checked to continue the trace (called under the lock)."""
        events: list[Event] = []
        seq, last_hash = self._next_seq, self._last_hash
        for stored in stored_events:
            try:
                if not isinstance(stored["data"], dict):
                    raise TypeError("data is not an object")
                event = Event.trusted(
                    run_id=stored["run_id"],
                    seq=stored["seq"],
                    type=EventType(stored["type"]),
                    ts=stored["ts"],
                    node=stored["node"],
                    parent=stored["parent"],
                    data=stored["data"],
                    prev_hash=stored["prev_hash"],
                    hash=stored["hash"],
                )
            except (KeyError, TypeError, ValueError):
                raise TraceError(f"line {len(events) + 1} given for run {self.run_id} is not an event") from None
            if event.run_id != self.run_id or event.seq != seq or event.prev_hash != last_hash:
                raise TraceError(
                    f"event {event.run_id}#{event.seq} does not continue run {self.run_id} (next seq {seq}, "
                    f"after hash {str(last_hash)[:12]})"
                )
            if events and events[-1].type is EventType.RUN_FINISHED:
                raise TraceError(f"event {event.seq} of run {self.run_id} follows its run_finished")
            if event.type is EventType.RUN_FINISHED and event.data.get("status") not in FINISHED_STATUSES:
                raise TraceError(
                    f"run_finished of run {self.run_id} has an unknown status {event.data.get('status')!r}"
                )
            events.append(event)
            seq, last_hash = seq + 1, event.hash
        return events

    def _normalise(self, given: dict[str, Any]) -> tuple[dict[str, Any], bool, str | None]:
        """The event's data as the trace holds it, whether it is plain, and its JSON if the encoder vouched for it."""
        encoded = encode_if_plain(given, self._spill_threshold)
        if encoded is not None:
            # Already plain JSON, with nothing to spill (so no lock: spilling is what may need it): the event holds
            # the caller's dict itself, so emitters must not change `data` after emitting (the runtime builds a
            # fresh dict per event). The stored line is fixed.
            return given, True, encoded
        if self.spill_under_lock:
            with self._lock:
                payload, plain = normalise_json_value(given, self._spill)
        else:
            payload, plain = normalise_json_value(given, self._spill)
        return payload, plain, None

    def _hold_or_write(self, event: EncodedEvent) -> None:
        # Called under the lock.
        held = self._held
        if held is None:
            self._append([event])
            return
        if not held:
            self._hash_before_held = self._last_hash
        held.append(event)
        if event.type in WRITTEN_AT_ONCE:
            self._write_held()

    def _catch_up_summary(self) -> SummaryBuilder:
        for event in self._unsummarized:
            self._summary.add(event)
        self._unsummarized.clear()
        return self._summary

    def _update_index(self, status: str) -> None:
        # Called under the lock: the index connection is the recorder's own. The index never counts an event
        # that the trace does not hold yet.
        self._write_held()
        self._index_refreshed = time.monotonic()
        self._tables.write_counts(
            self._index_connection,
            self.run_id,
            status=status,
            summary=self._catch_up_summary().build(snapshot=False),
            events=self._next_seq,
            last_hash=self._last_hash,
        )

    def summary(self) -> RunSummary:
        """Summarise the events recorded so far (without re-reading the trace)."""
        with self._lock:
            return self._catch_up_summary().build()

    def finish(self, status: str, **data: Any) -> Event:
        """Record ``run_finished`` and store the run's final counts in the index.

        Args:
            status: ``succeeded``, ``failed``, ``limit_exceeded``, ``errored``, ``cancelled`` (or ``imported``).
            **data: the rest of the event's data (``final_state``, ``error``, ...); ``duration_s`` defaults to the
                time since the run was created.

        Raises:
            TraceError: the run is already finished or closed, or ``status`` is not one of the above.
        """
        if status not in FINISHED_STATUSES:
            raise TraceError(f"unknown run status {status!r}; use one of {', '.join(sorted(FINISHED_STATUSES))}")
        with self._lock:
            # Claimed under the lock so two threads cannot both record run_finished.
            if self._finishing:
                raise TraceError(f"run {self.run_id} is already finished")
            self._finishing = True
        data.setdefault("duration_s", round(time.monotonic() - self._started, 6))
        data.setdefault("error", None)
        try:
            # the keyword arguments are the rest of RunFinishedData (untyped: a caller may record keys of its own)
            event = self.emit(EventType.RUN_FINISHED, data=cast(RunFinishedData, {"status": status, **data}))
        except BaseException:
            self._finishing = False
            raise
        with self._lock:
            self._finished = True
            self._update_index(status)
        return event

    def close(self) -> None:
        """Stop recording; a run closed without :meth:`finish` is marked ``interrupted`` in the index."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                try:
                    self._write_held()
                finally:  # a run whose last events could not be written is still no longer running
                    if not self._finished:
                        self._update_index("interrupted")
            finally:
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if exc is not None and not self._finished and not self._closed:
                status = "cancelled" if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError) else "failed"
                self.finish(status, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.close()
