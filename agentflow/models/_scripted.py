"""The scripted model: deterministic responses from a script file, so workflows run offline and tests repeat.

A script is a YAML (or ``.json``) file with one entry per model turn, served in order, one per ``complete()`` call::

    responses:
      - content: "Let me look at the tests."
        tool_calls:
          - {name: list_files, arguments: {path: "."}}
      - tool_calls: [{name: read_file, arguments: {path: tests/test_calc.py}}]
      # arguments_raw is sent verbatim, so a script can reproduce a model that writes broken JSON
      - tool_calls: [{name: write_file, arguments_raw: '{"path": "x", '}]
      # a provider failure, to exercise retries and error handling offline
      - error: {status_code: 503, message: "overloaded"}
      - "Done."                      # a bare string is shorthand for {content: "Done."}

Each entry holds ``content`` and/or ``tool_calls``, or else ``error``; an optional ``usage: {input_tokens: N,
output_tokens: M}`` replaces the estimate below, and an optional ``latency_s`` makes the model take that long to
answer (a provider's latency, offline: for benchmarks of concurrency). A tool call has a ``name`` and either
``arguments`` (a mapping, sent as JSON text) or ``arguments_raw`` (text, sent as is); its ``id`` defaults to
``call_<n>_<i>``, where ``n`` is the 1-based position of the response in the script and ``i`` the 1-based position
of the call in that response.

A script may instead hold several ``conversations``, each chosen by text of the run's first request, so that one
script answers every task of a benchmark its own way::

    conversations:
      - when: "def add(a, b):"          # the first request's messages contain this text
        responses: [...]
      - responses: [...]                # no `when`: the conversation for any other first request

The model picks its conversation at its first call and serves that conversation's responses from then on.

An entry may instead hold ``candidates``: the turns of one best-of-N visit (an agent node with ``best_of``), one
list of responses per candidate::

    responses:
      - ...                                  # the turns before the best-of node
      - candidates:                          # candidate i is served the i-th list (i modulo the number of lists)
          - [{tool_calls: [...]}, "Fixed mean only."]
          - [{tool_calls: [...]}, {tool_calls: [...]}, "Fixed mean and median."]
      - ...                                  # the turns after it

Each candidate gets a copy of the model (``for_candidate``) that continues from the same position in the script;
at a ``candidates`` entry it serves its own list, then the entry after it. Once the node has chosen, the run goes
on from the chosen candidate's position (``continue_from``), past the ``candidates`` entry if the chosen
candidate's visit ended inside its list (the rest of the list goes unused). A model serving no candidate (a node without
``best_of``) takes the first list. Tool call ids of a candidate's turn read ``call_<n>.<c>.<k>_<i>``: entry ``n``,
list ``c``, turn ``k`` of the list (all 1-based).

Token usage is estimated deterministically at one token per 4 characters, rounded up (the rule of thumb OpenAI
gives for English text): input counts the text of every message (content, tool-call names and arguments) plus the
compact JSON of the tool schemas; output counts the response's content, tool-call names and argument text.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentflow.errors import ConfigError, ModelAPIError, ModelScriptExhausted, SourceLocation, SpecError
from agentflow.models._base import Message, Model, ModelResponse, ModelSettings, ToolCall, Usage
from agentflow.models._registry import model_provider

CHARS_PER_TOKEN = 4
SCRIPT_SUFFIXES = (".script.yaml", ".script.yml", ".yaml", ".yml", ".json")
_FORMAT_FIX = (
    "a script is a mapping with a 'responses' list (or 'conversations', each {when, responses}); each response "
    "holds 'content' and/or 'tool_calls' (each {name, arguments | arguments_raw}), or 'error' {status_code, message}"
)


class ScriptedToolCall(BaseModel):
    """One tool call of a scripted response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | None = None
    arguments_raw: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_argument_form(self) -> ScriptedToolCall:
        if self.arguments is not None and self.arguments_raw is not None:
            raise ValueError("give either 'arguments' (a mapping) or 'arguments_raw' (text), not both")
        return self

    def argument_text(self) -> str:
        """The argument JSON text the model 'produced'."""
        if self.arguments_raw is not None:
            return self.arguments_raw
        # default=str keeps YAML scalars like dates (`2024-01-01`) as the text the author wrote.
        return json.dumps(self.arguments or {}, ensure_ascii=False, default=str)


