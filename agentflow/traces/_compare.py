"""Comparing two executions of the same run event by event: content digests, volatile text, abandoned visits.

Events are compared by their *content digest*: the sha256 of the RFC 8785 JSON of ``seq``, ``type``, ``node``,
``parent`` and ``data``, without what differs between two executions of the same run by nature: the run id, the
timestamp, the hash chain (which covers both), every ``duration_s``, and the host facts of ``run_started``
(``workflow_file``, ``agentflow_version``, the sandbox's isolation report, and ``replay_of``/``replay_mode``). A
changed workflow shows in ``run_started``'s ``template_hash``. A resumed run is compared as one uninterrupted
execution (see :func:`without_abandoned`). Text that differs between two executions of the same command
(``VOLATILE_TEXT``: test runners' timings) can be masked before comparing.

A run with branches (events carrying ``data.branch``: best-of candidates, parallel branches, map items) interleaves
their events as the concurrent tasks happened to run, which no second execution repeats. Such traces are compared
branch by branch (:func:`in_branch_order`): each stretch of branch events is put in branch order, renumbered.

Replay (``agentflow.rerun``) compares a replay with its recording through these; so can anything else that holds
two traces of the same workflow.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentflow.errors import ConfigError
from agentflow.traces._events import Event, EventType
from agentflow.traces._hashing import canonical_json, sha256_hex, to_json_value

# run_started keys that differ between two executions of the same run by nature (where and how it ran, not what it
# did): `resumable` says whether LangGraph checkpoints were saved, which a replay does not do.
# A forked run's lineage (`forked_from`, `fork_*`) says where its prefix came from, which its replay does not repeat.
_HOST_FACTS = (
    "workflow_file",
    "agentflow_version",
    "replay_of",
    "replay_mode",
    "resumable",
    "forked_from",
    "fork_group",
    "fork_index",
    "fork_step",
    "fork_sandbox",
)


VOLATILE_TEXT: tuple[str, ...] = (
    r"\bin \d+(?:\.\d+)?s\b",  # a test runner's wall time: pytest "3 passed in 0.02s", unittest "Ran 4 tests in 0.001s"
    r"\(\d+:\d\d:\d\d(?:\.\d+)?\)",  # pytest's "(0:01:02)" after a long run
)
"""Text in tool output that differs between two executions of the same commands; ``verify`` replays mask it.

Without it a verify replay of any run that ran tests would report the test runner's timing as the divergence.
"""

MASK = "<volatile>"


def volatile_pattern(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression for the volatile text ``patterns`` (None for none).

    Raises:
        ConfigError: a pattern is not a valid regular expression.
    """
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--ignore {pattern!r} is not a regular expression: {exc}") from None
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


def content_digest(event: Event, volatile: re.Pattern[str] | None = None) -> str:
    """The digest replay compares: the event's content without run id, time, chain and durations (see module)."""
    return sha256_hex(canonical_json(comparable(event, volatile)))


def comparable(event: Event, volatile: re.Pattern[str] | None = None) -> dict[str, Any]:
    """The part of an event that two executions of the same run must agree on.

    ``volatile`` matches text that may differ anyway (see ``VOLATILE_TEXT``); it is replaced by ``<volatile>``.
    """
    data = _normalised(to_json_value(event.data), volatile)
    if event.type is EventType.MODEL_REQUEST and isinstance(data, dict):
        # The hash covers the request's other fields, which are compared themselves (masked in verify mode); and
        # traces recorded before the retry policy left the request hash name it in the settings.
        data.pop("request_hash", None)
        data["settings"] = without_retry_policy(data.get("settings"))
    if event.type is EventType.RUN_STARTED and isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in _HOST_FACTS}
        sandbox = data.get("sandbox")
        if isinstance(sandbox, dict):
            data["sandbox"] = {key: value for key, value in sandbox.items() if key != "isolation"}
    return {"seq": event.seq, "type": str(event.type), "node": event.node, "parent": event.parent, "data": data}


_RETRY_POLICY = ("max_retries", "max_retry_s")
"""Model settings that change how failures are retried, never an answer (``ModelSettings.request_data`` leaves
them out of a request; traces recorded before it did carry ``max_retries``)."""


