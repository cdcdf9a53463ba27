"""OpenAIModel through the real openai SDK over real HTTP to the loopback server."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from agentflow.errors import ConfigError, MissingExtraError, ModelAPIError
from agentflow.models import ModelResponse, ModelSettings, OpenAIModel, ToolCall, Usage, create_model
from tests.support.openai_server import OpenAIServer, Reply

USER_TURN = [{"role": "user", "content": "Fix the failing test."}]
READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
}


@pytest.fixture
def server_env(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIServer:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    return openai_server


@pytest.fixture
async def model(server_env: OpenAIServer) -> AsyncIterator[OpenAIModel]:
    openai_model = OpenAIModel("test-model")
    yield openai_model
    await openai_model.close()


async def test_text_reply_becomes_assistant_message(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.text("Hello there.", model="test-model-2024", prompt_tokens=12, completion_tokens=3))

    response = await model.complete(USER_TURN, [], ModelSettings())

    assert response.message == {"role": "assistant", "content": "Hello there."}
    assert response.tool_calls == []
    assert response.usage == Usage(input_tokens=12, output_tokens=3)
    assert response.model == "test-model-2024"
    assert response.raw is not None
    assert response.raw["choices"][0]["message"]["content"] == "Hello there."
    assert server_env.requests[0]["model"] == "test-model"
    assert server_env.requests[0]["messages"] == USER_TURN
    assert server_env.request_headers[0]["authorization"] == "Bearer test-key"


async def test_tool_calls_keep_the_raw_argument_text(model: OpenAIModel, server_env: OpenAIServer) -> None:
    malformed = '{"path": "calc.py", '
    server_env.queue(Reply.tool_calls(("write_file", malformed), ("read_file", '{"path":"a.py"}'), content="Two."))

    response = await model.complete(USER_TURN, [READ_FILE_TOOL], ModelSettings())

    assert response.tool_calls == [
        ToolCall(id="call_1", name="write_file", arguments=malformed),
        ToolCall(id="call_2", name="read_file", arguments='{"path":"a.py"}'),
    ]
    assert response.message["content"] == "Two."
    assert response.message["tool_calls"] == [call.to_openai() for call in response.tool_calls]


async def test_settings_and_tools_are_sent_and_unset_ones_omitted(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.text("a"), Reply.text("b"))

    await model.complete(USER_TURN, [READ_FILE_TOOL], ModelSettings(temperature=0.25, max_tokens=64, seed=7))
    await model.complete(USER_TURN, [], ModelSettings())

    with_settings, defaults = server_env.requests
    assert (with_settings["temperature"], with_settings["max_tokens"], with_settings["seed"]) == (0.25, 64, 7)
    assert with_settings["tools"] == [READ_FILE_TOOL]
    # Unset options must not reach the server, which would otherwise not apply its own defaults.
    assert not {"temperature", "max_tokens", "seed", "tools"} & defaults.keys()


async def test_rate_limit_is_retried_then_succeeds(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.error(429, "slow down", error_type="rate_limit_exceeded"), Reply.text("after retry"))

    response = await model.complete(USER_TURN, [], ModelSettings(max_retries=2))

    assert response.message["content"] == "after retry"
    assert len(server_env.requests) == 2


async def test_persistent_server_error_raises_after_the_retries(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(*[Reply.error(500, "upstream exploded") for _ in range(4)])

    with pytest.raises(ModelAPIError) as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retries=2))

    assert caught.value.status_code == 500
    assert caught.value.body is not None
    assert json.loads(caught.value.body)["error"]["message"] == "upstream exploded"
    assert "after 2 retries" in str(caught.value)
    assert len(server_env.requests) == 3  # the first try and two retries
    assert server_env.pending == 1
    assert caught.value.__cause__ is not None  # the SDK's exception stays reachable


async def test_bad_request_is_not_retried(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.error(400, "messages: bad role", error_type="invalid_request_error"), Reply.text("never"))

    with pytest.raises(ModelAPIError, match=r"HTTP 400 .*: messages: bad role") as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retries=2))

    assert caught.value.status_code == 400
    assert len(server_env.requests) == 1
    assert server_env.pending == 1


async def test_authentication_error_points_at_the_key(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.error(401, "Incorrect API key provided", error_type="invalid_request_error"))

    with pytest.raises(ModelAPIError, match="OPENAI_API_KEY") as caught:
        await model.complete(USER_TURN, [], ModelSettings())

    assert caught.value.status_code == 401


async def test_response_without_choices_is_an_error(model: OpenAIModel, server_env: OpenAIServer) -> None:
    no_choices = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    server_env.queue(Reply.completion(no_choices))

    with pytest.raises(ModelAPIError, match="no choices"):
        await model.complete(USER_TURN, [], ModelSettings())


async def test_non_json_answer_is_an_error(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.raw(200, "<html>proxy login</html>", {"content-type": "text/html"}))

    with pytest.raises(ModelAPIError, match="proxy login"):
        await model.complete(USER_TURN, [], ModelSettings())


async def test_timeout_is_reported(model: OpenAIModel, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.text("too late", delay_s=2.0))

    with pytest.raises(ModelAPIError, match=r"no answer from .* within 0\.2s") as caught:
        await model.complete(USER_TURN, [], ModelSettings(timeout_s=0.2, max_retries=0))

    assert caught.value.status_code is None


async def test_unreachable_server_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago; nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    model = OpenAIModel("test-model", base_url=f"http://127.0.0.1:{port}/v1")

    with pytest.raises(ModelAPIError, match=f"cannot connect to http://127.0.0.1:{port}/v1") as caught:
        await model.complete(USER_TURN, [], ModelSettings(max_retries=0))

    assert caught.value.status_code is None
    await model.close()


def test_missing_api_key_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set") as caught:
        create_model("openai:gpt-4o-mini")

    assert caught.value.fix is not None
    assert "export OPENAI_API_KEY=" in caught.value.fix


async def test_base_url_comes_from_the_environment(server_env: OpenAIServer) -> None:
    server_env.queue(Reply.text("from env"))
    model = create_model("openai:served-model")

    response = await model.complete(USER_TURN, [], ModelSettings())

    assert response.message["content"] == "from env"
    assert server_env.requests[0]["model"] == "served-model"
    await model.close()


async def test_explicit_base_url_and_key_override_the_environment(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: would fail if used
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_server.queue(Reply.text("explicit"))
    model = OpenAIModel("m", api_key="explicit-key", base_url=openai_server.base_url)

    response = await model.complete(USER_TURN, [], ModelSettings())

    assert response.message["content"] == "explicit"
    assert openai_server.request_headers[0]["authorization"] == "Bearer explicit-key"
    await model.close()


# The first loop ends without `close()`, so its abandoned connection is reported unclosed when collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_model_serves_successive_event_loops(server_env: OpenAIServer) -> None:
    # A benchmark may call `asyncio.run` once per task with the same model; the pooled connection of the first
    # loop must not be reused by the second (it would raise "Event loop is closed").
    server_env.queue(Reply.text("first"), Reply.text("second"))
    model = OpenAIModel("test-model")

    async def complete_and_close() -> ModelResponse:
        try:
            return await model.complete(USER_TURN, [], ModelSettings())
        finally:
            await model.close()

    first = asyncio.run(model.complete(USER_TURN, [], ModelSettings()))
    second = asyncio.run(complete_and_close())
    gc.collect()  # report the first loop's connection inside this test, where the warning is expected

    assert [first.message["content"], second.message["content"]] == ["first", "second"]


def test_importing_agentflow_models_does_not_import_the_sdk() -> None:
    code = "import sys, agentflow, agentflow.models; print('openai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


async def test_missing_sdk_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    model = OpenAIModel("test-model")

    with pytest.raises(MissingExtraError) as caught:
        await model.complete(USER_TURN, [], ModelSettings())

    assert caught.value.package == "openai"