class ScriptedUsage(BaseModel):
    """Token counts that replace the estimate for one response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)


class ScriptedError(BaseModel):
    """A provider failure the scripted model raises as ``ModelAPIError`` instead of answering."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = "scripted model error"
    status_code: int | None = None
    body: str | None = None


class ScriptedResponse(BaseModel):
    """One scripted model turn, or (``candidates``) the turns of each candidate of one best-of-N visit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=lambda: [])
    usage: ScriptedUsage | None = None
    error: ScriptedError | None = None
    latency_s: float = Field(default=0.0, ge=0, description="seconds the model takes to answer")
    candidates: tuple[tuple[ScriptedResponse, ...], ...] | None = Field(
        default=None, description="one list of turns per candidate of a best-of-N visit", min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        return {"content": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_a_turn(self) -> ScriptedResponse:
        answers = self.content is not None or bool(self.tool_calls)
        if self.candidates is not None:
            if answers or self.error is not None or self.usage is not None:
                raise ValueError("an entry with 'candidates' holds nothing else: each candidate's turns are its list")
            for turns in self.candidates:
                if not turns:
                    raise ValueError("each list of 'candidates' needs at least one response")
                if any(turn.candidates is not None for turn in turns):
                    raise ValueError("a candidate's turn cannot hold 'candidates' again")
            return self
        if self.error is not None and answers:
            raise ValueError("a response with 'error' cannot also have 'content' or 'tool_calls'")
        if self.error is None and not answers:
            raise ValueError("a response needs 'content', 'tool_calls' or 'error' (write content: '' for silence)")
        return self


class ScriptedConversation(BaseModel):
    """The responses of one conversation of a script, chosen when the first request contains ``when``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str | None = Field(default=None, description="text the first request's messages must contain")
    responses: tuple[ScriptedResponse, ...] = Field(min_length=1)


class _ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responses: list[ScriptedResponse] | None = Field(default=None, min_length=1)
    conversations: list[ScriptedConversation] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> _ScriptFile:
        if (self.responses is None) == (self.conversations is None):
            raise ValueError("a script has either 'responses' or 'conversations'")
        return self

    def as_conversations(self) -> tuple[ScriptedConversation, ...]:
        if self.conversations is not None:
            return tuple(self.conversations)
        return (ScriptedConversation(responses=tuple(self.responses or ())),)


@dataclass(frozen=True)
class ScriptedRequest:
    """What one ``complete()`` call received (deep copies, so later edits by the caller do not show)."""

    messages: list[Message]
    tools: list[dict[str, Any]]
    settings: ModelSettings


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: one token per 4 characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _message_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, list):  # multi-part content: only the text parts count
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        content = "".join(part for part in parts if isinstance(part, str))
    text = content if isinstance(content, str) else ""
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        text += str(function.get("name", "")) + str(function.get("arguments", ""))
    return text


