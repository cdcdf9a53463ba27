"""One run's events read as one conversation: the messages the models saw, in order, and where each reward lands.

Every exporter (openai-messages, ATIF, rollouts) starts here, so a run exports the same turns in every format.

How the conversation is rebuilt: each ``model_request`` holds the whole conversation its node visit sent. When it
extends the conversation so far (the previous request, plus the answer), only the new messages are added (the tool
results and any new user turn); when it does not (a new node visit starts a conversation of its own), its messages
are added in full, so a run of several agent nodes is their conversations one after the other (each with its own
system and user messages). An assistant message that a fresh conversation repeats from earlier is marked
``copied``. Each ``model_response`` adds its assistant message, and tool results not seen by any later request (the
last turn's) are added as ``tool`` messages at the end. A tool called by a ``tool`` node (no model asked for it) is a
turn of its own (kind ``tool_node``), not a message. Concurrent branches (``data.branch``) each keep their own
conversation; their turns are listed in the order they happened.

Rewards: a step reward names the ``tool_call`` (or ``model_response``) it scores and lands on that assistant
message's turn; a node reward names the visit's ``node_started`` and lands on the visit's last turn; a run reward
(or one whose target is in no turn) stays with the run. Rewards are the store's: the live ones of the trace and
every grading pass's, superseded ones left out, abstentions (value None) left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.errors import TraceError
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import (
    ModelRequestData,
    ModelResponseData,
    ToolCallData,
    ToolResultData,
)
from agentflow.traces._protocol import Store, StoredReward

TurnKind = Literal["context", "assistant", "tool", "tool_node"]


@dataclass
class ToolOutcome:
    """One tool call of a turn and what it returned (None: no result was recorded)."""

    call_id: str
    name: str
    arguments: str
    content: Any = None
    ok: bool | None = None
    seq: int | None = None


@dataclass
class Turn:
    """One message of the conversation (or one tool-node call), with what the trace says about it.

    ``message`` is the OpenAI chat message (for ``tool_node`` a summary of the call); ``seq`` is the event that
    made it (``model_response``, ``tool_call`` of a tool node), None for messages that came in a request.
    """

    kind: TurnKind
    message: dict[str, Any]
    node: str | None = None
    seq: int | None = None
    ts: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    copied: bool = False
    source_index: int | None = None  # an imported run's position of the message in its source conversation
    branch: str | None = None
    calls: list[ToolOutcome] = field(default_factory=lambda: [])
    rewards: list[dict[str, Any]] = field(default_factory=lambda: [])


@dataclass
class Conversation:
    """A run as turns: what :func:`read_conversation` makes of its events."""

    run_id: str
    started: dict[str, Any]
    finished: dict[str, Any] | None
    turns: list[Turn]
    tools: list[dict[str, Any]]
    run_rewards: list[dict[str, Any]]
    located: dict[int, Turn] = field(default_factory=lambda: {}, repr=False)  # event seq -> the turn holding it

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages, in order (tool-node calls are not messages)."""
        return [turn.message for turn in self.turns if turn.kind != "tool_node"]

    def message_turns(self) -> list[Turn]:
        """The turns that are messages, in the order of :attr:`messages`."""
        return [turn for turn in self.turns if turn.kind != "tool_node"]

    @property
    def status(self) -> str | None:
        """The run's status (None for a run that never finished)."""
        return None if self.finished is None else str(self.finished.get("status"))


def load_events(store: Store, run_id: str) -> tuple[str, list[Event]]:
    """The verified events of one run, spilled payloads read back.

    Raises:
        TraceError: no such run, or its trace is damaged (truncated, tampered, ...): an export never reads a trace
            it cannot trust.
    """
    trace = store.load_trace(run_id)
    trace.raise_for_problems()
    return trace.run_id, trace.resolved_events()


def reward_entry(reward: StoredReward) -> dict[str, Any]:
    """A reward as the exports write it."""
    entry: dict[str, Any] = {"hook": reward.hook, "on": reward.kind, "value": reward.value, "label": reward.label}
    if reward.explanation:
        entry["explanation"] = reward.explanation
    return entry


