"""Run plans: where a run's model responses, tool results and sandbox come from, and what follows each event.

``run_workflow`` drives every run the same way (record ``run_started``, run the graph, score it, record
``run_finished``) and asks its plan at each point that differs between a new run and a re-execution of a recorded
one. :class:`RunPlan` itself is the live plan, the default: it calls the models, runs the tools in a new sandbox and
records a new run. ``agentflow.rerun`` derives the plans that re-execute from a trace (tape and verify replay,
resume); nothing in the runtime knows what they serve or why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.models._base import Model, ToolCall
from agentflow.sandboxes import Sandbox, create_sandbox
from agentflow.tools._base import ToolOutcome
from agentflow.traces import Event, EventType, Recorder, RunStartedData, SandboxExecData, Store

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow
    from agentflow.runtime._context import RunContext


@dataclass
class ServedTool:
    """A tool result a plan supplies instead of running the tool, with the sandbox commands it recorded."""

    outcome: ToolOutcome
    execs: list[SandboxExecData]


class RunPlan:
    """The live plan: a new run, real models, real tools, a fresh sandbox (subclass it to serve from elsewhere).

    Attributes:
        serves_hook_events: the reward hooks run no code: what they record comes from the plan, through
            :meth:`after_event` (a tape replay, which must not touch a sandbox or a model).
        checkpointer: the LangGraph checkpointer the run continues from (a resume plan); None lets
            ``run_workflow(resumable=True)`` open the store's own.
        prior_duration_s: seconds the run already ran in an earlier process (a resumed run's duration counts them).
    """

    serves_hook_events: bool = False
    checkpointer: Any | None = None
    prior_duration_s: float = 0.0

    def check(self, compiled: CompiledWorkflow, model_override: str | None) -> None:
        """Fail before anything is recorded on what can be known up front (a model's missing API key or script).

        Raises:
            ConfigError: a model of the workflow cannot be built.
        """
        check_models(compiled, model_override)

    def open_recorder(self, store: Store, workflow: str) -> Recorder:
        """Where the run's events go: a new run in ``store``."""
        return store.new_run(workflow=workflow)

    async def open_sandbox(self, compiled: CompiledWorkflow, backend: str, run_id: str) -> Sandbox:
        """The run's sandbox: a new one of ``backend``, holding the workflow's files."""
        spec = compiled.loaded.spec
        return await create_sandbox(
            backend,
            limits=spec.sandbox.limits,
            files=spec.sandbox.files,
            base_dir=compiled.loaded.base_dir,
            image=spec.sandbox.image,
            labels={"agentflow.run_id": run_id, "agentflow.workflow": spec.name},
        )

    def model(self, model_string: str, base_dir: Path) -> Model:
        """The model the run calls for ``model_string`` (built once per string and folder by the run context)."""
        from agentflow.models import create_model

        return create_model(model_string, base_dir=base_dir)

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: RunStartedData) -> None:
        """Record how the run begins: ``run_started`` with what the runtime knows of it."""
        ctx.emit(EventType.RUN_STARTED, data=run_started)

    def graph_input(self, initial: dict[str, Any]) -> dict[str, Any] | None:
        """What the LangGraph graph is invoked with (None continues from the checkpointer's last checkpoint)."""
        return initial

    def served_tool(self, call: ToolCall) -> ServedTool | None:
        """A result for this tool call instead of running the tool, or None to run it (the live plan always runs)."""
        return None

    def served_route(self, node: str, index: int) -> Mapping[str, Any] | None:
        """The recorded data of the ``index``-th decision of a learned (``policy: qtable``) router ``node``, to
        take again instead of deciding (and learning), or None to decide (the live plan always decides)."""
        return None

    def after_event(self, ctx: RunContext, event: Event) -> None:
        """Called after the run recorded ``event``; a plan may record what must follow it (the live plan: nothing)."""
        return None


def check_models(compiled: CompiledWorkflow, override: str | None = None) -> None:
    """Build every model the run's agent nodes will call, so that what a provider checks up front (an API key, a
    script file) fails before anything is recorded, as a ``ConfigError``, rather than as an errored run.

    The models are built again when the run first calls them; building one opens no connection.
    """
    from agentflow.models import create_model
    from agentflow.spec._models import AgentNode

    pending, seen = [compiled], set()
    while pending:
        workflow = pending.pop()
        pending.extend(workflow.children.values())
        spec, base_dir = workflow.loaded.spec, workflow.loaded.base_dir
        for node in spec.nodes.values():
            if isinstance(node, AgentNode) and node.model in spec.models:
                chosen = override or spec.models[node.model].model
                if (chosen, base_dir) not in seen:
                    seen.add((chosen, base_dir))
                    create_model(chosen, base_dir=base_dir)
