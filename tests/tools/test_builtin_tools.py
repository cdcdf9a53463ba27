"""The built-in tools against a real sandbox and real processes."""

from __future__ import annotations

from pathlib import Path

from agentflow.sandboxes import SandboxLimits, create_sandbox
from agentflow.sandboxes._base import Sandbox
from agentflow.tools import ToolContext, tool_registry
from tests.tools._support import SandboxFiles


async def call(ctx: ToolContext, name: str, **arguments: object) -> tuple[bool, object, str]:
    outcome = await tool_registry.get(name).invoke(ctx, arguments)
    return outcome.ok, outcome.result, outcome.content


async def test_python_runs_code_in_the_workdir(ctx: ToolContext, files: SandboxFiles, execs: list[list[str]]) -> None:
    await files.put("data.txt", "hello")
    code = "import sys\nprint(open('data.txt').read())\nprint('oops', file=sys.stderr)\nsys.exit(3)"
    ok, result, _ = await call(ctx, "python", code=code)
    assert ok
    assert isinstance(result, dict)
    assert result["stdout"] == "hello\n"
    assert result["stderr"] == "oops\n"
    assert result["exit_code"] == 3
    assert result["timed_out"] is False
    assert "duration_s" not in result, "durations differ per run and must stay out of recorded results"
    assert execs == [["python3", "-"]]


async def test_python_reports_a_timeout(ctx: ToolContext) -> None:
    ok, result, _ = await call(ctx, "python", code="import time\ntime.sleep(30)", timeout_s=0.5)
    assert ok
    assert isinstance(result, dict)
    assert result["timed_out"] is True


async def test_python_traceback_names_the_line(ctx: ToolContext) -> None:
    ok, result, _ = await call(ctx, "python", code="x = 1\nraise ValueError('bad value')\n")
    assert ok
    assert isinstance(result, dict)
    assert result["exit_code"] == 1
    assert "line 2" in result["stderr"]
    assert "ValueError: bad value" in result["stderr"]


async def test_shell_runs_through_sh(ctx: ToolContext, files: SandboxFiles, execs: list[list[str]]) -> None:
    await files.put("a.txt", "1\n2\n3\n")
    ok, result, _ = await call(ctx, "shell", command="wc -l < a.txt && echo done | tr a-z A-Z")
    assert ok
    assert isinstance(result, dict)
    assert result["stdout"].split() == ["3", "DONE"]
    assert execs == [["sh", "-c", "wc -l < a.txt && echo done | tr a-z A-Z"]]


