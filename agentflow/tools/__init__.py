"""Tools: typed functions a model or a tool node calls, each run inside the run's sandbox.

A workflow file names tools either by a built-in name (``read_file``) or by a plugin reference
(``tools/xyz.py:function``); `resolve_tool` turns either into a `Tool`. A plugin function runs inside the run's
sandbox (`SandboxedTool`), unless it is declared ``host`` or takes a ``ToolContext``.
"""

from agentflow.tools._base import Tool, ToolContext, ToolOutcome
from agentflow.tools._exec import CommandResult
from agentflow.tools._patching import FileChange, PatchResult
from agentflow.tools._registry import resolve_tool, tool, tool_registry
from agentflow.tools._tests import RunTestsResult

__all__ = [
    "CommandResult",
    "FileChange",
    "PatchResult",
    "RunTestsResult",
    "Tool",
    "ToolContext",
    "ToolOutcome",
    "resolve_tool",
    "tool",
    "tool_registry",
]
