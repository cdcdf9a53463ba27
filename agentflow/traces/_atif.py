"""Harbor's Agent Trajectory Interchange Format (ATIF, RFC 0001 of the Harbor project): export and import.

``agentflow traces export RUN_ID... --format atif`` writes one ATIF trajectory per run, one JSON document per line
(a single run is a single JSON file, what Harbor's ``trajectory.json`` is). The mapping:

- root: ``schema_version`` ``ATIF-v1.7``, ``session_id`` and ``trajectory_id`` the run id, ``agent`` agentflow and
  its version, the first model that answered (``model_name``) and every tool offered (``tool_definitions``, OpenAI
  function schemas); ``extra`` the run's workflow, status, inputs, final state and, when set, its fork and
  benchmark tags (``forked_from``, ``fork_group``, ``fork_index``, ``bench``);
- steps, one per turn of the conversation (``traces/_conversation.py``): a system or user message is a ``system`` /
  ``user`` step; each model answer an ``agent`` step with its ``model_name``, text (``message``),
  ``reasoning_content``, ``tool_calls`` (arguments parsed from the JSON the model wrote; text that is no JSON
  object is kept in the call's ``extra.arguments_text``), the results as its ``observation`` (``source_call_id``
  the call's id) and ``metrics`` (``prompt_tokens``, ``completion_tokens``); a tool node's call (no model asked
  for it) an ``agent`` step with ``llm_call_count`` 0; an assistant message a fresh conversation repeats from an
  earlier one has ``is_copied_context``. Each step's ``extra`` names its ``node`` (and ``branch``) and holds our
  ``rewards`` (hook, on, value, label, explanation) and its ternary ``label`` (the lowest of its rewards');
- ``final_metrics``: token totals, ``total_steps``, and in ``extra`` the run rewards (and node rewards of no step),
  the status and the duration.

``agentflow traces import FILE --format atif`` reads such files back (one trajectory as a JSON document, or one per
line): each becomes a run with status ``imported`` whose model turns, tool calls and results, rewards and token
counts are the trajectory's; a trajectory that does not validate against ATIF is reported by field path
(``steps[3].tool_calls[0].function_name: field required``) and skipped. An observation result without a
``source_call_id`` (feedback from no tool call) joins the conversation as a user message. The models below follow
the RFC's rules (closed objects, sequential ``step_id`` from 1, agent-only fields, observation results naming a
call of their step); the tests check every export against Harbor's own models as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentflow.errors import ConfigError, MalformedRecord
from agentflow.traces._conversation import Conversation, Turn, label_of, read_conversation, run_duration
from agentflow.traces._events import EventType
from agentflow.traces._export_messages import text_of
from agentflow.traces._import import ImportReport, imported_reward
from agentflow.traces._payloads import (
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RequestedToolCall,
    RunStartedData,
    TokenUsage,
    ToolCallData,
    ToolResultData,
)
from agentflow.traces._protocol import Recorder, Store

ATIF_VERSION = "ATIF-v1.7"
_READ_VERSIONS = tuple(f"ATIF-v1.{minor}" for minor in range(10))
_AGENT_ONLY = ("model_name", "reasoning_effort", "reasoning_content", "tool_calls", "metrics")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AtifPart(_Closed):
    """A content part of a multimodal message (text, or an image or audio file)."""

    type: Literal["text", "image", "audio"]
    text: str | None = None
    source: dict[str, Any] | None = None


class AtifToolCall(_Closed):
    """One tool call of an agent step."""

    tool_call_id: str
    function_name: str
    arguments: dict[str, Any]
    extra: dict[str, Any] | None = None


class AtifObservationResult(_Closed):
    """What one tool call (``source_call_id``) or another action returned."""

    source_call_id: str | None = None
    content: str | list[AtifPart] | None = None
    subagent_trajectory_ref: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


class AtifObservation(_Closed):
    """The environment's feedback after a step."""

    results: list[AtifObservationResult]


