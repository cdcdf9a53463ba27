"""What a step changed, read from its trace events, and the names on the lines it changed."""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import posixpath
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import ToolCallData, ToolResultData

FILE_TOOLS = frozenset({"write_file", "apply_patch"})
"""Tools whose edited paths are known from their arguments and results."""

READ_ONLY_TOOLS = frozenset({"read_file", "list_files", "run_tests", "search_code"})
"""Tools that do not change workspace sources (run_tests writes caches only), so they need no rescan."""


@dataclass
class StepEdits:
    """The files a step's tool calls edited, as far as the trace says, and how the edits went."""

    paths: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=lambda: [])  # edit tool calls that did not apply
    outside: list[str] = field(default_factory=lambda: [])  # paths that escaped the workspace
    rescan: bool = False  # a command ran that could have written anything

    @property
    def any(self) -> bool:
        return bool(self.paths or self.failed or self.outside or self.rescan)


def _normal(path: str) -> str | None:
    normal = posixpath.normpath(path.strip() or ".")
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        return None
    return normal


def step_edits(events: Iterable[Event], workdir: str | None = None) -> StepEdits:
    """Read which files a step edited from its tool_call / tool_result events."""
    edits = StepEdits()
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    import json

    for event in events:
        if event.type is EventType.TOOL_CALL:
            call = event.data_as(ToolCallData)
            try:
                arguments = json.loads(call.get("arguments") or "{}")
            except (TypeError, ValueError):
                arguments = {}
            calls[str(call.get("call_id"))] = (str(call.get("tool")), arguments if isinstance(arguments, dict) else {})
        elif event.type is EventType.TOOL_RESULT:
            result = event.data_as(ToolResultData)
            tool = str(result.get("tool"))
            _, arguments = calls.get(str(result.get("call_id")), (tool, {}))
            if tool in FILE_TOOLS:
                _note_edit(edits, tool, arguments, result, workdir)
            elif tool not in READ_ONLY_TOOLS:
                edits.rescan = True
    return edits


def _note_edit(
    edits: StepEdits, tool: str, arguments: dict[str, Any], data: ToolResultData, workdir: str | None
) -> None:
    error = str(data.get("error") or "")
    if not data.get("ok"):
        (edits.outside if "outside the workdir" in error else edits.failed).append(f"{tool}: {error[:200]}")
        return
    paths: list[str] = []
    if tool == "write_file":
        paths.append(str(arguments.get("path", "")))
    else:
        result = data.get("result") or {}
        for change in result.get("files", []) if isinstance(result, dict) else []:
            paths.append(str(change.get("path", "")))
            if change.get("renamed_from"):
                paths.append(str(change["renamed_from"]))
    root = (workdir or "").rstrip("/") + "/"
    for path in paths:
        inside = path[len(root) :] if workdir and posixpath.isabs(path) and path.startswith(root) else path
        normal = _normal(inside)
        if normal is None:
            edits.outside.append(path)
        else:
            edits.paths.add(normal)


def changed_lines(old: str, new: str) -> list[int]:
    """0-based lines of ``new`` that the edit inserted or replaced."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    lines: list[int] = []
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "insert"):
            lines.extend(range(j1, j2))
    return lines


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_positions(text: str, lines: Iterable[int], limit: int) -> list[tuple[int, int, str]]:
    """(line, character, name) of the names used on ``lines`` (0-based), keywords and strings left out.

    At most ``limit``, each name once per line.
    """
    wanted = set(lines)
    found: list[tuple[int, int, str]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            line = token.start[0] - 1
            if token.type == tokenize.NAME and line in wanted and not keyword.iskeyword(token.string):
                found.append((line, token.start[1], token.string))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        # an unparsable file: names by pattern, which may include words inside strings
        found = []
        for number, line_text in enumerate(text.splitlines()):
            if number in wanted:
                found.extend(
                    (number, m.start(), m.group())
                    for m in _NAME.finditer(line_text)
                    if not keyword.iskeyword(m.group())
                )
    unique: dict[tuple[int, str], tuple[int, int, str]] = {}
    for item in found:
        unique.setdefault((item[0], item[2]), item)
    return list(unique.values())[:limit]


def parses(path: str, text: str) -> bool:
    try:
        ast.parse(text, filename=path)
    except (SyntaxError, ValueError):
        return False
    return True
