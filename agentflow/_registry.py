"""One small registry type for every backend kind, filled by decorators and the ``agentflow`` entry-point groups."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

from agentflow.errors import ConfigError, UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (sandbox backends, model providers, tools, reward hooks).

    Third-party packages add entries through the entry-point group ``agentflow.<kind>``. An entry point is loaded
    only when its own name is looked up: listing names imports nothing, and a plugin that is broken (its package
    gone, its import failing) fails the lookups of that name alone, with an error that names it.
    """

    def __init__(self, kind: str, *, extras: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._extras = extras or {}  # name -> extra that provides it, for the install hint
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            self._entries[name] = entry
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def _declared(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of the group by name (read once; none is loaded here)."""
        if self._entry_points is None:
            group = metadata.entry_points(group=f"agentflow.{self.kind}")
            self._entry_points = {entry_point.name: entry_point for entry_point in group}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._declared()))

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._declared()

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        entry_point = self._declared().get(name)
        if entry_point is None:
            raise UnknownBackendError(self.kind, name, self.names(), extra=self._extras.get(name))
        try:
            loaded: T = entry_point.load()
        except Exception as exc:
            raise ConfigError(
                f"the {self.kind} {name!r} of the entry point {entry_point.value!r} cannot be loaded: "
                f"{type(exc).__name__}: {exc}",
                fix="reinstall the package that provides it, or uninstall it",
            ) from exc
        # the entry point may have registered itself on import (a decorator); the registry keeps one entry either way
        self._entries.setdefault(name, loaded)
        return self._entries[name]
