"""Tools: typed functions a model or a tool node calls, each run inside the run's sandbox.

A workflow file names tools either by a built-in name (``read_file``) or by a plugin reference
(``tools/xyz.py:function``); `resolve_tool` turns either into a `Tool`. A plugin function runs inside the run's
sandbox (`SandboxedTool`), unless it is declared ``host`` or takes a ``ToolContext``.
"""

from agentflow.tools._base import Tool, ToolContext, ToolOutcome
from agentflow.tools._builtins import (
    BUILTIN_TOOLS,
    CommandResult,
    FileChange,
    PatchResult,
    RunCounts,
    RunTestsResult,
    parse_pytest_output,
    parse_unittest_output,
)
from agentflow.tools._registry import resolve_tool, tool, tool_registry
from agentflow.tools._sandboxed import SandboxedTool

__all__ = [
    "BUILTIN_TOOLS",
    "CommandResult",
    "FileChange",
    "PatchResult",
    "RunCounts",
    "RunTestsResult",
    "SandboxedTool",
    "Tool",
    "ToolContext",
    "ToolOutcome",
    "parse_pytest_output",
    "parse_unittest_output",
    "resolve_tool",
    "tool",
    "tool_registry",
]
