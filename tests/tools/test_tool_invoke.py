"""Tool.invoke on the built-ins: bad arguments and failing tools come back as ok=False, never as exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentflow.tools import Tool, ToolContext, resolve_tool, tool_registry
from agentflow.tools._builtins import BUILTIN_TOOLS


def builtin(name: str) -> Tool:
    return tool_registry.get(name)


def test_every_builtin_is_registered_with_a_described_schema() -> None:
    for name in BUILTIN_TOOLS:
        function = resolve_tool(name, base_dir=Path(".")).openai_schema()["function"]
        assert function["name"] == name
        assert function["description"]
        # Every parameter carries a description the model can read.
        for field_name, field in function["parameters"]["properties"].items():
            assert field.get("description"), f"{name}.{field_name} has no description"


@pytest.mark.parametrize(
    ("arguments", "field", "problem"),
    [
        ({"code": 42}, "code", "valid string"),
        ({}, "code", "Field required"),
        ({"code": "print(1)", "verbose": True}, "verbose", "Extra inputs"),
        ({"code": "print(1)", "timeout_s": -1}, "timeout_s", "greater than 0"),
    ],
)
async def test_invalid_arguments_name_the_field(
    ctx: ToolContext, execs: list[list[str]], arguments: dict[str, object], field: str, problem: str
) -> None:
    outcome = await builtin("python").invoke(ctx, arguments)
    assert not outcome.ok
    assert outcome.error is not None
    assert f"{field}: " in outcome.error
    assert problem in outcome.error
    assert outcome.content.startswith("error: ")
    assert execs == [], "the tool must not run when its arguments are invalid"


async def test_arguments_as_json_text_are_parsed(ctx: ToolContext) -> None:
    outcome = await builtin("python").invoke(ctx, json.dumps({"code": "print(6 * 7)"}))
    assert outcome.ok, outcome.content
    assert outcome.result["stdout"] == "42\n"


async def test_malformed_json_text_is_reported(ctx: ToolContext, execs: list[list[str]]) -> None:
    outcome = await builtin("shell").invoke(ctx, '{"command": "ls"')
    assert not outcome.ok
    assert outcome.error is not None
    assert "not valid JSON" in outcome.error
    assert execs == []


async def test_wrong_literal_names_the_allowed_values(ctx: ToolContext) -> None:
    outcome = await builtin("run_tests").invoke(ctx, {"framework": "nose"})
    assert not outcome.ok
    assert outcome.error is not None
    assert "framework: " in outcome.error
    assert "'pytest'" in outcome.error


async def test_a_tool_that_raises_returns_a_failed_outcome(ctx: ToolContext) -> None:
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    outcome = await Tool(divide).invoke(ctx, {"a": 1, "b": 0})
    assert not outcome.ok
    assert outcome.error == "ZeroDivisionError: division by zero"


async def test_a_builtin_tool_error_is_the_message_itself(ctx: ToolContext) -> None:
    outcome = await builtin("read_file").invoke(ctx, {"path": "missing.txt"})
    assert not outcome.ok
    assert outcome.error is not None
    assert "no file 'missing.txt'" in outcome.error
    assert "list_files" in outcome.error
