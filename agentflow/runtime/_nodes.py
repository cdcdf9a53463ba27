"""Node executors: what agent, tool, router and subgraph nodes do when LangGraph calls them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from agentflow.errors import LimitExceeded, ModelAPIError, NodeFailed, NodeTimeout, RunError
from agentflow.graph import _expr
from agentflow.models._base import Model, ModelResponse, ModelSettings, ToolCall
from agentflow.models._retry import observe_retries
from agentflow.routing._router import QTableRouter, offer_text
from agentflow.runtime import _parallel
from agentflow.runtime._context import RunContext
from agentflow.sandboxes._base import ExecResult
from agentflow.spec import _templating
from agentflow.spec._models import AgentNode, MapNode, NodeSpec, RetryPolicy, RouterNode, SubgraphNode, ToolNode
from agentflow.tools._base import Tool, ToolContext, ToolOutcome
from agentflow.traces._events import Event, EventType, seconds_since
from agentflow.traces._hashing import request_hash
from agentflow.traces._payloads import (
    ErrorData,
    LimitData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RequestedToolCall,
    RouteData,
    TokenUsage,
    ToolCallData,
    ToolResultData,
    sandbox_exec_data,
)

if TYPE_CHECKING:
    from agentflow.runtime._compile import CompiledWorkflow


_NO_RETRY = RetryPolicy()


@dataclass(slots=True)  # made for every node visit: not frozen, whose __init__ costs several times more
class Visit:
    """One attempt at one node: what every executor needs, in one place."""

    ctx: RunContext
    compiled: CompiledWorkflow
    name: str
    state: Mapping[str, Any]
    started: Event
    finished: dict[str, Any] | None = None  # more data of the visit's node_finished (a best-of choice)
    unscored_branches: tuple[str, ...] = ()  # branches whose events the node's reward hooks do not score

    @property
    def label(self) -> str:
        """The node's name in the trace (prefixed by its subgraph path)."""
        return self.compiled.prefix + self.name


