"""Model strings and the provider registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import ConfigError, UnknownBackendError
from agentflow.models import (
    Model,
    ModelResponse,
    ModelSettings,
    OpenAIModel,
    create_model,
    model_provider,
    model_providers,
    parse_model_string,
)


class EchoModel(Model):
    provider = "echo"

    def __init__(self, name: str, base_dir: Path | None) -> None:
        super().__init__(name)
        self.base_dir = base_dir

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        return ModelResponse(message={"role": "assistant", "content": messages[-1]["content"]})


def test_only_the_first_colon_separates() -> None:
    assert parse_model_string("openai:ft:gpt-4o-mini:org:abc") == ("openai", "ft:gpt-4o-mini:org:abc")
    assert parse_model_string(" scripted:a/b.yaml ") == ("scripted", "a/b.yaml")


@pytest.mark.parametrize("model", ["gpt-4o-mini", ":gpt-4o", "openai:", ""])
def test_malformed_model_strings_show_the_form(model: str) -> None:
    with pytest.raises(ConfigError, match="provider:model") as caught:
        create_model(model)
    assert caught.value.fix is not None
    assert "openai" in caught.value.fix
    assert "scripted" in caught.value.fix


def test_unknown_provider_names_choices_and_closest_match() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        create_model("opnai:gpt-4o-mini")

    assert caught.value.name == "opnai"
    assert {"openai", "scripted"} <= set(caught.value.choices)
    assert "did you mean 'openai'" in str(caught.value)
    assert "unknown model provider" in str(caught.value)


def test_openai_models_are_built_from_their_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")

    model = create_model("openai:Qwen/Qwen2.5-7B-Instruct")

    assert isinstance(model, OpenAIModel)
    assert model.name == "Qwen/Qwen2.5-7B-Instruct"
    assert model.model_id == "openai:Qwen/Qwen2.5-7B-Instruct"
    assert model.base_url == "http://localhost:8000/v1"


async def test_registered_providers_are_used_by_create_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_providers, "_entries", dict(model_providers._entries))  # undo the registration after

    @model_provider("echo")
    def echo_provider(name: str, *, base_dir: Path | None) -> Model:
        return EchoModel(name, base_dir)

    model = create_model("echo:parrot", base_dir=tmp_path)

    assert isinstance(model, EchoModel)
    assert (model.name, model.base_dir) == ("parrot", tmp_path)
    response = await model.complete([{"role": "user", "content": "hi"}], [], ModelSettings())
    assert response.message["content"] == "hi"
    assert "echo" in model_providers.names()
