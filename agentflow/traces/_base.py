"""The one store base: everything a trace store does, over a few hooks saying where rows, lines and blobs go.

:class:`StoreBase` implements the whole :class:`~agentflow.traces.Store` contract: the run-id retry loop and
checks, run-id resolution with its hints, loading and verifying traces (against the index too), reopening an
unfinished run, marking runs whose process died, blob verification and resolution, grading passes, rewards and
realized graphs. A store subclass says only:

- where the runs index and grading tables are (``_connection``, ``_transaction`` and ``_tables``, the statements in
  its paramstyle);
- how a run starts or continues recording (``_start_run``, ``_continue_run``: its recorder, a
  :class:`~agentflow.traces._recorder.RecorderBase`);
- where a run's lines and blobs are (``run_ids``, ``_has_run``, ``_run_ids_starting``, ``_read_trace``,
  ``_trace_path``, ``_fetch_blob``);
- what it holds open (``close``).
"""

from __future__ import annotations

import abc
import difflib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from agentflow._processes import pid_alive
from agentflow.errors import ConfigError, TraceError
from agentflow.traces._bench_tables import BenchTables
from agentflow.traces._events import Event, EventType
from agentflow.traces._protocol import (
    LIVE_REWARDS,
    BenchItem,
    BenchRunInfo,
    GradingMode,
    GradingPass,
    RunInfo,
    StoredReward,
    Trace,
    TraceProblem,
)
from agentflow.traces._qtable_tables import QTableChange, QTableEpisode, QTableTables, StoredQTable
from agentflow.traces._recorder import RecorderBase
from agentflow.traces._tables import IndexRow, StoreTables, live_rewards
from agentflow.traces._verify import TraceVerification, parse_and_verify

__all__ = ["DEFAULT_SPILL_THRESHOLD", "RunFollower", "StoreBase", "check_reopenable", "check_run_id"]

DEFAULT_SPILL_THRESHOLD = 64 * 1024
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_NEW_RUN_ATTEMPTS = 100

RecorderT = TypeVar("RecorderT", bound=RecorderBase)


