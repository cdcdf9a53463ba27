"""The Store contract every trace store keeps, and the records it exchanges (runs, traces, rewards, passes).

Two stores implement it over the shared logic of ``StoreBase`` (``_base.py``), and pass the same conformance suite
(``tests/traces/test_store_conformance.py``):

- :class:`~agentflow.traces.TraceStore`, the embedded default: JSONL traces and blob files under a folder, with a
  SQLite index (WAL) for runs, grading passes, rewards and realized graphs;
- :class:`~agentflow.traces.PostgresStore` (``postgresql://...``, the ``postgres`` extra): everything in one
  PostgreSQL database through psycopg 3.

Events are identical in both: the same fields, the same hashes, verified the same way on load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from agentflow.errors import TraceError
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import EventData
from agentflow.traces._summary import RunSummary, summarize

if TYPE_CHECKING:
    from agentflow.traces._verify import TraceVerification

GradingMode = Literal["append", "overwrite"]
LIVE_REWARDS = "live"
"""The ``pass_id`` of the rewards a run's hooks gave while it ran (they live in the trace, not in a grading pass)."""


@runtime_checkable
class Recorder(Protocol):
    """Appends the events of one run (see :class:`~agentflow.traces.RunRecorder` for the semantics)."""

    run_id: str

    @property
    def finished(self) -> bool:
        """Whether ``run_finished`` was recorded."""
        ...

    def emit(
        self,
        type: EventType | str,
        *,
        node: str | None = None,
        parent: int | None = None,
        data: EventData | None = None,
    ) -> Event:
        """Append one event and return it with its seq, timestamp and hashes.

        ``data`` is the event type's data (``DATA_TYPES``), built by name: ``ToolResultData(tool=..., ok=...)``.
        """
        ...

    def append_encoded(self, lines: bytes, blobs: Mapping[str, bytes] | None = None) -> list[Event]:
        """Append this run's events as another recorder of it encoded them, verbatim (see ``RunRecorder``)."""
        ...

    def hold_events(self) -> None:
        """Keep emitted events in memory until :meth:`flush` instead of writing each (see ``RunRecorder``)."""
        ...

    def flush(self) -> None:
        """Write the events held since the last write (before an external effect: what preceded it stays)."""
        ...

    def finish(self, status: str, **data: Any) -> Event:
        """Record ``run_finished`` with ``status`` and the run's final counts."""
        ...

    def summary(self) -> RunSummary:
        """Summarise the events recorded so far."""
        ...

    def close(self) -> None:
        """Stop recording; a run closed without finishing is ``interrupted``."""
        ...

    def __enter__(self) -> Recorder: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class StoredReward:
    """One reward of a run: given while it ran (``pass_id`` ``live``, read from the trace) or by a grading pass.

    A live run-level aggregate has ``value`` None and its figures under ``components["aggregate"]``.
    """

    pass_id: str
    run_id: str
    hook: str
    kind: str
    node: str | None
    target_seq: int | None
    value: float | None
    label: int | None
    explanation: str = ""
    components: dict[str, Any] = field(default_factory=lambda: {})
    superseded_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the reward as JSON-serialisable data."""
        return asdict(self)


@dataclass(frozen=True)
class GradingPass:
    """One offline grading of some runs: its own id, so new rewards never silently replace old ones."""

    pass_id: str
    created_at: str
    mode: GradingMode
    hooks: list[str]
    checkpoints: str | None
    run_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the pass as JSON-serialisable data."""
        return asdict(self)


@dataclass(frozen=True)
class BenchRunInfo:
    """One benchmark run: its id, the benchmark's name, and what it was run with (``config``: the benchmark file,
    workflow and its template hash, model, sandbox, epochs, seed, agentflow version, the task ids)."""

    bench_run_id: str
    name: str
    created_at: str
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the bench run as JSON-serialisable data."""
        return asdict(self)


@dataclass(frozen=True)
class BenchItem:
    """One attempt at one (task, epoch) pair of a benchmark run: the run it made and how it ended.

    ``status`` is ``running`` until the run ends, then the run's status; ``outcome`` is the value of the benchmark's
    outcome reward (None when the run was not scored, e.g. it errored). Errored attempts are retried as new attempts.
    """

    bench_run_id: str
    task_id: str
    epoch: int
    attempt: int
    run_id: str
    seed: int | None
    status: str
    outcome: float | None
    started_at: str
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the item as JSON-serialisable data."""
        return asdict(self)


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
    # In the order of the index's columns (rows are read positionally). Indexed from migration 6 on (None for runs
    # the index recorded before it, and for a run still going):
    reward_min: float | None = None  # the lowest reward of the run
    first_error_seq: int | None = None  # the seq of its first error event or reward labelled -1
    final_answer: str | None = None  # the text of its last model answer that called no tool (first 2,000 chars)
    # From migration 7 on:
    forked_from: str | None = None  # the run this one was forked from (``agentflow fork``)
    fork_group: str | None = None  # the group of continuations of one fork this run belongs to
    # From migration 8 on (see RunSummary.outcome and .cost):
    outcome: float | None = None  # the value of its outcome hook's run-level reward
    cost: float | None = None  # dollars of its model calls at a benchmark's prices (None: no priced model answered)

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON-serialisable data."""
        return asdict(self)


@dataclass(frozen=True)
class TraceProblem:
    """Something wrong in a stored trace, found by :meth:`Store.load_trace`.

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

    def resolved_events(self) -> list[Event]:
        """The events with every spilled payload read back from its blob (what a re-execution serves from)."""
        return [self._resolved(event) for event in self.events]

    def _resolved(self, event: Event) -> Event:
        if "$blob" not in json.dumps(event.data):
            return event
        return event.model_copy(update={"data": self.resolve(event.data)})

    def summary(self) -> RunSummary:
        """Summarise the run (see :func:`agentflow.traces.summarize`)."""
        return summarize(self.events)


