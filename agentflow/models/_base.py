"""The Model contract: OpenAI chat format in, ModelResponse out."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentflow.models._retry import ModelRetry
from agentflow.spec import ModelSettings as ModelSettings  # noqa: PLC0414 (defined in spec; re-exported with the contract that takes it)

# Messages are plain dicts in the OpenAI chat-completions format ({"role": ..., "content": ..., "tool_calls": ...}),
# because every provider, importer and exporter speaks it and the trace stores them verbatim.
Message = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for; ``arguments`` is the raw JSON text the model produced."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ModelResponse:
    """One model turn: the assistant message (OpenAI format), its tool calls, token usage, the raw payload, and
    the failed attempts that were retried before it (recorded in the trace)."""

    message: Message
    tool_calls: list[ToolCall] = field(default_factory=lambda: [])
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    raw: dict[str, Any] | None = None
    retries: tuple[ModelRetry, ...] = ()

    @classmethod
    def from_recorded(cls, data: Mapping[str, Any], model: str) -> ModelResponse:
        """The response a ``model_response`` event recorded (replay and resume serve it again; nothing waits).

        Args:
            data: the event's data.
            model: the model id to give when the event names none.
        """
        usage = data.get("usage") or {}
        calls = data.get("tool_calls") or []
        return cls(
            message=dict(data.get("message") or {"role": "assistant", "content": ""}),
            tool_calls=[ToolCall(id=str(c["id"]), name=str(c["name"]), arguments=str(c["arguments"])) for c in calls],
            usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
            model=str(data.get("model") or model),
            # the recorded retries come back as they were, so the event recorded again is the same
            retries=tuple(ModelRetry(**retry) for retry in data.get("retries") or []),
        )


class Model(abc.ABC):
    """A chat model. ``tools`` are OpenAI function schemas (``{"type": "function", "function": {...}}``)."""

    provider: str = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def model_id(self) -> str:
        return f"{self.provider}:{self.name}"

    @abc.abstractmethod
    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """Return the next assistant turn. Raises ``ModelAPIError`` when the provider fails."""

    def for_candidate(self, index: int) -> Model:
        """The model candidate ``index`` (0-based) of a best-of-N visit calls.

        A provider whose calls are independent of each other returns itself: its candidates differ by the seed or
        temperature the node varies. A model that keeps a position between calls (the scripted model) returns a
        copy that continues from where this one stands, serving that candidate its own responses.
        """
        return self

    def continue_from(self, candidate: Model) -> None:  # noqa: B027 - optional hook, most models keep no position
        """After a best-of-N visit, go on from where the chosen candidate's model (from :meth:`for_candidate`)
        stands; nothing for a model that keeps no position."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release connections."""
