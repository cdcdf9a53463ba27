"""Import trajectories recorded elsewhere (OpenAI chat ``messages``) as runs that grade like native ones.

``agentflow traces import FILE --format openai-messages``: JSONL, one trajectory per line::

    {"messages": [{"role": "system", ...}, {"role": "user", ...},
                  {"role": "assistant", "content": ..., "tool_calls": [{"id", "type": "function",
                                                                         "function": {"name", "arguments"}}]},
                  {"role": "tool", "tool_call_id": ..., "content": ...}, ...],
     "tools": [...function schemas...],                       # optional
     "question": ..., "ground_truth": ..., "answer_text": ..., # optional metadata, kept in run_started
     "step_labels": {"2": 1, "4": -1}, "final_label": ..., "total_index": ..., "query_index": ..., "sample_index": ...,
     "step_rewards": {"2": [{"hook": "exit_code", "on": "step", "value": 1.0, "label": 1}]},    # optional
     "rewards": [{"hook": "outcome", "on": "run", "value": 1.0, "label": 1}]}                    # optional

Each record becomes a run with status ``imported``: ``run_started`` (metadata in ``inputs`` and ``metadata``), one
``agent`` node visit, and for each assistant message a ``model_request`` (the conversation so far) and a
``model_response`` (``data.message_index`` is its index in ``messages``, the index ``step_labels`` use), followed by a
``tool_call``/``tool_result`` pair for each of its tool calls (the result is the tool message with that id). A
malformed record is reported with its line number and skipped; the others import.

``step_rewards`` and ``rewards`` (what ``traces export --format openai-messages`` writes) become ``reward`` events:
each step reward scores the ``model_response`` of its assistant message, each of ``rewards`` the run (a node
reward keeps its ``node``), so an exported file imports back to runs that export the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError, MalformedRecord
from agentflow.traces._events import EventType
from agentflow.traces._payloads import (
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RequestedToolCall,
    RewardData,
    RunStartedData,
    TokenUsage,
    ToolCallData,
    ToolResultData,
)
from agentflow.traces._protocol import Store

IMPORT_FORMATS = ("openai-messages", "atif")
_METADATA = (
    "question",
    "ground_truth",
    "answer_text",
    "step_labels",
    "final_label",
    "total_index",
    "query_index",
    "sample_index",
    "record_id",
)


@dataclass
class ImportReport:
    """The runs an import created, and the lines it skipped with why."""

    run_ids: list[str] = field(default_factory=lambda: [])
    skipped: list[tuple[int, str]] = field(default_factory=lambda: [])

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data."""
        return {
            "imported": len(self.run_ids),
            "run_ids": self.run_ids,
            "skipped": [{"line": line, "error": error} for line, error in self.skipped],
        }


