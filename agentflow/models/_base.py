"""The Model contract: OpenAI chat format in, ModelResponse out."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

# Messages are plain dicts in the OpenAI chat-completions format ({"role": ..., "content": ..., "tool_calls": ...}),
# because every provider, importer and exporter speaks it and the trace stores them verbatim.
Message = dict[str, Any]


class ModelSettings(BaseModel):
    """Sampling settings of one model config."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 2


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
    """One model turn: the assistant message (OpenAI format), its tool calls, token usage, and the raw payload."""

    message: Message
    tool_calls: list[ToolCall] = field(default_factory=lambda: [])
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    raw: dict[str, Any] | None = None


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

    async def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release connections."""
