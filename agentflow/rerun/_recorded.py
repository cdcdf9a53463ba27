"""A stored run, ready to run again: its verified trace, its workflow compiled, and what it started with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError, TraceError
from agentflow.models import Message, Model, ModelResponse, ModelSettings
from agentflow.runtime import CompiledWorkflow, RunPlan, RunResult, compile_workflow, run_workflow
from agentflow.traces import Event, EventType, Store, Trace


@dataclass
class RecordedRun:
    """What re-executing a stored run starts from (replay and resume both begin here).

    ``events`` are the trace's events with spilled payloads read back from their blobs; ``run_started`` is the
    data of its first event; ``compiled`` is the workflow file the run recorded (or the one given instead).
    """

    trace: Trace
    events: list[Event]
    run_started: dict[str, Any]
    workflow_path: Path
    compiled: CompiledWorkflow

    @classmethod
    def load(
        cls,
        store: Store,
        run_id: str,
        *,
        workflow: str | Path | None,
        doing: str,
        verify: Callable[[Trace], None] = Trace.raise_for_problems,
    ) -> RecordedRun:
        """Load and verify run ``run_id`` (an id or a unique prefix) and compile its workflow.

        Args:
            workflow: the workflow file to use instead of the one the run recorded.
            doing: what is about to happen to the run, for messages (``replay``, ``resume``).
            verify: raises if the trace may not be run again (by default: any verification problem).

        Raises:
            TraceError: the run is missing, its trace fails verification (a tampered trace is never run again),
                or it has no ``run_started`` event.
            ConfigError: the workflow file is gone or invalid.
        """
        trace = store.load_trace(run_id)
        verify(trace)
        events = trace.resolved_events()
        started = next((event.data for event in events if event.type is EventType.RUN_STARTED), None)
        if started is None:
            raise TraceError(f"run {trace.run_id} has no run_started event; there is nothing to {doing}")
        path = Path(workflow) if workflow is not None else Path(str(started.get("workflow_file", "")))
        if not path.is_file():
            raise ConfigError(
                f"the workflow file of run {trace.run_id} is gone: {path}", fix="pass the file with --workflow FILE"
            )
        return cls(trace, events, dict(started), path, compile_workflow(path))

    @property
    def run_id(self) -> str:
        return self.trace.run_id

    @property
    def recorded_template_hash(self) -> str | None:
        recorded = self.run_started.get("template_hash")
        return recorded if isinstance(recorded, str) else None

    async def run(
        self,
        store: Store,
        plan: RunPlan,
        *,
        on_event: Callable[[Event], None] | None = None,
        model: str | None = None,
        seed: int | None = None,
    ) -> RunResult:
        """Run the workflow again under ``plan``, with the inputs, model override and sandbox backend it recorded.

        Inputs the workflow no longer declares as state keys are left out. ``model`` and ``seed`` replace the
        recorded model override and seed (a forked run's continuation samples with its own).
        """
        recorded_inputs = self.run_started.get("inputs")
        state_keys = self.compiled.loaded.spec.state
        inputs = {
            key: value
            for key, value in (recorded_inputs if isinstance(recorded_inputs, dict) else {}).items()
            if key in state_keys
        }
        override = model if model is not None else self.run_started.get("model_override")
        seed = seed if seed is not None else self.run_started.get("seed")
        sandbox_info = self.run_started.get("sandbox")
        backend = sandbox_info.get("backend") if isinstance(sandbox_info, dict) else None
        return await run_workflow(
            self.compiled,
            inputs=inputs,
            model=override if isinstance(override, str) else None,
            sandbox=backend if isinstance(backend, str) else None,
            store=store,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            on_event=on_event,
            plan=plan,
        )


ServeRecorded = Callable[[list[Message], list[dict[str, Any]], ModelSettings], ModelResponse | None]
"""The recorded response to a request (messages, tools, settings), or None when the live model must answer."""


class ServedModel(Model):
    """A model that answers from the recording while it has an answer (``serve``), and calls through after: what
    a resumed visit and a forked continuation run with."""

    def __init__(self, inner: Model, serve: ServeRecorded) -> None:
        super().__init__(inner.name)
        self.provider = inner.provider
        self.inner = inner
        self.serve = serve

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """The recorded response to this request if there is one, else the model's."""
        served = self.serve(messages, tools, settings)
        if served is not None:
            return served
        return await self.inner.complete(messages, tools, settings)

    async def close(self) -> None:
        await self.inner.close()
