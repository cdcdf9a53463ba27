"""The built-in file tools: ``read_file``, ``write_file``, ``list_files``, and the workdir path check they share.

Paths are relative to the sandbox workdir. The docstrings and parameter descriptions are what the model reads, so
they are written for a model.
"""

from __future__ import annotations

import posixpath
from typing import Annotated

from pydantic import Field

from agentflow.errors import FileTooLargeError, PathOutsideWorkdirError, ToolError
from agentflow.tools._base import ToolContext
from agentflow.tools._registry import tool

READ_LIMIT_CHARS = 100_000
"""``read_file`` returns at most this much text, so one call cannot flood the model's context."""

LIST_LIMIT = 2_000
"""``list_files`` returns at most this many paths."""


def _workdir_path(ctx: ToolContext, path: str) -> str:
    """Normalize ``path`` to a workdir-relative path, refusing one that escapes the workdir.

    The sandbox enforces this too (including symlinks); checking here as well lets apply_patch refuse a whole
    patch before it writes anything, and gives the model a message it can act on.
    """
    normal = posixpath.normpath(path.strip() or ".")
    if posixpath.isabs(normal):
        root = posixpath.normpath(ctx.sandbox.workdir)
        if normal == root:
            return "."
        if normal.startswith(root.rstrip("/") + "/"):
            return normal[len(root.rstrip("/")) + 1 :]
        raise ToolError(f"path {path!r} is outside the workdir {root}; use a path relative to the workdir")
    if normal == ".." or normal.startswith("../"):
        raise ToolError(f"path {path!r} is outside the workdir; use a path relative to the workdir, without '..'")
    return normal


async def _read_text(ctx: ToolContext, path: str) -> str:
    try:
        data = await ctx.sandbox.read_file(path)
    except FileNotFoundError:
        raise ToolError(f"no file {path!r} in the workdir; call list_files to see which files exist") from None
    except IsADirectoryError:
        raise ToolError(f"{path!r} is a directory, not a file; call list_files({path!r}) to see inside") from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(f"path {path!r} is outside the workdir: {exc}") from None
    except PermissionError:
        raise ToolError(f"{path!r} may not be read: permission denied to the sandbox user") from None
    except FileTooLargeError as exc:
        raise ToolError(
            f"{path!r} is larger than the {exc.limit} bytes read_file reads (limits.read_bytes); read parts of it "
            "with a command (head -c, sed -n 'A,Bp', grep)"
        ) from None
    return data.decode("utf-8", errors="replace")


@tool("read_file")
async def read_file(
    ctx: ToolContext,
    path: Annotated[str, Field(description="file path relative to the workdir")],
    start_line: Annotated[int | None, Field(ge=1, description="first line to return (1-based); omit for 1")] = None,
    end_line: Annotated[
        int | None, Field(ge=1, description="last line to return (inclusive); omit for the end of the file")
    ] = None,
) -> str:
    """Return the text of a file in the workdir, optionally only lines start_line..end_line (1-based, inclusive)."""
    relative = _workdir_path(ctx, path)
    text = await _read_text(ctx, relative)
    if start_line is not None or end_line is not None:
        lines = text.splitlines(keepends=True)
        first = start_line or 1
        last = min(end_line or len(lines), len(lines))
        if first > len(lines):
            raise ToolError(f"{relative} has {len(lines)} lines; start_line {first} is past the end")
        if last < first:
            raise ToolError(f"end_line {end_line} is before start_line {first}")
        text = "".join(lines[first - 1 : last])
    if len(text) > READ_LIMIT_CHARS:
        shown = text[:READ_LIMIT_CHARS]
        shown_lines = shown.count("\n")
        return (
            f"{shown}\n[truncated after {READ_LIMIT_CHARS} characters (about {shown_lines} lines); "
            "call read_file again with start_line/end_line to read the rest]"
        )
    return text


@tool("write_file")
async def write_file(
    ctx: ToolContext,
    path: Annotated[str, Field(description="file path relative to the workdir; parent folders are created")],
    content: Annotated[str, Field(description="the complete new text of the file")],
) -> str:
    """Create or overwrite a file in the workdir with the given text."""
    relative = _workdir_path(ctx, path)
    data = content.encode("utf-8")
    try:
        await ctx.sandbox.write_file(relative, data)
    except IsADirectoryError:
        raise ToolError(f"{relative!r} is a directory; choose a file path") from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(f"path {path!r} is outside the workdir: {exc}") from None
    except PermissionError:
        raise ToolError(f"{relative!r} may not be written: permission denied to the sandbox user") from None
    return f"wrote {len(data)} bytes to {relative}"


@tool("list_files")
async def list_files(
    ctx: ToolContext,
    path: Annotated[str, Field(description="folder relative to the workdir; '.' is the workdir itself")] = ".",
) -> list[str]:
    """List the files under a folder of the workdir (recursive), as paths relative to the workdir."""
    relative = _workdir_path(ctx, path)
    try:
        files = await ctx.sandbox.list_files(relative)
    except FileNotFoundError:
        raise ToolError(f"no folder {relative!r} in the workdir; call list_files('.') to see what exists") from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(f"path {path!r} is outside the workdir: {exc}") from None
    if len(files) > LIST_LIMIT:
        hidden = len(files) - LIST_LIMIT
        return [*files[:LIST_LIMIT], f"[... {hidden} more files; list a subfolder to see them]"]
    return files
