"""Tools: typed functions a model or a tool node calls, each run inside the run's sandbox.

A workflow file names tools either by a built-in name (``read_file``) or by a plugin reference
(``tools/xyz.py:function``); `resolve_tool` turns either into a `Tool`. A plugin function runs inside the run's
sandbox (`SandboxedTool`), unless it is declared ``host`` or takes a ``ToolContext``.
"""

from agentflow.tools._base import ExecObserver, Tool, ToolContext, ToolOutcome
from agentflow.tools._builtins import BUILTIN_TOOLS
from agentflow.tools._exec import CommandResult
from agentflow.tools._patching import FileChange, PatchResult
from agentflow.tools._registry import resolve_tool, tool, tool_registry
from agentflow.tools._sandboxed import SandboxedTool
from agentflow.tools._tests import RunCounts, RunTestsResult, parse_pytest_output, parse_unittest_output

__all__ = [
    "BUILTIN_TOOLS",
    "CommandResult",
    "ExecObserver",
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
