"""Run a compiled workflow once: sandbox, recorder, limits, and the run's final status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agentflow
from agentflow.errors import LimitExceeded, RunError, SandboxError
from agentflow.graph._compile import CompiledWorkflow, compile_workflow
from agentflow.runtime._context import RunContext
from agentflow.runtime._hooks import drain_background, finish_run_hooks, start_run_hooks
from agentflow.runtime._limits import LimitTracker
from agentflow.runtime._nodes import _error_data
from agentflow.sandboxes import create_sandbox
from agentflow.spec._loader import LoadedWorkflow
from agentflow.traces import Recorder, Store, TraceStore
from agentflow.traces._events import Event, EventType, seconds_since
from agentflow.traces._otel import OTLP_ENV, LiveExport, require_otel

if TYPE_CHECKING:
    from agentflow.traces._replay import Tape
    from agentflow.traces._resume import ResumePoint

DEFAULT_STORE = Path(".agentflow")


@dataclass
class RunResult:
    """How a run ended. ``status`` is succeeded | failed | limit_exceeded | cancelled."""

    run_id: str
    status: str
    final_state: dict[str, Any]
    error: str | None
    duration_s: float
    store_root: Path
    limit: dict[str, Any] | None = None
    isolation: dict[str, Any] = field(default_factory=lambda: {})

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


async def run_workflow(
    workflow: CompiledWorkflow | LoadedWorkflow | str | Path,
    *,
    inputs: dict[str, Any] | None = None,
    model: str | None = None,
    sandbox: str | None = None,
    store: Store | None = None,
    tape: Tape | None = None,
    resumable: bool = False,
    checkpointer: Any | None = None,
    resume: ResumePoint | None = None,
    otlp: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run a workflow once and record its trace.

    Args:
        workflow: a compiled workflow (to run it many times cheaply), a loaded one, or a file path.
        inputs: initial values of state keys, over the workflow's `inputs`.
        model: a `provider:model` string used for every model of the workflow (e.g. `openai:gpt-4o-mini`).
        sandbox: a sandbox backend name instead of the one the workflow declares.
        store: where the trace goes (default: `.agentflow/` in the working directory).
        tape: replay a recorded run (see `agentflow.traces.replay_run`): model responses, and in tape mode tool
            results, come from it; in tape mode the sandbox is one that refuses every operation.
        resumable: save a LangGraph checkpoint after every node in the store's LangGraph checkpointer, so that
            `agentflow resume` can continue the run if its process dies (off by default: it costs time per node).
        checkpointer: a LangGraph checkpointer (``BaseCheckpointSaver``) to save them in instead; implies resumable.
        resume: continue an interrupted run (what `agentflow.traces.resume_run` passes); needs ``checkpointer``.
        otlp: an OTLP/HTTP endpoint to send the run's spans to while it runs (default: `AGENTFLOW_OTLP_ENDPOINT`;
            needs the ``otel`` extra).
        on_event: called with every event as the run records it (the CLI's progress display); it must be quick.

    Raises:
        ConfigError: the workflow or the inputs are wrong; nothing was recorded.
    """
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else compile_workflow(workflow)
    spec = compiled.loaded.spec
    initial = compiled.initial_state(inputs)
    store = store or TraceStore(DEFAULT_STORE)
    endpoint = otlp or os.environ.get(OTLP_ENV)
    if endpoint:
        require_otel()  # before anything is recorded
    recorder: Recorder = store.new_run(workflow=spec.name) if resume is None else store.reopen_run(resume.trace.run_id)
    if endpoint:
        recorder = LiveExport(recorder, endpoint)
    clock = time.perf_counter()
    outcome = _Outcome()
    ctx: RunContext | None = None
    backend = sandbox or spec.sandbox.backend
    checkpoints = contextlib.AsyncExitStack()
    try:
        if checkpointer is None and resumable:
            from agentflow.traces._langgraph_checkpoints import open_checkpointer

            checkpointer = await checkpoints.enter_async_context(open_checkpointer(store))
        try:
            box = (
                tape.sandbox()
                if tape is not None and tape.serves_tools
                else await create_sandbox(
                    backend,
                    limits=spec.sandbox.limits,
                    files=spec.sandbox.files,
                    base_dir=compiled.loaded.base_dir,
                    image=spec.sandbox.image,
                    labels={"agentflow.run_id": recorder.run_id, "agentflow.workflow": spec.name},
                )
            )
        except (SandboxError, OSError) as exc:
            recorder.emit(EventType.ERROR, data=_error_data(exc))
            outcome.error = f"sandbox {backend!r} could not start: {exc}"
            raise
        ctx = RunContext(
            recorder=recorder,
            sandbox=box,
            limits=LimitTracker(spec.limits),
            model_override=model,
            tape=tape,
            on_event=on_event,
        )
        outcome.isolation = box.isolation().to_dict()
        ctx.state.update(initial)
        if resume is not None:
            resume.restore(ctx)
            await resume.begin(ctx, compiled, recorder)
        else:
            ctx.emit(
                EventType.RUN_STARTED,
                data={
                    "workflow": spec.name,
                    "workflow_file": str(compiled.loaded.path),
                    "template_hash": compiled.loaded.template_hash,
                    "inputs": initial,
                    "model_override": model,
                    "sandbox": {"backend": backend, "isolation": outcome.isolation},
                    "limits": spec.limits.model_dump(),
                    "agentflow_version": agentflow.__version__,
                    **({} if tape is None else {"replay_of": tape.run_id, "replay_mode": tape.mode}),
                    **({} if checkpointer is None else {"resumable": True}),
                },
            )
        await start_run_hooks(compiled, ctx)
        await _execute(compiled, ctx, initial, outcome, clock, checkpointer=checkpointer)
        if compiled.hooks.wants("run", None):
            await drain_background(compiled, ctx)
            await compiled.hooks.score(ctx, kind="run", node=None, label=None, events=list(ctx.events))
    finally:
        if ctx is not None:  # background rewards land before run_finished
            await finish_run_hooks(compiled, ctx, cancel=outcome.status == "cancelled")
        final_state = ctx.state if ctx else initial
        # A resumed run's duration counts the time it ran before it was interrupted too.
        duration = seconds_since(clock) + (0.0 if resume is None else resume.prior_duration_s)
        recorder.finish(outcome.status, final_state=final_state, error=outcome.error, duration_s=round(duration, 4))
        if ctx is not None:
            await ctx.close_models()
            await ctx.sandbox.close()
        await checkpoints.aclose()
    return RunResult(
        run_id=recorder.run_id,
        status=outcome.status,
        final_state=final_state,
        error=outcome.error,
        duration_s=seconds_since(clock),
        store_root=Path(store.location),
        limit=outcome.limit,
        isolation=outcome.isolation,
    )


