"""The built-in tools: run Python or shell, read/write/list files, apply a unified diff, run the tests.

Every tool works inside the sandbox of its `ToolContext`: paths are relative to the sandbox workdir, and every
command goes through ``ctx.exec`` so the sandbox's limits apply and the trace records it. Their docstrings and
parameter descriptions are what the model reads, so they are written for a model.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from unidiff.constants import LINE_TYPE_NO_NEWLINE
from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk, PatchedFile, PatchSet

from agentflow.errors import FileTooLargeError, PathOutsideWorkdirError, ToolError
from agentflow.sandboxes._base import ExecResult
from agentflow.tools._base import ToolContext
from agentflow.tools._registry import tool

BUILTIN_TOOLS: tuple[str, ...] = (
    "python",
    "shell",
    "read_file",
    "write_file",
    "list_files",
    "apply_patch",
    "run_tests",
)
"""The names of the built-in tools, as a workflow file lists them."""

PYTHON = "python3"
"""The interpreter the tools start inside the sandbox (``python3`` exists in every image we support)."""

READ_LIMIT_CHARS = 100_000
"""``read_file`` returns at most this much text, so one call cannot flood the model's context."""

LIST_LIMIT = 2_000
"""``list_files`` returns at most this many paths."""

TEST_OUTPUT_TAIL_CHARS = 8_000
"""``run_tests`` keeps this much of the end of the runner's output, where the failures and summary are."""

TimeoutSeconds = Annotated[
    float | None,
    Field(gt=0, description="wall-clock limit in seconds; omit to use the sandbox's limit"),
]


class CommandResult(BaseModel):
    """What a command did in the sandbox."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool

    @classmethod
    def from_exec(cls, result: ExecResult) -> CommandResult:
        # duration_s stays out: it differs on every run and would make recorded tool results unreproducible.
        return cls(
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.timed_out,
            truncated=result.truncated,
        )


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


@tool("python", quoting={"code": "python"})
async def python(
    ctx: ToolContext,
    code: Annotated[str, Field(description="a complete Python 3 program; print what you want to see")],
    timeout_s: TimeoutSeconds = None,
) -> CommandResult:
    """Run a Python 3 program in the sandbox and return its exit code, stdout and stderr.

    The program runs in the workdir with a fresh interpreter each call (no state is kept between calls).
    """
    result = await ctx.exec([PYTHON, "-"], stdin=code, timeout=timeout_s)
    return CommandResult.from_exec(result)


@tool("shell", quoting={"command": "shell"})
async def shell(
    ctx: ToolContext,
    command: Annotated[str, Field(description="a POSIX sh command line, e.g. 'ls -la src && grep -rn TODO src'")],
    timeout_s: TimeoutSeconds = None,
) -> CommandResult:
    """Run a shell command (``sh -c``) in the sandbox workdir and return its exit code, stdout and stderr."""
    result = await ctx.exec(["sh", "-c", command], timeout=timeout_s)
    return CommandResult.from_exec(result)


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


# ---------------------------------------------------------------------------------------------------------------
# apply_patch
#
# unidiff parses the patch: it is widely used, typed, handles git headers (new/deleted file, renames, binary
# markers) and the "\ No newline at end of file" marker, and rejects malformed hunks with a line number. It does not
# apply patches, and whatthepatch's applier reports a failed hunk without saying which line differed, so applying
# is done here: exact context match at the stated line, else the nearest offset where the context matches exactly
# (what `git apply` does, without fuzz), and nothing is written unless every hunk of every file applies.
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# run_tests
# ---------------------------------------------------------------------------------------------------------------


class RunTestsResult(BaseModel):
    """The parsed outcome of a test run."""

    passed: bool = Field(description="every collected test passed (or was skipped) and at least one passed")
    framework: Literal["pytest", "unittest"]
    exit_code: int
    timed_out: bool
    tests_run: int
    tests_passed: int
    tests_failed: int
    tests_errored: int
    tests_skipped: int
    failed_tests: list[str]
    output: str


_PYTEST_SUMMARY = re.compile(
    r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+|no tests ran) in [\d.]+s(?: \([^)]*\))?\s*=*$", re.MULTILINE
)
_PYTEST_COUNT = re.compile(r"(\d+) (\w+)")
_PYTEST_FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_VERDICT = re.compile(r"^(OK|FAILED|NO TESTS RAN)(?: \((?P<details>[^)]*)\))?\s*$", re.MULTILINE)
_UNITTEST_FAILED_LINE = re.compile(r"^(?:FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]+)\)", re.MULTILINE)


@dataclass
class RunCounts:
    """Test counts read from a runner's output; ``found_summary`` is false when the output had no summary."""

    run: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    found_summary: bool = False


def parse_pytest_output(output: str) -> tuple[RunCounts, list[str]]:
    """Read the counts from pytest's final summary line and the failing test ids from its short summary."""
    counts = RunCounts()
    summaries = list(_PYTEST_SUMMARY.finditer(output))
    if summaries:
        counts.found_summary = True
        by_word: dict[str, int] = {}
        for number, word in _PYTEST_COUNT.findall(summaries[-1].group("body")):
            by_word[{"errors": "error", "warnings": "warning"}.get(word, word)] = int(number)
        # An xpass that is not strict counts as a pass, an xfail as a skip: pytest's exit code agrees.
        counts.passed = by_word.get("passed", 0) + by_word.get("xpassed", 0)
        counts.failed = by_word.get("failed", 0)
        counts.errored = by_word.get("error", 0)
        counts.skipped = by_word.get("skipped", 0) + by_word.get("xfailed", 0)
        counts.run = counts.passed + counts.failed + counts.errored + counts.skipped
    failed = list(dict.fromkeys(_PYTEST_FAILED_LINE.findall(output)))
    return counts, failed


