"""Best-of-N on an agent node: n candidate visits run concurrently, a reward hook scores each, the best is kept.

``best_of: {n: 4, by: tests_delta, sandbox: fork}`` makes one visit of the node into n candidates, each a branch
(``Branch(kind="best_of")``, id ``<node>#<i>``) whose events carry that id in ``data.branch``:

1. Each candidate beyond the first counts as one more step against ``max_steps``; model calls and tokens of every
   candidate count against the run's limits as they happen. A limit of the run reached by one candidate stops them
   all; a candidate's own ``max_turns`` ends only that candidate (it failed).
2. With ``sandbox: fork`` each candidate gets its own copy of the sandbox the node runs in
   (``ctx.current_sandbox().fork()``); with ``shared`` (the default) they all work in that sandbox, like threads in
   one working copy (for candidates that only read).
3. The ``by`` hook starts a run of its own per candidate (its ``start_run`` with the run id
   ``<run_id>/<branch>``, on the node's sandbox as the candidate starts from it), so a stateful hook (the tests
   before, for ``tests_delta``) compares each candidate with the node's starting point, never with another
   candidate. This happens before any candidate starts (with ``fork``, while the forks are made), one candidate
   after the other, so the hook's commands are recorded on the run's main path in the same order in every
   execution, and nothing of the main path comes amid the candidates' events.
4. The candidates run concurrently, each calling ``Model.for_candidate(i)`` (the scripted model: its own list of
   a ``candidates`` entry) with its own seed (``vary: seed``: the run's or model's seed + i) or temperature.
5. Each finished candidate is scored in its branch as one node step (``kind="node"``, its events); the hook's
   reward (or failure) is recorded there, its commands run on a copy of the candidate's workdir.
6. The best score wins; ties go to the lowest index; a candidate without a score (it failed, or the hook failed
   or abstained) never beats one with a score. When no candidate has a score the first that finished is kept;
   when every candidate failed, the node fails with the first candidate's error.
7. The chosen candidate's state updates become the node's; with ``sandbox: fork`` its sandbox replaces the one the
   node ran in (the run's, or the enclosing branch's own), which is closed, as are the other candidates'. The
   model goes on from the chosen candidate's position (``Model.continue_from``). ``node_finished.data.best_of``
   records ``{by, vary, sandbox, candidates: [{branch, score, error, seed | temperature}], chosen}``; the node's
   reward hooks score the node as the chosen candidate did it (the other candidates' events left out).

A tape replay runs no hook: the candidates' rewards come back from the tape in their branches, and the choice is
made again from them, so it is the recorded one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentflow.errors import LimitExceeded, RewardHookError
from agentflow.models._base import Model
from agentflow.rewards import HookContext, HookSandbox, RewardHook, StepContext, create_reward_hook
from agentflow.runtime._branches import Branch
from agentflow.runtime._hooks import _EventsBefore
from agentflow.runtime._nodes import Visit, _run_agent, error_data
from agentflow.sandboxes._base import ObservedSandbox, Sandbox
from agentflow.spec._models import AgentNode, BestOfSpec, WorkflowSpec
from agentflow.traces._events import Event, EventType, seconds_since
from agentflow.traces._payloads import BestOfCandidateData, BestOfData, ErrorData, RewardData, SandboxExecData

if TYPE_CHECKING:
    from pathlib import Path

    from agentflow.runtime._context import RunContext


def best_of_hooks(spec: WorkflowSpec, base_dir: Path | None) -> dict[str, RewardHook]:
    """The ``by`` hook of every agent node with ``best_of``, built once per compiled workflow (apart from the
    workflow's ``rewards:`` hooks, so a stateful hook's candidates never touch the run's own scoring).

    Raises:
        UnknownBackendError, PluginLoadError: the hook does not exist (validation reports it first, with its line).
    """
    context = HookContext(base_dir, {name: config.model for name, config in spec.models.items()})
    return {
        name: create_reward_hook(node.best_of.by, node.best_of.options, context)
        for name, node in spec.nodes.items()
        if isinstance(node, AgentNode) and node.best_of is not None
    }


@dataclass
class _Candidate:
    """One candidate of a best-of visit, filled in as it goes."""

    index: int
    branch: Branch
    sampling: dict[str, Any]
    model: Model | None = None  # what Model.for_candidate gave it
    updates: dict[str, Any] | None = None  # its state updates, once it finished
    failure: BaseException | None = None
    events: list[Event] = field(default_factory=lambda: [])

    def pick_model(self, node_model: Model) -> Model:
        self.model = node_model.for_candidate(self.index)
        return self.model


@dataclass(frozen=True)
class _BestOfVisit:
    """What every candidate of one best-of visit shares."""

    ctx: RunContext
    visit: Visit
    node: AgentNode
    hook: RewardHook
    spec: BestOfSpec


async def run_best_of(visit: Visit, node: AgentNode, best_of: BestOfSpec) -> dict[str, Any]:
    """Run one best-of-N visit of an agent node (see the module) and return the chosen candidate's updates.

    Raises:
        LimitExceeded: a limit of the run was reached (by any candidate; the others are stopped).
        Exception: the first candidate's error, when every candidate failed.
    """
    ctx, label = visit.ctx, visit.label
    for _ in range(best_of.n - 1):  # a candidate is a node execution: the first was counted by the visit
        ctx.limits.start_step()
    hook = visit.compiled.best_of_hooks[visit.name]
    config = visit.compiled.loaded.spec.models[node.model]
    parent = ctx.branch
    candidates = [
        _Candidate(i, Branch(name=f"{label}#{i}", kind="best_of", parent=parent), _sampling(best_of, config, ctx, i))
        for i in range(best_of.n)
    ]
    shared = _BestOfVisit(ctx, visit, node, hook, best_of)
    forks: list[Sandbox] = []
    home = ctx.current_sandbox()
    try:
        # the hook takes each candidate's starting point while the forks are made (both only read the node's
        # sandbox), and before any candidate starts: the run's main path records nothing amid the candidates' events
        forked, started = await asyncio.gather(
            _fork(ctx, len(candidates)) if best_of.sandbox == "fork" else _no_forks(),
            _nothing() if ctx.replays_hooks else _start_scoring(shared, candidates, home),
            return_exceptions=True,  # both run to their end before a failure of either is raised
        )
        if isinstance(started, BaseException):
            await _close_all(forked if isinstance(forked, list) else [])
            raise started
        if isinstance(forked, BaseException):
            raise forked
        forks = forked
        for candidate, sandbox in zip(candidates, forks, strict=False):
            candidate.branch.sandbox = sandbox
        await _run_concurrently(shared, candidates)
        chosen = _choose(ctx, best_of, candidates)
        visit.finished = {"best_of": _record(best_of, candidates, chosen)}
        visit.unscored_branches = tuple(c.branch.id for c in candidates if c is not chosen)
        if chosen is None:
            first = candidates[0].failure
            raise first if first is not None else RewardHookError(f"best_of of {label!r}: no candidate finished")
        if chosen.model is not None:
            ctx.model(config.model, visit.compiled.loaded.base_dir).continue_from(chosen.model)
        if chosen.branch.sandbox is not None:
            await _keep_sandbox(ctx, parent, chosen.branch.sandbox)
            forks.remove(chosen.branch.sandbox)
        return dict(chosen.updates or {})
    finally:
        if not ctx.replays_hooks:
            for candidate in candidates:
                try:
                    await hook.finish_run(_hook_run_id(ctx, candidate))
                except Exception:  # noqa: BLE001, S112 - releasing a hook's state must not mask how the visit ended
                    continue
        await _close_all(forks)


def _sampling(best_of: BestOfSpec, config: Any, ctx: RunContext, index: int) -> dict[str, Any]:
    """What candidate ``index`` samples with, over the node's model settings: a seed or a temperature."""
    if best_of.vary == "seed":
        base = ctx.seed if ctx.seed is not None else (config.seed if config.seed is not None else 0)
        return {"seed": base + index}
    if best_of.temperatures is not None:
        return {"temperature": best_of.temperatures[index]}
    low = config.temperature if config.temperature is not None else 0.0
    high = max(low, 1.0)
    return {"temperature": round(low + (high - low) * index / (best_of.n - 1), 4)}


async def _no_forks() -> list[Sandbox]:
    return []


async def _nothing() -> None:
    return None


async def _fork(ctx: RunContext, count: int) -> list[Sandbox]:
    """``count`` forks of the sandbox the node runs in, made at once; if one fails, the others are closed."""
    ctx.flush()  # a fork reads the sandbox: what led to it is written first
    home = ctx.current_sandbox()
    made = await asyncio.gather(*(home.fork() for _ in range(count)), return_exceptions=True)
    forks = [forked for forked in made if isinstance(forked, Sandbox)]
    failure = next((error for error in made if isinstance(error, BaseException)), None)
    if failure is not None:
        await _close_all(forks)
        raise failure
    return forks


async def _run_concurrently(shared: _BestOfVisit, candidates: list[_Candidate]) -> None:
    """Run every candidate in its branch; a limit of the run reached by one stops them all."""
    tasks = [asyncio.create_task(_run_candidate(shared, c)) for c in candidates]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _run_candidate(shared: _BestOfVisit, candidate: _Candidate) -> None:
    ctx, visit = shared.ctx, shared.visit
    with ctx.in_branch(candidate.branch):
        first_index = len(ctx.events)
        try:
            candidate.updates = await _run_agent(
                visit, shared.node, candidate_model=candidate.pick_model, sampling=candidate.sampling
            )
        except Exception as exc:
            if _ends_the_run(exc):
                raise
            candidate.failure = exc
            ctx.emit(EventType.ERROR, node=visit.label, parent=visit.started.seq, data=error_data(exc))
            return
        finally:
            candidate.events = ctx.events_since(first_index)
        if not ctx.replays_hooks and candidate.events:
            await _score(shared, candidate)


def _ends_the_run(exc: BaseException) -> bool:
    """A limit of the run (steps, model calls, tokens) ends every candidate; a candidate's own ``max_turns`` only
    ends that candidate."""
    return isinstance(exc, LimitExceeded) and not exc.limit.startswith("max_turns")


def _hook_run_id(ctx: RunContext, candidate: _Candidate) -> str:
    """The run id the ``by`` hook sees for a candidate: one run of the hook per candidate."""
    return f"{ctx.run_id}/{candidate.branch.id}"


def _hook_sandbox(
    ctx: RunContext, hook: RewardHook, best_of: BestOfSpec, sandbox: Sandbox, label: str, *, scratch: str, parent: int
) -> Sandbox | None:
    """The candidate's sandbox as the hook may use it: reads as they are, each command recorded and run on a copy
    of the workdir (as the reward engine hands the workflow's hooks theirs)."""
    if not hook.uses_sandbox:
        return None

    def record(data: SandboxExecData) -> None:
        ctx.emit(EventType.SANDBOX_EXEC, node=label, parent=parent, data=data)

    return HookSandbox(
        ObservedSandbox(sandbox, None, before=ctx.flush),
        by=f"hook:{best_of.by}",
        report=record,
        scratch_prefix=f"best_of-{best_of.by}-{scratch}",
    )


async def _start_scoring(shared: _BestOfVisit, candidates: list[_Candidate], sandbox: Sandbox) -> None:
    """The hook's ``start_run`` for each candidate in turn on ``sandbox`` (the node's, as the candidates start from
    it), on the run's main path: one after the other, so its commands are recorded in the same order in every
    execution (a verify replay compares them). A failure is recorded, never raised."""
    for candidate in candidates:
        await _start_scoring_one(shared, candidate, sandbox)


async def _start_scoring_one(shared: _BestOfVisit, candidate: _Candidate, sandbox: Sandbox) -> None:
    ctx, visit, hook, best_of = shared.ctx, shared.visit, shared.hook, shared.spec
    label = visit.label
    step = StepContext(
        run_id=_hook_run_id(ctx, candidate),
        kind="run",
        node=None,
        events=(),
        state=ctx.state,
        options=dict(best_of.options),
        sandbox=_hook_sandbox(
            ctx, hook, best_of, sandbox, label, scratch=f"start-{candidate.index}", parent=visit.started.seq
        ),
    )
    ctx.flush()  # the hook's code may act outside the process
    try:
        async with asyncio.timeout(best_of.timeout_s):
            await hook.start_run(step)
    except Exception as exc:  # noqa: BLE001 - a failing hook is recorded and never fails the run
        message = f"hook {best_of.by!r} could not start for {candidate.branch.id}: {type(exc).__name__}: {exc}"
        _record_failure(ctx, hook, best_of, label, target=None, message=message)


async def _score(shared: _BestOfVisit, candidate: _Candidate) -> None:
    """Score a finished candidate with the ``by`` hook, in its branch, and record the reward or the failure."""
    ctx, visit, hook, best_of = shared.ctx, shared.visit, shared.hook, shared.spec
    label, target = visit.label, candidate.events[0].seq
    sandbox = candidate.branch.effective_sandbox(ctx.sandbox)
    step = StepContext(
        run_id=_hook_run_id(ctx, candidate),
        kind="node",
        node=label,
        events=tuple(candidate.events),
        state={**ctx.state, **(candidate.updates or {})},  # the state as it would be with this candidate kept
        options=dict(best_of.options),
        sandbox=_hook_sandbox(ctx, hook, best_of, sandbox, label, scratch=f"score-{candidate.index}", parent=target),
        history=_EventsBefore(ctx.events, visit.started.seq + 1),
    )
    ctx.flush()  # the hook's code may act outside the process (a judge model, a sandbox command)
    clock = time.perf_counter()
    try:
        async with asyncio.timeout(best_of.timeout_s):
            reward = await hook.score(step)
    except TimeoutError:
        message = f"hook {best_of.by!r} timed out after {best_of.timeout_s:g}s"
        _record_failure(ctx, hook, best_of, label, target=target, message=message)
        return
    except Exception as exc:  # noqa: BLE001 - a failing hook is recorded and never fails the run
        message = str(RewardHookError(f"hook {best_of.by!r} raised {type(exc).__name__}: {exc}"))
        _record_failure(ctx, hook, best_of, label, target=target, message=message)
        return
    if reward is None:
        return  # the hook abstained: the candidate has no score
    data = RewardData(
        hook=best_of.by,
        hook_version=hook.version,
        on="node",
        value=reward.value,
        label=reward.label,
        explanation=reward.explanation,
        components=dict(reward.components),
        target_seq=target,
        duration_s=seconds_since(clock),
    )
    ctx.emit(EventType.REWARD, node=label, parent=target, data=data)


def _record_failure(
    ctx: RunContext, hook: RewardHook, best_of: BestOfSpec, label: str, *, target: int | None, message: str
) -> None:
    data = ErrorData(
        hook=best_of.by,
        hook_version=hook.version,
        on="node",
        kind="RewardHookError",
        message=message,
        target_seq=target,
    )
    ctx.emit(EventType.ERROR, node=label, parent=target, data=data)


def _scored(best_of: BestOfSpec, candidate: _Candidate) -> tuple[float | None, str | None]:
    """The candidate's score and error as the trace has them: the ``by`` hook's node reward in its branch (what
    the hook recorded, or in a tape replay what the tape gave back), else why there is none."""
    if candidate.failure is not None:
        return None, f"{type(candidate.failure).__name__}: {candidate.failure}"
    branch_id = candidate.branch.id
    failure: str | None = None
    for event in candidate.events:
        if event.data.get("branch") != branch_id or event.data.get("hook") != best_of.by:
            continue
        if event.type is EventType.REWARD and event.data.get("on") == "node":
            value = event.data.get("value")
            return (float(value) if isinstance(value, int | float) else None), None
        if event.type is EventType.ERROR:
            failure = str(event.data.get("message"))
    return None, failure or f"hook {best_of.by!r} gave no score"


def _choose(ctx: RunContext, best_of: BestOfSpec, candidates: list[_Candidate]) -> _Candidate | None:
    """The best scored candidate (ties: the lowest index), else the first that finished, else None."""
    # the candidate's events were taken when it finished; its score was recorded after, in its branch
    for candidate in candidates:
        candidate.events = [e for e in ctx.events if e.data.get("branch") == candidate.branch.id]
    best: tuple[float, _Candidate] | None = None
    for candidate in candidates:
        score, _error = _scored(best_of, candidate)
        if score is not None and (best is None or score > best[0]):
            best = (score, candidate)
    if best is not None:
        return best[1]
    return next((c for c in candidates if c.failure is None), None)


def _record(best_of: BestOfSpec, candidates: list[_Candidate], chosen: _Candidate | None) -> BestOfData:
    entries: list[BestOfCandidateData] = []
    for candidate in candidates:
        score, error = _scored(best_of, candidate)
        entry: BestOfCandidateData = {"branch": candidate.branch.id, "score": score, "error": error}
        entry.update(candidate.sampling)  # type: ignore[typeddict-item]  # seed or temperature
        entries.append(entry)
    return {
        "by": best_of.by,
        "vary": best_of.vary,
        "sandbox": best_of.sandbox,
        "candidates": entries,
        "chosen": chosen.branch.id if chosen is not None else None,
    }


async def _keep_sandbox(ctx: RunContext, parent: Branch | None, kept: Sandbox) -> None:
    """Make the chosen candidate's sandbox the one the node ran in (the nearest enclosing branch's own, else the
    run's) and close the one it replaces."""
    holder = parent
    while holder is not None and holder.sandbox is None:
        holder = holder.parent
    if holder is not None:
        old, holder.sandbox = holder.sandbox, kept
    else:
        old, ctx.sandbox = ctx.sandbox, kept
    if old is not None and old is not kept:
        await old.close()


async def _close_all(sandboxes: list[Sandbox]) -> None:
    """Close the candidates' sandboxes that were not kept (each once: a tape replay's forks are its one sandbox)."""
    seen: set[int] = set()
    for sandbox in sandboxes:
        if id(sandbox) in seen:
            continue
        seen.add(id(sandbox))
        try:
            await sandbox.close()
        except Exception:  # noqa: BLE001, S112 - closing the losers must not mask how the visit ended
            continue
