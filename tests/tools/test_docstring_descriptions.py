"""Parameter descriptions come from Google- or NumPy-style docstrings when the annotation gives none."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from agentflow.tools import Tool


def google(pattern: str, limit: int = 10, flags: Annotated[str, Field(description="from Field")] = "") -> str:
    """Find a pattern.

    Args:
        pattern: the regular expression
            to look for, over two lines.
        limit: stop after this many matches.
        flags: the docstring loses to Field.

    Returns:
        The matches.
    """
    return pattern


def numpy(pattern: str, limit: int = 10) -> str:
    """Find a pattern.

    Parameters
    ----------
    pattern : str
        the regular expression
    limit : int
        stop after this many matches
    """
    return pattern


def properties(tool: Tool) -> dict[str, Any]:
    schema: dict[str, Any] = tool.openai_schema()["function"]
    assert schema["description"] == "Find a pattern."
    return dict(schema["parameters"]["properties"])


def test_google_style_args_describe_the_parameters() -> None:
    found = properties(Tool(google))
    assert found["pattern"]["description"] == "the regular expression to look for, over two lines."
    assert found["limit"]["description"] == "stop after this many matches."
    assert found["flags"]["description"] == "from Field", "an explicit Field description wins"


def test_numpy_style_parameters_describe_the_parameters() -> None:
    found = properties(Tool(numpy))
    assert found["pattern"]["description"] == "the regular expression"
    assert found["limit"]["description"] == "stop after this many matches"