async def test_read_file_whole_and_line_range(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("src/m.py", "one\ntwo\nthree\nfour\n")
    ok, whole, _ = await call(ctx, "read_file", path="src/m.py")
    assert ok
    assert whole == "one\ntwo\nthree\nfour\n"
    ok, middle, _ = await call(ctx, "read_file", path="src/m.py", start_line=2, end_line=3)
    assert ok
    assert middle == "two\nthree\n"
    ok, tail, _ = await call(ctx, "read_file", path="./src/../src/m.py", start_line=4)
    assert ok
    assert tail == "four\n"


async def test_read_file_range_past_the_end_is_an_error(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("m.py", "one\ntwo\n")
    ok, _, content = await call(ctx, "read_file", path="m.py", start_line=5)
    assert not ok
    assert "has 2 lines" in content


async def test_read_file_refuses_paths_outside_the_workdir(ctx: ToolContext) -> None:
    for path in ("../secret.txt", "/etc/hostname", "a/../../secret.txt"):
        ok, _, content = await call(ctx, "read_file", path=path)
        assert not ok, path
        assert "outside the workdir" in content


async def test_read_file_refuses_a_symlink_out_of_the_workdir(
    ctx: ToolContext, files: SandboxFiles, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    await files.link("link.txt", str(secret))
    ok, _, content = await call(ctx, "read_file", path="link.txt")
    assert not ok
    assert "outside the workdir" in content
    assert "do not read" not in content


async def test_read_file_accepts_an_absolute_path_inside_the_workdir(
    ctx: ToolContext, files: SandboxFiles, sandbox: Sandbox
) -> None:
    await files.put("x.txt", "inside")
    ok, text, _ = await call(ctx, "read_file", path=f"{sandbox.workdir}/x.txt")
    assert ok
    assert text == "inside"


async def test_read_file_caps_a_huge_file(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("big.txt", "x" * 99 + "\n" + ("y" * 99 + "\n") * 2000)
    ok, text, _ = await call(ctx, "read_file", path="big.txt")
    assert ok
    assert isinstance(text, str)
    assert text.startswith("x" * 99 + "\n")
    assert text.endswith("call read_file again with start_line/end_line to read the rest]")
    assert len(text) < 100_000 + 200


async def test_read_file_reports_a_file_over_the_read_limit_to_the_model() -> None:
    async with await create_sandbox("local", limits=SandboxLimits(read_bytes=1000)) as box:
        ctx = ToolContext(sandbox=box, run_id="run-test", node="node")
        await box.exec(["sh", "-c", "head -c 1001 /dev/zero > big.bin; head -c 1000 /dev/zero > fits.bin"])
        ok, _, content = await call(ctx, "read_file", path="big.bin")
        assert not ok
        assert "'big.bin' is larger than the 1000 bytes read_file reads (limits.read_bytes)" in content
        ok, text, _ = await call(ctx, "read_file", path="fits.bin")
        assert ok
        assert text == "\0" * 1000


async def test_file_tool_errors_name_the_sandbox_path_and_respect_permissions(
    ctx: ToolContext, files: SandboxFiles, sandbox: Sandbox
) -> None:
    await files.put("locked.txt", "secret")
    await sandbox.exec(["chmod", "000", "locked.txt"])
    ok, _, content = await call(ctx, "read_file", path="locked.txt")
    assert not ok
    assert "permission denied" in content
    assert "secret" not in content
    ok, _, content = await call(ctx, "write_file", path="locked.txt", content="overwritten")
    assert not ok
    assert "permission denied" in content
    await sandbox.exec(["chmod", "600", "locked.txt"])
    assert await files.text("locked.txt") == "secret"
    ok, _, content = await call(ctx, "read_file", path="absent/x.txt")
    assert not ok
    assert "agentflow-sandbox-" not in content


async def test_write_file_creates_parents_and_overwrites(ctx: ToolContext, files: SandboxFiles) -> None:
    ok, _, content = await call(ctx, "write_file", path="pkg/sub/mod.py", content="x = 1\n")
    assert ok
    assert content == "wrote 6 bytes to pkg/sub/mod.py"
    assert await files.text("pkg/sub/mod.py") == "x = 1\n"
    ok, _, _ = await call(ctx, "write_file", path="pkg/sub/mod.py", content="x = 2\n")
    assert ok
    assert await files.text("pkg/sub/mod.py") == "x = 2\n"
    # Commands in the sandbox can use what the tool wrote.
    ok, result, _ = await call(ctx, "python", code="import pkg.sub.mod as m; print(m.x)")
    assert ok
    assert isinstance(result, dict)
    assert result["stdout"] == "2\n"


async def test_write_file_refuses_a_symlink_out_of_the_workdir(
    ctx: ToolContext, files: SandboxFiles, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("safe")
    await files.link("link.txt", str(victim))
    for path in ("../escape.txt", "link.txt"):
        ok, _, content = await call(ctx, "write_file", path=path, content="owned")
        assert not ok, path
        assert "outside the workdir" in content
    assert victim.read_text() == "safe"


async def test_list_files_recursive_and_subfolder(ctx: ToolContext, files: SandboxFiles) -> None:
    await files.put("src/pkg/a.py", "")
    await files.put("README", "")
    ok, everything, _ = await call(ctx, "list_files")
    assert ok
    assert everything == ["README", "src/pkg/a.py"]
    ok, sub, _ = await call(ctx, "list_files", path="src")
    assert ok
    assert sub == ["src/pkg/a.py"]
    ok, _, content = await call(ctx, "list_files", path="nope")
    assert not ok
    assert "no folder 'nope'" in content