class StoreBase(abc.ABC, Generic[RecorderT]):
    """A trace store: the shared logic of the :class:`~agentflow.traces.Store` contract over a store's hooks.

    Use it as a context manager, or call :meth:`close` when done.
    """

    _tables: ClassVar[StoreTables]
    """The statements over the runs index and grading tables, in the store's paramstyle."""

    # -- what a store supplies ----------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a folder, or a URL without its password)."""

    @abc.abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """A DB-API connection to the runs index and grading tables, each statement committed (for one read or
        one single-statement write)."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A DB-API connection inside a transaction, committed when the block ends (rolled back on an error)."""

    def _has_index(self) -> bool:
        """Whether the runs index exists yet (reading a store must not create it)."""
        return True

    @abc.abstractmethod
    def _start_run(self, run_id: str, workflow: str) -> RecorderT | None:
        """Claim ``run_id`` and return its recorder (which indexes it as ``running``), or None if it is taken."""

    @abc.abstractmethod
    def _continue_run(self, trace: Trace, workflow: str) -> RecorderT:
        """The recorder of an unfinished run, after the last complete event of its verified ``trace``."""

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""

    @abc.abstractmethod
    def _has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id has a trace."""

    @abc.abstractmethod
    def _run_ids_starting(self, prefix: str) -> list[str]:
        """The ids of the runs with a trace whose id starts with ``prefix``, sorted."""

    @abc.abstractmethod
    def _read_trace(self, run_id: str) -> bytes:
        """The stored JSONL lines of one run's events, in seq order (raises TraceError when they cannot be read)."""

    def _read_trace_from(self, run_id: str, position: int) -> tuple[bytes, int]:
        """The complete lines of a run's trace from ``position`` on, and the position after them.

        A position is the store's own (here: a byte offset into the whole trace, which this default reads again;
        a store that can read from a position overrides it).
        """
        raw = self._read_trace(run_id)
        end = raw.rfind(b"\n") + 1
        return raw[position:end] if end > position else b"", max(end, position)

    @abc.abstractmethod
    def _trace_path(self, run_id: str) -> Path:
        """Where the run's trace is, for messages (a file, or a path-like name inside a database)."""

    @abc.abstractmethod
    def _fetch_blob(self, digest: str) -> bytes | None:
        """The stored bytes under a (valid) digest, unchecked, or None when there are none."""

    @property
    def _blobs_location(self) -> str:
        """Where blobs are, for messages."""
        return self.location

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the store holds open; its recorders keep their own files and connections."""

    # -- the contract ------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def new_run(self, *, workflow: str, run_id: str | None = None) -> RecorderT:
        """Start recording a run, indexed as ``running``.

        Args:
            workflow: the workflow's name, shown by ``agentflow runs``.
            run_id: a chosen id (letters, digits, ``.``, ``_``, ``-``); by default ``YYYYMMDD-HHMMSS-<8 hex>`` in
                UTC, which sorts by start time.

        Raises:
            ConfigError: ``run_id`` is not a valid run id.
            TraceError: a run with this id already exists.
        """
        for _ in range(_NEW_RUN_ATTEMPTS):
            candidate = run_id if run_id is not None else new_run_id()
            check_run_id(candidate)
            recorder = self._start_run(candidate, workflow)
            if recorder is not None:
                return recorder
            if run_id is not None:
                raise TraceError(f"run {run_id!r} already exists in {self.location}")
        raise TraceError(f"could not find a free run id in {self.location}")  # pragma: no cover (2**32 ids/s)

    def reopen_run(self, run_id: str) -> RecorderT:
        """Continue recording an unfinished run whose process is gone (``agentflow resume``): its next event
        follows its last one.

        Raises:
            TraceError: the run finished, its trace fails verification, or its process is still alive.
        """
        trace = self.load_trace(run_id)
        row = self._index_row(trace.run_id)
        owner = (None, None) if row is None else (row.host, row.pid)
        check_reopenable(trace, None if row is None else row.status, owner)
        return self._continue_run(trace, trace.summary().workflow or "unknown")

    def list_runs(
        self,
        limit: int = 50,
        status: str | None = None,
        *,
        fork_group: str | None = None,
        forked_from: str | None = None,
    ) -> list[RunInfo]:
        """Runs from the index, newest first.

        Runs still marked ``running`` whose process is gone (same host) are first marked ``interrupted``, with
        their counts taken from the trace.

        Args:
            limit: at most this many runs.
            status: only runs with this status (``running``, ``succeeded``, ``failed``, ``limit_exceeded``,
                ``errored``, ``cancelled``, ``interrupted``).
            fork_group: only the continuations of this fork group (``run_started.fork_group``).
            forked_from: only the runs forked from this run id (finished ones: the index learns it at the end).
        """
        if not self._has_index():
            return []
        self._mark_dead_runs_interrupted()
        with self._connection() as connection:
            return self._tables.list_runs(connection, limit, status, fork_group=fork_group, forked_from=forked_from)

    def _mark_dead_runs_interrupted(self) -> None:
        with self._connection() as connection:
            running = self._tables.running_here(connection)
        for run_id, pid in running:
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            try:
                trace = self.load_trace(run_id)
            except TraceError:
                continue
            with self._connection() as connection:
                self._tables.write_counts(
                    connection,
                    run_id,
                    status="interrupted",
                    summary=trace.summary(),
                    events=len(trace.events),
                    last_hash=trace.events[-1].hash if trace.events else None,
                )

    def latest_run_id(self) -> str | None:
        """The id of the most recently started run, or None when the store has none."""
        if self._has_index():
            with self._connection() as connection:
                found = self._tables.latest_run_id(connection)
            if found is not None:
                return found
        # No index row (the index was deleted, or a runs folder copied in): run ids sort by start time.
        names = self.run_ids()
        return names[-1] if names else None

    def _index_row(self, run_id: str) -> IndexRow | None:
        if not self._has_index():
            return None
        with self._connection() as connection:
            return self._tables.index_row(connection, run_id)

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run named by ``run_id`` or by a unique prefix of it.

        Raises:
            TraceError: no run matches (the message lists the closest ids), or the prefix is ambiguous.
        """
        if RUN_ID_PATTERN.match(run_id) and self._has_run(run_id):
            return run_id
        matches = self._run_ids_starting(run_id)
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
        """Load and verify the trace of one run.

        Every event's hash is recomputed and the ``prev_hash`` chain and ``seq`` order are checked, and a finished
        run's trace must end as the index recorded; what fails is reported in :attr:`Trace.problems` (with the
        line and seq) rather than raised, so a damaged trace can still be inspected. Call
        :meth:`Trace.raise_for_problems` to insist on an intact one.

        Args:
            run_id: the run's id, or a unique prefix of it.

        Raises:
            TraceError: no such run (the message lists the closest run ids), or its trace cannot be read.
        """
        return self.verify_in_steps(run_id).trace()

    def verify_in_steps(self, run_id: str) -> TraceVerification:
        """Read one run's trace, to be verified a part at a time: :meth:`load_trace` in steps
        (:meth:`TraceVerification.advance`), each step's events a verified prefix of the chain.

        Raises:
            TraceError: no such run, or its trace cannot be read.
        """
        full_id = self.resolve_run_id(run_id)
        # The index first: if it says the run finished, the trace read after it holds every event it recorded.
        indexed = self._index_row(full_id)
        finished_as = None if indexed is None or indexed.status == "running" else (indexed.events, indexed.last_hash)
        raw = self._read_trace(full_id)
        return TraceVerification(self, full_id, self._trace_path(full_id), raw, finished_as)

    def run_info(self, run_id: str) -> RunInfo | None:
        """The index's row of one run (by its full id), as :meth:`list_runs` lists it, or None when it has none."""
        if not self._has_index():
            return None
        with self._connection() as connection:
            return self._tables.run_info(connection, run_id)

    def follow_trace(self, run_id: str) -> RunFollower:
        """Read a run's trace as it grows: each :meth:`RunFollower.poll` returns the events appended since the
        last one, verified like :meth:`load_trace` verifies them (hash, chain, seq), reading only what is new.

        Raises:
            TraceError: no such run.
        """
        return RunFollower(self, self.resolve_run_id(run_id))

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a spilled payload, checked against its digest.

        Raises:
            TraceError: ``digest`` is not a sha256 hex digest, no blob has it, or the blob's content does not match.
        """
        check_digest(digest)
        payload = self._fetch_blob(digest)
        if payload is None:
            raise TraceError(f"blob {digest} is missing from {self._blobs_location}")
        if hashlib.sha256(payload).hexdigest() != digest:
            raise TraceError(f"blob {digest} was modified: its content no longer matches its sha256")
        return payload

    def resolve_blobs(self, obj: Any) -> Any:
        """``obj`` with every ``{"$blob": sha256, "size": n}`` replaced by the text it stands for.

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

    # -- grading -----------------------------------------------------------------------------------------------

    def create_grading_pass(
        self, *, run_ids: Sequence[str], hooks: Sequence[str], checkpoints: str | None, mode: GradingMode
    ) -> GradingPass:
        """Open a new grading pass over ``run_ids``."""
        with self._transaction() as connection:
            return self._tables.create_pass(
                connection, run_ids=run_ids, hooks=hooks, checkpoints=checkpoints, mode=mode
            )

    def add_rewards(self, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        """Store the rewards of a pass; in ``overwrite`` mode, mark older rewards of the same runs and hooks
        superseded (kept, never deleted)."""
        with self._transaction() as connection:
            self._tables.add_rewards(connection, grading_pass, rewards)

    def list_rewards(
        self, run_id: str, *, pass_id: str | None = None, include_superseded: bool = False
    ) -> list[StoredReward]:
        """The live rewards of one run, then its grading passes' rewards, oldest first (see :class:`Store`)."""
        graded: list[StoredReward] = []
        if pass_id != LIVE_REWARDS:
            with self._connection() as connection:
                graded = self._tables.list_rewards(
                    connection, run_id, pass_id=pass_id, include_superseded=include_superseded
                )
        if pass_id is not None and pass_id != LIVE_REWARDS:
            return graded
        live = live_rewards(self.load_trace(run_id).events, self.list_grading_passes())
        if not include_superseded:
            live = [reward for reward in live if reward.superseded_by is None]
        return live + graded

    def list_grading_passes(self) -> list[GradingPass]:
        """Every grading pass, oldest first."""
        with self._connection() as connection:
            return self._tables.list_passes(connection)

    def save_realized_graph(self, run_id: str, graph: dict[str, Any]) -> None:
        """Keep the realized graph of a run (replacing an earlier one)."""
        with self._transaction() as connection:
            self._tables.save_graph(connection, run_id, graph)

    def load_realized_graph(self, run_id: str) -> dict[str, Any] | None:
        """The stored realized graph of a run, or None."""
        with self._connection() as connection:
            return self._tables.load_graph(connection, run_id)

    # -- benchmark runs ----------------------------------------------------------------------------------------

    @property
    def _bench(self) -> BenchTables:
        return BenchTables(self._tables.placeholder)

    def create_bench_run(self, *, name: str, config: dict[str, Any]) -> BenchRunInfo:
        """Record a new benchmark run and return it (its id is a fresh run id, prefixed ``bench-``)."""
        with self._transaction() as connection:
            return self._bench.create_run(connection, f"bench-{new_run_id()}", name, config)

    def list_bench_runs(self) -> list[BenchRunInfo]:
        """Every benchmark run, newest first."""
        if not self._has_index():
            return []
        with self._connection() as connection:
            return self._bench.list_runs(connection)

    def get_bench_run(self, bench_run_id: str) -> BenchRunInfo:
        """A benchmark run named by its id or a unique prefix.

        Raises:
            TraceError: no benchmark run matches, or the prefix is ambiguous.
        """
        matches = []
        if self._has_index():
            with self._connection() as connection:
                matches = self._bench.list_runs(connection, like=bench_run_id)
        exact = [info for info in matches if info.bench_run_id == bench_run_id]
        if exact or len(matches) == 1:
            return (exact or matches)[0]
        if matches:
            shown = ", ".join(info.bench_run_id for info in matches[:5])
            raise TraceError(f"bench run id prefix {bench_run_id!r} is ambiguous in {self.location}: {shown}")
        latest = self.list_bench_runs()
        hint = f"; latest: {latest[0].bench_run_id}" if latest else "; `agentflow bench runs` lists them"
        raise TraceError(f"no bench run {bench_run_id!r} in {self.location}{hint}")

    def start_bench_item(self, item: BenchItem) -> None:
        """Record an attempt at a (task, epoch) pair as it starts."""
        with self._transaction() as connection:
            self._bench.start_item(connection, item)

    def finish_bench_item(self, item: BenchItem) -> None:
        """Record how an attempt ended (its ``status``, ``outcome`` and ``finished_at``)."""
        with self._transaction() as connection:
            self._bench.finish_item(connection, item)

    def list_bench_items(self, bench_run_id: str) -> list[BenchItem]:
        """Every attempt of a benchmark run, by task, epoch and attempt."""
        if not self._has_index():
            return []
        with self._connection() as connection:
            return self._bench.list_items(connection, bench_run_id)

    # -- learned Q-tables --------------------------------------------------------------------------------------

    @property
    def _qtables(self) -> QTableTables:
        return QTableTables(self._tables.placeholder)

    def load_qtable(self, workflow: str, router: str) -> StoredQTable | None:
        """The Q-table of a workflow's router, or None when it has learned nothing yet."""
        if not self._has_index():
            return None
        with self._connection() as connection:
            return self._qtables.load(connection, workflow, router)

    def list_qtables(self, workflow: str | None = None) -> list[StoredQTable]:
        """Every stored Q-table (of one workflow), without its values."""
        if not self._has_index():
            return []
        with self._connection() as connection:
            return self._qtables.list_tables(connection, workflow)

    def update_qtable(
        self, workflow: str, router: str, template_hash: str, change: Callable[[StoredQTable], QTableChange]
    ) -> StoredQTable:
        """Apply ``change`` to the table as it is now, in one locked transaction (no update of a concurrent run is
        lost), and store the change with its episode.

        Raises:
            ConfigError: the table was learned on another template hash.
        """
        with self._transaction() as connection:
            return self._qtables.update(connection, workflow, router, template_hash, change)

    def qtable_episodes(self, workflow: str, router: str) -> list[QTableEpisode]:
        """The episodes a table learned from, oldest first (its full history)."""
        if not self._has_index():
            return []
        with self._connection() as connection:
            return self._qtables.episodes(connection, workflow, router)

    def reset_qtable(self, workflow: str, router: str | None = None) -> int:
        """Forget the table of one router (or of every router of the workflow); the number of tables removed."""
        with self._transaction() as connection:
            return self._qtables.reset(connection, workflow, router)

    def migrate_qtable(
        self, workflow: str, router: str, template_hash: str, keep: Callable[[str, str], bool]
    ) -> tuple[int, int]:
        """Move a table to a new template hash, keeping the (state, action) values ``keep`` accepts."""
        with self._transaction() as connection:
            return self._qtables.migrate(connection, workflow, router, template_hash, keep)


class RunFollower:
    """A run's trace read incrementally (:meth:`StoreBase.follow_trace`): the viewer's live tail."""

    def __init__(self, store: StoreBase[Any], run_id: str) -> None:
        self._store = store
        self.run_id = run_id
        self._position = 0
        self._next_line = 1
        self._last: Event | None = None
        self._problems: list[TraceProblem] = []

    @property
    def problems(self) -> list[TraceProblem]:
        return list(self._problems)

    @property
    def finished(self) -> bool:
        return self._last is not None and self._last.type is EventType.RUN_FINISHED

    def poll(self) -> list[Event]:
        """The events appended since the last poll; a line still being written waits for the next poll."""
        raw, self._position = self._store._read_trace_from(self.run_id, self._position)
        if not raw:
            return []
        events, problems = parse_and_verify(raw, self.run_id, after=self._last, first_line=self._next_line)
        self._next_line += raw.count(b"\n")
        self._problems.extend(problems)
        if events:
            self._last = events[-1]
        return events


def new_run_id() -> str:
    """A fresh run id: ``YYYYMMDD-HHMMSS-<8 hex>`` in UTC."""
    # Second-resolution time first so ids sort by start time; 32 random bits keep concurrent starts apart.
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def check_run_id(run_id: str) -> None:
    """Refuse a run id that is not up to 128 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit.

    Raises:
        ConfigError: the id is not valid.
    """
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError(
            f"invalid run id {run_id!r}",
            fix="use up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def check_digest(digest: str) -> None:
    """Refuse a blob digest that is not 64 lowercase hex digits.

    Raises:
        TraceError: the digest is not valid.
    """
    if not DIGEST_PATTERN.match(digest):
        raise TraceError(f"not a blob digest (64 lowercase hex digits): {digest!r}")


def check_reopenable(trace: Trace, status: str | None, owner: tuple[str | None, int | None]) -> None:
    """Refuse to continue a run that finished, whose trace fails verification, or whose process still runs.

    A partial last line (``truncated``) is the one problem allowed: it is what a killed writer leaves.

    Raises:
        TraceError: the run cannot be continued (the message says why).
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
