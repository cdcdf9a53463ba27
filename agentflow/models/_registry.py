"""The model-provider registry and ``provider:model`` string parsing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agentflow._registry import Registry
from agentflow.errors import ConfigError, UnknownBackendError
from agentflow.models._base import Model


class ModelFactory(Protocol):
    """Builds a model from the part of a model string after ``provider:``."""

    def __call__(self, name: str, *, base_dir: Path | None) -> Model:
        """Return a model for ``name``; ``base_dir`` is the folder of the workflow file, for relative paths."""
        ...


model_providers: Registry[ModelFactory] = Registry("model")
"""Model providers by name; third parties add theirs through the ``agentflow.model`` entry-point group."""


def model_provider(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory under a provider name.

    Example:
        ```python
        @model_provider("echo")
        def echo_provider(name: str, *, base_dir: Path | None) -> Model:
            return EchoModel(name)
        ```

    Args:
        name: The provider part of model strings, e.g. ``"openai"`` in ``"openai:gpt-4o-mini"``.

    Returns:
        A decorator that registers the factory and returns it unchanged.
    """
    return model_providers.register(name)


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``"provider:model"`` into its two parts.

    Only the first colon separates, so model names may hold colons (``openai:ft:gpt-4o-mini:org:id``).

    Raises:
        ConfigError: The string has no ``provider:`` prefix or an empty model part.
    """
    provider, sep, name = model.strip().partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"model {model!r} is not of the form 'provider:model'",
            fix="write e.g. 'openai:gpt-4o-mini' or 'scripted:my_graph.script.yaml'; "
            f"providers: {', '.join(model_providers.names())}",
        )
    return provider, name


def create_model(model: str, *, base_dir: Path | None = None) -> Model:
    """Build a model from a ``provider:model`` string.

    Args:
        model: E.g. ``"openai:gpt-4o-mini"`` or ``"scripted:fix_bug.script.yaml"``.
        base_dir: Folder that relative paths in the model string (scripts) are resolved against, normally the
            folder of the workflow file; the current directory when ``None``.

    Returns:
        A ready model; providers check what they can up front (a scripted model loads its script, the OpenAI
        model checks for an API key), so a mistake fails here rather than in the middle of a run.

    Raises:
        ConfigError: The string is malformed or the provider rejects its part.
        UnknownBackendError: No provider is registered under that name (the error lists the choices).
    """
    provider, name = parse_model_string(model)
    try:
        factory = model_providers.get(provider)
    except UnknownBackendError as exc:
        raise UnknownBackendError("model provider", provider, exc.choices) from None
    return factory(name, base_dir=base_dir)