class ScriptedModel(Model):
    """A model that answers from a fixed list of responses, in order; the embedded default model.

    Safe to share between threads and tasks: taking the next response is one step under a lock. Every call is
    recorded in ``requests``.
    """

    provider = "scripted"

    def __init__(
        self,
        name: str,
        responses: Sequence[ScriptedResponse],
        *,
        source: str | None = None,
        conversations: Sequence[ScriptedConversation] = (),
    ) -> None:
        """Serve ``responses`` in order (or, given ``conversations``, the responses of the one chosen at the first
        call).

        Args:
            name: The model name after ``scripted:`` (usually the script path as written in the workflow).
            responses: The turns to serve.
            source: Where the responses came from, for error messages; the script file when there is one.
            conversations: the script's conversations, when it has several (``responses`` is then ignored).
        """
        super().__init__(name)
        self.responses: tuple[ScriptedResponse, ...] = tuple(responses)
        # a plain `responses:` script is one conversation without `when`: nothing to choose at the first call
        chooses = len(conversations) > 1 or any(conversation.when is not None for conversation in conversations)
        self.conversations = tuple(conversations) if chooses else ()
        if conversations and not chooses:
            self.responses = conversations[0].responses
        self.source = source or name
        self.requests: list[ScriptedRequest] = []
        self._next_index = 0
        self._turn = 0  # the position inside the `candidates` entry at _next_index
        self._candidate = 0  # which list of a `candidates` entry this model serves
        self._chosen = not self.conversations  # the conversation is picked (at the first call)
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None) -> ScriptedModel:
        """Load a script file (YAML, or JSON when it ends in ``.json``).

        Raises:
            ConfigError: The file does not exist or cannot be read.
            SpecError: The file is malformed; the error points at the line and says what a script looks like.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"model script {path} does not exist", fix="create it or fix the model string") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read model script {path}: {exc}") from exc
        conversations = _parsed_script(text, str(path))
        return cls(name or str(path), conversations[0].responses, source=str(path), conversations=conversations)

    @classmethod
    def from_responses(
        cls, responses: Sequence[str | Mapping[str, Any] | ScriptedResponse], *, name: str = "inline"
    ) -> ScriptedModel:
        """Build a model from responses given in Python, in the script-file format.

        Example:
            ```python
            model = ScriptedModel.from_responses(
                [{"tool_calls": [{"name": "read_file", "arguments": {"path": "a.py"}}]}, "Done."]
            )
            ```

        Raises:
            ConfigError: A response does not match the script format.
        """
        parsed: list[ScriptedResponse] = []
        for index, response in enumerate(responses):
            try:
                parsed.append(ScriptedResponse.model_validate(response))
            except ValidationError as exc:
                detail = _first_error(exc)[1]
                raise ConfigError(f"invalid scripted response {index}: {detail}", fix=_FORMAT_FIX) from None
        return cls(name, parsed, source=f"<{name}>")

    @property
    def remaining(self) -> int:
        """How many responses are left."""
        with self._lock:
            return len(self.responses) - self._next_index

    def skip(self, answered: int) -> None:
        """Continue after the first ``answered`` responses (a resumed run, whose earlier process got those)."""
        with self._lock:
            self._next_index = min(answered, len(self.responses))
            self._turn = 0

    def reset(self) -> None:
        """Start again from the first response and forget recorded requests (e.g. before the next benchmark task)."""
        with self._lock:
            self._next_index = 0
            self._turn = 0
            self._chosen = not self.conversations
            self.requests.clear()

    def for_candidate(self, index: int) -> ScriptedModel:
        """A copy for candidate ``index`` of a best-of-N visit: the same script, from the same position, serving
        the ``index``-th list (modulo their number) of a ``candidates`` entry; its requests are recorded here too."""
        fork = ScriptedModel(self.name, self.responses, source=self.source, conversations=self.conversations)
        with self._lock:
            fork.responses, fork._chosen = self.responses, self._chosen
            fork._next_index, fork._turn = self._next_index, self._turn
        fork._candidate = index
        fork.requests = self.requests  # one record of every call the script answered
        return fork

    def continue_from(self, candidate: Model) -> None:
        """Go on from the position of the chosen candidate's copy (from :meth:`for_candidate`)."""
        if not isinstance(candidate, ScriptedModel) or candidate is self:
            return
        with candidate._lock:
            responses, chosen, position = candidate.responses, candidate._chosen, candidate._next_index
            turn = candidate._turn
        if turn:  # the kept candidate's visit ended inside its list: the rest of the list goes unused
            position, turn = position + 1, 0
        with self._lock:
            self.responses, self._chosen, self._next_index, self._turn = responses, chosen, position, turn

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """Serve the next response of the script.

        Raises:
            ModelScriptExhausted: Every response has been served already.
            ModelAPIError: The response is a scripted ``error``.
        """
        request = ScriptedRequest(copy.deepcopy(messages), copy.deepcopy(tools), settings)
        with self._lock:
            if not self._chosen:
                self.responses = self._conversation_for(messages).responses
                self._chosen = True
            self.requests.append(request)
            self._skip_finished_list()
            index = self._next_index
            if index >= len(self.responses):
                raise ModelScriptExhausted(
                    f"model script {self.source} is exhausted: it holds {len(self.responses)} response(s) and "
                    f"call #{index + 1} asked for another; add responses to the script or lower the workflow's "
                    "max_turns/loop limits"
                )
            scripted, number = self._take(index)
        if scripted.latency_s:
            await asyncio.sleep(scripted.latency_s)
        return self._build_response(number, scripted, request)

    def _skip_finished_list(self) -> None:
        """Past a ``candidates`` entry whose list this model has served to its end (a shorter list than the one
        the model stood in when it was copied); called under the lock."""
        if self._turn and self._next_index < len(self.responses):
            entry = self.responses[self._next_index]
            if entry.candidates is not None:
                variant = entry.candidates[self._candidate % len(entry.candidates)]
                if self._turn >= len(variant):
                    self._next_index, self._turn = self._next_index + 1, 0

    def _take(self, index: int) -> tuple[ScriptedResponse, str]:
        """The response at the cursor and its number (``n``, or ``n.c.k`` in a ``candidates`` entry), moving the
        cursor on; called under the lock."""
        entry = self.responses[index]
        if entry.candidates is None:
            self._next_index = index + 1
            return entry, str(index + 1)
        variant = self._candidate % len(entry.candidates)
        turns = entry.candidates[variant]
        turn = self._turn
        if turn + 1 >= len(turns):  # this list is done: the entry after the `candidates` comes next
            self._next_index, self._turn = index + 1, 0
        else:
            self._turn = turn + 1
        return turns[turn], f"{index + 1}.{variant + 1}.{turn + 1}"

    def _conversation_for(self, messages: Sequence[Message]) -> ScriptedConversation:
        """The conversation whose ``when`` the first request's messages contain (else the one without ``when``)."""
        text = "\n".join(_message_text(message) for message in messages)
        for conversation in self.conversations:
            if conversation.when is not None and conversation.when in text:
                return conversation
        for conversation in self.conversations:
            if conversation.when is None:
                return conversation
        raise ModelScriptExhausted(
            f"no conversation of model script {self.source} matches the first request, and none is the default "
            "(a conversation without `when`)"
        )

    def _build_response(self, number: str, scripted: ScriptedResponse, request: ScriptedRequest) -> ModelResponse:
        if scripted.error is not None:
            raise ModelAPIError(
                f"{self.model_id}: scripted error at response {number}: {scripted.error.message}",
                status_code=scripted.error.status_code,
                body=scripted.error.body,
            )
        tool_calls = [
            ToolCall(id=call.id or f"call_{number}_{position}", name=call.name, arguments=call.argument_text())
            for position, call in enumerate(scripted.tool_calls, start=1)
        ]
        message: Message = {"role": "assistant", "content": scripted.content}
        if tool_calls:
            message["tool_calls"] = [call.to_openai() for call in tool_calls]

        if scripted.usage is not None:
            usage = Usage(input_tokens=scripted.usage.input_tokens, output_tokens=scripted.usage.output_tokens)
        else:
            input_text = "".join(_message_text(m) for m in request.messages)
            if request.tools:
                input_text += json.dumps(request.tools, separators=(",", ":"), sort_keys=True)
            usage = Usage(
                input_tokens=estimate_tokens(input_text), output_tokens=estimate_tokens(_message_text(message))
            )

        # Shaped like an OpenAI chat completion so traces and exporters treat every provider alike.
        raw: dict[str, Any] = {
            "id": f"scripted-{number}",
            "object": "chat.completion",
            "model": self.name,
            "choices": [
                {"index": 0, "message": copy.deepcopy(message), "finish_reason": "tool_calls" if tool_calls else "stop"}
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
        return ModelResponse(message=message, tool_calls=tool_calls, usage=usage, model=self.name, raw=raw)


def _first_error(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    error = exc.errors()[0]
    location = tuple(error["loc"])
    where = ".".join(str(part) for part in location)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return location, f"{where}: {error['msg']}{more}" if where else f"{error['msg']}{more}"


@functools.lru_cache(maxsize=128)
def _parsed_script(text: str, path: str) -> tuple[ScriptedConversation, ...]:
    """The conversations of a script's text, parsed once per text: a benchmark builds the same script's model for
    every run, and parsing the YAML costs more than the rest of building it (the responses are immutable, so
    shared)."""
    return _parse_script(text, Path(path))


def _parse_script(text: str, path: Path) -> tuple[ScriptedConversation, ...]:
    data: Any
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"model script is not valid JSON: {exc.msg}",
            location=SourceLocation(str(path), exc.lineno, exc.colno),
            fix=_FORMAT_FIX,
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        location = SourceLocation(str(path), mark.line + 1, mark.column + 1) if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        where = "" if location else f"{path}: "
        raise SpecError(
            f"{where}model script is not valid YAML: {problem}", location=location, fix=_FORMAT_FIX
        ) from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpecError(
            f"a model script must be a mapping with a 'responses' or 'conversations' list, found {found}",
            location=SourceLocation(str(path), 1, 1),
            fix=_FORMAT_FIX,
        )
    try:
        return _ScriptFile.model_validate(data).as_conversations()
    except ValidationError as exc:
        error_path, message = _first_error(exc)
        raise SpecError(
            f"invalid model script: {message}", location=_locate(text, error_path, path), fix=_FORMAT_FIX
        ) from None


def _locate(text: str, error_path: Sequence[int | str], path: Path) -> SourceLocation:
    """Find the line of the deepest YAML node along a validation error's path (JSON is YAML, so it works for both)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        node = None
    if node is None:  # an empty file: point at its start
        return SourceLocation(str(path), 1, 1)
    for depth, part in enumerate(error_path, start=1):
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            # The last step of the path names the offending key itself (an unknown or mistyped field): point at it.
            last = depth == len(error_path)
            child = next((key if last else value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return SourceLocation(str(path), node.start_mark.line + 1, node.start_mark.column + 1)


def resolve_script_path(name: str, base_dir: Path | None) -> Path:
    """Find the script file a ``scripted:<name>`` model string means.

    ``name`` is a path relative to ``base_dir`` (the workflow's folder); when it names no file and has no script
    suffix, ``<name>.script.yaml``, ``<name>.script.yml``, ``<name>.yaml``, ``<name>.yml`` and ``<name>.json`` are
    tried in that order, so ``scripted:fix_bug`` finds ``fix_bug.script.yaml``.

    Raises:
        ConfigError: No candidate exists; the message lists the paths tried.
    """
    base = base_dir if base_dir is not None else Path.cwd()
    given = Path(name).expanduser()
    path = given if given.is_absolute() else base / given
    candidates = [path]
    if not path.name.endswith(SCRIPT_SUFFIXES):
        candidates += [path.with_name(path.name + suffix) for suffix in SCRIPT_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"model script for 'scripted:{name}' not found; tried {', '.join(str(c) for c in candidates)}",
        fix="create the script next to the workflow file or fix the path after 'scripted:'",
    )


@model_provider("scripted")
def scripted_provider(name: str, *, base_dir: Path | None) -> Model:
    """Build ``scripted:<script path>``, loading the script now so a malformed one fails before the run."""
    return ScriptedModel.from_file(resolve_script_path(name, base_dir), name=name)
