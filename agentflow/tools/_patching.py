"""The built-in ``apply_patch`` tool: apply a unified diff to the workdir, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from unidiff.constants import LINE_TYPE_NO_NEWLINE
from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk, PatchedFile, PatchSet

from agentflow.errors import PathOutsideWorkdirError, ToolError
from agentflow.tools._base import ToolContext
from agentflow.tools._files import _workdir_path
from agentflow.tools._registry import tool

# unidiff parses the patch: it is widely used, typed, handles git headers (new/deleted file, renames, binary
# markers) and the "\ No newline at end of file" marker, and rejects malformed hunks with a line number. It does not
# apply patches, and whatthepatch's applier reports a failed hunk without saying which line differed, so applying
# is done here: exact context match at the stated line, else the nearest offset where the context matches exactly
# (what `git apply` does, without fuzz), and nothing is written unless every hunk of every file applies.


class FileChange(BaseModel):
    """One file a patch changed."""

    path: str
    action: Literal["modified", "created", "deleted", "renamed"]
    hunks: int
    lines_added: int
    lines_removed: int
    renamed_from: str | None = None


class PatchResult(BaseModel):
    """What apply_patch changed."""

    files: list[FileChange]


@dataclass
class _TextFile:
    """A text file as lines without their line endings, so context compares regardless of LF/CRLF."""

    lines: list[str]
    final_newline: bool
    newline: str

    @classmethod
    def parse(cls, text: str) -> _TextFile:
        first_end = text.find("\n")
        newline = "\r\n" if first_end > 0 and text[first_end - 1] == "\r" else "\n"  # the file's own style
        final_newline = text.endswith("\n") or not text
        pieces = text.split("\n")
        if final_newline:
            pieces.pop()
        if newline == "\r\n":
            pieces = [piece.removesuffix("\r") for piece in pieces]
        return cls(pieces, final_newline, newline)

    def render(self) -> str:
        if not self.lines:
            return ""
        return self.newline.join(self.lines) + (self.newline if self.final_newline else "")


@dataclass
class _PlannedWrite:
    path: str
    content: bytes | None  # None: delete the file
    original: bytes | None  # None: the file did not exist


def _hunk_sides(hunk: Hunk) -> tuple[list[str], list[str], bool]:
    """Return the hunk's old lines, new lines, and whether the new side ends without a newline."""
    old: list[str] = []
    new: list[str] = []
    new_ends_without_newline = False
    previous_type = ""
    for line in hunk:
        text = line.value.removesuffix("\n").removesuffix("\r")
        if line.line_type == LINE_TYPE_NO_NEWLINE:
            # The marker applies to the line before it; only the new side matters for the output.
            if previous_type in ("+", " "):
                new_ends_without_newline = True
            continue
        previous_type = line.line_type
        if line.is_context:
            old.append(text)
            new.append(text)
        elif line.is_removed:
            old.append(text)
        elif line.is_added:
            new.append(text)
    return old, new, new_ends_without_newline


def _hunk_label(number: int, hunk: Hunk) -> str:
    return f"hunk {number} (@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@)"


def _find_hunk(lines: list[str], old: list[str], expected: int, earliest: int) -> int | None:
    """Index where ``old`` matches ``lines`` exactly, nearest to ``expected``, not before ``earliest``."""
    last_start = len(lines) - len(old)
    if not old:
        # A hunk without context or removed lines has nothing to match: it goes exactly where it says.
        return expected if earliest <= expected <= len(lines) else None
    expected = min(max(expected, earliest), max(last_start, earliest))
    for distance in range(max(expected - earliest, last_start - expected) + 1):
        for candidate in (expected - distance, expected + distance) if distance else (expected,):
            if earliest <= candidate <= last_start and lines[candidate : candidate + len(old)] == old:
                return candidate
    return None


def _mismatch_message(path: str, label: str, lines: list[str], old: list[str], expected: int) -> str:
    """Say which line of the hunk's context differs from the file, so the model can fix the hunk."""
    for index, wanted in enumerate(old):
        line_no = expected + index + 1
        if expected + index >= len(lines):
            return (
                f"{path}: {label} does not apply: it expects line {line_no} to be {wanted!r}, "
                f"but the file has only {len(lines)} lines"
            )
        if lines[expected + index] != wanted:
            return (
                f"{path}: {label} does not apply: line {line_no} should be {wanted!r} "
                f"but the file has {lines[expected + index]!r} (and the hunk's lines match nowhere else)"
            )
    return f"{path}: {label} does not apply: its lines overlap the previous hunk"


def _apply_hunks(path: str, original: _TextFile, patched: PatchedFile) -> _TextFile:
    result: list[str] = []
    cursor = 0  # next unconsumed line of the original
    drift = 0  # how far earlier hunks were found from their stated line, carried to the next hunk
    final_newline = original.final_newline
    for number, hunk in enumerate(patched, start=1):
        old, new, new_ends_without_newline = _hunk_sides(hunk)
        stated = hunk.source_start - 1 if old else hunk.source_start
        expected = max(stated + drift, 0)
        found = _find_hunk(original.lines, old, expected, cursor)
        if found is None:
            label = _hunk_label(number, hunk)
            if number > 1 and stated + drift < cursor:
                raise ToolError(
                    f"{path}: {label} starts at or before line {cursor}, where hunk {number - 1} ended; hunks must "
                    "be in file order and must not overlap; nothing was changed"
                )
            raise ToolError(
                _mismatch_message(path, label, original.lines, old, max(expected, cursor))
                + "; nothing was changed. Read the file again and resend the patch with context lines copied exactly"
            )
        drift = found - stated
        result.extend(original.lines[cursor:found])
        result.extend(new)
        cursor = found + len(old)
        if cursor == len(original.lines):
            final_newline = not new_ends_without_newline
    result.extend(original.lines[cursor:])
    return _TextFile(result, final_newline, original.newline)


