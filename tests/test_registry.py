"""Registries and their entry points: a plugin is loaded only when its own name is asked for, and a broken one
fails that name alone, with an error that says which plugin it is."""

from __future__ import annotations

from importlib import metadata

import pytest

from agentflow._registry import Registry
from agentflow.errors import ConfigError, UnknownBackendError


def _registry_with(*entry_points: metadata.EntryPoint) -> Registry[object]:
    registry: Registry[object] = Registry("test_kind")
    registry._entry_points = {entry_point.name: entry_point for entry_point in entry_points}  # as if installed
    return registry


def test_a_broken_plugin_fails_only_its_own_name() -> None:
    registry = _registry_with(
        metadata.EntryPoint(name="broken", value="agentflow_no_such_module:thing", group="agentflow.test_kind"),
        metadata.EntryPoint(name="fine", value="json:dumps", group="agentflow.test_kind"),
    )
    registry.add("builtin", "the built-in")
    assert registry.names() == ["broken", "builtin", "fine"]  # listed without importing anything
    assert "broken" in registry
    assert registry.get("builtin") == "the built-in"
    import json

    assert registry.get("fine") is json.dumps
    with pytest.raises(ConfigError, match=r"'broken' of the entry point 'agentflow_no_such_module:thing'"):
        registry.get("broken")
    with pytest.raises(UnknownBackendError, match="nope"):
        registry.get("nope")


def test_the_humaneval_hook_is_an_entry_point_of_agentflow_itself() -> None:
    from agentflow.rewards import reward_hooks

    declared = metadata.entry_points(group="agentflow.reward_hook")
    assert "humaneval" in {entry_point.name for entry_point in declared}
    assert reward_hooks.get("humaneval").__name__ == "HumanEvalHook"
