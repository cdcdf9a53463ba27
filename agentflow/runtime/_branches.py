"""Branches of a run: the concurrent paths of one run (parallel fan-out, map items, best-of-N candidates).

A branch is known by the asyncio task that runs it: :meth:`RunContext.in_branch` sets it for the code inside (a
context variable, so each concurrent task sees its own), and everything the run records there carries its id in
the event's ``data["branch"]``. Branches nest: a best-of-N candidate inside a map item has the id
``"<item>/<candidate>"``. Code outside any branch sees None: the run's single path, as before branches existed.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from agentflow.sandboxes._base import Sandbox

BranchKind = Literal["parallel", "map", "best_of"]


@dataclass(eq=False)
class Branch:
    """One concurrent path of a run.

    Attributes:
        name: the branch's own part of its id (a parallel target's node name, ``map[3]``, ``candidate-2``).
        kind: what made it: a ``parallel`` fan-out, a ``map`` item, a ``best_of`` candidate.
        parent: the branch this one runs inside, or None at the run's top level.
        sandbox: the branch's own sandbox (``sandbox: fork``: a copy of its parent's workdir), or None to share
            the parent's (the default: like threads in one working copy).
    """

    name: str
    kind: BranchKind
    parent: Branch | None = None
    sandbox: Sandbox | None = None

    @property
    def id(self) -> str:
        """The id events carry: the names from the outermost branch in, joined by ``/``."""
        return self.name if self.parent is None else f"{self.parent.id}/{self.name}"

    def effective_sandbox(self, run_sandbox: Sandbox) -> Sandbox:
        """The sandbox code in this branch works in: its own, else the nearest enclosing branch's, else the run's."""
        branch: Branch | None = self
        while branch is not None:
            if branch.sandbox is not None:
                return branch.sandbox
            branch = branch.parent
        return run_sandbox


current_branch: ContextVar[Branch | None] = ContextVar("agentflow_branch", default=None)
"""The branch the running task belongs to (None: the run's main path)."""
