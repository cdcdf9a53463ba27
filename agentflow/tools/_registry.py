"""The tool registry, the ``@tool`` decorator, and resolution of the tool references a workflow file names."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, overload

from agentflow._registry import Registry
from agentflow.errors import ToolLoadError
from agentflow.tools._base import Tool

tool_registry: Registry[Tool] = Registry[Tool]("tool")
"""Every named tool: the built-ins, ``@tool``-decorated functions, and the ``agentflow.tool`` entry points."""


@overload
def tool(name: Callable[..., Any], /) -> Tool: ...


@overload
def tool(name: str | None = None, /, *, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    name: str | Callable[..., Any] | None = None, /, *, description: str | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Wrap a typed function into a `Tool` and register it in `tool_registry`.

    Usable bare (``@tool``) or with a name (``@tool("search")``); the registered name defaults to the function's.

    Args:
        name: the name the model and workflow files use; defaults to the function's ``__name__``.
        description: what the model reads about the tool; defaults to the first paragraph of the docstring.

    Returns:
        The `Tool` (when used bare) or a decorator that returns it.
    """
    if callable(name):
        return _register(name, None, description)
    tool_name = name

    def decorate(fn: Callable[..., Any]) -> Tool:
        return _register(fn, tool_name, description)

    return decorate


def _register(fn: Callable[..., Any], name: str | None, description: str | None) -> Tool:
    wrapped = Tool(fn, name=name, description=description)
    tool_registry.add(wrapped.name, wrapped)
    return wrapped


def resolve_tool(ref: str, *, base_dir: Path) -> Tool:
    """Turn a tool reference from a workflow file into a `Tool`.

    Args:
        ref: a registered name (``read_file``), a plugin file and function (``tools/xyz.py:function``, the path
            relative to ``base_dir``), or an importable module and function (``package.module:function``).
        base_dir: the folder of the workflow file, against which plugin paths are resolved.

    Returns:
        The tool, ready to describe to a model and invoke.

    Raises:
        UnknownBackendError: ``ref`` is a name no registry entry has (the message gives the closest match).
        ToolLoadError: the plugin file is missing, raises on import, lacks the function, or the function's
            signature cannot be described to a model.
    """
    if ":" not in ref:
        # Imported here: the built-ins register themselves through this module's decorator.
        from agentflow.tools import _builtins  # noqa: F401

        return _as_tool(tool_registry.get(ref), ref)
    location, _, attribute = ref.rpartition(":")
    if not location or not attribute:
        raise ToolLoadError(
            f"tool reference {ref!r} is incomplete", fix="write it as path/to/file.py:function or a built-in name"
        )
    if location.endswith(".py"):
        module = _load_plugin_file(ref, (base_dir / location).resolve())
    else:
        module = _import_plugin_module(ref, location)
    return _plugin_tool(ref, module, attribute)


def _load_plugin_file(ref: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ToolLoadError(
            f"tool plugin {ref!r}: no file at {path}",
            fix="create the file or correct the path; plugin paths are relative to the workflow file's folder",
        )
    # One module per file, named after a hash of its absolute path, so two plugins named tools.py in different
    # folders never replace each other in sys.modules, and two tools from one file share its module state.
    module_name = f"agentflow_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ToolLoadError(f"tool plugin {ref!r}: {path} cannot be loaded as Python", fix="give it a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered before exec, as the import system does, for dataclasses etc.
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]  # a broken module must not be served from the cache next time
        if not isinstance(exc, Exception):
            raise
        raise ToolLoadError(
            f"tool plugin {ref!r} raised on import: {_describe_import_failure(exc, path)}",
            fix=f"fix the error in {path} (import it with python to see the full traceback)",
        ) from exc
    return module


def _import_plugin_module(ref: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ToolLoadError(
            f"tool plugin {ref!r}: no module named {exc.name!r}",
            fix="install the package that provides it, or reference a file as path/to/file.py:function",
        ) from exc
    except Exception as exc:
        raise ToolLoadError(
            f"tool plugin {ref!r} raised on import: {_describe_import_failure(exc, None)}",
            fix=f"fix the error in module {module_name}",
        ) from exc


def _describe_import_failure(exc: Exception, path: Path | None) -> str:
    """Name the exception and the plugin line it came from, the two things the user needs to fix it."""
    summary = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        text = (exc.text or "").strip()
        return f"{summary} (at {exc.filename} line {exc.lineno}: {text})" if exc.lineno else summary
    frames = traceback.extract_tb(exc.__traceback__)
    # The deepest frame inside the plugin file is the line the user wrote; fall back to the deepest frame overall.
    own = [frame for frame in frames if path is not None and Path(frame.filename) == path]
    if not (own or frames):
        return summary
    frame = (own or frames)[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"{summary} (at {frame.filename} line {frame.lineno}{code})"


def _plugin_tool(ref: str, module: ModuleType, attribute: str) -> Tool:
    if not hasattr(module, attribute):
        callables = _module_callables(module)
        close = difflib.get_close_matches(attribute, callables, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listing = ", ".join(callables) or "none"
        raise ToolLoadError(
            f"tool plugin {ref!r}: the module has no function {attribute!r}",
            fix=f"{hint}functions defined there: {listing}",
        )
    return _as_tool(getattr(module, attribute), ref)


def _module_callables(module: ModuleType) -> list[str]:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        defined_here = getattr(value, "__module__", None) == module.__name__
        if isinstance(value, Tool) or (callable(value) and defined_here):
            names.append(name)
    return sorted(names)


def _as_tool(entry: object, ref: str) -> Tool:
    if isinstance(entry, Tool):
        return entry
    if not callable(entry) or inspect.isclass(entry):
        raise ToolLoadError(
            f"tool {ref!r} is a {type(entry).__name__}, not a function",
            fix="point the reference at a function with typed parameters",
        )
    try:
        wrapped = Tool(entry, name=getattr(entry, "__name__", None))
        wrapped.openai_schema()  # fail at load time, not at the first model call, if a type has no JSON Schema
    except Exception as exc:
        raise ToolLoadError(
            f"tool {ref!r} has a signature that cannot be described to a model: {type(exc).__name__}: {exc}",
            fix="give every parameter a JSON-compatible type annotation (str, int, list[str], a pydantic model...) "
            "and no *args or **kwargs",
        ) from exc
    return wrapped
