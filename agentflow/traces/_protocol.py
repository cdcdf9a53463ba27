"""The Store contract every trace store keeps, the records grading adds, and ``open_store``.

Two stores implement it and pass the same conformance suite (``tests/traces/test_store_conformance.py``):

- :class:`~agentflow.traces.TraceStore`, the embedded default: JSONL traces and blob files under a folder, with a
  SQLite index (WAL) for runs, grading passes, rewards and realized graphs;
- :class:`~agentflow.traces.PostgresStore` (``postgresql://...``, the ``postgres`` extra): everything in one
  PostgreSQL database through psycopg 3.

Events are identical in both: the same fields, the same hashes, verified the same way on load.
"""

from __future__ import annotations

import abc
import contextlib
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from agentflow.traces._events import Event, EventType

if TYPE_CHECKING:
    from agentflow.traces._store import RunInfo, Trace
    from agentflow.traces._summary import RunSummary

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
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append one event and return it with its seq, timestamp and hashes."""
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


@runtime_checkable
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

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunInfo]:
        """Runs, newest first."""
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


def new_pass_id() -> str:
    """A grading pass id: ``gp-YYYYMMDD-HHMMSS-<8 hex>`` (sorts by creation time)."""
    return f"gp-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_postgres_url(location: str | Path) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a folder."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(location: str | Path) -> Store:
    """Open the store a ``--store`` value names: a folder (the embedded store) or a ``postgresql://`` URL.

    Raises:
        MissingExtraError: a PostgreSQL URL without the ``postgres`` extra installed.
        TraceError: the PostgreSQL server cannot be reached (the message names the URL without its password).
    """
    if is_postgres_url(location):
        from agentflow.traces._postgres import PostgresStore

        return PostgresStore(str(location))
    from agentflow.traces._store import TraceStore

    return TraceStore(Path(location))


class GradingTables:
    """The grading-pass, reward and realized-graph tables, shared by both stores (same SQL, two paramstyles).

    Args:
        connect: a context manager factory yielding a DB-API connection; each call is one unit of work.
        placeholder: the driver's parameter marker (``?`` for sqlite3, ``%s`` for psycopg).
    """

    def __init__(self, connect: Callable[[], contextlib.AbstractContextManager[Any]], placeholder: str) -> None:
        self._connect = connect
        self._p = placeholder

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._p)

    def create_pass(
        self, *, run_ids: Sequence[str], hooks: Sequence[str], checkpoints: str | None, mode: GradingMode
    ) -> GradingPass:
        grading_pass = GradingPass(new_pass_id(), utc_now_iso(), mode, list(hooks), checkpoints, list(run_ids))
        with self._connect() as connection:
            connection.execute(
                self._sql(
                    "INSERT INTO grading_passes (pass_id, created_at, mode, hooks, checkpoints, run_ids)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    grading_pass.pass_id,
                    grading_pass.created_at,
                    mode,
                    json.dumps(grading_pass.hooks),
                    checkpoints,
                    json.dumps(grading_pass.run_ids),
                ),
            )
        return grading_pass

    def add_rewards(self, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        with self._connect() as connection:
            if grading_pass.mode == "overwrite":
                run_ids = sorted({reward.run_id for reward in rewards} | set(grading_pass.run_ids))
                hooks = sorted({reward.hook for reward in rewards} | set(grading_pass.hooks))
                for run_id in run_ids:
                    for hook in hooks:
                        connection.execute(
                            self._sql(
                                "UPDATE rewards SET superseded_by = ? WHERE run_id = ? AND hook = ?"
                                " AND pass_id <> ? AND superseded_by IS NULL"
                            ),
                            (grading_pass.pass_id, run_id, hook, grading_pass.pass_id),
                        )
            statement = self._sql(
                "INSERT INTO rewards (pass_id, run_id, hook, kind, node, target_seq, value, label, explanation,"
                " components) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )
            for reward in rewards:
                connection.execute(
                    statement,
                    (
                        grading_pass.pass_id,
                        reward.run_id,
                        reward.hook,
                        reward.kind,
                        reward.node,
                        reward.target_seq,
                        reward.value,
                        reward.label,
                        reward.explanation,
                        json.dumps(reward.components, default=str),
                    ),
                )

    def list_rewards(self, run_id: str, *, pass_id: str | None, include_superseded: bool) -> list[StoredReward]:
        query = (
            "SELECT pass_id, run_id, hook, kind, node, target_seq, value, label, explanation, components,"
            " superseded_by FROM rewards WHERE run_id = ?"
        )
        parameters: list[Any] = [run_id]
        if pass_id is not None:
            query += " AND pass_id = ?"
            parameters.append(pass_id)
        if not include_superseded:
            query += " AND superseded_by IS NULL"
        query += " ORDER BY id"
        with self._connect() as connection:
            rows = connection.execute(self._sql(query), parameters).fetchall()
        return [
            StoredReward(
                pass_id=row[0],
                run_id=row[1],
                hook=row[2],
                kind=row[3],
                node=row[4],
                target_seq=row[5],
                value=row[6],
                label=row[7],
                explanation=row[8],
                components=json.loads(row[9]),
                superseded_by=row[10],
            )
            for row in rows
        ]

    def list_passes(self) -> list[GradingPass]:
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT pass_id, created_at, mode, hooks, checkpoints, run_ids FROM grading_passes"
                " ORDER BY created_at, pass_id"
            ).fetchall()
        return [GradingPass(row[0], row[1], row[2], json.loads(row[3]), row[4], json.loads(row[5])) for row in rows]

    def save_graph(self, run_id: str, graph: dict[str, Any]) -> None:
        with self._connect() as connection:
            connection.execute(self._sql("DELETE FROM realized_graphs WHERE run_id = ?"), (run_id,))
            connection.execute(
                self._sql("INSERT INTO realized_graphs (run_id, graph) VALUES (?, ?)"), (run_id, json.dumps(graph))
            )

    def load_graph(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as connection:
            row = connection.execute(
                self._sql("SELECT graph FROM realized_graphs WHERE run_id = ?"), (run_id,)
            ).fetchone()
        if row is None:
            return None
        loaded: dict[str, Any] = json.loads(row[0])
        return loaded


class GradingMethods(abc.ABC):
    """The grading half of the Store contract, for a store that says where its :class:`GradingTables` are."""

    @property
    @abc.abstractmethod
    def _grading(self) -> GradingTables:
        """The store's grading tables."""

    def create_grading_pass(
        self, *, run_ids: Sequence[str], hooks: Sequence[str], checkpoints: str | None, mode: GradingMode
    ) -> GradingPass:
        """Open a new grading pass over ``run_ids`` (see :class:`Store`)."""
        return self._grading.create_pass(run_ids=run_ids, hooks=hooks, checkpoints=checkpoints, mode=mode)

    def add_rewards(self, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        """Store the rewards of a pass (see :class:`Store`)."""
        self._grading.add_rewards(grading_pass, rewards)

    @abc.abstractmethod
    def load_trace(self, run_id: str) -> Trace:
        """Load and verify one run's events (see :class:`Store`)."""

    def list_rewards(
        self, run_id: str, *, pass_id: str | None = None, include_superseded: bool = False
    ) -> list[StoredReward]:
        """The live rewards of one run, then its grading passes' rewards, oldest first (see :class:`Store`)."""
        graded: list[StoredReward] = []
        if pass_id != LIVE_REWARDS:
            graded = self._grading.list_rewards(run_id, pass_id=pass_id, include_superseded=include_superseded)
        if pass_id is not None and pass_id != LIVE_REWARDS:
            return graded
        live = live_rewards(self.load_trace(run_id).events, self._grading.list_passes())
        if not include_superseded:
            live = [reward for reward in live if reward.superseded_by is None]
        return live + graded

    def list_grading_passes(self) -> list[GradingPass]:
        """Every grading pass, oldest first."""
        return self._grading.list_passes()

    def save_realized_graph(self, run_id: str, graph: dict[str, Any]) -> None:
        """Keep the realized graph of a run (replacing an earlier one)."""
        self._grading.save_graph(run_id, graph)

    def load_realized_graph(self, run_id: str) -> dict[str, Any] | None:
        """The stored realized graph of a run, or None."""
        return self._grading.load_graph(run_id)


def live_rewards(events: Sequence[Event], passes: Sequence[GradingPass] = ()) -> list[StoredReward]:
    """The rewards a run's hooks recorded in its trace while it ran, as :class:`StoredReward` of pass ``live``.

    ``superseded_by`` names the first ``overwrite`` pass among ``passes`` that graded the run with the same hook
    (a pass's hooks are written ``NAME:on``).
    """
    found: list[StoredReward] = []
    for event in events:
        if event.type is not EventType.REWARD:
            continue
        data = event.data
        hook = str(data.get("hook"))
        components = dict(data.get("components") or {})
        if "aggregate" in data:
            components["aggregate"] = data["aggregate"]
        superseded_by = next(
            (
                grading_pass.pass_id
                for grading_pass in passes
                if grading_pass.mode == "overwrite"
                and event.run_id in grading_pass.run_ids
                and hook in {label.partition(":")[0] for label in grading_pass.hooks}
            ),
            None,
        )
        value, label = data.get("value"), data.get("label")
        found.append(
            StoredReward(
                pass_id=LIVE_REWARDS,
                run_id=event.run_id,
                hook=hook,
                kind=str(data.get("on") or "step"),
                node=event.node,
                target_seq=data.get("target_seq"),
                value=float(value) if isinstance(value, int | float) else None,
                label=label if isinstance(label, int) else None,
                explanation=str(data.get("explanation") or ""),
                components=components,
                superseded_by=superseded_by,
            )
        )
    return found


@contextlib.contextmanager
def sqlite_unit(open_connection: Callable[[], Any]) -> Iterator[Any]:
    """One unit of work on a fresh autocommit SQLite connection, in a transaction."""
    connection = open_connection()
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()
