"""The one resolver of plugins named by path in a workflow file: tools (``tools/x.py:fn``) and reward hooks.

A plugin reference is ``path/to/file.py:name`` (the path relative to the workflow file's folder) or
``package.module:name`` (an importable module). Loading one imports its module in this process, once per file,
and returns the named object; every failure is a `PluginLoadError` that says what to fix, with the plugin's own
file:line:col for a syntax error.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agentflow.errors import PluginLoadError, SourceLocation


def is_plugin_ref(ref: str) -> bool:
    """True when ``ref`` names a plugin (``file.py:name`` or ``module:name``) rather than a registered name."""
    return ":" in ref


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin's object, its module, and the file that module came from (None when it has no source file)."""

    ref: str
    value: Any
    module: ModuleType
    source_file: Path | None


def plugin_file(ref: str, base_dir: Path) -> Path | None:
    """The file a ``file.py:name`` reference points at (resolved against ``base_dir``), None for a module ref."""
    location = ref.rpartition(":")[0]
    return (base_dir / location).resolve() if location.endswith(".py") else None


def load_plugin(
    ref: str, *, base_dir: Path, kind: str = "plugin", error: type[PluginLoadError] = PluginLoadError
) -> LoadedPlugin:
    """Import the module of a plugin reference and return the object it names.

    Args:
        ref: ``path/to/file.py:name`` or ``package.module:name``.
        base_dir: the folder of the workflow file, against which plugin paths are resolved.
        kind: what the plugin is, for messages ("tool plugin", "reward hook").
        error: the `PluginLoadError` subclass to raise.

    Raises:
        PluginLoadError: (or ``error``) the file is missing, the module does not import, or it lacks the name; the
            fix names the closest existing function for a mistyped name.
    """
    location, _, attribute = ref.rpartition(":")
    if not location or not attribute:
        raise error(f"{kind} reference {ref!r} is incomplete", fix="write it as path/to/file.py:name")
    path = plugin_file(ref, base_dir)
    module = _load_file(ref, path, kind, error) if path is not None else _import_module(ref, location, kind, error)
    if not hasattr(module, attribute):
        names = public_callables(module)
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise error(
            f"{kind} {ref!r}: the module has no function {attribute!r}",
            fix=f"{hint}functions defined there: {', '.join(names) or 'none'}",
            suggestion=close[0] if close else None,
        )
    source = path if path is not None else _module_source(module)
    return LoadedPlugin(ref=ref, value=getattr(module, attribute), module=module, source_file=source)


def public_callables(module: ModuleType) -> list[str]:
    """The public functions and classes a module defines itself (not the ones it imports), sorted."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        defined_here = getattr(value, "__module__", None) == module.__name__
        # An object made by a decorator (a Tool) lives in the decorator's module but was written here.
        decorated = not inspect.isroutine(value) and not inspect.isclass(value) and hasattr(value, "fn")
        if callable(value) and (defined_here or decorated):
            names.append(name)
    return sorted(names)


def _module_source(module: ModuleType) -> Path | None:
    try:
        source = inspect.getsourcefile(module)
    except TypeError:  # a built-in or extension module has no source
        return None
    return Path(source) if source else None


def _load_file(ref: str, path: Path, kind: str, error: type[PluginLoadError]) -> ModuleType:
    if not path.is_file():
        raise error(
            f"{kind} {ref!r}: no file at {path}",
            fix="create the file or correct the path; plugin paths are relative to the workflow file's folder",
        )
    # One module per file, named after a hash of its absolute path, so two plugins named tools.py in different
    # folders never replace each other in sys.modules, and a tool and a hook from one file share its module state.
    module_name = f"agentflow_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise error(f"{kind} {ref!r}: {path} cannot be loaded as Python", fix="give it a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered before exec, as the import system does, for dataclasses etc.
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]  # a broken module must not be served from the cache next time
        if not isinstance(exc, Exception):
            raise
        raise _import_failure(ref, kind, exc, path, error, fix=f"fix the error in {path}") from exc
    return module


def _import_module(ref: str, module_name: str, kind: str, error: type[PluginLoadError]) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise error(
            f"{kind} {ref!r}: no module named {exc.name!r}",
            fix="install the package that provides it, or reference a file as path/to/file.py:name",
        ) from exc
    except Exception as exc:
        raise _import_failure(ref, kind, exc, None, error, fix=f"fix the error in module {module_name}") from exc


def _import_failure(
    ref: str, kind: str, exc: Exception, path: Path | None, error: type[PluginLoadError], *, fix: str
) -> PluginLoadError:
    """Name the exception and the plugin line it came from, the two things the user needs to fix it."""
    summary = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        where = SourceLocation(exc.filename or str(path), exc.lineno or 1, exc.offset or 1)
        text = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        return error(f"{kind} {ref!r} has a syntax error at {where}: {exc.msg}{text}", fix=fix, plugin_location=where)
    frames = traceback.extract_tb(exc.__traceback__)
    # The deepest frame inside the plugin file is the line the user wrote; fall back to the deepest frame overall.
    own = [frame for frame in frames if path is not None and Path(frame.filename) == path]
    if not (own or frames):
        return error(f"{kind} {ref!r} raised on import: {summary}", fix=fix)
    frame = (own or frames)[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    where = SourceLocation(frame.filename, frame.lineno or 1, (frame.colno or 0) + 1)
    return error(
        f"{kind} {ref!r} raised on import: {summary} (at {frame.filename} line {frame.lineno}{code})",
        fix=fix,
        plugin_location=where,
    )