async def execute_node(ctx: RunContext, compiled: CompiledWorkflow, name: str, state: Mapping[str, Any]) -> Any:
    """Run one visit of a node with its loop bound, step limit, timeout, retries, events and node rewards."""
    spec = compiled.loaded.spec
    node = spec.nodes[name]
    label = compiled.prefix + name
    visit_key = ctx.visit_key(label)
    ctx.visits[visit_key] += 1
    visit = ctx.visits[visit_key]
    bound = compiled.template.loop_bound(name)
    if visit > compiled.template.max_visits(name):
        limit = LimitExceeded(f"max_iterations of the loop through {label!r}", bound or 1, visit)
        ctx.emit(EventType.ERROR, node=label, data=error_data(limit))
        raise limit
    ctx.limits.start_step()
    timeout = node.timeout_s or spec.limits.node_timeout_s
    policy = node.retry or _NO_RETRY
    try:
        if policy.attempts == 1:  # the common case skips the retry machinery
            return await _attempt(ctx, compiled, name, node, state, visit=visit, attempt=1, timeout=timeout)
        attempt = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.backoff_s, exp_base=policy.multiplier, max=policy.max_backoff_s),
            retry=retry_if_exception(lambda exc: not isinstance(exc, LimitExceeded | asyncio.CancelledError)),
            reraise=True,
        )
        async for attempt_state in retrying:
            with attempt_state:
                attempt += 1
                return await _attempt(ctx, compiled, name, node, state, visit=visit, attempt=attempt, timeout=timeout)
    except LimitExceeded:
        raise
    except NodeTimeout as exc:
        raise LimitExceeded(f"timeout_s of node {label!r}", timeout or 0, timeout or 0) from exc
    except Exception as exc:
        raise NodeFailed(label, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _attempt(
    ctx: RunContext,
    compiled: CompiledWorkflow,
    name: str,
    node: NodeSpec,
    state: Mapping[str, Any],
    *,
    visit: int,
    attempt: int,
    timeout: float | None,
) -> dict[str, Any]:
    label = compiled.prefix + name
    # The event data below are annotated literals, checked against their TypedDict like a call of it, without the
    # call's copy of every event's data (these run for every node, tool call and model turn).
    started_data: NodeStartedData = {"visit": visit, "attempt": attempt}
    started = ctx.emit(EventType.NODE_STARTED, node=label, data=started_data)
    first_index = len(ctx.events) - 1
    clock = time.perf_counter()
    visit_of_node = Visit(ctx, compiled, name, state, started)
    try:
        if timeout is None:  # the usual case: no timer to schedule and cancel
            updates = await _dispatch(visit_of_node, node)
        else:
            async with asyncio.timeout(timeout):  # no task per node, unlike wait_for
                updates = await _dispatch(visit_of_node, node)
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            exc = _timeout_error(ctx, f"node {label!r} ran past its timeout of {timeout:g}s", label)
        ctx.emit(EventType.ERROR, node=label, parent=started.seq, data=error_data(exc))
        failed: NodeFinishedData = {
            "status": "failed",
            "updates": {},
            "duration_s": seconds_since(clock),
            "error": str(exc),
        }
        if visit_of_node.finished:
            failed.update(visit_of_node.finished)  # type: ignore[typeddict-item]  # keys NodeFinishedData declares
        ctx.emit(EventType.NODE_FINISHED, node=label, parent=started.seq, data=failed)
        ctx.flush()  # a retry runs the node's effects again
        raise exc from None
    _parallel.merge_updates(ctx.state, compiled, name, updates)
    finished: NodeFinishedData = {"status": "ok", "updates": updates, "duration_s": seconds_since(clock)}
    if visit_of_node.finished:
        finished.update(visit_of_node.finished)  # type: ignore[typeddict-item]  # keys NodeFinishedData declares
    ctx.emit(EventType.NODE_FINISHED, node=label, parent=started.seq, data=finished)
    if compiled.hooks.wants("node", name):
        events = ctx.events_since(first_index)
        if visit_of_node.unscored_branches:  # a best-of visit: the node is what the chosen candidate did
            events = [event for event in events if not _in_branches(event, visit_of_node.unscored_branches)]
        await compiled.hooks.score(ctx, kind="node", node=name, label=label, events=events)
    # The node's updates go to LangGraph (the next node, a LangGraph checkpoint): its events are written first.
    ctx.flush()
    return updates


def _in_branches(event: Event, branches: tuple[str, ...]) -> bool:
    tag = event.data.get("branch")
    return isinstance(tag, str) and any(tag == branch or tag.startswith(branch + "/") for branch in branches)


def _timeout_error(ctx: RunContext, message: str, label: str | None) -> RunError:
    """What a timeout of a node (or of the run, ``label`` None) stands for.

    A limit on the agent's work (``NodeTimeout``), unless it cut a model call that was retrying a failing
    provider: then the provider took the time, and the run errors (``ModelAPIError`` with the retries so far).
    """
    retries = ctx.retries_in_flight(label)
    if not retries:
        return NodeTimeout(message)
    return ModelAPIError(
        f"{message} while a model call retried a failing provider ({len(retries)} retries, last: "
        f"{retries[-1]['error']})",
        status_code=retries[-1]["status_code"],
        retries=retries,
    )


def error_data(exc: BaseException) -> ErrorData:
    """The data of the ``error`` event that records ``exc``."""
    data = ErrorData(kind=type(exc).__name__, message=str(exc))
    if isinstance(exc, LimitExceeded):
        data["limit"] = LimitData(name=exc.limit, value=exc.value, observed=exc.observed)
    if isinstance(exc, ModelAPIError):
        data["status_code"] = exc.status_code
        if exc.retries:
            data["retries"] = exc.retries
    return data


async def _dispatch(visit: Visit, node: NodeSpec) -> dict[str, Any]:
    if isinstance(node, AgentNode):
        if node.best_of is not None:
            from agentflow.runtime._best_of import run_best_of  # it runs candidates through _run_agent

            return await run_best_of(visit, node, node.best_of)
        return await _run_agent(visit, node)
    if isinstance(node, ToolNode):
        return await _run_tool_node(visit, node)
    if isinstance(node, SubgraphNode):
        return await _run_subgraph(visit, node)
    if isinstance(node, RouterNode):
        return {}  # a router decides in its conditional edge; the node itself changes nothing
    if isinstance(node, MapNode):
        return _parallel.collect_map(visit, node)  # its items ran before it, each as its own branch
    raise AssertionError(f"unknown node kind {node!r}")


async def _call_tool(
    visit: Visit, tool: Tool | None, call: ToolCall, parent: int, parsed: Mapping[str, Any] | None = None
) -> tuple[ToolOutcome, list[Event]]:
    """Run one tool call with its events; an unknown tool or bad arguments become an error outcome.

    ``parsed`` is the arguments as data when the caller built them (tool nodes), saving a JSON round trip.
    """
    ctx, compiled, label = visit.ctx, visit.compiled, visit.label
    first_index = len(ctx.events)
    call_event = ctx.emit(
        EventType.TOOL_CALL,
        node=label,
        parent=parent,
        data=_tool_call_data(call, tool),
    )

    def record_exec(cmd: list[str], cwd: str | None, result: ExecResult) -> None:
        data = sandbox_exec_data(cmd, f"tool:{call.name}", result)
        ctx.emit(EventType.SANDBOX_EXEC, node=label, parent=call_event.seq, data=data)

    clock = time.perf_counter()
    served = ctx.plan.served_tool(call)
    if served is not None:  # a replay in tape mode: the recorded result and sandbox commands, nothing executes
        for exec_data in served.execs:
            ctx.emit(EventType.SANDBOX_EXEC, node=label, parent=call_event.seq, data=exec_data)
        outcome = served.outcome
    elif tool is None:
        choices = ", ".join(sorted(compiled.tools)) or "none"
        message = f"unknown tool {call.name!r}; the tools you can call here are: {choices}"
        outcome = ToolOutcome(ok=False, content=f"error: {message}", error=message)
    else:
        tool_ctx = ToolContext(
            sandbox=ctx.current_sandbox(),
            run_id=ctx.run_id,
            node=label,
            state=dict(ctx.state),
            on_exec=record_exec,
            before_effect=ctx.flush,
        )
        ctx.flush()  # the tool's own code may act outside the process (a host plugin), not only through the sandbox
        outcome = await tool.invoke(tool_ctx, call.arguments if parsed is None else parsed)
    result_data: ToolResultData = {
        "tool": call.name,
        "call_id": call.id,
        "ok": outcome.ok,
        "content": outcome.content,
        "result": _json_safe(outcome.result),
        "error": outcome.error,
        "duration_s": seconds_since(clock),
    }
    ctx.emit(EventType.TOOL_RESULT, node=label, parent=call_event.seq, data=result_data)
    return outcome, ctx.events_since(first_index)


def _tool_call_data(call: ToolCall, tool: Tool | None) -> ToolCallData:
    data: ToolCallData = {"tool": call.name, "call_id": call.id, "arguments": call.arguments}
    if tool is not None and tool.host:
        data["host"] = True  # a plugin run outside the sandbox
    return data


def _json_safe(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str, allow_nan=True).replace("NaN", "null"))
    return value


