"""OpenAI chat completions, for api.openai.com and any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.errors import ConfigError, MissingExtraError, ModelAPIError, ModelContextExceeded
from agentflow.models._base import Message, Model, ModelResponse, ModelSettings, ToolCall, Usage
from agentflow.models._registry import model_provider
from agentflow.models._retry import ModelRetry, TransientModelError, call_with_retries, retry_after_seconds

if TYPE_CHECKING:
    # Type-only: `import agentflow.models` must not import the SDK.
    from openai import AsyncOpenAI, OpenAIError
    from openai.types.chat import ChatCompletion

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
_RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx, as the SDK does


class OpenAIModel(Model):
    """A chat model served over the OpenAI chat-completions API by the official ``openai`` SDK.

    The endpoint and key come from the arguments or else from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, so one
    workflow runs against api.openai.com or a local vLLM, Ollama or llama.cpp server without edits. 429, 408, 409,
    5xx, timeouts and connection failures are retried (``agentflow.models._retry``: exponential backoff with jitter,
    honouring ``retry-after-ms`` / ``Retry-After`` and ``x-should-retry``) up to ``ModelSettings.max_retries`` times
    within ``ModelSettings.max_retry_s``; each retry is returned in ``ModelResponse.retries``, and whatever still
    fails is raised as ``ModelAPIError`` carrying the retries.

    ``ModelSettings.max_tokens`` is sent as ``max_tokens``, which every OpenAI-compatible server accepts (OpenAI's
    reasoning models want ``max_completion_tokens`` instead; leave ``max_tokens`` unset for them).
    """

    provider = "openai"

    def __init__(self, name: str, *, api_key: str | None = None, base_url: str | None = None) -> None:
        """Check the configuration; the SDK client itself is created on the first call.

        Args:
            name: The model name the server knows, e.g. ``gpt-4o-mini`` or ``Qwen/Qwen2.5-7B-Instruct``.
            api_key: Overrides ``OPENAI_API_KEY``.
            base_url: Overrides ``OPENAI_BASE_URL``; e.g. ``http://localhost:8000/v1`` for vLLM.

        Raises:
            ConfigError: No API key is given or set in the environment.
        """
        super().__init__(name)
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigError(
                f"the model 'openai:{name}' needs an API key and {API_KEY_ENV} is not set",
                fix=f"export {API_KEY_ENV}=<your key> (a local server that ignores keys accepts any value, "
                f"e.g. {API_KEY_ENV}=local with {BASE_URL_ENV}=http://localhost:8000/v1), "
                "or use a 'scripted:' model to run offline",
            )
        self._api_key = key
        # An empty OPENAI_BASE_URL means "unset" (as the SDK treats it), not "the empty URL".
        self.base_url: str | None = base_url or os.environ.get(BASE_URL_ENV) or None
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _client_for_running_loop(self) -> AsyncOpenAI:
        # The SDK's connection pool belongs to the event loop it first ran on; a model reused from another loop
        # (one `asyncio.run` per benchmark task, pytest's loop per test) needs its own client or its requests fail.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            try:
                from openai import AsyncOpenAI
            except ImportError as exc:
                raise MissingExtraError("openai", "openai") from exc
            # agentflow retries (to record each retry and honour max_retry_s), never the SDK on its own.
            self._client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0)
            self._client_loop = loop
        return self._client

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        """Ask the server for the next assistant turn, retrying transient failures.

        Raises:
            ModelAPIError: The request failed (after the retries, when its failure was transient), or the server
                answered with no choices.
        """
        client = self._client_for_running_loop()
        import openai

        request: dict[str, Any] = {"model": self.name, "messages": messages}
        # OpenAI rejects `tools: []`, and unset sampling options must stay unset so the server's defaults apply.
        if tools:
            request["tools"] = tools
        for option in ("temperature", "max_tokens", "seed"):
            value = getattr(settings, option)
            if value is not None:
                request[option] = value

        async def attempt() -> ChatCompletion:
            try:
                completion: ChatCompletion = await client.chat.completions.create(**request, timeout=settings.timeout_s)
            except openai.OpenAIError as exc:
                transient = _transient(exc)
                if transient is None:
                    raise
                raise transient from exc
            return completion

        retries: list[ModelRetry] = []
        try:
            completion = await call_with_retries(
                attempt, max_retries=settings.max_retries, max_retry_s=settings.max_retry_s, retries=retries
            )
        except TransientModelError as exc:  # out of retries: report the SDK's error it stands for
            sdk_error = exc.__cause__ or exc
            raise _map_sdk_error(sdk_error, self, settings, retries) from sdk_error
        except openai.OpenAIError as exc:
            raise _map_sdk_error(exc, self, settings, retries) from exc
        response = _to_model_response(completion)
        return dataclasses.replace(response, retries=tuple(retries)) if retries else response

    async def close(self) -> None:
        """Close the HTTP connections of the SDK client, if one was created."""
        if self._client is not None:
            client, self._client, self._client_loop = self._client, None, None
            await client.close()


def _transient(exc: OpenAIError) -> TransientModelError | None:
    """The retryable form of an SDK error (408, 409, 429, 5xx, timeouts, lost connections), else None.

    A server's ``x-should-retry`` header overrides the status, as the SDK itself does.
    """
    import openai

    if isinstance(exc, openai.APIStatusError):
        should_retry = exc.response.headers.get("x-should-retry")
        retried = exc.status_code in _RETRIED_STATUSES or exc.status_code >= 500
        if should_retry == "false" or (should_retry != "true" and not retried):
            return None
        server_message = exc.body.get("message") if isinstance(exc.body, dict) else None
        return TransientModelError(
            f"HTTP {exc.status_code}: {server_message or exc.message}",
            status_code=exc.status_code,
            retry_after_s=retry_after_seconds(exc.response.headers),
        )
    if isinstance(exc, openai.APITimeoutError):
        return TransientModelError("no answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        return TransientModelError(f"cannot connect: {exc.__cause__ or exc}")
    return None


def _map_sdk_error(
    exc: BaseException, model: OpenAIModel, settings: ModelSettings, retries: list[ModelRetry]
) -> ModelAPIError:
    """Translate an SDK exception into ``ModelAPIError`` with the HTTP status and body when there was a response."""
    import openai

    where = model.base_url or "api.openai.com"
    recorded = [retry.to_dict() for retry in retries]
    retried = f"after {len(retries)} {'retry' if len(retries) == 1 else 'retries'}" if retries else "without retries"
    if retries and len(retries) < settings.max_retries:  # the time budget ran out before the count
        retried += f" (max_retry_s {settings.max_retry_s:g} reached)"
    # Most specific first: the SDK's timeout error is a connection error, and both are APIErrors.
    if isinstance(exc, openai.APIStatusError):
        # Only transient statuses are retried; saying "without retries" about a 400 would mislead.
        retried_here = f" {retried}" if _transient(exc) is not None or retries else ""
        server_message = exc.body.get("message") if isinstance(exc.body, dict) else None
        hint = f" (check {API_KEY_ENV})" if exc.status_code in (401, 403) else ""
        # OpenAI's code; vLLM and llama.cpp servers only say so in the message
        too_long = exc.code == "context_length_exceeded" or "maximum context length" in str(server_message)
        return (ModelContextExceeded if exc.status_code == 400 and too_long else ModelAPIError)(
            f"{model.model_id}: HTTP {exc.status_code} from {where}{retried_here}: "
            f"{server_message or exc.message}{hint}",
            status_code=exc.status_code,
            body=exc.response.text,
            retries=recorded,
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelAPIError(
            f"{model.model_id}: {where} sent a response that is not a chat completion: {exc.message}",
            status_code=exc.status_code,
            body=exc.response.text,
            retries=recorded,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ModelAPIError(
            f"{model.model_id}: no answer from {where} within {settings.timeout_s:g}s {retried}", retries=recorded
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return ModelAPIError(f"{model.model_id}: cannot connect to {where} {retried}{cause}", retries=recorded)
    return ModelAPIError(f"{model.model_id}: {type(exc).__name__}: {exc}", retries=recorded)


def _to_model_response(completion: ChatCompletion) -> ModelResponse:
    from openai.types.chat import ChatCompletion

    # Without strict validation the SDK hands back whatever JSON the server sent; a server that is not really
    # OpenAI-compatible must fail here with its payload, not later with an AttributeError.
    if not isinstance(completion, ChatCompletion):
        raise ModelAPIError(
            f"the server did not answer with a chat completion: {completion!r:.500}", body=str(completion)
        )
    raw = completion.model_dump(mode="json", exclude_unset=True)
    if not completion.choices:
        raise ModelAPIError(f"the server answered with no choices (model {completion.model!r})", body=str(raw))
    choice_message = completion.choices[0].message

    tool_calls: list[ToolCall] = []
    for call in choice_message.tool_calls or []:
        if call.type == "function":
            tool_calls.append(ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments))
        else:
            # Custom (free-form) tools carry plain text; it stays the raw argument text for the tool layer.
            tool_calls.append(ToolCall(id=call.id, name=call.custom.name, arguments=call.custom.input))

    message: Message = {"role": "assistant", "content": choice_message.content}
    if choice_message.refusal:
        message["refusal"] = choice_message.refusal
    if tool_calls:
        message["tool_calls"] = [call.to_openai() for call in tool_calls]

    usage = Usage()
    if completion.usage is not None:
        usage = Usage(
            input_tokens=completion.usage.prompt_tokens or 0, output_tokens=completion.usage.completion_tokens or 0
        )
    return ModelResponse(message=message, tool_calls=tool_calls, usage=usage, model=completion.model, raw=raw)


@model_provider("openai")
def openai_provider(name: str, *, base_dir: Path | None) -> Model:
    """Build ``openai:<name>``; the endpoint and key come from the environment."""
    del base_dir  # an OpenAI model has no files to resolve
    return OpenAIModel(name)