class AtifMetrics(_Closed):
    """One step's model-call figures."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    extra: dict[str, Any] | None = None


class AtifStep(_Closed):
    """One step of a trajectory."""

    step_id: int = Field(ge=1)
    timestamp: str | None = None
    source: Literal["system", "user", "agent"]
    model_name: str | None = None
    reasoning_effort: str | float | None = None
    message: str | list[AtifPart]
    reasoning_content: str | None = None
    tool_calls: list[AtifToolCall] | None = None
    observation: AtifObservation | None = None
    metrics: AtifMetrics | None = None
    is_copied_context: bool | None = None
    llm_call_count: int | None = Field(default=None, ge=0)
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _agent_fields_on_agent_steps(self) -> AtifStep:
        if self.timestamp is not None:
            try:
                datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"timestamp {self.timestamp!r} is not ISO 8601") from None
        if self.source != "agent":
            for name in _AGENT_ONLY:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is only allowed on agent steps, this one's source is {self.source}")
        if self.source == "agent" and self.llm_call_count == 0 and self.metrics is not None:
            raise ValueError("a step with llm_call_count 0 called no model: it has no metrics")
        calls = {call.tool_call_id for call in self.tool_calls or []}
        for result in self.observation.results if self.observation else []:
            if result.source_call_id is not None and result.source_call_id not in calls:
                raise ValueError(
                    f"observation names source_call_id {result.source_call_id!r}, no tool call of the step"
                )
        return self


class AtifAgent(_Closed):
    """The agent system that produced the trajectory."""

    name: str
    version: str
    model_name: str | None = None
    tool_definitions: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


class AtifFinalMetrics(_Closed):
    """The trajectory's totals."""

    total_prompt_tokens: int | None = None
    total_completion_tokens: int | None = None
    total_cached_tokens: int | None = None
    total_cost_usd: float | None = None
    total_steps: int | None = Field(default=None, ge=0)
    extra: dict[str, Any] | None = None


class AtifTrajectory(_Closed):
    """One ATIF trajectory (the RFC's root object)."""

    schema_version: str
    session_id: str | None = None
    trajectory_id: str | None = None
    agent: AtifAgent
    steps: list[AtifStep] = Field(min_length=1)
    notes: str | None = None
    final_metrics: AtifFinalMetrics | None = None
    continued_trajectory_ref: str | None = None
    extra: dict[str, Any] | None = None
    subagent_trajectories: list[AtifTrajectory] | None = None

    @model_validator(mode="after")
    def _known_version_and_sequential_steps(self) -> AtifTrajectory:
        if self.schema_version not in _READ_VERSIONS:
            raise ValueError(f"schema_version {self.schema_version!r} is not ATIF-v1.x")
        for index, step in enumerate(self.steps):
            if step.step_id != index + 1:
                raise ValueError(f"steps[{index}].step_id is {step.step_id}: step ids count from 1 in order")
        return self


