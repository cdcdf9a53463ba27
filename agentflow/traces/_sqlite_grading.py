"""What the embedded store adds to its SQLite index for the Store contract: grading passes, rewards, graphs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from agentflow.traces._protocol import GradingMethods, GradingTables, sqlite_unit


class SQLiteGradingMixin(GradingMethods):
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