def without_retry_policy(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        return {}
    return {key: value for key, value in settings.items() if key not in _RETRY_POLICY}


def without_abandoned(events: Sequence[Event]) -> list[Event]:
    """The events of a resumed run as one uninterrupted execution would have recorded them.

    A resumed trace holds the visit the interruption abandoned (the events after ``run_resumed``'s
    ``resumed_after_seq``), the ``run_resumed`` event itself and the commands of the sandbox rebuild after it
    (``sandbox_exec`` with ``by: "resume"``); all of them are left out, and the events after them are numbered on
    (``seq``, ``parent`` and rewards' ``target_seq``), so that a replay of the run compares event by event.
    A trace that was never resumed comes back as it is.
    """
    abandoned: set[int] = set()
    for event in events:
        if event.type is EventType.RUN_RESUMED:
            cut = event.data.get("resumed_after_seq")
            first = cut + 1 if isinstance(cut, int) else event.seq
            abandoned.update(range(first, event.seq + 1))
        elif event.type is EventType.SANDBOX_EXEC and event.data.get("by") == "resume":
            abandoned.add(event.seq)  # the sandbox rebuild after run_resumed: no uninterrupted run has it
    if not abandoned:
        return list(events)
    kept = [event for event in events if event.seq not in abandoned]
    renumbered = {event.seq: index for index, event in enumerate(kept)}
    result: list[Event] = []
    for index, event in enumerate(kept):
        data = event.data
        target = data.get("target_seq")
        if isinstance(target, int) and target in renumbered:
            data = {**data, "target_seq": renumbered[target]}
        parent = renumbered.get(event.parent) if event.parent is not None else None
        result.append(event.model_copy(update={"seq": index, "parent": parent, "data": data}))
    return result


def masked(value: Any, volatile: re.Pattern[str]) -> Any:
    """``value`` with every match of ``volatile`` in its strings replaced by ``<volatile>``."""
    if isinstance(value, str):
        return volatile.sub(MASK, value)
    if isinstance(value, dict):
        return {key: masked(item, volatile) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, volatile) for item in value]
    return value


def _normalised(value: Any, volatile: re.Pattern[str] | None) -> Any:
    """``value`` without durations, and with volatile text masked."""
    if isinstance(value, dict):
        return {key: _normalised(item, volatile) for key, item in value.items() if key != "duration_s"}
    if isinstance(value, list):
        return [_normalised(item, volatile) for item in value]
    if volatile is not None and isinstance(value, str):
        return volatile.sub(MASK, value)
    return value


@dataclass
class Divergence:
    """The first event where a replay differs from the recording."""

    index: int
    node: str | None
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    diff: str

    def to_dict(self) -> dict[str, Any]:
        """Return the divergence as JSON-serialisable data."""
        return asdict(self)


def in_branch_order(events: Sequence[Event]) -> list[Event]:
    """The events with each stretch of concurrent branches' events put in branch order (stable), renumbered.

    Concurrent branches (events with ``data.branch``) interleave differently in every execution: only the order of
    each branch's own events, and where the stretch of branches sits among the run's other events, are the run's.
    So two executions compare equal when every branch did the same, whatever the interleaving. ``seq``, ``parent``
    and rewards' ``target_seq`` are renumbered to the new order. A trace without branches comes back as it is.
    """
    if not any(isinstance(event.data.get("branch"), str) for event in events):
        return list(events)
    ordered: list[Event] = []
    stretch: list[Event] = []
    for event in events:
        if isinstance(event.data.get("branch"), str):
            stretch.append(event)
            continue
        ordered.extend(sorted(stretch, key=lambda e: str(e.data.get("branch"))))
        stretch = []
        ordered.append(event)
    ordered.extend(sorted(stretch, key=lambda e: str(e.data.get("branch"))))
    renumbered = {event.seq: index for index, event in enumerate(ordered)}
    result: list[Event] = []
    for index, event in enumerate(ordered):
        data = event.data
        target = data.get("target_seq")
        if isinstance(target, int) and target in renumbered:
            data = {**data, "target_seq": renumbered[target]}
        parent = renumbered.get(event.parent, event.parent) if event.parent is not None else None
        result.append(event.model_copy(update={"seq": index, "parent": parent, "data": data}))
    return result


def first_divergence(
    expected: Sequence[Event], actual: Sequence[Event], volatile: re.Pattern[str] | None = None
) -> Divergence | None:
    """Compare two event sequences by content (volatile text masked); return where they first differ, or None.

    Concurrent branches are compared branch by branch (see :func:`in_branch_order`).
    """
    expected, actual = in_branch_order(expected), in_branch_order(actual)
    for index in range(max(len(expected), len(actual))):
        old = expected[index] if index < len(expected) else None
        new = actual[index] if index < len(actual) else None
        old_view = comparable(old, volatile) if old is not None else None
        new_view = comparable(new, volatile) if new is not None else None
        if old_view == new_view:
            continue
        diff = "\n".join(
            difflib.unified_diff(
                _pretty(old_view).splitlines(),
                _pretty(new_view).splitlines(),
                fromfile="recorded",
                tofile="replayed",
                lineterm="",
            )
        )
        node = (old or new).node if (old or new) is not None else None  # type: ignore[union-attr]
        return Divergence(index=index, node=node, expected=old_view, actual=new_view, diff=diff)
    return None


def _pretty(view: dict[str, Any] | None) -> str:
    return "(no event)" if view is None else json.dumps(view, indent=2, sort_keys=True, default=str)