@runtime_checkable
class TraceFollower(Protocol):
    """A run's trace read as it grows (:meth:`Store.follow_trace`)."""

    @property
    def problems(self) -> list[TraceProblem]:
        """What failed verification in the events read so far (line numbers and seqs as in the whole trace)."""
        ...

    @property
    def finished(self) -> bool:
        """Whether the last event read is ``run_finished``."""
        ...

    def poll(self) -> list[Event]:
        """The events appended since the last poll (complete lines only), verified against the chain so far."""
        ...


class Store(Protocol):
    """Append events, list runs, load traces, and keep grading passes and realized graphs."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a folder, or a URL without its password)."""
        ...

    def new_run(self, *, workflow: str, run_id: str | None = None) -> Recorder:
        """Start recording a run, indexed as ``running``."""
        ...

    def reopen_run(self, run_id: str) -> Recorder:
        """Continue recording an unfinished run whose process is gone (``agentflow resume``)."""
        ...

    def list_runs(
        self,
        limit: int = 50,
        status: str | None = None,
        *,
        fork_group: str | None = None,
        forked_from: str | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first (only a fork group's, or the continuations of one run, when asked)."""
        ...

    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""
        ...

    def latest_run_id(self) -> str | None:
        """The most recently started run's id."""
        ...

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of a run named by its id or a unique prefix."""
        ...

    def load_trace(self, run_id: str) -> Trace:
        """Load and verify one run's events."""
        ...

    def follow_trace(self, run_id: str) -> TraceFollower:
        """Read one run's events as they are appended (a run still going), each verified as it arrives."""
        ...

    def verify_in_steps(self, run_id: str) -> TraceVerification:
        """Read one run's trace to verify it a part at a time (``load_trace`` in steps)."""
        ...

    def run_info(self, run_id: str) -> RunInfo | None:
        """The index's row of one run (by its full id), or None."""
        ...

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a spilled payload, checked against its digest."""
        ...

    def resolve_blobs(self, obj: Any) -> Any:
        """``obj`` with every blob reference replaced by its text."""
        ...

    def create_grading_pass(
        self, *, run_ids: Sequence[str], hooks: Sequence[str], checkpoints: str | None, mode: GradingMode
    ) -> GradingPass:
        """Open a new grading pass over ``run_ids``."""
        ...

    def add_rewards(self, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        """Store the rewards of a pass; in ``overwrite`` mode, mark older rewards of the same runs and hooks
        superseded (kept, never deleted)."""
        ...

    def list_rewards(
        self, run_id: str, *, pass_id: str | None = None, include_superseded: bool = False
    ) -> list[StoredReward]:
        """The rewards of one run: the live ones (``pass_id`` ``live``, in trace order), then each grading pass's.

        ``pass_id`` selects one pass (``live`` for the live rewards only). A live reward is superseded by the first
        ``overwrite`` pass over the run that graded the same hook; superseded rewards are left out unless
        ``include_superseded``.
        """
        ...

    def list_grading_passes(self) -> list[GradingPass]:
        """Every grading pass, oldest first."""
        ...

    def save_realized_graph(self, run_id: str, graph: dict[str, Any]) -> None:
        """Keep the realized graph of a run (replacing an earlier one)."""
        ...

    def load_realized_graph(self, run_id: str) -> dict[str, Any] | None:
        """The stored realized graph of a run, if one was saved."""
        ...

    def create_bench_run(self, *, name: str, config: dict[str, Any]) -> BenchRunInfo:
        """Record a new benchmark run and return it (with a fresh id)."""
        ...

    def list_bench_runs(self) -> list[BenchRunInfo]:
        """Every benchmark run, newest first."""
        ...

    def get_bench_run(self, bench_run_id: str) -> BenchRunInfo:
        """A benchmark run named by its id or a unique prefix."""
        ...

    def start_bench_item(self, item: BenchItem) -> None:
        """Record an attempt at a (task, epoch) pair as it starts."""
        ...

    def finish_bench_item(self, item: BenchItem) -> None:
        """Record how an attempt ended (its ``status``, ``outcome`` and ``finished_at``)."""
        ...

    def list_bench_items(self, bench_run_id: str) -> list[BenchItem]:
        """Every attempt of a benchmark run, by task, epoch and attempt."""
        ...

    def close(self) -> None:
        """Release what the store holds open (a database connection); its recorders keep their own."""
        ...
