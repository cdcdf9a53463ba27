"""What `agentflow qtable` does over a workflow file and a store: describe, reset and migrate its Q-tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentflow.errors import ConfigError
from agentflow.routing._qtable import pruned_actions, state_agent
from agentflow.routing._router import QTableStore, routing_hash, table_from_stored
from agentflow.spec._loader import LoadedWorkflow, load_workflow
from agentflow.spec._models import END, QTableSettings, RouterNode
from agentflow.traces._qtable_tables import QTableEpisode, StoredQTable


class QTableAdminStore(QTableStore, Protocol):
    """What the qtable commands need of a store."""

    def qtable_episodes(self, workflow: str, router: str) -> list[QTableEpisode]: ...

    def reset_qtable(self, workflow: str, router: str | None = None) -> int: ...

    def migrate_qtable(self, workflow: str, router: str, template_hash: str, keep: Any) -> tuple[int, int]: ...


@dataclass
class QTableReport:
    """One router's table as `agentflow qtable show` prints it."""

    workflow: str
    router: str
    template_hash: str
    stored_hash: str | None
    candidates: list[str]
    values: dict[str, dict[str, float]] = field(default_factory=lambda: {})
    updates: dict[str, dict[str, int]] = field(default_factory=lambda: {})
    pruned: list[tuple[str, str, float]] = field(default_factory=lambda: [])
    episodes: list[QTableEpisode] = field(default_factory=lambda: [])

    @property
    def curve(self) -> list[float]:
        """The total reward of each episode learned, in order (the learning curve)."""
        return [e.total_reward for e in self.episodes if e.total_reward is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "router": self.router,
            "template_hash": self.template_hash,
            "stored_template_hash": self.stored_hash,
            "candidates": self.candidates,
            "values": self.values,
            "updates": self.updates,
            "pruned": [{"state": s, "action": a, "q": q} for s, a, q in self.pruned],
            "episodes": len(self.episodes),
            "curve": self.curve,
        }


def qtable_routers(loaded: LoadedWorkflow, router: str | None = None) -> dict[str, RouterNode]:
    """The `policy: qtable` routers of a workflow (the one named ``router``)."""
    found = {
        name: node
        for name, node in loaded.spec.nodes.items()
        if isinstance(node, RouterNode) and node.policy == "qtable"
    }
    if router is not None:
        if router not in found:
            raise ConfigError(
                f"{loaded.path} has no router {router!r} with policy qtable",
                fix=f"its Q-table routers: {', '.join(found) or 'none'}",
            )
        return {router: found[router]}
    if not found:
        raise ConfigError(f"{loaded.path} has no router with policy qtable", fix="add `policy: qtable` to a router")
    return found


def describe_qtables(path: str | Path, store: QTableAdminStore, router: str | None = None) -> list[QTableReport]:
    """The stored table, its pruned actions and its learning curve, of each Q-table router of a workflow file."""
    loaded = load_workflow(path)
    reports = []
    for name, node in qtable_routers(loaded, router).items():
        stored = store.load_qtable(loaded.spec.name, name)
        table = table_from_stored(stored, node.qtable.initial_q)
        reports.append(
            QTableReport(
                workflow=loaded.spec.name,
                router=name,
                template_hash=routing_hash(loaded),
                stored_hash=stored.template_hash if stored is not None else None,
                candidates=list(node.candidates),
                values=table.values,
                updates=table.updates,
                pruned=pruned_actions(table, node.qtable),
                episodes=store.qtable_episodes(loaded.spec.name, name),
            )
        )
    return reports


def reset_qtables(path: str | Path, store: QTableAdminStore, router: str | None = None) -> int:
    """Forget what the workflow's Q-table routers learned; the number of tables removed."""
    loaded = load_workflow(path)
    return sum(store.reset_qtable(loaded.spec.name, name) for name in qtable_routers(loaded, router))


def migrate_qtables(path: str | Path, store: QTableAdminStore, router: str | None = None) -> dict[str, tuple[int, int]]:
    """Move each table to the file's current template hash, keeping the values whose state agent and action are
    still candidates of the router; router -> (values kept, values dropped)."""
    loaded = load_workflow(path)
    moved: dict[str, tuple[int, int]] = {}
    for name, node in qtable_routers(loaded, router).items():
        allowed = set(node.candidates) | {"START"}

        def keep(state: str, action: str, allowed: set[str] = allowed) -> bool:
            return state_agent(state) in allowed and (action in allowed or action == END)

        moved[name] = store.migrate_qtable(loaded.spec.name, name, routing_hash(loaded), keep)
    return moved


def settings_of(path: str | Path, router: str) -> QTableSettings:
    """A router's settings (for the epsilon and pruning threshold a report shows)."""
    loaded = load_workflow(path)
    return qtable_routers(loaded, router)[router].qtable


def stored_summary(stored: StoredQTable) -> dict[str, Any]:
    return {"router": stored.router, "episodes": stored.episodes, "decisions": stored.decisions}