def read_conversation(store: Store, run_id: str) -> Conversation:
    """Read a stored run as a conversation, with its rewards placed on the turns they score.

    Raises:
        TraceError: no such run, or its trace is damaged.
    """
    full_id, events = load_events(store, run_id)
    conversation = conversation_of(full_id, events)
    place_rewards(conversation, store.list_rewards(full_id))
    return conversation


def conversation_of(run_id: str, events: Sequence[Event]) -> Conversation:
    """The turns of a run's events (see the module docstring); no rewards yet."""
    if not events or events[0].type is not EventType.RUN_STARTED:
        raise TraceError(f"run {run_id} has no run_started event: nothing to export")
    builder = _Builder()
    for event in events:
        builder.add(event)
    builder.close()
    finished = next((e.data for e in reversed(events) if e.type is EventType.RUN_FINISHED), None)
    return Conversation(
        run_id=run_id,
        started=dict(events[0].data),
        finished=dict(finished) if finished is not None else None,
        turns=builder.turns,
        tools=builder.tools,
        run_rewards=[],
        located={**builder.turn_of_seq, **builder.visit_last},
    )


class _Builder:
    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.tools: list[dict[str, Any]] = []
        self._tool_names: set[str] = set()
        # per node and branch (concurrent branches interleave their events): the conversation its last request and
        # answer make, and the tool results since that answer that no request has shown yet
        self._current: dict[str, list[dict[str, Any]]] = {}
        self._pending: dict[str, list[Turn]] = {}
        self.turn_of_seq: dict[int, Turn] = {}
        self.visit_last: dict[int, Turn] = {}  # node_started seq -> the visit's last turn
        self._open_visit: dict[str, int] = {}  # node (+ branch) -> seq of its open node_started

    def _visit_key(self, event: Event) -> str:
        return f"{event.node}\x00{event.data.get('branch', '')}"

    def add(self, event: Event) -> None:
        if event.type is EventType.NODE_STARTED:
            self._open_visit[self._visit_key(event)] = event.seq
        elif event.type is EventType.MODEL_REQUEST:
            self._request(event, event.data_as(ModelRequestData))
        elif event.type is EventType.MODEL_RESPONSE:
            self._response(event, event.data_as(ModelResponseData))
        elif event.type is EventType.TOOL_CALL:
            self._tool_call(event, event.data_as(ToolCallData))
        elif event.type is EventType.TOOL_RESULT:
            self._tool_result(event, event.data_as(ToolResultData))

    def _note_visit(self, event: Event, turn: Turn) -> None:
        visit = self._open_visit.get(self._visit_key(event))
        if visit is not None:
            self.visit_last[visit] = turn

    def _request(self, event: Event, data: ModelRequestData) -> None:
        for tool in data.get("tools") or []:
            name = str((tool.get("function") or {}).get("name", tool.get("name", "")))
            if name not in self._tool_names:
                self._tool_names.add(name)
                self.tools.append(tool)
        sent = list(data.get("messages") or [])
        key = self._visit_key(event)
        branch = key.partition("\x00")[2]
        for other, pending in self._pending.items():
            if other != key and _encloses(other.partition("\x00")[2], branch):
                # a node of this branch, or of the run it branched from, ran before: its last results came first
                self.turns.extend(pending)
                self._pending[other] = []
        current = self._current.get(key)
        if current is not None and sent[: len(current)] == current:
            delta, fresh = sent[len(current) :], False
        else:
            self.turns.extend(self._pending.get(key, []))
            delta, fresh = sent, bool(self._current)
        self._pending[key] = []
        for message in delta:
            role = message.get("role")
            kind: TurnKind = "tool" if role == "tool" else "assistant" if role == "assistant" else "context"
            self.turns.append(
                Turn(kind=kind, message=message, node=event.node, copied=fresh and kind != "context", ts=event.ts)
            )
        self._current[key] = sent

    def _response(self, event: Event, data: ModelResponseData) -> None:
        message = dict(data.get("message") or {})
        message.setdefault("role", "assistant")
        usage = data.get("usage")
        turn = Turn(
            kind="assistant",
            message=message,
            node=event.node,
            seq=event.seq,
            ts=event.ts,
            model=str(data.get("model")) if data.get("model") is not None else None,
            usage=dict(usage) if isinstance(usage, dict) else None,
            branch=event.data.get("branch"),
            source_index=data.get("message_index"),
            calls=[
                ToolOutcome(call_id=str(c.get("id")), name=str(c.get("name")), arguments=str(c.get("arguments", "")))
                for c in data.get("tool_calls") or []
            ],
        )
        self.turns.append(turn)
        self.turn_of_seq[event.seq] = turn
        self._note_visit(event, turn)
        key = self._visit_key(event)
        if key in self._current:
            self._current[key] = [*self._current[key], data.get("message") or {}]

    def _tool_call(self, event: Event, data: ToolCallData) -> None:
        asked_by = self.turn_of_seq.get(event.parent) if event.parent is not None else None
        if asked_by is not None and asked_by.kind == "assistant" and asked_by.seq == event.parent:
            outcome = next((c for c in asked_by.calls if c.call_id == str(data.get("call_id"))), None)
            if outcome is not None:
                outcome.seq = event.seq
                self.turn_of_seq[event.seq] = asked_by
                return
        # a tool node's call: a turn of its own
        turn = Turn(
            kind="tool_node",
            message={"tool": data.get("tool"), "arguments": data.get("arguments")},
            node=event.node,
            seq=event.seq,
            ts=event.ts,
            branch=event.data.get("branch"),
            calls=[
                ToolOutcome(
                    call_id=str(data.get("call_id")),
                    name=str(data.get("tool")),
                    arguments=str(data.get("arguments", "")),
                    seq=event.seq,
                )
            ],
        )
        self.turns.append(turn)
        self.turn_of_seq[event.seq] = turn
        self._note_visit(event, turn)

    def _tool_result(self, event: Event, data: ToolResultData) -> None:
        turn = self.turn_of_seq.get(event.parent) if event.parent is not None else None
        if turn is None:
            return
        outcome = next((c for c in turn.calls if c.seq == event.parent), None)
        if outcome is None:
            return
        outcome.content = data.get("content")
        outcome.ok = bool(data.get("ok"))
        self.turn_of_seq[event.seq] = turn
        if turn.kind == "assistant":
            tool_message = {"role": "tool", "tool_call_id": outcome.call_id, "content": outcome.content}
            pending = self._pending.setdefault(self._visit_key(event), [])
            pending.append(Turn(kind="tool", message=tool_message, node=event.node, ts=event.ts))

    def close(self) -> None:
        for pending in self._pending.values():
            self.turns.extend(pending)
        self._pending = {}


