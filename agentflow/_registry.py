"""One small registry type for every backend kind, filled by decorators and the ``agentflow`` entry-point groups."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

from agentflow.errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (sandbox backends, model providers, tools, reward hooks).

    Third-party packages add entries through the entry-point group ``agentflow.<kind>``; the value of an entry point
    is loaded lazily, the first time its name is looked up.
    """

    def __init__(self, kind: str, *, extras: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._extras = extras or {}  # name -> extra that provides it, for the install hint
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            self._entries[name] = entry
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in metadata.entry_points(group=f"agentflow.{self.kind}"):
            if entry_point.name not in self._entries:
                self._entries[entry_point.name] = entry_point.load()

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self.names()

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownBackendError(self.kind, name, self.names(), extra=self._extras.get(name)) from None
