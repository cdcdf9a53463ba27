"""Everything one run shares across its nodes (and its subgraphs' nodes)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.models._base import Model
from agentflow.runtime._limits import LimitTracker
from agentflow.sandboxes._base import Sandbox
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import EmittedData
from agentflow.traces._protocol import Recorder

if TYPE_CHECKING:
    from agentflow.traces._replay import Tape
    from agentflow.traces._resume import ResumePoint


@dataclass
class RunContext:
    """The recorder, sandbox, limits and model connections of one run.

    ``events`` mirrors what the recorder wrote, so reward hooks can score a step from memory without re-reading
    the trace; ``state`` is the latest state, kept so a failed run still records how far it got.
    """

    recorder: Recorder
    sandbox: Sandbox
    limits: LimitTracker
    model_override: str | None = None
    tape: Tape | None = None  # replay: model responses (and in tape mode tool results) come from a recorded run
    resume: ResumePoint | None = None  # `agentflow resume`: the interrupted visit's model responses are served
    on_event: Callable[[Event], None] | None = None  # told of every event as it is recorded (CLI progress)
    events: list[Event] = field(default_factory=lambda: [])
    visits: Counter[str] = field(default_factory=Counter)
    state: dict[str, Any] = field(default_factory=lambda: {})
    # node label -> the retries (trace data) of its model call in flight; a timeout that cuts a call which already
    # retried a failing provider errors the run instead of counting against the agent
    model_retrying: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {})
    _models: dict[tuple[str, str], Model] = field(default_factory=lambda: {})

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def replays_hooks(self) -> bool:
        """Whether reward hooks' events come from a tape instead of the hooks (a replay in tape mode)."""
        return self.tape is not None and self.tape.serves_tools

    def emit(
        self, type: EventType, *, node: str | None = None, parent: int | None = None, data: EmittedData | None = None
    ) -> Event:
        event = self.recorder.emit(type, node=node, parent=parent, data=data or {})
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        if self.tape is not None and self.tape.serves_tools:
            self._replay_hook_events(event.seq)
        return event

    def _replay_hook_events(self, after_seq: int) -> None:
        # Hooks may need the sandbox or a model, which a tape replay must not touch, and background hooks record at
        # moments no replay can reproduce: so what the hooks recorded right after this event is copied from the tape.
        assert self.tape is not None
        for recorded in self.tape.hook_events_after(after_seq):
            if recorded.seq != self.events[-1].seq + 1:
                break  # the replay has diverged: its own events no longer line up with the tape's
            event = self.recorder.emit(recorded.type, node=recorded.node, parent=recorded.parent, data=recorded.data)
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)

    def model(self, model_string: str, base_dir: Path) -> Model:
        """The run's connection for a model string (one per string and folder, created on first use)."""
        from agentflow.models import create_model

        chosen = self.model_override or model_string
        key = (chosen, str(base_dir))
        if key not in self._models:
            if self.tape is not None:
                self._models[key] = self.tape.model(chosen)
            else:
                created = create_model(chosen, base_dir=base_dir)
                self._models[key] = created if self.resume is None else self.resume.wrap(created)
        return self._models[key]

    def retries_in_flight(self, label: str | None = None) -> list[dict[str, Any]]:
        """The retries of the model calls still in flight (of one node, or of every node)."""
        if label is not None:
            return list(self.model_retrying.get(label, []))
        return [retry for retries in self.model_retrying.values() for retry in retries]

    async def close_models(self) -> None:
        for model in self._models.values():
            await model.close()