def _encloses(outer: str, inner: str) -> bool:
    """Whether branch ``outer`` is ``inner`` or one it was forked from ("" is the run outside every branch)."""
    return outer in ("", inner) or inner.startswith(f"{outer}/")


def place_rewards(conversation: Conversation, rewards: Sequence[StoredReward]) -> None:
    """Put each reward on the turn it scores, the others on the run (see the module docstring)."""
    for reward in rewards:
        if reward.value is None and reward.label is None:
            continue  # an abstention, a run's aggregate figures or an unscored errored run: not a reward
        entry = reward_entry(reward)
        seq = reward.target_seq
        target = conversation.located.get(seq) if seq is not None and reward.kind != "run" else None
        if target is None:
            if reward.node is not None and reward.kind != "run":
                entry["node"] = reward.node
            conversation.run_rewards.append(entry)
        else:
            target.rewards.append(entry)


def label_of(turn: Turn) -> int | None:
    """A turn's ternary label: the lowest any of its rewards gave (a step one hook refutes is −1), or None."""
    labels = [int(r["label"]) for r in turn.rewards if r.get("label") in (-1, 0, 1)]
    return min(labels) if labels else None


def outcome_of(conversation: Conversation, hook: str) -> float | None:
    """The value of the run-level reward of ``hook`` (the last one when it was graded more than once), or None."""
    values = [r["value"] for r in conversation.run_rewards if r["hook"] == hook and r["on"] == "run"]
    return float(values[-1]) if values and values[-1] is not None else None


def run_duration(conversation: Conversation) -> float | None:
    """The run's wall time as recorded, or None."""
    if conversation.finished is None:
        return None
    duration = conversation.finished.get("duration_s")
    return float(duration) if isinstance(duration, int | float) else None
