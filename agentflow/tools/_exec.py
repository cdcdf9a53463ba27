"""The built-in tools that run a program in the sandbox: ``python`` and ``shell``.

Every command goes through ``ctx.exec`` so the sandbox's limits apply and the trace records it. The docstrings and
parameter descriptions are what the model reads, so they are written for a model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from agentflow.sandboxes._base import ExecResult
from agentflow.tools._base import ToolContext
from agentflow.tools._registry import tool

PYTHON = "python3"
"""The interpreter the tools start inside the sandbox (``python3`` exists in every image we support)."""

TimeoutSeconds = Annotated[
    float | None,
    Field(gt=0, description="wall-clock limit in seconds; omit to use the sandbox's limit"),
]


class CommandResult(BaseModel):
    """What a command did in the sandbox."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool

    @classmethod
    def from_exec(cls, result: ExecResult) -> CommandResult:
        # duration_s stays out: it differs on every run and would make recorded tool results unreproducible.
        return cls(
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.timed_out,
            truncated=result.truncated,
        )


@tool("python", quoting={"code": "python"})
async def python(
    ctx: ToolContext,
    code: Annotated[str, Field(description="a complete Python 3 program; print what you want to see")],
    timeout_s: TimeoutSeconds = None,
) -> CommandResult:
    """Run a Python 3 program in the sandbox and return its exit code, stdout and stderr.

    The program runs in the workdir with a fresh interpreter each call (no state is kept between calls).
    """
    result = await ctx.exec([PYTHON, "-"], stdin=code, timeout=timeout_s)
    return CommandResult.from_exec(result)


@tool("shell", quoting={"command": "shell"})
async def shell(
    ctx: ToolContext,
    command: Annotated[str, Field(description="a POSIX sh command line, e.g. 'ls -la src && grep -rn TODO src'")],
    timeout_s: TimeoutSeconds = None,
) -> CommandResult:
    """Run a shell command (``sh -c``) in the sandbox workdir and return its exit code, stdout and stderr."""
    result = await ctx.exec(["sh", "-c", command], timeout=timeout_s)
    return CommandResult.from_exec(result)
