"""The tool registry, the ``@tool`` decorator, and resolution of the tool references a workflow file names."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from agentflow._plugins import is_plugin_ref, load_plugin, plugin_file
from agentflow._registry import Registry
from agentflow.errors import ToolLoadError
from agentflow.spec._templating import Quoting
from agentflow.tools._base import Tool
from agentflow.tools._sandboxed import SandboxedTool

tool_registry: Registry[Tool] = Registry[Tool]("tool")
"""Every named tool: the built-ins, ``@tool``-decorated functions, and the ``agentflow.tool`` entry points."""


@overload
def tool(name: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    name: str | None = None,
    /,
    *,
    description: str | None = None,
    host: bool = False,
    quoting: Mapping[str, Quoting] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    description: str | None = None,
    host: bool = False,
    quoting: Mapping[str, Quoting] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Wrap a typed function into a `Tool` and register it in `tool_registry`.

    Usable bare (``@tool``) or with a name (``@tool("search")``); the registered name defaults to the function's.

    Args:
        name: the name the model and workflow files use; defaults to the function's ``__name__``.
        description: what the model reads about the tool; defaults to the first paragraph of the docstring.
        host: in a plugin file, run the function in the agentflow process instead of the run's sandbox (the
            trace marks its calls); a function taking a ``ToolContext`` is a host tool anyway.
        quoting: parameter -> how a tool node's ``{placeholders}`` are written into it (``python``: as Python
            literals, ``shell``: as shell-quoted words), for parameters that hold a program.

    Returns:
        The `Tool` (when used bare) or a decorator that returns it.
    """
    if callable(name):
        return _register(Tool(name, description=description, host=host, quoting=quoting))
    tool_name = name

    def decorate(fn: Callable[..., Any]) -> Tool:
        return _register(Tool(fn, name=tool_name, description=description, host=host, quoting=quoting))

    return decorate


def _register(wrapped: Tool) -> Tool:
    tool_registry.add(wrapped.name, wrapped)
    return wrapped


def resolve_tool(ref: str, *, base_dir: Path, host: bool = False) -> Tool:
    """Turn a tool reference from a workflow file into a `Tool`.

    A plugin function runs inside the run's sandbox (see `SandboxedTool`) unless it is declared ``host`` (on its
    reference in the workflow file, or by ``@tool(host=True)``) or takes a ``ToolContext``: then it runs in this
    process and the trace marks its calls as host-executed.

    Args:
        ref: a registered name (``read_file``), a plugin file and function (``tools/xyz.py:function``, the path
            relative to ``base_dir``), or an importable module and function (``package.module:function``).
        base_dir: the folder of the workflow file, against which plugin paths are resolved.
        host: the workflow file declares the plugin ``host: true``.

    Returns:
        The tool, ready to describe to a model and invoke.

    Raises:
        UnknownBackendError: ``ref`` is a name no registry entry has (the message gives the closest match).
        ToolLoadError: the plugin file is missing, raises on import, lacks the function, or the function's
            signature cannot be described to a model.
    """
    if not is_plugin_ref(ref):
        # Imported here: the built-ins register themselves through this module's decorator.
        from agentflow.tools import _builtins  # noqa: F401

        return _as_tool(tool_registry.get(ref), ref)
    plugin = load_plugin(ref, base_dir=base_dir, kind="tool plugin", error=ToolLoadError)
    entry = plugin.value
    if isinstance(entry, Tool):
        # A @tool in an installed module is a registered tool like any other; one in a plugin file beside the
        # workflow would have to run in the sandbox, where its `import agentflow` fails.
        if not entry.host and plugin_file(ref, base_dir) is not None:
            raise ToolLoadError(
                f"tool plugin {ref!r} is decorated with @tool, so its module imports agentflow, which the sandbox "
                "does not have",
                fix="write a plain typed function (it then runs in the sandbox), or use @tool(host=True) to run it on "
                "the host",
            )
        return entry
    wrapped = _as_tool(entry, ref, host=host)
    if wrapped.host:
        return wrapped
    source = plugin.source_file
    if source is None or not source.is_file():
        raise ToolLoadError(
            f"tool plugin {ref!r} has no Python source file to run in the sandbox",
            fix="reference a .py file (path/to/file.py:function), or declare it host: true",
        )
    return _as_tool(entry, ref, build=lambda fn: SandboxedTool(ref, fn, source))


def _as_tool(
    entry: object, ref: str, *, host: bool = False, build: Callable[[Callable[..., Any]], Tool] | None = None
) -> Tool:
    if isinstance(entry, Tool):
        return entry
    if not callable(entry) or inspect.isclass(entry):
        raise ToolLoadError(
            f"tool {ref!r} is a {type(entry).__name__}, not a function",
            fix="point the reference at a function with typed parameters",
        )
    try:
        wrapped = build(entry) if build is not None else Tool(entry, name=getattr(entry, "__name__", None), host=host)
        wrapped.openai_schema()  # fail at load time, not at the first model call, if a type has no JSON Schema
    except Exception as exc:
        # pydantic's schema errors run to several paragraphs; their first line names the type, which is the point
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ToolLoadError(
            f"tool {ref!r} has a signature that cannot be described to a model: {type(exc).__name__}: {reason}",
            fix="give every parameter a JSON-compatible type annotation (str, int, list[str], a pydantic model...) "
            "and no *args or **kwargs",
        ) from exc
    return wrapped