async def _run_agent(
    visit: Visit,
    node: AgentNode,
    *,
    candidate_model: Callable[[Model], Model] | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One visit of an agent node. A best-of-N candidate passes the model it calls instead of the node's (given
    the node's: ``Model.for_candidate``) and what it samples with (``sampling``: settings over the node's)."""
    ctx, compiled, name, state, started, label = (
        visit.ctx,
        visit.compiled,
        visit.name,
        visit.state,
        visit.started,
        visit.label,
    )
    spec = compiled.loaded.spec
    config = spec.models[node.model]
    model = ctx.model(config.model, compiled.loaded.base_dir)
    if candidate_model is not None:
        model = candidate_model(model)
    settings = ModelSettings.model_validate(config.model_dump(exclude={"model"}))
    if ctx.seed is not None:
        settings = settings.model_copy(update={"seed": ctx.seed})
    if sampling:
        settings = settings.model_copy(update=dict(sampling))
    tools = {tool_name: compiled.tools[tool_name] for tool_name in node.tools}
    schemas = [tool.openai_schema() for tool in tools.values()]
    system = _templating.render(node.prompt, state)
    offering = compiled.offers.get(name)
    if offering is not None:  # an a_priori router follows: the agent is told whom it may hand over to
        served = ctx.plan.served_route(offering.label, _decisions_so_far(ctx, offering.label))
        if served is not None:  # a replay offers what the recorded run offered
            system += offer_text(served["qtable"]["candidates"])
        else:
            system += offering.offer_prompt(ctx.run_id, ctx.seed, name, state, _open_slot(ctx, compiled))
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if node.input:
        messages.append({"role": "user", "content": _templating.render(node.input, state)})
    score_steps = compiled.hooks.wants("step", name)
    for _turn in range(node.max_turns):
        ctx.limits.start_model_call()
        settings_data = settings.request_data()
        request_data: ModelRequestData = {
            "model": model.model_id,
            "messages": messages,
            "tools": schemas,
            "settings": settings_data,
            "request_hash": request_hash(model.model_id, messages, schemas, settings_data),
        }
        request = ctx.emit(EventType.MODEL_REQUEST, node=label, parent=started.seq, data=request_data)
        clock = time.perf_counter()
        response = await _complete(ctx, label, model, messages=messages, schemas=schemas, settings=settings)
        reply = ctx.emit(
            EventType.MODEL_RESPONSE,
            node=label,
            parent=request.seq,
            data=_response_data(response, model, seconds_since(clock)),
        )
        ctx.limits.add_tokens(response.usage.total_tokens)
        messages = [*messages, response.message]
        if not response.tool_calls:
            if score_steps:
                await _score_step(ctx, compiled, name, [reply])
            answer = str(response.message.get("content") or "")
            return _agent_outputs(node, answer, state)
        for call in response.tool_calls:
            outcome, step_events = await _call_tool(visit, tools.get(call.name), call, reply.seq)
            messages = [*messages, {"role": "tool", "tool_call_id": call.id, "content": outcome.content}]
            if score_steps:
                await _score_step(ctx, compiled, name, step_events)
    raise LimitExceeded(f"max_turns of agent {label!r}", node.max_turns, node.max_turns + 1)


def _response_data(response: ModelResponse, model: Model, duration_s: float) -> ModelResponseData:
    calls: list[RequestedToolCall] = [
        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
    ]
    usage: TokenUsage = {"input_tokens": response.usage.input_tokens, "output_tokens": response.usage.output_tokens}
    data: ModelResponseData = {
        "model": response.model or model.model_id,
        "message": response.message,
        "tool_calls": calls,
        "usage": usage,
        "duration_s": duration_s,
    }
    if response.retries:  # only when there were any, so a trace without retries reads as before (and replays the same)
        data["retries"] = [retry.to_dict() for retry in response.retries]
    return data


async def _complete(
    ctx: RunContext,
    label: str,
    model: Model,
    *,
    messages: list[dict[str, Any]],
    schemas: list[dict[str, Any]],
    settings: ModelSettings,
) -> ModelResponse:
    """One model call, its retries watched while it goes (see ``_timeout_error``)."""
    in_flight: list[dict[str, Any]] = []
    key = ctx.retrying_key(label)  # concurrent branches call the same node's model at once
    ctx.model_retrying[key] = in_flight
    ctx.flush()  # the request goes out of the process: what led to it is written first
    with observe_retries(lambda retry: in_flight.append(retry.to_dict())):
        response = await model.complete(list(messages), schemas, settings)
    del ctx.model_retrying[key]  # a call cut by a timeout stays, for _timeout_error to find
    return response


async def _score_step(ctx: RunContext, compiled: CompiledWorkflow, name: str, events: list[Event]) -> None:
    await compiled.hooks.score(ctx, kind="step", node=name, label=compiled.prefix + name, events=events)


def _agent_outputs(node: AgentNode, answer: str, state: Mapping[str, Any]) -> dict[str, Any]:
    try:
        parsed: Any = json.loads(answer)
    except ValueError:
        parsed = None
    variables = {"answer": answer, "json": parsed, "state": dict(state)}
    return {key: _expr.evaluate(expression, variables) for key, expression in node.output.items()}


async def _run_tool_node(visit: Visit, node: ToolNode) -> dict[str, Any]:
    ctx, compiled, name, state, label = visit.ctx, visit.compiled, visit.name, visit.state, visit.label
    tool = compiled.tools.get(node.tool)
    arguments = _templating.render_arguments(node.args, state, tool.quoting if tool is not None else None)
    call = ToolCall(id=f"{label}-{ctx.visits[ctx.visit_key(label)]}", name=node.tool, arguments=json.dumps(arguments))
    outcome, events = await _call_tool(visit, tool, call, visit.started.seq, arguments)
    if compiled.hooks.wants("step", name):
        await _score_step(ctx, compiled, name, events)
    if not outcome.ok and node.fail_on_error:
        raise RunError(f"tool {node.tool!r} failed: {outcome.error}")
    variables = {"result": outcome.result, "ok": outcome.ok, "error": outcome.error, "state": dict(state)}
    return {key: _expr.evaluate(expression, variables) for key, expression in node.output.items()}


async def _run_subgraph(visit: Visit, node: SubgraphNode) -> dict[str, Any]:
    ctx, state = visit.ctx, visit.state
    child = visit.compiled.children[visit.name]
    child_inputs = {key: _expr.evaluate(expression, {"state": dict(state)}) for key, expression in node.inputs.items()}
    child_state = {**child.initial_state(), **child_inputs}
    graph = child.stepwise_graph if ctx.stepwise else child.graph
    final = await graph.ainvoke(child_state, config=child.invoke_config(ctx))
    return {key: _expr.evaluate(expression, {"state": dict(final)}) for key, expression in node.outputs.items()}


def choose_next(ctx: RunContext, compiled: CompiledWorkflow, name: str, state: Mapping[str, Any]) -> str:
    """Evaluate a node's ways out in order and record the choice; the first that holds wins."""
    label = compiled.prefix + name
    router = compiled.routers.get(name)
    if router is not None:
        return _choose_learned(ctx, compiled, router, state)
    for transition in compiled.template.transitions[name]:
        if transition.when is None or _expr.evaluate_condition(transition.when, state):
            route: RouteData = {"from": label, "to": transition.target, "condition": transition.when}
            ctx.emit(EventType.ROUTE, node=label, data=route)
            ctx.flush()  # before LangGraph acts on the choice (a LangGraph checkpoint may record it)
            return transition.target
    conditions = [t.when for t in compiled.template.transitions[name]]
    raise RunError(f"no way out of node {label!r} holds: {conditions}; add a default edge without `when`")


