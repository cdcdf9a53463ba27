"""Run a compiled workflow once: sandbox, recorder, limits, and the run's final status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agentflow
from agentflow.errors import (
    AgentflowError,
    ConfigError,
    ExpressionError,
    LimitExceeded,
    ModelAPIError,
    ModelContextExceeded,
    ModelScriptExhausted,
    NodeFailed,
    NodeTimeout,
    PathOutsideWorkdirError,
    ReplayDivergence,
    RunError,
    SandboxError,
    TemplateError,
    TraceError,
)
from agentflow.routing._router import QTableStore
from agentflow.runtime._compile import CompiledWorkflow, compile_workflow
from agentflow.runtime._context import RunContext
from agentflow.runtime._hooks import drain_background, finish_run_hooks, start_run_hooks
from agentflow.runtime._limits import LimitTracker
from agentflow.runtime._nodes import _timeout_error, error_data
from agentflow.runtime._parallel import close_branch_sandboxes
from agentflow.runtime._plan import RunPlan
from agentflow.sandboxes import Sandbox
from agentflow.spec._loader import LoadedWorkflow
from agentflow.traces import Recorder, Store, TraceStore
from agentflow.traces._events import Event, EventType, seconds_since
from agentflow.traces._langgraph_checkpoints import open_checkpointer
from agentflow.traces._otel import OTLP_ENV, LiveExport, require_otel
from agentflow.traces._payloads import RunStartedData

DEFAULT_STORE = Path(".agentflow")


@dataclass
class RunResult:
    """How a run ended. ``status`` is succeeded | failed | limit_exceeded | errored | cancelled (see ``classify``)."""

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

    @property
    def errored(self) -> bool:
        """The infrastructure failed (model API, sandbox, store, a bug): the run says nothing of the agent."""
        return self.status == "errored"


async def run_workflow(
    workflow: CompiledWorkflow | LoadedWorkflow | str | Path,
    *,
    inputs: dict[str, Any] | None = None,
    model: str | None = None,
    sandbox: str | None = None,
    store: Store | None = None,
    seed: int | None = None,
    resumable: bool = False,
    otlp: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    plan: RunPlan | None = None,
) -> RunResult:
    """Run a workflow once and record its trace.

    Args:
        workflow: a compiled workflow (to run it many times cheaply), a loaded one, or a file path.
        inputs: initial values of state keys, over the workflow's `inputs`.
        model: a `provider:model` string used for every model of the workflow (e.g. `openai:gpt-4o-mini`).
        sandbox: a sandbox backend name instead of the one the workflow declares.
        store: where the trace goes (default: `.agentflow/` in the working directory).
        seed: the sampling seed of every model call of the run, over the workflow's (recorded in `run_started`,
            so a replay asks for it again; a benchmark gives each task and epoch its own).
        resumable: save a LangGraph checkpoint after every node in the store's LangGraph checkpointer, so that
            `agentflow resume` can continue the run if its process dies (off by default: it costs time per node).
        otlp: an OTLP/HTTP endpoint to send the run's spans to while it runs (default: `AGENTFLOW_OTLP_ENDPOINT`;
            needs the ``otel`` extra).
        on_event: called with every event as the run records it (the CLI's progress display); it must be quick.
        plan: where model responses, tool results and the sandbox come from (default: the live plan, a new run;
            ``agentflow.rerun`` has the plans that replay or resume a recorded run).

    Raises:
        ConfigError: the workflow or the inputs are wrong; nothing was recorded.
    """
    compiled = workflow if isinstance(workflow, CompiledWorkflow) else compile_workflow(workflow)
    spec = compiled.loaded.spec
    initial = compiled.initial_state(inputs)
    store = _bind_routers(compiled, store or TraceStore(DEFAULT_STORE))
    plan = plan or RunPlan()
    endpoint = otlp or os.environ.get(OTLP_ENV)
    if endpoint:
        require_otel()  # before anything is recorded
    plan.check(compiled, model)  # a missing API key or script is the user's mistake, said before the run
    recorder: Recorder = plan.open_recorder(store, spec.name)
    if endpoint:
        recorder = LiveExport(recorder, endpoint)
    # Events are written in one write per node (and before every effect outside the process, see RunContext.flush)
    # instead of one per event.
    recorder.hold_events()
    clock = time.perf_counter()
    outcome = _Outcome()
    ctx: RunContext | None = None
    backend = sandbox or spec.sandbox.backend
    checkpoints = contextlib.AsyncExitStack()
    try:
        checkpointer = plan.checkpointer
        if checkpointer is None and resumable:
            checkpointer = await checkpoints.enter_async_context(open_checkpointer(store))
        box = await _open_sandbox(compiled, plan, backend, recorder, outcome)
        ctx = RunContext(
            recorder=recorder,
            sandbox=box,
            limits=LimitTracker(spec.limits),
            plan=plan,
            model_override=model,
            seed=seed,
            on_event=on_event,
            stepwise=checkpointer is not None,
        )
        outcome.isolation = box.isolation().to_dict()
        ctx.state.update(initial)
        run_started: RunStartedData = {
            "workflow": spec.name,
            "workflow_file": str(compiled.loaded.path),
            "template_hash": compiled.loaded.template_hash,
            "inputs": initial,
            "model_override": model,
            "sandbox": {"backend": backend, "isolation": outcome.isolation},
            "limits": spec.limits.model_dump(),
            "agentflow_version": agentflow.__version__,
        }
        if seed is not None:
            run_started["seed"] = seed
        if checkpointer is not None:
            run_started["resumable"] = True
        await plan.start(ctx, compiled, run_started)
        await start_run_hooks(compiled, ctx)
        await _execute(compiled, ctx, initial, outcome, clock, checkpointer=checkpointer)
        await _score_run(compiled, ctx, outcome)
    except (Exception, asyncio.CancelledError) as exc:  # recorded as the status, then raised on
        outcome.escaped(exc)
        raise
    finally:
        if ctx is not None:  # background rewards land before run_finished
            await finish_run_hooks(compiled, ctx, cancel=outcome.status == "cancelled")
        final_state = ctx.state if ctx else initial
        # A resumed run's duration counts the time it ran before it was interrupted too.
        duration = seconds_since(clock) + plan.prior_duration_s
        _finish_recording(recorder, outcome, final_state, duration)
        if ctx is not None:
            await _release(ctx)
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


async def _release(ctx: RunContext) -> None:
    """Close the run's model connections and its sandbox (and the forks of branches the run stopped inside)."""
    await ctx.close_models()
    await close_branch_sandboxes(ctx)
    await ctx.sandbox.close()


def _bind_routers(compiled: CompiledWorkflow, store: Store) -> Store:
    """The run's store, given to the workflow's Q-table routers too (a store without tables leaves them unbound)."""
    if isinstance(store, QTableStore):
        compiled.bind_routers(store)
    return store


def _finish_recording(recorder: Recorder, outcome: _Outcome, final_state: dict[str, Any], duration: float) -> None:
    """Record ``run_finished`` and release the trace file and the index connection."""
    try:
        recorder.finish(outcome.status, final_state=final_state, error=outcome.error, duration_s=round(duration, 4))
    finally:
        recorder.close()  # the trace file, and the index connection back to the store


@dataclass
class _Outcome:
    """How the run is ending, filled in as it goes (the `finally` of run_workflow records whatever it holds).

    ``errored`` until the graph ran: whatever escapes before (or around) it is agentflow's or the machine's failure.
    """

    status: str = "errored"
    error: str | None = None
    limit: dict[str, Any] | None = None
    isolation: dict[str, Any] = field(default_factory=lambda: {})

    def escaped(self, exc: BaseException) -> None:
        """An exception is leaving run_workflow: Ctrl-C cancels the run, anything else is classified."""
        if isinstance(exc, asyncio.CancelledError):
            self.status, self.error = "cancelled", self.error or "the run was cancelled"
        elif self.error is None:  # (a sandbox that could not start has said so already)
            self.status, self.error = classify(exc)


async def _open_sandbox(
    compiled: CompiledWorkflow, plan: RunPlan, backend: str, recorder: Recorder, outcome: _Outcome
) -> Sandbox:
    """The plan's sandbox for the run; one that cannot start errors the run."""
    try:
        return await plan.open_sandbox(compiled, backend, recorder.run_id)
    except (SandboxError, OSError) as exc:
        recorder.emit(EventType.ERROR, data=error_data(exc))
        outcome.status, outcome.error = "errored", f"sandbox {backend!r} could not start: {exc}"
        raise


async def _score_run(compiled: CompiledWorkflow, ctx: RunContext, outcome: _Outcome) -> None:
    """The run-level rewards and aggregates, or for an errored run the record that they did not score it."""
    if not compiled.hooks.wants("run", None):
        return
    await drain_background(compiled, ctx)
    if outcome.status == "errored":  # an outage is no verdict on the agent: no outcome, no aggregates
        compiled.hooks.record_not_scored(ctx, reason="errored", detail=outcome.error)
    else:
        await compiled.hooks.score(ctx, kind="run", node=None, label=None, events=list(ctx.events))


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
            final = await _invoke(compiled, ctx, ctx.plan.graph_input(initial), checkpointer)
        ctx.state.update(final or {})  # LangGraph returns None for a workflow without state keys
        outcome.status = "succeeded"
    except LimitExceeded as exc:  # already recorded where it was raised
        outcome.status, outcome.error, outcome.limit = "limit_exceeded", str(exc), _limit(exc)
    except TimeoutError:
        outage = _timeout_error(ctx, f"the run ran past its timeout_s of {spec.limits.timeout_s or 0:g}s", None)
        if isinstance(outage, ModelAPIError):  # the provider, not the agent, took the time
            ctx.emit(EventType.ERROR, data=error_data(outage))
            outcome.status, outcome.error = "errored", str(outage)
            return
        run_timeout = LimitExceeded("timeout_s", spec.limits.timeout_s or 0, seconds_since(clock))
        ctx.emit(EventType.ERROR, data=error_data(run_timeout))
        outcome.status, outcome.error, outcome.limit = (
            "limit_exceeded",
            str(run_timeout),
            _limit(run_timeout),
        )
    except asyncio.CancelledError:
        outcome.status, outcome.error = "cancelled", "the run was cancelled"
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with a status and a readable trace
        from langgraph.errors import GraphRecursionError

        outcome.status, outcome.error = classify(exc)
        root = _root_cause(exc)
        if isinstance(root, GraphRecursionError):
            outcome.limit = {"name": "recursion_limit", "value": compiled.recursion_limit, "observed": None}
        elif isinstance(root, ModelContextExceeded):
            outcome.limit = {"name": "context_window", "value": None, "observed": None}
        if not isinstance(exc, RunError) or isinstance(exc, GraphRecursionError):
            # node failures were recorded by the node; anything else (a routing error, a bug) is recorded here
            ctx.emit(EventType.ERROR, data=error_data(exc))


async def _invoke(
    compiled: CompiledWorkflow, ctx: RunContext, graph_input: dict[str, Any] | None, checkpointer: Any | None
) -> dict[str, Any] | None:
    """Run the LangGraph graph, with a LangGraph checkpoint saved after every node if there is a checkpointer.

    Checkpoints go under the run id as LangGraph's ``thread_id``. ``durability="sync"`` writes each one before the
    next node starts, so a process killed at any point loses at most the node it was running. A ``graph_input`` of
    None continues from the last checkpoint (a resumed run).
    """
    config = compiled.invoke_config(ctx)
    if checkpointer is None:
        final: dict[str, Any] | None = await compiled.graph.ainvoke(graph_input, config=config)
        return final
    graph = compiled.stepwise_graph.copy(update={"checkpointer": checkpointer})
    config["configurable"]["thread_id"] = ctx.run_id
    final = await graph.ainvoke(graph_input, config=config, durability="sync")
    return final


def _limit(exc: LimitExceeded) -> dict[str, Any]:
    """The limit a run exceeded, as ``RunResult.limit`` holds it (what the ``error`` event's ``limit`` says)."""
    return {"name": exc.limit, "value": exc.value, "observed": exc.observed}


_AGENT_SIDE: tuple[type[BaseException], ...] = (
    ModelScriptExhausted,
    ReplayDivergence,
    PathOutsideWorkdirError,
    ExpressionError,
    TemplateError,
)
"""The agent's (or its script's) doing, though the base classes say infrastructure (a model or sandbox error) or a
configuration mistake (the workflow's expressions and templates, failing at run time on what the agent produced)."""

_INFRASTRUCTURE: tuple[type[BaseException], ...] = (ModelAPIError, SandboxError, TraceError, OSError, ConfigError)
"""The model provider, the sandbox backend, the trace store, the machine (sqlite3 and psycopg errors of a store
are raised as TraceError), and a configuration mistake found only while running (a model's missing API key)."""


def classify(exc: BaseException) -> tuple[str, str]:
    """The status and the message of a run that the exception ``exc`` ended.

    The cause is read through ``NodeFailed`` (a node's failure after its retries, nested for subgraphs), down to
    the error that started it:

    - ``limit_exceeded``: a declared limit (``LimitExceeded``: steps, model calls, tokens, a node's
      (``NodeTimeout``) or the run's ``timeout_s``, ``max_turns``, a loop's ``max_iterations``), LangGraph's
      recursion limit, or the model's context window (``ModelContextExceeded``: the agent's conversation outgrew
      it). A node's timeout is a limit the workflow set for the agent's work, so it is the agent's, like the
      run's; but a timeout that cut a model call while it retried a failing provider is the provider's, and
      becomes a ``ModelAPIError`` (``errored``).
    - ``failed``: the agent's own failure: an error the workflow's logic raised (no route holds, a ``tool`` node
      with ``fail_on_error``, an output expression that cannot read the answer), a scripted model that ran out of
      responses (the script is the agent), a replay that diverged from its tape.
    - ``errored``: the infrastructure failed: the model provider (``ModelAPIError`` after its retries), the
      sandbox (``SandboxError``: unavailable, or its process or container died), the trace store (``TraceError``,
      ``OSError``), a configuration mistake that only showed while running (``ConfigError``: a missing API key),
      or agentflow itself (any exception that is not an ``AgentflowError``: a bug). An errored run is never scored
      as the agent's failure.

    A tool's own failure never gets here: it goes back to the model as the tool's result (``ToolOutcome``).
    """
    from langgraph.errors import GraphRecursionError

    root = _root_cause(exc)
    message = str(exc) if isinstance(exc, RunError) else f"{type(exc).__name__}: {exc}"
    if isinstance(root, GraphRecursionError):
        return "limit_exceeded", f"the run took more steps than its loop bounds allow: {root}"
    if isinstance(root, LimitExceeded | NodeTimeout | ModelContextExceeded):
        return "limit_exceeded", message
    if isinstance(root, _AGENT_SIDE):
        return "failed", message
    if isinstance(root, _INFRASTRUCTURE):
        return "errored", message
    if isinstance(root, AgentflowError):
        return "failed", message
    return "errored", f"internal error: {message}"


def _root_cause(exc: BaseException) -> BaseException:
    """The error a chain of node failures (``NodeFailed``, one per enclosing subgraph node) started with."""
    while isinstance(exc, NodeFailed):
        exc = exc.cause
    return exc
