"""Models: the ``Model`` contract, the provider registry, and the built-in providers.

A model string is ``provider:model``: ``openai:gpt-4o-mini`` (any OpenAI-compatible server through
``OPENAI_BASE_URL``) or ``scripted:fix_bug.script.yaml`` (deterministic responses from a script file, the offline
default). Importing this package does not import the ``openai`` SDK; the OpenAI model loads it on first use.
"""

from agentflow.models._base import Message, Model, ModelResponse, ModelSettings, ToolCall, Usage
from agentflow.models._openai import OpenAIModel
from agentflow.models._registry import ModelFactory, create_model, model_provider, model_providers, parse_model_string
from agentflow.models._replay import ReplayModel
from agentflow.models._scripted import ScriptedModel, ScriptedResponse

__all__ = [
    "Message",
    "Model",
    "ModelFactory",
    "ModelResponse",
    "ModelSettings",
    "OpenAIModel",
    "ReplayModel",
    "ScriptedModel",
    "ScriptedResponse",
    "ToolCall",
    "Usage",
    "create_model",
    "model_provider",
    "model_providers",
    "parse_model_string",
]