def _decisions_so_far(ctx: RunContext, label: str) -> int:
    return sum(1 for event in ctx.events if event.type is EventType.ROUTE and event.node == label)


def _open_slot(ctx: RunContext, compiled: CompiledWorkflow) -> Callable[[str], bool]:
    """Whether an agent may run again in this run (its loop bound is not reached)."""
    return lambda agent: ctx.visits[compiled.prefix + agent] < compiled.template.max_visits(agent)


def _choose_learned(ctx: RunContext, compiled: CompiledWorkflow, router: QTableRouter, state: Mapping[str, Any]) -> str:
    """A `policy: qtable` router's decision, recorded with what it saw (Q-values, epsilon, candidates, chooser)."""
    served = ctx.plan.served_route(router.label, _decisions_so_far(ctx, router.label))
    if served is not None:  # a replay: the recorded decision again, nothing learned
        replayed: RouteData = {
            "from": served["from"],
            "to": served["to"],
            "condition": None,
            "qtable": served["qtable"],
        }
        ctx.emit(EventType.ROUTE, node=router.label, data=replayed)
        ctx.flush()
        return str(served["to"])
    outcome = router.decide(ctx.run_id, ctx.seed, ctx.events, state, _open_slot(ctx, compiled))
    decision = outcome.decision
    route: RouteData = {
        "from": router.label,
        "to": decision.choice,
        "condition": None,
        "qtable": {
            **outcome.record,
            "state": decision.state,
            "q_values": decision.q_values,
            "epsilon": decision.epsilon,
            "candidates": decision.candidates,
            "chosen_by": decision.chooser,
            **({"model_said": decision.model_said} if decision.model_said is not None else {}),
        },
    }
    ctx.emit(EventType.ROUTE, node=router.label, data=route)
    ctx.flush()
    return decision.choice
