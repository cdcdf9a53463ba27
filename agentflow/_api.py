"""The top-level entry points that are more than a re-export: running, replaying, resuming and forking a workflow.

``run``, ``replay``, ``resume`` and ``fork`` block until the runs end (each starts its own event loop); async code
awaits ``arun``, ``agentflow.rerun.replay_run``, ``agentflow.rerun.resume_run`` and ``agentflow.rerun.fork_run``
instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from agentflow.errors import ConfigError
from agentflow.rerun import ReplayReport, fork_run, replay_run, resume_run
from agentflow.runtime import CompiledWorkflow, RunResult, run_workflow
from agentflow.spec import LoadedWorkflow
from agentflow.traces import Event, Store

T = TypeVar("T")


def _blocking(name: str, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coroutine()`` to its end in a new event loop; refuse inside a running one (asyncio.run would too)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine())
    raise ConfigError(
        f"agentflow.{name}() blocks, so it cannot be called while an event loop runs",
        fix=f"await its async version ({'agentflow.arun' if name == 'run' else f'agentflow.rerun.{name}_run'})",
    )


async def arun(
    workflow: CompiledWorkflow | LoadedWorkflow | str | Path,
    *,
    inputs: dict[str, Any] | None = None,
    model: str | None = None,
    sandbox: str | None = None,
    store: Store | None = None,
    resumable: bool = False,
    otlp: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run a workflow once, record its trace, and return how it ended (``agentflow.runtime.run_workflow``).

    A run that fails, hits a limit or errors still returns: ``RunResult.status`` says which, ``error`` why.

    Args:
        workflow: a workflow file, a loaded workflow (``load_workflow``) or a compiled one (``compile_workflow``:
            compile once to run many times cheaply).
        inputs: initial values of state keys, over the workflow's ``inputs``.
        model: a ``provider:model`` string used for every model of the workflow (``openai:gpt-4o-mini``).
        sandbox: a sandbox backend name instead of the one the workflow declares (``local``, ``docker``, ``e2b``).
        store: where the trace goes (``open_store``); by default ``.agentflow/`` in the working directory.
        resumable: save a LangGraph checkpoint after every node, so that ``resume`` can continue the run if its
            process dies (it costs time per node).
        otlp: an OTLP/HTTP endpoint to send the run's spans to (default: ``AGENTFLOW_OTLP_ENDPOINT``; needs the
            ``otel`` extra).
        on_event: called with every event as the run records it; it must be quick.

    Raises:
        ConfigError: the workflow, its inputs or a model's configuration are wrong; nothing was recorded.
    """
    return await run_workflow(
        workflow,
        inputs=inputs,
        model=model,
        sandbox=sandbox,
        store=store,
        resumable=resumable,
        otlp=otlp,
        on_event=on_event,
    )


def run(
    workflow: CompiledWorkflow | LoadedWorkflow | str | Path,
    *,
    inputs: dict[str, Any] | None = None,
    model: str | None = None,
    sandbox: str | None = None,
    store: Store | None = None,
    resumable: bool = False,
    otlp: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run a workflow once and wait for it to end: ``arun`` for code that is not async (same arguments).

    Raises:
        ConfigError: the workflow, its inputs or a model's configuration are wrong (nothing was recorded), or an
            event loop is running in this thread (await ``arun`` there).
    """
    return _blocking(
        "run",
        lambda: arun(
            workflow,
            inputs=inputs,
            model=model,
            sandbox=sandbox,
            store=store,
            resumable=resumable,
            otlp=otlp,
            on_event=on_event,
        ),
    )


def replay(
    store: Store,
    run_id: str,
    *,
    mode: Literal["tape", "verify"] = "tape",
    workflow: str | Path | None = None,
    ignore: Sequence[str] | None = None,
) -> ReplayReport:
    """Replay a stored run without calling a model and compare the new trace with it, event by event.

    The replay is recorded as a new run in ``store``; the report says whether every event matched
    (``identical``) and, if not, where the two traces first differ (``divergence``). The async version is
    ``agentflow.rerun.replay_run``.

    Args:
        store: the store holding the run (``open_store``).
        run_id: the run's id or a unique prefix.
        mode: ``tape`` (nothing executes: model responses and tool results come from the trace) or ``verify``
            (the tools run again in a fresh sandbox, the model responses still come from the trace).
        workflow: the workflow file to replay with; by default the file the run recorded.
        ignore: regular expressions of text that may differ between executions; by default the test runners'
            timings (``()`` compares exactly).

    Raises:
        TraceError: the run is missing, or its trace fails verification.
        ConfigError: the workflow file is gone or invalid, or ``mode`` is unknown.
    """

    def replaying() -> Coroutine[Any, Any, ReplayReport]:
        if ignore is None:
            return replay_run(store, run_id, mode=mode, workflow=workflow)
        return replay_run(store, run_id, mode=mode, workflow=workflow, ignore=ignore)

    return _blocking("replay", replaying)


def resume(store: Store, run_id: str, *, workflow: str | Path | None = None) -> RunResult:
    """Continue a resumable run (``run(..., resumable=True)``) whose process died, until it ends.

    The async version is ``agentflow.rerun.resume_run``.

    Args:
        store: the store holding the run and its LangGraph checkpoints.
        run_id: the run's id or a unique prefix.
        workflow: the workflow file; by default the one the run recorded (it must not have changed since).

    Raises:
        TraceError: no such run, the run finished or is still running, or it has no LangGraph checkpoint.
        ConfigError: the workflow file is gone, invalid, or changed since the run started.
    """
    return _blocking("resume", lambda: resume_run(store, run_id, workflow=workflow))


def fork(
    store: Store,
    run_id: str,
    *,
    at: int | str,
    n: int = 1,
    model: str | None = None,
    workflow: str | Path | None = None,
) -> list[RunResult]:
    """Fork a stored run after ``at`` steps into ``n`` new runs that continue live from there; return how each ended.

    The continuations share the run's prefix: its model responses, tool results and reward-hook events are served
    from its trace (nothing is called or executed for them), the sandbox is rebuilt to its state at ``at`` once and
    copied for each continuation, and each samples the rest with its own seed. Each records
    ``forked_from: {run_id, seq}``, ``fork_group`` and ``fork_index`` in its ``run_started``. The async version is
    ``agentflow.rerun.fork_run``; ``docs/forks.md`` has the details.

    Args:
        store: the store holding the run; the continuations are recorded there.
        run_id: the run's id or a unique prefix.
        at: a step count (``15``: the first 15 model turns and tool calls) or ``"seq:N"`` (the steps that ended at
            or before event N).
        n: how many continuations.
        model: a ``provider:model`` the continuations call once live (default: the run's).
        workflow: the workflow file; by default the one the run recorded (it must not have changed since).

    Raises:
        TraceError: no such run, its trace is damaged, ``at`` is past its end, or it has concurrent branches
            (nothing is recorded).
        ConfigError: the workflow file is gone, invalid or changed since the run; ``n`` below 1.
    """
    return _blocking("fork", lambda: fork_run(store, run_id, at=at, n=n, model=model, workflow=workflow))
