"""Plugin tools that run inside the run's sandbox.

A plugin function (``tools/x.py:fn``) is imported in the agentflow process only to read its signature and
docstring. Each call runs in the sandbox: one exec of the sandbox's ``python3``, through ``ToolContext.exec`` (so
the sandbox's limits and scrubbed environment apply and the trace records a ``sandbox_exec``), with the module's
source, the function's name and the validated arguments as one JSON object on stdin; the runner answers with one
JSON object on stdout. Nothing is written into the sandbox: the module is compiled from stdin, so the agent's
workdir (what ``list_files`` shows) stays as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentflow.errors import ToolError
from agentflow.tools._base import Tool, ToolContext

PYTHON = "python3"
"""The sandbox's interpreter (the same one the built-in ``python`` tool starts)."""

# Read by the sandbox's python3 (any 3.8+, no third-party package). The plugin's own prints (and its child
# processes') go to stderr, so stdout carries nothing but the reply.
_RUNNER = r"""
import asyncio, dataclasses, inspect, json, os, sys, traceback, types

reply_stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)


def plain(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


async def wait(awaitable):
    return await awaitable


try:
    module = types.ModuleType(request["module"])
    module.__file__ = request["filename"]
    sys.modules[module.__name__] = module
    exec(compile(request["source"], request["filename"], "exec"), module.__dict__)
    value = getattr(module, request["function"])(**request["arguments"])
    if inspect.isawaitable(value):
        value = asyncio.run(wait(value))
    reply = json.dumps({"ok": True, "value": value}, default=plain, ensure_ascii=False)
except BaseException as exc:
    traceback.print_exc()  # into the recorded sandbox_exec's stderr, for whoever reads the trace
    reply = json.dumps({"ok": False, "type": type(exc).__name__, "message": str(exc)}, ensure_ascii=False)
reply_stream.write(reply)
reply_stream.flush()
"""

_BOOTSTRAP = "import json, sys; request = json.load(sys.stdin); exec(request.pop('runner'))"
"""The ``-c`` program: short, so each recorded ``sandbox_exec`` stays readable (the runner travels on stdin)."""


class SandboxedTool(Tool):
    """A plugin tool whose function runs in the run's sandbox, one exec per call."""

    def __init__(self, ref: str, fn: Any, source_file: Path, *, name: str | None = None) -> None:
        super().__init__(fn, name=name)
        if self.takes_context:
            raise TypeError("a function taking a ToolContext drives the sandbox from the host; it is a host tool")
        self.ref = ref
        self.source_file = source_file
        self._source = source_file.read_text(encoding="utf-8")
        self._function = getattr(fn, "__name__", self.name)

    async def call(self, ctx: ToolContext, arguments: BaseModel) -> Any:
        """Run the function in the sandbox on the validated arguments; its exception comes back as a ToolError."""
        request = {
            "runner": _RUNNER,
            "module": f"agentflow_plugin_{self.source_file.stem}",
            "filename": self.source_file.name,
            "source": self._source,
            "function": self._function,
            "arguments": arguments.model_dump(mode="json"),
        }
        # The reference is the last argument only so that the trace says which plugin the exec ran.
        result = await ctx.exec([PYTHON, "-I", "-c", _BOOTSTRAP, self.ref], stdin=json.dumps(request))
        if result.timed_out:
            raise ToolError(f"{self.name} ran past the sandbox's time limit (limits.exec_timeout_s)")
        try:
            reply = json.loads(result.stdout)
        except ValueError:
            reason = "its output passed limits.output_bytes" if result.truncated else f"exit code {result.exit_code}"
            tail = result.stderr.strip().splitlines()[-1:] or ["no error output"]
            raise ToolError(f"{self.name} gave no result in the sandbox ({reason}): {tail[0]}") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ToolError(f"{self.name} gave a malformed reply in the sandbox")
        if not reply["ok"]:
            raise ToolError(f"{reply.get('type', 'Exception')}: {reply.get('message', '')}")
        return reply.get("value")
