"""Tool plugins of the shipped example workflows, loaded by path from YAML (`../../tools/search.py:search_code`).

A plugin is a typed Python function: its signature becomes the JSON Schema the model sees, its docstring the
description, and a leading `ctx: ToolContext` gives it the run's sandbox.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from agentflow.errors import ToolError
from agentflow.tools import ToolContext


async def search_code(
    ctx: ToolContext,
    pattern: Annotated[str, Field(description="a Python regular expression, e.g. 'def median'")],
    path: Annotated[str, Field(description="folder to search, relative to the workdir")] = ".",
    max_matches: Annotated[int, Field(ge=1, le=500)] = 50,
) -> str:
    """Search the text files under a folder for a regular expression; one `file:line: text` line per match."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
    matches: list[str] = []
    for name in await ctx.sandbox.list_files(path):
        try:
            text = (await ctx.sandbox.read_file(name)).decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary files hold no code to search
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                matches.append(f"{name}:{number}: {line.strip()}")
                if len(matches) >= max_matches:
                    return "\n".join([*matches, f"(stopped at {max_matches} matches)"])
    return "\n".join(matches) or f"no match for {pattern!r} under {path}"