@dataclass
class _Outcome:
    """How the run is ending, filled in as it goes (the `finally` of run_workflow records whatever it holds)."""

    status: str = "failed"
    error: str | None = None
    limit: dict[str, Any] | None = None
    isolation: dict[str, Any] = field(default_factory=lambda: {})


async def _execute(
    compiled: CompiledWorkflow,
    ctx: RunContext,
    initial: dict[str, Any],
    outcome: _Outcome,
    clock: float,
    *,
    checkpointer: Any | None = None,
) -> None:
    """Invoke the LangGraph graph under the run's time limit and turn how it ended into the outcome."""
    spec = compiled.loaded.spec
    try:
        async with asyncio.timeout(spec.limits.timeout_s):
            if checkpointer is None:
                final = await compiled.graph.ainvoke(initial, config=compiled.invoke_config(ctx))
            else:
                from agentflow.traces._resume import invoke_checkpointed

                final = await invoke_checkpointed(compiled, ctx, initial, checkpointer)
        ctx.state.update(final or {})  # LangGraph returns None for a workflow without state keys
        outcome.status = "succeeded"
    except LimitExceeded as exc:  # already recorded where it was raised
        outcome.status, outcome.error, outcome.limit = "limit_exceeded", str(exc), _error_data(exc)["limit"]
    except TimeoutError:
        run_timeout = LimitExceeded("timeout_s", spec.limits.timeout_s or 0, seconds_since(clock))
        ctx.emit(EventType.ERROR, data=_error_data(run_timeout))
        outcome.status, outcome.error, outcome.limit = (
            "limit_exceeded",
            str(run_timeout),
            _error_data(run_timeout)["limit"],
        )
    except asyncio.CancelledError:
        outcome.status, outcome.error = "cancelled", "the run was cancelled"
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with a status and a readable trace
        outcome.status, outcome.error = _classify(exc)
        if outcome.status == "limit_exceeded":
            outcome.limit = {"name": "recursion_limit", "value": compiled.recursion_limit, "observed": None}
        if not isinstance(exc, RunError) or outcome.status == "limit_exceeded":
            # node failures were recorded by the node; anything else (a routing error, a bug) is recorded here
            ctx.emit(EventType.ERROR, data=_error_data(exc))


def _classify(exc: BaseException) -> tuple[str, str]:
    from langgraph.errors import GraphRecursionError

    if isinstance(exc, GraphRecursionError):
        return "limit_exceeded", f"the run took more steps than its loop bounds allow: {exc}"
    return "failed", f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunError) else str(exc)
