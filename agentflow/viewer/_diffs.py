"""The file diffs a run's steps made, as far as its trace tells: what the viewer's step panel shows.

A trace records the file tools' arguments and results, not the workdir, so a diff is derived from them in order:
``apply_patch`` carries its own unified diff; ``write_file`` is diffed against the file's last content the trace
knows (an earlier ``write_file`` of the path, or what ``read_file`` returned), or shown whole as a new file when the
trace knows nothing earlier. A failed call changed nothing. What a shell command did to files is not in the trace,
so a file a command changed is known again only from its next ``read_file``.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from agentflow.traces import Event, EventType, Store, ToolCallData, ToolResultData

__all__ = ["step_diffs"]

# How read_file ends a read it cut short (agentflow/tools/_files.py): such a read is not the file's content.
_TRUNCATED = re.compile(r"\n\[truncated after \d+ characters \(about \d+ lines\); call read_file again")


def _path_key(path: str) -> str:
    return path.removeprefix("./").removeprefix("/workspace/")


def step_diffs(store: Store, events: list[Event]) -> dict[int, list[dict[str, str]]]:
    """The diffs each step made, keyed by the seq of its ``tool_call``: ``[{"path", "diff"}]`` (unified diffs)."""
    calls: dict[str, tuple[Event, dict[str, Any]]] = {}  # call id -> (tool_call, its arguments)
    known: dict[str, str] = {}  # path -> its last content the trace shows
    diffs: dict[int, list[dict[str, str]]] = {}
    for event in events:
        if event.type is EventType.TOOL_CALL:
            call = event.data_as(ToolCallData)
            if call.get("tool") in ("write_file", "read_file", "apply_patch"):
                calls[call["call_id"]] = (event, _arguments(store, call.get("arguments")))
            continue
        if event.type is not EventType.TOOL_RESULT:
            continue
        result = event.data_as(ToolResultData)
        pending = calls.pop(result.get("call_id", ""), None)
        if pending is None or not result.get("ok"):
            continue  # not a file tool, or it failed and changed nothing
        call_event, arguments = pending
        tool = result.get("tool")
        path = arguments.get("path")
        if tool == "read_file" and isinstance(path, str):
            content = store.resolve_blobs(result.get("content"))
            whole = arguments.get("start_line") is None and arguments.get("end_line") is None
            if isinstance(content, str) and whole and not _TRUNCATED.search(content):
                known[_path_key(path)] = content  # the whole file, not a range of its lines or a truncated read
        elif tool == "write_file" and isinstance(path, str) and isinstance(arguments.get("content"), str):
            new = arguments["content"]
            old = known.get(_path_key(path))
            diff = "".join(
                difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile="/dev/null" if old is None else f"a/{_path_key(path)}",
                    tofile=f"b/{_path_key(path)}",
                )
            )
            known[_path_key(path)] = new
            diffs[call_event.seq] = [{"path": _path_key(path), "diff": diff or "(unchanged)"}]
        elif tool == "apply_patch" and isinstance(arguments.get("patch"), str):
            diffs[call_event.seq] = [{"path": "", "diff": arguments["patch"]}]
            for changed in _patched_paths(arguments["patch"]):
                known.pop(changed, None)  # its new content is not in the trace
    return diffs


def _arguments(store: Store, raw: Any) -> dict[str, Any]:
    text = store.resolve_blobs(raw)
    try:
        parsed = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {key: store.resolve_blobs(value) for key, value in parsed.items()}


def _patched_paths(patch: str) -> list[str]:
    return [
        _path_key(line[4:].strip().removeprefix("b/"))
        for line in patch.splitlines()
        if line.startswith("+++ ") and line[4:].strip() != "/dev/null"
    ]
