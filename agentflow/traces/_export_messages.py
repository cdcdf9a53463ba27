"""Export runs as OpenAI chat ``messages`` JSONL in the AgentProcessBench layout: what ``traces import`` reads.

``agentflow traces export RUN_ID... --format openai-messages``: one line per run::

    {"messages": [...],                        # the conversation (traces/_conversation.py says how it is rebuilt)
     "tools": [...],                           # every tool schema offered, first offer first
     "step_labels": {"2": 1, "4": -1},         # per assistant message index: its ternary label
     "step_rewards": {"2": [{"hook": "exit_code", "on": "step", "value": 1.0, "label": 1}], ...},
     "rewards": [...],                         # run rewards, and node rewards of visits without a message
     "record_id": ..., "run_id": ..., "workflow": ..., "status": ...,
     "question": ..., "answer_text": ..., "ground_truth": ..., "final_label": ..., ...}

``step_labels``: an imported run keeps the labels its source record had (its reference labels); any other run's
label of a message is the lowest label its rewards gave (−1 when any hook refuted the step). ``question`` is the
first user message and ``answer_text`` the last assistant message's text, unless the imported record said
otherwise; an imported record's other metadata (``ground_truth``, ``total_index``, ...) is written back as it was.
Importing the file again gives runs that export to the same messages, labels and rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentflow.traces._conversation import Conversation, label_of, read_conversation
from agentflow.traces._protocol import Store


def text_of(content: Any) -> str:
    """The text of a message's content: a string, a list of content parts (their text joined), or None ("")."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def messages_record(conversation: Conversation) -> dict[str, Any]:
    """The openai-messages record of one run."""
    turns = conversation.message_turns()
    messages = [turn.message for turn in turns]
    metadata = dict(conversation.started.get("metadata") or {})
    imported_labels = metadata.pop("step_labels", None)
    step_labels: dict[str, int] = {}
    step_rewards: dict[str, list[dict[str, Any]]] = {}
    here: dict[int, int] = {}  # an imported run's message index in its source record -> its index here
    for index, turn in enumerate(turns):
        if turn.kind != "assistant" or turn.copied:
            continue
        if turn.rewards:
            step_rewards[str(index)] = turn.rewards
        label = label_of(turn)
        if label is not None:
            step_labels[str(index)] = label
        if turn.source_index is not None:
            here[turn.source_index] = index
    if isinstance(imported_labels, dict):  # the source record's own labels win
        step_labels = {
            str(here.get(int(key), int(key))): int(label)
            for key, label in imported_labels.items()
            if str(key).lstrip("-").isdigit() and label in (-1, 0, 1)
        }
    users = [turn.message for turn in turns if turn.message.get("role") == "user"]
    answers = [turn.message for turn in turns if turn.kind == "assistant" and not turn.copied]
    record: dict[str, Any] = {
        "messages": messages,
        "tools": conversation.tools,
        "step_labels": step_labels,
        "step_rewards": step_rewards,
        "rewards": _unplaced_rewards(conversation),
        "record_id": conversation.run_id,
        "question": text_of(users[0].get("content")) if users else None,
        "answer_text": text_of(answers[-1].get("content")) if answers else None,
    }
    record.update(metadata)  # an imported record's own fields win
    record.update(
        {"run_id": conversation.run_id, "workflow": conversation.started.get("workflow"), "status": conversation.status}
    )
    return record


def _unplaced_rewards(conversation: Conversation) -> list[dict[str, Any]]:
    """The run's rewards, then those of tool-node calls (no message to put them on), each naming its node."""
    placed = list(conversation.run_rewards)
    for turn in conversation.turns:
        if turn.kind == "tool_node":
            placed.extend({**reward, "node": turn.node} for reward in turn.rewards)
    return placed


def export_openai_messages(store: Store, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The openai-messages records of ``run_ids`` (ids or unique prefixes), in that order.

    Raises:
        TraceError: a run is unknown or its trace is damaged.
    """
    return [messages_record(read_conversation(store, run_id)) for run_id in run_ids]