def _path(location: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: ``steps[3].tool_calls[0].function_name``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        # other parts name a branch of a union ("str", "list[AtifPart]"): not a field
    return text or "(root)"


def validation_problems(error: ValidationError) -> list[str]:
    """Each problem of a failed validation as ``field.path: message``."""
    problems = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{_path(item['loc'])}: {message[:1].lower()}{message[1:]}")
    return list(dict.fromkeys(problems))


def validate_atif(document: Any) -> AtifTrajectory:
    """Validate one ATIF trajectory.

    Raises:
        MalformedRecord: it does not validate; the message lists each problem by field path.
    """
    try:
        return AtifTrajectory.model_validate(document)
    except ValidationError as exc:
        raise MalformedRecord("; ".join(validation_problems(exc))) from None


# -- export ------------------------------------------------------------------------------------------------------


def _arguments(text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed, None
    return {}, {"arguments_text": text}


def _content(content: Any) -> str:
    """A tool result's content as ATIF text (a structured one as its JSON)."""
    if content is None or isinstance(content, str | list):
        return text_of(content)
    return json.dumps(content)


def _step_extra(turn: Turn) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if turn.node is not None:
        extra["node"] = turn.node
    if turn.branch:
        extra["branch"] = turn.branch
    if turn.rewards:
        extra["rewards"] = turn.rewards
        label = label_of(turn)
        if label is not None:
            extra["label"] = label
    return extra or None


def _agent_step(turn: Turn, step_id: int) -> dict[str, Any]:
    step: dict[str, Any] = {"step_id": step_id, "timestamp": turn.ts, "source": "agent"}
    calls, results = [], []
    for call in turn.calls:
        arguments, extra = _arguments(call.arguments)
        atif_call: dict[str, Any] = {"tool_call_id": call.call_id, "function_name": call.name, "arguments": arguments}
        if extra:
            atif_call["extra"] = extra
        calls.append(atif_call)
        if call.ok is not None:
            result: dict[str, Any] = {"source_call_id": call.call_id, "content": _content(call.content)}
            if not call.ok:
                result["extra"] = {"ok": False}
            results.append(result)
    if turn.kind == "tool_node":
        step.update(message="", llm_call_count=0)
    else:
        message = turn.message
        step["message"] = text_of(message.get("content"))
        if turn.model:
            step["model_name"] = turn.model
        if isinstance(message.get("reasoning_content"), str):
            step["reasoning_content"] = message["reasoning_content"]
        if turn.copied:
            step["is_copied_context"] = True
        elif turn.usage is not None:
            step["metrics"] = {
                "prompt_tokens": int(turn.usage.get("input_tokens") or 0),
                "completion_tokens": int(turn.usage.get("output_tokens") or 0),
            }
        if not turn.copied:
            step["llm_call_count"] = 1
    if calls:
        step["tool_calls"] = calls
    if results:
        step["observation"] = {"results": results}
    extra = _step_extra(turn)
    if extra:
        step["extra"] = extra
    return step


def atif_trajectory(conversation: Conversation) -> dict[str, Any]:
    """The ATIF trajectory of one run (see the module docstring), as JSON data."""
    steps: list[dict[str, Any]] = []
    for turn in conversation.turns:
        if turn.kind == "tool":
            continue  # a tool message is the observation of the agent step that called the tool
        if turn.kind == "context":
            role = turn.message.get("role")
            source = "system" if role in ("system", "developer") else "user"
            step: dict[str, Any] = {"step_id": len(steps) + 1, "timestamp": turn.ts, "source": source}
            step["message"] = text_of(turn.message.get("content"))
            if turn.node is not None:
                step["extra"] = {"node": turn.node}
            steps.append(step)
        else:
            steps.append(_agent_step(turn, len(steps) + 1))
    started = conversation.started
    imported = (started.get("metadata") or {}).get("atif")
    agent: dict[str, Any] = {"name": "agentflow", "version": str(started.get("agentflow_version") or "unknown")}
    models = [turn.model for turn in conversation.turns if turn.kind == "assistant" and turn.model]
    if models:
        agent["model_name"] = models[0]
    if conversation.tools:
        agent["tool_definitions"] = conversation.tools
    if isinstance(imported, dict) and isinstance(imported.get("agent"), dict):
        agent = imported["agent"]  # a trajectory imported from ATIF keeps the agent that made it
    usage = [turn.usage for turn in conversation.turns if turn.usage is not None and not turn.copied]
    final_extra: dict[str, Any] = {"status": conversation.status, "rewards": conversation.run_rewards}
    duration = run_duration(conversation)
    if duration is not None:
        final_extra["duration_s"] = duration
    extra: dict[str, Any] = {"run_id": conversation.run_id, "workflow": started.get("workflow")}
    extra["status"] = conversation.status
    extra["inputs"] = started.get("inputs")
    if conversation.finished is not None and "final_state" in conversation.finished:
        extra["final_state"] = conversation.finished["final_state"]
    for key in ("forked_from", "fork_group", "fork_index", "bench", "imported_from"):
        if key in started:
            extra[key] = started[key]
    trajectory: dict[str, Any] = {
        "schema_version": ATIF_VERSION,
        "session_id": conversation.run_id,
        "trajectory_id": conversation.run_id,
        "agent": agent,
        "steps": steps,
        "final_metrics": {
            "total_prompt_tokens": sum(int(u.get("input_tokens") or 0) for u in usage),
            "total_completion_tokens": sum(int(u.get("output_tokens") or 0) for u in usage),
            "total_steps": len(steps),
            "extra": final_extra,
        },
        "extra": extra,
    }
    if isinstance(imported, dict) and isinstance(imported.get("notes"), str):
        trajectory["notes"] = imported["notes"]
    return trajectory


def export_atif(store: Store, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The ATIF trajectories of ``run_ids`` (ids or unique prefixes), in that order, each validated.

    Raises:
        TraceError: a run is unknown or its trace is damaged.
    """
    trajectories = []
    for run_id in run_ids:
        trajectory = atif_trajectory(read_conversation(store, run_id))
        validate_atif(trajectory)  # what we write must be ATIF: a failure here is a bug of this module
        trajectories.append(trajectory)
    return trajectories


# -- import ------------------------------------------------------------------------------------------------------


def _documents(file: Path) -> list[tuple[int, str]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    try:
        json.loads(text)
    except ValueError:
        return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return [(1, text)]  # one (perhaps pretty-printed) trajectory


def import_atif(store: Store, path: str | Path, *, workflow: str | None = None) -> ImportReport:
    """Import an ATIF file (one trajectory, or one per line) into ``store``, one run per valid trajectory.

    A trajectory that does not validate is skipped, reported with its line and each problem by field path.

    Raises:
        ConfigError: the file cannot be read.
    """
    file = Path(path)
    name = workflow or f"imported:{file.stem}"
    report = ImportReport()
    for number, text in _documents(file):
        try:
            trajectory = validate_atif(json.loads(text))
        except ValueError as exc:  # not JSON, or MalformedRecord (a ValueError too)
            report.skipped.append((number, str(exc).splitlines()[0]))
            continue
        report.run_ids.append(_record_trajectory(store, name, trajectory, source=f"{file}:{number}"))
    return report


def _message_text(message: str | list[AtifPart] | None) -> str:
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    return "".join(part.text or "" for part in message if part.type == "text")


class _TrajectoryWriter:
    """Records one validated trajectory as a run's events."""

    def __init__(self, recorder: Recorder, trajectory: AtifTrajectory, started_seq: int) -> None:
        self.recorder = recorder
        self.trajectory = trajectory
        self.started_seq = started_seq
        self.conversation: list[dict[str, Any]] = []
        self.node: str | None = None
        self.visit_seq: int | None = None
        self.visits: dict[str, int] = {}
        self.spoke = False  # an agent step was recorded since the last system message

    def enter(self, node: str) -> int:
        if node != self.node:
            self.leave()
            self.visits[node] = self.visits.get(node, 0) + 1
            started = self.recorder.emit(
                EventType.NODE_STARTED,
                node=node,
                parent=self.started_seq,
                data=NodeStartedData(visit=self.visits[node], attempt=1),
            )
            self.node, self.visit_seq = node, started.seq
        assert self.visit_seq is not None
        return self.visit_seq

    def leave(self) -> None:
        if self.node is not None and self.visit_seq is not None:
            self.recorder.emit(
                EventType.NODE_FINISHED,
                node=self.node,
                parent=self.visit_seq,
                data=NodeFinishedData(status="ok", updates={}),
            )
        self.node = self.visit_seq = None

    def step(self, step: AtifStep) -> None:
        extra = step.extra or {}
        node = str(extra.get("node") or "agent")
        text = _message_text(step.message)
        if step.source != "agent":
            if step.source == "system" and self.spoke:
                self.conversation, self.spoke = [], False  # a new conversation begins
            self.conversation.append({"role": step.source, "content": text})
            return
        if step.is_copied_context:
            self.conversation.append({"role": "assistant", "content": text})
            return
        visit = self.enter(node)
        self.spoke = True
        if step.llm_call_count == 0:
            self.tool_calls(step, node, parent=visit, answered=False)
        else:
            self.model_turn(step, node, visit, text)
        for result in step.observation.results if step.observation else []:
            if result.source_call_id is None:
                self.conversation.append({"role": "user", "content": _message_text(result.content)})

    def model_turn(self, step: AtifStep, node: str, visit: int, text: str) -> None:
        agent = self.trajectory.agent
        model = step.model_name or agent.model_name or "imported"
        request = self.recorder.emit(
            EventType.MODEL_REQUEST,
            node=node,
            parent=visit,
            data=ModelRequestData(model=model, messages=list(self.conversation), tools=agent.tool_definitions or []),
        )
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if step.reasoning_content is not None:
            message["reasoning_content"] = step.reasoning_content
        calls = step.tool_calls or []
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.tool_call_id,
                    "type": "function",
                    "function": {"name": call.function_name, "arguments": _arguments_text(call)},
                }
                for call in calls
            ]
        metrics = step.metrics
        reply = self.recorder.emit(
            EventType.MODEL_RESPONSE,
            node=node,
            parent=request.seq,
            data=ModelResponseData(
                model=model,
                message=message,
                tool_calls=[
                    RequestedToolCall(id=c.tool_call_id, name=c.function_name, arguments=_arguments_text(c))
                    for c in calls
                ],
                usage=TokenUsage(
                    input_tokens=(metrics.prompt_tokens or 0) if metrics else 0,
                    output_tokens=(metrics.completion_tokens or 0) if metrics else 0,
                ),
            ),
        )
        self.rewards(step, node, reply.seq)
        self.conversation.append(message)
        self.tool_calls(step, node, parent=reply.seq, answered=True)

    def tool_calls(self, step: AtifStep, node: str, *, parent: int, answered: bool) -> None:
        results = {r.source_call_id: r for r in (step.observation.results if step.observation else [])}
        first: int | None = None
        for call in step.tool_calls or []:
            event = self.recorder.emit(
                EventType.TOOL_CALL,
                node=node,
                parent=parent,
                data=ToolCallData(tool=call.function_name, call_id=call.tool_call_id, arguments=_arguments_text(call)),
            )
            first = event.seq if first is None else first
            result = results.get(call.tool_call_id)
            ok = result is not None and (result.extra or {}).get("ok", True) is not False
            content = _message_text(result.content) if result is not None else ""
            self.recorder.emit(
                EventType.TOOL_RESULT,
                node=node,
                parent=event.seq,
                data=ToolResultData(
                    tool=call.function_name,
                    call_id=call.tool_call_id,
                    ok=ok,
                    content=content,
                    result=None,
                    error=None if ok else "the trajectory records this call as failed or unanswered",
                ),
            )
            if answered:
                self.conversation.append({"role": "tool", "tool_call_id": call.tool_call_id, "content": content})
        if not answered and first is not None:
            self.rewards(step, node, first)

    def rewards(self, step: AtifStep, node: str, target: int) -> None:
        for reward in (step.extra or {}).get("rewards") or []:
            if isinstance(reward, dict) and isinstance(reward.get("hook"), str):
                self.recorder.emit(
                    EventType.REWARD,
                    node=node,
                    parent=target,
                    data=imported_reward(reward, on="step", target_seq=target),
                )


def _arguments_text(call: AtifToolCall) -> str:
    raw = (call.extra or {}).get("arguments_text")
    return raw if isinstance(raw, str) else json.dumps(call.arguments)


def _record_trajectory(store: Store, workflow: str, trajectory: AtifTrajectory, *, source: str) -> str:
    extra = trajectory.extra or {}
    name = workflow
    users = [s for s in trajectory.steps if s.source == "user"]
    inputs = extra.get("inputs") if isinstance(extra.get("inputs"), dict) else None
    metadata: dict[str, Any] = {
        "atif": {
            "schema_version": trajectory.schema_version,
            "session_id": trajectory.session_id,
            "agent": trajectory.agent.model_dump(exclude_none=True),
            **({"notes": trajectory.notes} if trajectory.notes is not None else {}),
        }
    }
    with store.new_run(workflow=name) as recorder:
        started = recorder.emit(
            EventType.RUN_STARTED,
            data=RunStartedData(
                workflow=name,
                inputs=inputs
                if inputs is not None
                else {"question": _message_text(users[0].message) if users else None},
                imported_from=source,
                metadata=metadata,
            ),
        )
        writer = _TrajectoryWriter(recorder, trajectory, started.seq)
        for step in trajectory.steps:
            writer.step(step)
        writer.leave()
        final = trajectory.final_metrics.extra if trajectory.final_metrics and trajectory.final_metrics.extra else {}
        for reward in final.get("rewards") or []:
            if isinstance(reward, dict) and isinstance(reward.get("hook"), str):
                on = str(reward.get("on") or "run")
                node = reward.get("node") if on != "run" and isinstance(reward.get("node"), str) else None
                recorder.emit(EventType.REWARD, node=node, data=imported_reward(reward, on=on, target_seq=None))
        final_state = extra.get("final_state") if isinstance(extra.get("final_state"), dict) else {}
        recorder.finish("imported", final_state=final_state)
        return recorder.run_id
