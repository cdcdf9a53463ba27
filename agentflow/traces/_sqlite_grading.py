"""What the embedded store adds to its SQLite index for the Store contract: grading passes, rewards, graphs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.traces._protocol import GradingMode, GradingPass, GradingTables, StoredReward, sqlite_unit


class SQLiteGradingMixin:
    """The grading half of the Store contract for :class:`~agentflow.traces.TraceStore`, on its SQLite index."""

    root: Path

    if TYPE_CHECKING:  # provided by TraceStore, the one class this mixes into

        def _open_index(self) -> sqlite3.Connection: ...

        def _run_names(self) -> list[str]: ...

    @property
    def location(self) -> str:
        """The store folder."""
        return str(self.root)

    @property
    def _grading(self) -> GradingTables:
        return GradingTables(lambda: sqlite_unit(self._open_index), "?")

    def run_ids(self) -> list[str]:
        """Every run id with a trace, oldest first (run ids sort by start time)."""
        return self._run_names()

    def create_grading_pass(
        self, *, run_ids: Sequence[str], hooks: Sequence[str], checkpoints: str | None, mode: GradingMode
    ) -> GradingPass:
        """Open a new grading pass over ``run_ids`` (see :class:`~agentflow.traces.Store`)."""
        return self._grading.create_pass(run_ids=run_ids, hooks=hooks, checkpoints=checkpoints, mode=mode)

    def add_rewards(self, grading_pass: GradingPass, rewards: Sequence[StoredReward]) -> None:
        """Store the rewards of a pass (see :class:`~agentflow.traces.Store`)."""
        self._grading.add_rewards(grading_pass, rewards)

    def list_rewards(
        self, run_id: str, *, pass_id: str | None = None, include_superseded: bool = False
    ) -> list[StoredReward]:
        """The stored grading rewards of one run, oldest first."""
        return self._grading.list_rewards(run_id, pass_id=pass_id, include_superseded=include_superseded)

    def list_grading_passes(self) -> list[GradingPass]:
        """Every grading pass, oldest first."""
        return self._grading.list_passes()

    def save_realized_graph(self, run_id: str, graph: dict[str, Any]) -> None:
        """Keep the realized graph of a run (replacing an earlier one)."""
        self._grading.save_graph(run_id, graph)

    def load_realized_graph(self, run_id: str) -> dict[str, Any] | None:
        """The stored realized graph of a run, or None."""
        return self._grading.load_graph(run_id)