async def _read_optional(ctx: ToolContext, path: str) -> bytes | None:
    try:
        return await ctx.sandbox.read_file(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise ToolError(f"{path!r} is a directory, a patch can only change files") from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(
            f"the patch touches {path!r}, which is outside the workdir: {exc}; nothing was changed"
        ) from exc


def _diff_path(name: str) -> str:
    # git's a/ and b/ prefixes are stripped the way `git apply` (-p1) does; unidiff's .path only handles one side.
    return name[2:] if name.startswith(("a/", "b/")) else name


async def _plan_file(ctx: ToolContext, patched: PatchedFile) -> tuple[list[_PlannedWrite], FileChange]:
    if patched.is_binary_file:
        raise ToolError(f"{patched.path}: binary patches are not supported; write the file with write_file")
    source = None if patched.source_file == "/dev/null" else _workdir_path(ctx, _diff_path(patched.source_file))
    target = None if patched.target_file == "/dev/null" else _workdir_path(ctx, _diff_path(patched.target_file))
    hunks, added, removed = len(patched), patched.added, patched.removed
    if source is None:
        if target is None:
            raise ToolError("a file diff has /dev/null as both its old and new file")
        existing = await _read_optional(ctx, target)
        if existing is not None:
            raise ToolError(f"{target}: the patch creates this file but it already exists; patch it as a change")
        content = _apply_hunks(target, _TextFile([], True, "\n"), patched).render().encode()
        return [_PlannedWrite(target, content, None)], FileChange(
            path=target, action="created", hunks=hunks, lines_added=added, lines_removed=removed
        )
    original = await _read_optional(ctx, source)
    if original is None:
        raise ToolError(f"{source}: no such file in the workdir; to create a file use '--- /dev/null' as its old name")
    before = _TextFile.parse(original.decode("utf-8", errors="surrogateescape"))
    after = _apply_hunks(source, before, patched)
    encoded = after.render().encode("utf-8", errors="surrogateescape")
    if target is None:
        if after.lines:
            raise ToolError(f"{source}: the patch deletes this file but does not remove all of its lines")
        return [_PlannedWrite(source, None, original)], FileChange(
            path=source, action="deleted", hunks=hunks, lines_added=added, lines_removed=removed
        )
    if target != source:
        destination = await _read_optional(ctx, target)
        if destination is not None:
            raise ToolError(f"{source} -> {target}: the patch renames onto a file that already exists")
        writes = [_PlannedWrite(target, encoded, None), _PlannedWrite(source, None, original)]
        return writes, FileChange(
            path=target, action="renamed", renamed_from=source, hunks=hunks, lines_added=added, lines_removed=removed
        )
    return [_PlannedWrite(source, encoded, original)], FileChange(
        path=source, action="modified", hunks=hunks, lines_added=added, lines_removed=removed
    )


async def _remove(ctx: ToolContext, path: str) -> None:
    # The Sandbox contract has no delete; rm runs through ctx.exec so the trace records it like any command.
    result = await ctx.exec(["rm", "-f", "--", path])
    if result.exit_code != 0:
        raise ToolError(f"could not delete {path}: {result.stderr.strip()}")


async def _commit(ctx: ToolContext, writes: list[_PlannedWrite]) -> None:
    done: list[_PlannedWrite] = []
    for planned in writes:
        try:
            if planned.content is None:
                await _remove(ctx, planned.path)
            else:
                await ctx.sandbox.write_file(planned.path, planned.content)
        except Exception as exc:
            # Every hunk was verified before the first write, so this is the sandbox refusing a write (a symlink
            # out of the workdir, a full disk); undo in reverse so a multi-file patch is never left half-applied.
            await _roll_back(ctx, done)
            raise ToolError(
                f"writing {planned.path} failed ({type(exc).__name__}: {exc}); nothing was changed"
            ) from exc
        done.append(planned)


async def _roll_back(ctx: ToolContext, done: list[_PlannedWrite]) -> None:
    for planned in reversed(done):
        if planned.original is None:
            await _remove(ctx, planned.path)
        else:
            await ctx.sandbox.write_file(planned.path, planned.original)


@tool("apply_patch")
async def apply_patch(
    ctx: ToolContext,
    patch: Annotated[
        str,
        Field(
            description="a unified diff (as `diff -u` or `git diff` print it) with paths relative to the workdir; "
            "use '--- /dev/null' to create a file and '+++ /dev/null' to delete one"
        ),
    ],
) -> PatchResult:
    """Apply a unified diff to files in the workdir, all or nothing.

    Each hunk's context and removed lines must match the file exactly (a hunk may sit at a different line number
    than stated). If any hunk of any file does not apply, no file is changed and the error says which file, which
    hunk and which line differed.
    """
    try:
        patch_set = PatchSet.from_string(patch if patch.endswith("\n") else patch + "\n")
    except UnidiffParseError as exc:
        raise ToolError(f"the patch is not a valid unified diff: {exc}; nothing was changed") from None
    if not patch_set:
        raise ToolError("the patch contains no file diffs; each file needs '--- old' and '+++ new' header lines")
    writes: list[_PlannedWrite] = []
    changes: list[FileChange] = []
    touched: set[str] = set()
    for patched in patch_set:
        file_writes, change = await _plan_file(ctx, patched)
        for planned in file_writes:
            if planned.path in touched:
                raise ToolError(f"the patch changes {planned.path} twice; merge its hunks into one file diff")
            touched.add(planned.path)
        writes.extend(file_writes)
        changes.append(change)
    await _commit(ctx, writes)
    return PatchResult(files=changes)
