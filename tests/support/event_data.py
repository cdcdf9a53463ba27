"""Checks that events hold the data their event type declares (``agentflow.traces.DATA_TYPES``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_type_hints

from agentflow.traces import DATA_TYPES, Event, EventType


def _undeclared_and_missing(event: Event) -> tuple[set[str], set[str]]:
    data_type = DATA_TYPES[event.type]
    declared = set(get_type_hints(data_type))
    required: frozenset[str] = data_type.__required_keys__  # type: ignore[attr-defined]
    return set(event.data) - declared, set(required) - set(event.data)


def assert_data_declared(events: Iterable[Event], *, complete: bool = True) -> set[EventType]:
    """Assert each event holds only declared keys (and, ``complete``, every required one); return the types seen."""
    seen: set[EventType] = set()
    for event in events:
        undeclared, missing = _undeclared_and_missing(event)
        name = DATA_TYPES[event.type].__name__
        assert not undeclared, (
            f"event {event.seq} ({event.type.value}) holds keys {name} does not declare: {undeclared}"
        )
        if complete:
            assert not missing, f"event {event.seq} ({event.type.value}) lacks keys {name} requires: {missing}"
        seen.add(event.type)
    return seen