def parse_unittest_output(output: str) -> tuple[RunCounts, list[str]]:
    """Read ``Ran N tests`` and the ``OK`` / ``FAILED (failures=x, errors=y)`` verdict of a unittest run."""
    counts = RunCounts()
    ran = list(_UNITTEST_RAN.finditer(output))
    verdicts = list(_UNITTEST_VERDICT.finditer(output))
    if ran and verdicts:
        counts.found_summary = True
        counts.run = int(ran[-1].group(1))
        details: dict[str, int] = {}
        for item in (verdicts[-1].group("details") or "").split(","):
            key, _, value = item.strip().partition("=")
            if value.isdigit():
                details[key] = int(value)
        counts.failed = details.get("failures", 0) + details.get("unexpected successes", 0)
        counts.errored = details.get("errors", 0)
        counts.skipped = details.get("skipped", 0) + details.get("expected failures", 0)
        counts.passed = max(counts.run - counts.failed - counts.errored - counts.skipped, 0)
    failed = []
    for method, where in _UNITTEST_FAILED_LINE.findall(output):
        # Python 3.11+ prints "(module.Class.method)", older versions "(module.Class)".
        name = where if where.endswith("." + method) else f"{where}.{method}"
        failed.append(name.removeprefix("unittest.loader._FailedTest."))
    return counts, list(dict.fromkeys(failed))


async def _require_test_path(ctx: ToolContext, target: str) -> None:
    """Refuse a missing path with a message the model can act on, instead of a runner's usage error."""
    try:
        await ctx.sandbox.read_file(target)
    except IsADirectoryError:
        return
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(
            f"no test file or folder {target!r} in the workdir; call list_files to find the tests"
        ) from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(f"path {target!r} is outside the workdir: {exc}") from None


async def _pytest_available(ctx: ToolContext) -> bool:
    probe = await ctx.exec([PYTHON, "-c", "import pytest"])
    return probe.exit_code == 0


def _test_command(framework: str, target: str, is_package: bool) -> list[str]:
    if framework == "pytest":
        # -rfE lists failures and errors by test id; no cache dir so a run leaves the workdir as it found it.
        return [PYTHON, "-m", "pytest", "-q", "-rfE", "--color=no", "-p", "no:cacheprovider", "--", target]
    if target.endswith(".py"):
        return [PYTHON, "-m", "unittest", "-v", target]
    # With a package (tests/__init__.py) the workdir is the top level, so tests import as tests.test_x.
    top_level = ["-t", "."] if is_package else []
    return [PYTHON, "-m", "unittest", "discover", "-v", "-s", target, *top_level]


@tool("run_tests")
async def run_tests(
    ctx: ToolContext,
    path: Annotated[str, Field(description="test folder or file relative to the workdir")] = "tests",
    framework: Annotated[
        Literal["pytest", "unittest", "auto"],
        Field(description="'auto' uses pytest when it is installed in the sandbox, else unittest"),
    ] = "auto",
    timeout_s: TimeoutSeconds = None,
    plugins: Annotated[
        bool,
        Field(
            description="let pytest load every installed plugin package (slower; plugins named in conftest load anyway)"
        ),
    ] = False,
) -> RunTestsResult:
    """Run the project's tests in the sandbox and report how many passed and which failed.

    ``passed`` is true only when every test that ran passed (skips allowed) and at least one test ran.
    """
    target = _workdir_path(ctx, path)
    await _require_test_path(ctx, target.split("::", 1)[0])
    chosen = framework
    if framework != "unittest":
        has_pytest = await _pytest_available(ctx)
        if framework == "pytest" and not has_pytest:
            raise ToolError("pytest is not installed in the sandbox; use framework='unittest' or 'auto'")
        chosen = "pytest" if has_pytest else "unittest"
    is_package = False
    if chosen == "unittest" and not target.endswith(".py"):
        is_package = await _read_optional(ctx, posixpath.join(target, "__init__.py")) is not None
    # Installed plugin packages (langsmith, anyio, ...) cost seconds of start-up per run and make results depend on
    # whatever the environment holds; conftest's `pytest_plugins` still load.
    env = {} if plugins else {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = await ctx.exec(_test_command(chosen, target, is_package), env=env, timeout=timeout_s)
    output = result.stdout + ("\n" if result.stdout and result.stderr else "") + result.stderr
    counts, failed_tests = parse_pytest_output(output) if chosen == "pytest" else parse_unittest_output(output)
    all_green = counts.failed == 0 and counts.errored == 0 and counts.passed > 0
    tail = output[-TEST_OUTPUT_TAIL_CHARS:]
    if not counts.found_summary and not result.timed_out:
        tail = f"[no {chosen} summary found in the output; the run may have crashed]\n{tail}"
    return RunTestsResult(
        passed=all_green and counts.found_summary and result.exit_code == 0 and not result.timed_out,
        framework="pytest" if chosen == "pytest" else "unittest",
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        tests_run=counts.run,
        tests_passed=counts.passed,
        tests_failed=counts.failed,
        tests_errored=counts.errored,
        tests_skipped=counts.skipped,
        failed_tests=failed_tests,
        output=tail,
    )
