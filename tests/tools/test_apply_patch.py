"""apply_patch: real unified diffs (from difflib and git's format) applied to files in a sandbox directory."""

from __future__ import annotations

import difflib
from pathlib import Path

from agentflow.tools import ToolContext, ToolOutcome, tool_registry
from tests.tools._support import SandboxFiles

ORIGINAL = "".join(f"line {n}\n" for n in range(1, 21))


async def patch(ctx: ToolContext, text: str) -> ToolOutcome:
    return await tool_registry.get("apply_patch").invoke(ctx, {"patch": text})


def unified(path: str, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}", n=3
        )
    )


async def test_modifies_a_file_with_several_hunks(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("m.txt", ORIGINAL)
    after = ORIGINAL.replace("line 2\n", "line two\n").replace("line 18\n", "line 18\nline 18.5\n")
    outcome = await patch(ctx, unified("m.txt", ORIGINAL, after))
    assert outcome.ok, outcome.content
    assert (await files.text("m.txt")) == after
    assert outcome.result == {
        "files": [
            {
                "path": "m.txt",
                "action": "modified",
                "hunks": 2,
                "lines_added": 2,
                "lines_removed": 1,
                "renamed_from": None,
            }
        ]
    }


async def test_multi_file_patch_creates_modifies_and_deletes(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("src/a.py", "def a():\n    return 1\n")
    await files.put("old.txt", "obsolete\n")
    text = (
        unified("src/a.py", "def a():\n    return 1\n", "def a():\n    return 2\n")
        + "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1,2 @@\n+import a\n+print(a.a())\n"
        + "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-obsolete\n"
    )
    outcome = await patch(ctx, text)
    assert outcome.ok, outcome.content
    assert (await files.text("src/a.py")) == "def a():\n    return 2\n"
    assert (await files.text("src/new.py")) == "import a\nprint(a.a())\n"
    assert not await files.exists("old.txt")
    assert [f["action"] for f in outcome.result["files"]] == ["modified", "created", "deleted"]


async def test_context_mismatch_changes_nothing_and_says_where(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("first.txt", "alpha\nbeta\ngamma\n")
    await files.put("second.txt", ORIGINAL)
    stale = ORIGINAL.replace("line 10\n", "line ten\n")  # the model's idea of the file is out of date
    text = unified("first.txt", "alpha\nbeta\ngamma\n", "alpha\nBETA\ngamma\n") + unified(
        "second.txt", stale, stale.replace("line 11\n", "line eleven\n")
    )
    before = await files.snapshot()
    outcome = await patch(ctx, text)
    assert not outcome.ok
    assert await files.snapshot() == before, "a failing multi-file patch must leave every file untouched"
    assert outcome.error is not None
    assert "second.txt" in outcome.error
    assert "hunk 1 (@@ -8,7 +8,7 @@)" in outcome.error
    assert "line 10 should be 'line ten' but the file has 'line 10'" in outcome.error
    assert "nothing was changed" in outcome.error


async def test_hunk_found_at_an_offset(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("m.txt", "header 1\nheader 2\n" + ORIGINAL)
    # The hunk says line 5 but the file gained two lines above since the model read it.
    outcome = await patch(ctx, unified("m.txt", ORIGINAL, ORIGINAL.replace("line 5\n", "line five\n")))
    assert outcome.ok, outcome.content
    assert (await files.text("m.txt")) == "header 1\nheader 2\n" + ORIGINAL.replace("line 5\n", "line five\n")


async def test_path_outside_the_workdir_is_refused(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("inside.txt", "x\n")
    text = unified("inside.txt", "x\n", "y\n") + unified("../victim.txt", "safe\n", "owned\n")
    outcome = await patch(ctx, text)
    assert not outcome.ok
    assert outcome.error is not None
    assert "'../victim.txt' is outside the workdir" in outcome.error
    assert await files.text("inside.txt") == "x\n"


async def test_symlink_out_of_the_workdir_is_refused(ctx: ToolContext, files: SandboxFiles, tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_text("safe\n")
    await files.put("inside.txt", "x\n")
    await files.link("link.txt", str(outside))
    text = unified("inside.txt", "x\n", "y\n") + unified("link.txt", "safe\n", "owned\n")
    outcome = await patch(ctx, text)
    assert not outcome.ok
    assert outcome.error is not None
    assert "outside the workdir" in outcome.error
    assert outside.read_text() == "safe\n"
    assert await files.text("inside.txt") == "x\n"


async def test_creating_a_file_that_exists_is_refused(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("new.py", "keep\n")
    outcome = await patch(ctx, "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+replace\n")
    assert not outcome.ok
    assert "already exists" in outcome.content
    assert (await files.text("new.py")) == "keep\n"


async def test_missing_file_is_reported(ctx: ToolContext) -> None:
    outcome = await patch(ctx, unified("ghost.py", "a\n", "b\n"))
    assert not outcome.ok
    assert "ghost.py: no such file" in outcome.content


async def test_malformed_patch_is_reported(ctx: ToolContext) -> None:
    outcome = await patch(ctx, "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n+b\n")
    assert not outcome.ok
    assert "not a valid unified diff" in outcome.content
    empty = await patch(ctx, "just some text\n")
    assert not empty.ok
    assert "no file diffs" in empty.content


async def test_no_newline_at_end_of_file_is_respected(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("n.txt", "a\nb")
    text = "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n"
    outcome = await patch(ctx, text)
    assert outcome.ok, outcome.content
    assert (await files.text("n.txt")) == "a\nc\n"
    back = "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-c\n+b\n\\ No newline at end of file\n"
    outcome = await patch(ctx, back)
    assert outcome.ok, outcome.content
    assert (await files.text("n.txt")) == "a\nb"


async def test_crlf_file_keeps_its_line_endings(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("w.txt", b"one\r\ntwo\r\nthree\r\n")
    outcome = await patch(ctx, unified("w.txt", "one\ntwo\nthree\n", "one\n2\nthree\n"))
    assert outcome.ok, outcome.content
    assert (await files.sandbox.read_file("w.txt")) == b"one\r\n2\r\nthree\r\n"


async def test_git_rename_with_changes(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("old_name.py", "x = 1\ny = 2\n")
    text = (
        "diff --git a/old_name.py b/new_name.py\n"
        "similarity index 50%\n"
        "rename from old_name.py\n"
        "rename to new_name.py\n"
        "--- a/old_name.py\n"
        "+++ b/new_name.py\n"
        "@@ -1,2 +1,2 @@\n"
        " x = 1\n"
        "-y = 2\n"
        "+y = 3\n"
    )
    outcome = await patch(ctx, text)
    assert outcome.ok, outcome.content
    assert not await files.exists("old_name.py")
    assert (await files.text("new_name.py")) == "x = 1\ny = 3\n"
    assert outcome.result["files"][0]["renamed_from"] == "old_name.py"


async def test_a_write_that_fails_rolls_back_the_files_already_written(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("a.txt", "x\n")
    await files.put("b.txt", "y\n")
    await files.put("blocker", "a file where the patch wants a folder\n")
    text = (
        unified("a.txt", "x\n", "x2\n")
        + "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+fresh\n"
        + "--- /dev/null\n+++ b/blocker/inner.txt\n@@ -0,0 +1 @@\n+cannot be written\n"
        + unified("b.txt", "y\n", "y2\n")
    )
    before = await files.snapshot()
    outcome = await patch(ctx, text)
    assert not outcome.ok
    assert outcome.error is not None
    assert "writing blocker/inner.txt failed" in outcome.error
    assert await files.snapshot() == before, "files written before the failure must be restored, new ones removed"
