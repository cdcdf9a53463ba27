"""resolve_tool: built-in names, plugin files loaded by path, and the errors a workflow author sees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentflow.errors import ToolLoadError, UnknownBackendError
from agentflow.tools import Tool, ToolContext, resolve_tool, tool, tool_registry
from tests.tools._support import SandboxFiles


def write_plugin(base: Path, name: str, source: str) -> None:
    path = base / "tools" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def test_builtin_name_resolves_to_the_registered_tool(tmp_path: Path) -> None:
    assert resolve_tool("read_file", base_dir=tmp_path) is tool_registry.get("read_file")


def test_unknown_builtin_name_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError) as caught:
        resolve_tool("read_fiel", base_dir=tmp_path)
    assert "did you mean 'read_file'?" in str(caught.value)
    assert "run_tests" in str(caught.value)


async def test_good_plugin_is_loaded_and_runs(tmp_path: Path, ctx: ToolContext) -> None:
    write_plugin(
        tmp_path,
        "text.py",
        '''
        def shout(text: str, times: int = 1) -> str:
            """Upper-case the text.

            Longer notes the model does not need.
            """
            return " ".join([text.upper()] * times)
        ''',
    )
    loaded = resolve_tool("tools/text.py:shout", base_dir=tmp_path)
    assert loaded.name == "shout"
    schema = loaded.openai_schema()["function"]
    assert schema["description"] == "Upper-case the text."
    assert schema["parameters"]["required"] == ["text"]
    outcome = await loaded.invoke(ctx, {"text": "hi", "times": 2})
    assert outcome.ok
    assert outcome.content == "HI HI"
    # A second reference to the same file reuses the module (one module state per plugin file).
    again = resolve_tool("tools/text.py:shout", base_dir=tmp_path)
    assert again.fn is loaded.fn


async def test_plugin_with_ctx_param_is_a_host_tool_driving_the_sandbox(
    tmp_path: Path, ctx: ToolContext, files: SandboxFiles
) -> None:
    write_plugin(
        tmp_path,
        "counting.py",
        '''
        from agentflow.tools import ToolContext

        async def count_lines(ctx: ToolContext, path: str) -> int:
            """Count the lines of a file in the sandbox."""
            result = await ctx.exec(["wc", "-l", path])
            return int(result.stdout.split()[0])
        ''',
    )
    await files.put("f.txt", "a\nb\nc\n")
    loaded = resolve_tool("tools/counting.py:count_lines", base_dir=tmp_path)
    assert loaded.takes_context
    assert loaded.host, "a function given the ToolContext drives the sandbox from the host"
    assert list(loaded.openai_schema()["function"]["parameters"]["properties"]) == ["path"]
    outcome = await loaded.invoke(ctx, {"path": "f.txt"})
    assert outcome.ok, outcome.content
    assert outcome.result == 3


def test_missing_file_names_the_resolved_path(tmp_path: Path) -> None:
    with pytest.raises(ToolLoadError) as caught:
        resolve_tool("tools/nope.py:fn", base_dir=tmp_path)
    assert str((tmp_path / "tools" / "nope.py").resolve()) in str(caught.value)
    assert "relative to the workflow file's folder" in str(caught.value)


def test_module_raising_on_import_names_exception_and_line(tmp_path: Path) -> None:
    write_plugin(tmp_path, "broken.py", "import os\n\nSETTINGS = {}\nTOKEN = SETTINGS['token']\n")
    with pytest.raises(ToolLoadError) as caught:
        resolve_tool("tools/broken.py:fn", base_dir=tmp_path)
    message = str(caught.value)
    assert "KeyError: 'token'" in message
    assert "line 4: TOKEN = SETTINGS['token']" in message
    # The failed module is not cached: fixing the file makes the next load work.
    write_plugin(tmp_path, "broken.py", "def fn(x: int) -> int:\n    return x\n")
    assert resolve_tool("tools/broken.py:fn", base_dir=tmp_path).name == "fn"


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    write_plugin(tmp_path, "typo.py", "def fn(x: int) -> int:\n    return x +\n")
    with pytest.raises(ToolLoadError) as caught:
        resolve_tool("tools/typo.py:fn", base_dir=tmp_path)
    # file:line:col of the plugin's own mistake, which an editor can jump to.
    assert f"has a syntax error at {tmp_path / 'tools' / 'typo.py'}:2:15: invalid syntax" in str(caught.value)
    assert caught.value.plugin_location is not None and caught.value.plugin_location.line == 2


def test_missing_function_lists_callables_and_closest(tmp_path: Path) -> None:
    write_plugin(
        tmp_path,
        "patching.py",
        """
        from pathlib import Path

        def apply_unified_diff(patch: str) -> str:
            return patch

        def count_hunks(patch: str) -> int:
            return patch.count("@@") // 2

        def _helper() -> None:
            pass
        """,
    )
    with pytest.raises(ToolLoadError) as caught:
        resolve_tool("tools/patching.py:apply_unified_dif", base_dir=tmp_path)
    message = str(caught.value)
    assert "no function 'apply_unified_dif'" in message
    assert "did you mean 'apply_unified_diff'?" in message
    assert "functions defined there: apply_unified_diff, count_hunks" in message
    assert "Path" not in message.split("functions defined there:")[1], "imported names are not the plugin's own"


def test_not_callable_is_refused(tmp_path: Path) -> None:
    write_plugin(tmp_path, "consts.py", "LIMIT = 3\n")
    with pytest.raises(ToolLoadError, match="is a int, not a function"):
        resolve_tool("tools/consts.py:LIMIT", base_dir=tmp_path)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def fn(*paths: str) -> None: ...\n", "*args"),
        ("import socket\n\ndef fn(conn: socket.socket) -> None: ...\n", "socket"),
    ],
)
def test_signature_that_cannot_be_described_is_refused(tmp_path: Path, source: str, problem: str) -> None:
    write_plugin(tmp_path, "odd.py", source)
    with pytest.raises(ToolLoadError) as caught:
        resolve_tool("tools/odd.py:fn", base_dir=tmp_path)
    assert "cannot be described to a model" in str(caught.value)
    assert problem in str(caught.value)


def test_dotted_module_reference(tmp_path: Path) -> None:
    loaded = resolve_tool("agentflow.tools._files:list_files", base_dir=tmp_path)
    assert loaded is tool_registry.get("list_files")
    with pytest.raises(ToolLoadError, match="no module named 'no_such_pkg'"):
        resolve_tool("no_such_pkg.tools:fn", base_dir=tmp_path)


def test_incomplete_reference(tmp_path: Path) -> None:
    with pytest.raises(ToolLoadError, match="incomplete"):
        resolve_tool("tools/x.py:", base_dir=tmp_path)


def test_tool_decorator_registers_under_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private copy of the entries, so the tools registered here vanish after the test.
    monkeypatch.setattr(tool_registry, "_entries", dict(tool_registry._entries))

    @tool("test_registry_double")
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    assert isinstance(double, Tool)
    assert tool_registry.get("test_registry_double") is double

    @tool
    def test_registry_triple(x: int) -> int:
        """Triple x."""
        return 3 * x

    assert tool_registry.get("test_registry_triple") is test_registry_triple
    assert test_registry_triple.description == "Triple x."