def _check_record(record: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(record, dict):
        raise MalformedRecord("a record must be a JSON object")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MalformedRecord("'messages' must be a non-empty list")
    tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise MalformedRecord(f"messages[{index}] needs a role of system, user, assistant or tool")
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str) or "id" not in call:
                raise MalformedRecord(f"messages[{index}]: a tool call needs an id and function.name")
            tool_ids.add(str(call["id"]))
        if message["role"] == "tool" and str(message.get("tool_call_id")) not in tool_ids:
            raise MalformedRecord(
                f"messages[{index}]: tool_call_id {message.get('tool_call_id')!r} answers no earlier tool call"
            )
    tools = record.get("tools") or []
    if not isinstance(tools, list):
        raise MalformedRecord("'tools' must be a list of function schemas")
    labels = record.get("step_labels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            raise MalformedRecord("'step_labels' must map assistant message indexes to -1, 0 or +1")
        for index, label in labels.items():
            if not str(index).lstrip("-").isdigit() or label not in (-1, 0, 1):
                raise MalformedRecord(f"step_labels[{index!r}] = {label!r}: use an integer index and -1, 0 or +1")
            if not 0 <= int(index) < len(messages) or messages[int(index)].get("role") != "assistant":
                raise MalformedRecord(f"step_labels[{index!r}] does not name an assistant message")
    _check_rewards(record, messages)
    return messages, tools


def _check_reward(where: str, reward: Any) -> None:
    if not isinstance(reward, dict) or not isinstance(reward.get("hook"), str):
        raise MalformedRecord(f"{where} must be an object with a 'hook' name")
    value, label = reward.get("value"), reward.get("label")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise MalformedRecord(f"{where}.value = {value!r}: use a number or null")
    if label not in (None, -1, 0, 1):
        raise MalformedRecord(f"{where}.label = {label!r}: use -1, 0, +1 or null")


def _check_rewards(record: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    step_rewards = record.get("step_rewards")
    if step_rewards is not None:
        if not isinstance(step_rewards, Mapping):
            raise MalformedRecord("'step_rewards' must map assistant message indexes to lists of rewards")
        for index, rewards in step_rewards.items():
            if not str(index).isdigit() or not int(index) < len(messages):
                raise MalformedRecord(f"step_rewards[{index!r}] does not name a message")
            if messages[int(index)].get("role") != "assistant":
                raise MalformedRecord(f"step_rewards[{index!r}] does not name an assistant message")
            if not isinstance(rewards, list):
                raise MalformedRecord(f"step_rewards[{index!r}] must be a list of rewards")
            for position, reward in enumerate(rewards):
                _check_reward(f"step_rewards[{index!r}][{position}]", reward)
    run_rewards = record.get("rewards")
    if run_rewards is not None:
        if not isinstance(run_rewards, list):
            raise MalformedRecord("'rewards' must be a list of rewards")
        for position, reward in enumerate(run_rewards):
            _check_reward(f"rewards[{position}]", reward)


def imported_reward(reward: dict[str, Any], *, on: str, target_seq: int | None) -> RewardData:
    """The ``reward`` event data of a reward read from an imported file."""
    value, label = reward.get("value"), reward.get("label")
    return RewardData(
        hook=str(reward["hook"]),
        hook_version="imported",
        on=str(reward.get("on") or on),
        value=float(value) if isinstance(value, int | float) else None,
        label=label if label in (-1, 0, 1) else None,
        explanation=str(reward.get("explanation") or ""),
        components={},
        target_seq=target_seq,
        duration_s=0,
    )


def import_openai_messages(store: Store, path: str | Path, *, workflow: str | None = None) -> ImportReport:
    """Import an openai-messages JSONL file into ``store``, one run per valid record.

    Raises:
        ConfigError: the file cannot be read.
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    name = workflow or f"imported:{file.stem}"
    report = ImportReport()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages, tools = _check_record(record)
        except (ValueError, MalformedRecord) as exc:
            report.skipped.append((number, str(exc).splitlines()[0]))
            continue
        report.run_ids.append(_record_run(store, name, record, messages, tools, source=f"{file}:{number}"))
    return report


def _record_run(
    store: Store,
    workflow: str,
    record: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    source: str,
) -> str:
    metadata = {key: record[key] for key in _METADATA if key in record}
    with store.new_run(workflow=workflow) as recorder:
        started = recorder.emit(
            EventType.RUN_STARTED,
            data=RunStartedData(
                workflow=workflow, inputs={"question": record.get("question")}, imported_from=source, metadata=metadata
            ),
        )
        node = recorder.emit(
            EventType.NODE_STARTED, node="agent", parent=started.seq, data=NodeStartedData(visit=1, attempt=1)
        )
        results = {str(m.get("tool_call_id")): m for m in messages if m.get("role") == "tool"}
        step_rewards = record.get("step_rewards") or {}
        for index, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            request = recorder.emit(
                EventType.MODEL_REQUEST,
                node="agent",
                parent=node.seq,
                data=ModelRequestData(model="imported", messages=messages[:index], tools=tools),
            )
            calls = message.get("tool_calls") or []
            reply = recorder.emit(
                EventType.MODEL_RESPONSE,
                node="agent",
                parent=request.seq,
                data=ModelResponseData(
                    model="imported",
                    message=message,
                    message_index=index,
                    tool_calls=[
                        RequestedToolCall(
                            id=str(c["id"]), name=c["function"]["name"], arguments=c["function"].get("arguments", "")
                        )
                        for c in calls
                    ],
                    usage=record.get("usage") or TokenUsage(input_tokens=0, output_tokens=0),
                ),
            )
            for reward in step_rewards.get(str(index)) or []:
                recorder.emit(
                    EventType.REWARD,
                    node="agent",
                    parent=reply.seq,
                    data=imported_reward(reward, on="step", target_seq=reply.seq),
                )
            for call in calls:
                name = call["function"]["name"]
                event = recorder.emit(
                    EventType.TOOL_CALL,
                    node="agent",
                    parent=reply.seq,
                    data=ToolCallData(
                        tool=name, call_id=str(call["id"]), arguments=call["function"].get("arguments", "")
                    ),
                )
                answer = results.get(str(call["id"]))
                # as the source wrote it: OpenAI allows a list of content parts (or null) besides a string
                content: Any = "" if answer is None else answer.get("content")
                recorder.emit(
                    EventType.TOOL_RESULT,
                    node="agent",
                    parent=event.seq,
                    data=ToolResultData(
                        tool=name,
                        call_id=str(call["id"]),
                        ok=answer is not None,
                        content=content,
                        result=None,
                        error=None if answer is not None else "no tool message answered this call",
                    ),
                )
        final = {
            "answer": record.get("answer_text"),
            "ground_truth": record.get("ground_truth"),
            "final_label": record.get("final_label"),
        }
        recorder.emit(
            EventType.NODE_FINISHED, node="agent", parent=node.seq, data=NodeFinishedData(status="ok", updates=final)
        )
        for reward in record.get("rewards") or []:
            on = str(reward.get("on") or "run")
            node_name = reward.get("node") if on != "run" and isinstance(reward.get("node"), str) else None
            recorder.emit(EventType.REWARD, node=node_name, data=imported_reward(reward, on=on, target_seq=None))
        recorder.finish("imported", final_state=final)
        return recorder.run_id
