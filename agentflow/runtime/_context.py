"""Everything one run shares across its nodes (and its subgraphs' nodes)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.models._base import Model
from agentflow.runtime._branches import Branch, current_branch
from agentflow.runtime._limits import LimitTracker
from agentflow.runtime._plan import RunPlan
from agentflow.sandboxes._base import Sandbox
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import EventData
from agentflow.traces._protocol import Recorder


@dataclass
class RunContext:
    """The recorder, sandbox, limits, plan and model connections of one run.

    ``events`` mirrors what the recorder wrote, so reward hooks can score a step from memory without re-reading
    the trace; ``state`` is the latest state, kept so a failed run still records how far it got.
    """

    recorder: Recorder
    sandbox: Sandbox
    limits: LimitTracker
    plan: RunPlan = field(default_factory=RunPlan)  # where model responses and tool results come from
    model_override: str | None = None
    seed: int | None = None  # the sampling seed of every model call, over the workflow's settings
    on_event: Callable[[Event], None] | None = None  # told of every event as it is recorded (CLI progress)
    stepwise: bool = False  # a LangGraph checkpoint follows every node: subgraphs run their stepwise graphs too
    events: list[Event] = field(default_factory=lambda: [])
    visits: Counter[str] = field(default_factory=Counter)
    state: dict[str, Any] = field(default_factory=lambda: {})
    # node label -> the retries (trace data) of its model call in flight; a timeout that cuts a call which already
    # retried a failing provider errors the run instead of counting against the agent
    model_retrying: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {})
    # the parallel branches and map items in flight, their forks and failures (see `_parallel.BranchRuns`)
    branch_runs: dict[str, Any] = field(default_factory=lambda: {})
    _models: dict[tuple[str, str], Model] = field(default_factory=lambda: {})

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def replays_hooks(self) -> bool:
        """Whether reward hooks' events come from the plan instead of the hooks (a replay in tape mode)."""
        return self.plan.serves_hook_events

    def emit(self, type: EventType, *, data: EventData, node: str | None = None, parent: int | None = None) -> Event:
        """Record an event of the run, then let the plan follow it up."""
        event = self.record(type, node=node, parent=parent, data=data)
        self.plan.after_event(self, event)
        return event

    def record(self, type: EventType, *, node: str | None, parent: int | None, data: EventData) -> Event:
        """Record an event without telling the plan (what the plan itself supplies, so it is not followed up).

        Inside a branch the event's data carries the branch's id under ``branch``.
        """
        branch = current_branch.get()
        if branch is not None:
            data = {**data, "branch": branch.id}  # type: ignore[assignment]  # every payload type may carry it
        event = self.recorder.emit(type, node=node, parent=parent, data=data)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def visit_key(self, label: str) -> str:
        """The key of ``visits`` for a node: its label, inside a branch prefixed by the branch id (the items of a map
        run the same node once each, every one its own first visit)."""
        branch = current_branch.get()
        return label if branch is None else f"{branch.id}:{label}"

    @property
    def branch(self) -> Branch | None:
        """The branch the calling task runs in (None: the run's main path)."""
        return current_branch.get()

    @contextlib.contextmanager
    def in_branch(self, branch: Branch) -> Iterator[Branch]:
        """Run the body as ``branch``: its events carry the branch id, its tools and hooks use its sandbox.

        The branch is set for the calling task and the tasks it starts (a context variable), never for the
        concurrent branches beside it.
        """
        token = current_branch.set(branch)
        try:
            yield branch
        finally:
            current_branch.reset(token)

    def current_sandbox(self) -> Sandbox:
        """The sandbox the calling branch works in: a forked branch's own copy, else the run's sandbox."""
        branch = current_branch.get()
        return self.sandbox if branch is None else branch.effective_sandbox(self.sandbox)

    def events_since(self, first_index: int) -> list[Event]:
        """The run's events from index ``first_index`` on that the calling branch recorded (all of them outside any
        branch): what a node's reward hooks score, without the events of the branches running beside it."""
        branch = current_branch.get()
        if branch is None:
            return self.events[first_index:]
        prefix = branch.id
        return [
            event
            for event in self.events[first_index:]
            if (tag := event.data.get("branch")) == prefix or (isinstance(tag, str) and tag.startswith(prefix + "/"))
        ]

    def flush(self) -> None:
        """Write the events the recorder holds: called before every effect outside the process (a model call, a
        sandbox command, a tool or reward hook's code) and at the end of every node, so a killed run keeps every
        event that something outside it followed."""
        self.recorder.flush()

    def model(self, model_string: str, base_dir: Path) -> Model:
        """The run's connection for a model string (one per string and folder, created on first use)."""
        chosen = self.model_override or model_string
        key = (chosen, str(base_dir))
        if key not in self._models:
            self._models[key] = self.plan.model(chosen, base_dir)
        return self._models[key]

    def retrying_key(self, label: str) -> str:
        """The key of a node's model call in flight in ``model_retrying``: the node's label, and inside a branch
        its id too, so the concurrent calls of one node's branches each keep their own entry."""
        branch = current_branch.get()
        return label if branch is None else f"{label}|{branch.id}"

    def retries_in_flight(self, label: str | None = None) -> list[dict[str, Any]]:
        """The retries of the model calls still in flight (of one node, its branches' included, or of every node)."""
        if label is not None:
            return [
                retry
                for key, retries in self.model_retrying.items()
                if key == label or key.startswith(label + "|")
                for retry in retries
            ]
        return [retry for retries in self.model_retrying.values() for retry in retries]

    async def close_models(self) -> None:
        for model in self._models.values():
            await model.close()
