"""lsp_diagnostics against real language servers (basedpyright, ruff server) on a real local sandbox."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from agentflow.errors import MissingExtraError, RewardHookError
from agentflow.rewards._lsp import SERVERS, LspDiagnosticsHook
from agentflow.rewards._lsp.edits import changed_lines, name_positions, step_edits
from agentflow.sandboxes import Sandbox, create_sandbox
from tests.rewards._support import StepEvents, step
from tests.support.require import require

BROKEN = "def mean(values: list[float]) -> float:\n    return sum(values) / len(valuez)\n"
FIXED = "def mean(values: list[float]) -> float:\n    return sum(values) / len(values)\n"


def _installed(name: str) -> bool:
    try:
        SERVERS[name].resolve()
    except MissingExtraError:
        return False
    return True


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await create_sandbox("local")
    await box.write_file("calc/__init__.py", "")
    await box.write_file("calc/stats.py", BROKEN)
    yield box
    await box.close()


@contextlib.asynccontextmanager
async def run_of(hook: LspDiagnosticsHook, box: Sandbox, run_id: str = "run-test") -> AsyncIterator[StepEvents]:
    """One run of the hook over ``box``: its start (baseline, server warm-up) and finish (server stopped)."""
    await hook.start_run(step([], box, run_id=run_id, kind="run"))
    try:
        yield StepEvents(run_id)
    finally:
        await hook.finish_run(run_id)


async def _edit(box: Sandbox, events: StepEvents, path: str, text: str) -> list:
    await box.write_file(path, text)
    return events.tool("write_file", {"path": path, "content": text}, result=f"wrote {len(text)} bytes")


async def test_basedpyright_rewards_a_fix_and_punishes_a_syntax_error(sandbox: Sandbox) -> None:
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    hook = LspDiagnosticsHook()
    async with run_of(hook, sandbox) as events:
        fixed = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox))
        assert fixed is not None
        parts = fixed.components
        assert (parts["d_prev"], parts["d"], parts["delta_d"], parts["s"]) == (1, 0, 1, 1)
        assert parts["conf"] == 1.0  # every name on the edited line resolves
        assert fixed.value == pytest.approx(0.5 * 1 + 0.4 * 1 - 0.1 * 0)
        assert fixed.label == 1
        assert parts["bundle"]["server"]["name"] == "basedpyright"
        assert parts["bundle"]["server"]["version"] not in ("", "unknown")
        assert len(parts["bundle_id"]) == 64

        broken = "def mean(values: list[float]) -> float:\n    return sum(values) / len(values\n"
        syntax = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", broken), sandbox))
        assert syntax is not None
        assert syntax.components["s"] == 0 and syntax.label == -1
        assert syntax.components["d"] > 0  # the server reports the syntax error too
        assert "does not parse: calc/stats.py" in syntax.explanation

        # a name the server cannot resolve lowers conf: 1 of the 4 names on the edited line is unknown
        unknown = "def mean(values: list[float]) -> float:\n    return sum(values) / len(nowhere)\n"
        guessed = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", unknown), sandbox))
        assert guessed is not None
        assert guessed.components["conf"] == pytest.approx(3 / 4)
        # a step that reads only is not a file-editing step: no reward
        assert await hook.score(step(events.tool("read_file", {"path": "calc/stats.py"}), sandbox)) is None


async def test_same_inputs_give_the_same_bundle_id(sandbox: Sandbox) -> None:
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    ids = []
    for run in ("run-a", "run-b"):  # two runs, two temporary workspaces, two servers
        await sandbox.write_file("calc/stats.py", BROKEN)
        hook = LspDiagnosticsHook(a=1.0, b=0.5, c=0.25)
        async with run_of(hook, sandbox, run) as events:
            reward = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox, run_id=run))
        assert reward is not None
        assert reward.components["bundle"]["weights"] == {"a": 1.0, "b": 0.5, "c": 0.25}
        ids.append(reward.components["bundle_id"])
    assert ids[0] == ids[1]


async def test_server_crash_restarts_once_then_fails(sandbox: Sandbox) -> None:
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    hook = LspDiagnosticsHook()
    async with run_of(hook, sandbox) as events:
        assert await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox)) is not None
        session = hook.session_of("run-test")
        assert session is not None and session.pid is not None
        first_pid = session.pid
        os.killpg(first_pid, signal.SIGKILL)  # the whole server: its launcher and node
        again = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", BROKEN), sandbox))
        assert again is not None and again.components["d"] == 1  # a fresh server saw the re-broken file
        assert session.restarts == 1 and session.pid != first_pid
        os.killpg(session.pid, signal.SIGKILL)
        with pytest.raises(RewardHookError, match="died again after a restart"):
            await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox))


async def test_non_python_workspace_starts_no_server() -> None:
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    box = await create_sandbox("local")
    try:
        await box.write_file("notes/readme.md", "# notes\n")
        hook = LspDiagnosticsHook()
        await hook.start_run(step([], box, kind="run"))
        events = StepEvents()
        assert await hook.score(step(await _edit(box, events, "notes/readme.md", "# more notes\n"), box)) is None
        assert hook.session_of("run-test") is None
    finally:
        await box.close()


async def test_offline_scoring_of_an_edit_is_a_clear_failure() -> None:
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    events = StepEvents()
    hook = LspDiagnosticsHook()
    with pytest.raises(RewardHookError, match="needs the run's sandbox"):
        await hook.score(step(events.tool("write_file", {"path": "a.py", "content": "x = 1\n"}), None))


def test_missing_server_names_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SERVERS, "basedpyright", replace(SERVERS["basedpyright"], executable="no-such-langserver"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingExtraError) as caught:
        LspDiagnosticsHook()
    assert "no-such-langserver" in str(caught.value)
    assert caught.value.fix == "pip install 'agentflow[lsp]'"


async def test_ruff_server_is_selectable(sandbox: Sandbox) -> None:
    require(_installed("ruff"), "ruff is not installed")
    hook = LspDiagnosticsHook(server="ruff")
    async with run_of(hook, sandbox) as events:
        reward = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox))
        assert reward is not None
        assert reward.components["bundle"]["server"]["name"] == "ruff"
        assert (reward.components["d_prev"], reward.components["d"]) == (1, 0)  # F821 undefined name, then clean


def test_step_edits_reads_paths_failures_and_escapes_from_events() -> None:
    events = StepEvents()
    trace = [
        *events.tool("write_file", {"path": "./a/b.py", "content": ""}),
        *events.tool("apply_patch", {"patch": "..."}, result={"files": [{"path": "c.py", "renamed_from": "d.py"}]}),
        *events.tool("apply_patch", {"patch": "..."}, ok=False, error="c.py: hunk 1 does not apply"),
        *events.tool("write_file", {"path": "../x.py"}, ok=False, error="path '../x.py' is outside the workdir"),
        *events.tool("read_file", {"path": "a/b.py"}),
    ]
    edits = step_edits(trace)
    assert edits.paths == {"a/b.py", "c.py", "d.py"}
    assert len(edits.failed) == 1 and len(edits.outside) == 1 and not edits.rescan
    assert step_edits(events.tool("shell", {"command": "sed -i s/a/b/ x.py"})).rescan


def test_changed_lines_and_names() -> None:
    assert changed_lines("a\nb\nc\n", "a\nB\nc\nd\n") == [1, 3]
    text = "x = len(items)  # len\ny = 'not a name' + x + x\n"
    assert name_positions(text, [0, 1], 10) == [(0, 0, "x"), (0, 4, "len"), (0, 8, "items"), (1, 0, "y"), (1, 19, "x")]
    assert name_positions(text, [0, 1], 2) == [(0, 0, "x"), (0, 4, "len")]
    # an unparsable file: names found by pattern, keywords left out
    assert name_positions("def f(:\n  return zz\n", [1], 10) == [(1, 9, "zz")]


async def test_pylsp_is_selectable_and_resolves_names_by_definition(sandbox: Sandbox) -> None:
    require(_installed("pylsp"), "python-lsp-server is not installed (pip install 'python-lsp-server[pyflakes]')")
    hook = LspDiagnosticsHook(server="pylsp")
    async with run_of(hook, sandbox) as events:
        fixed = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", FIXED), sandbox))
        assert fixed is not None
        parts = fixed.components
        assert parts["bundle"]["server"]["name"] == "pylsp"
        assert (parts["d_prev"], parts["d"]) == (1, 0)  # pyflakes' undefined name, pushed (pylsp has no pull)
        assert parts["bundle"]["symbols"]["method"] == "definition"
        assert parts["conf"] == 1.0
        unknown = "def mean(values: list[float]) -> float:\n    return sum(values) / len(nowhere)\n"
        guessed = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", unknown), sandbox))
        assert guessed is not None
        assert guessed.components["d"] == 1
        assert guessed.components["conf"] == pytest.approx(3 / 4)


async def test_names_after_wide_characters_resolve_at_their_utf16_columns(sandbox: Sandbox) -> None:
    """LSP columns count UTF-16 code units: an emoji before a name shifts it by two, a CJK character by one."""
    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    hook = LspDiagnosticsHook()
    async with run_of(hook, sandbox) as events:
        wide = 'def mean(values: list[float]) -> float:\n    return len("😀😀 统计" + str(values)) + len(nowhere)\n'
        reward = await hook.score(step(await _edit(sandbox, events, "calc/stats.py", wide), sandbox))
        assert reward is not None
        symbols = reward.components["bundle"]["symbols"]
        assert symbols["method"] == "semanticTokens+definition"
        # len, str, values resolve; nowhere does not (its column is past the wide characters)
        assert (symbols["queried"], symbols["resolved"]) == (4, 3)


async def test_docker_sandbox_edits_reach_the_server_through_the_synced_copy() -> None:
    """The server runs on the host against a copy of the container's workdir: a write_file step and a shell step
    (``sed -i`` inside the container, which forces a rescan) both reach it."""
    from tests.sandboxes._docker_support import require_docker

    require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    require_docker()
    box = await create_sandbox("docker")
    hook = LspDiagnosticsHook()
    try:
        await box.write_file("calc/__init__.py", "")
        await box.write_file("calc/stats.py", BROKEN)
        async with run_of(hook, box) as events:
            fixed = await hook.score(step(await _edit(box, events, "calc/stats.py", FIXED), box))
            assert fixed is not None
            assert (fixed.components["d_prev"], fixed.components["d"]) == (1, 0)

            result = await box.exec(["sed", "-i", "s/len(values)/len(valuez)/", "calc/stats.py"])
            assert result.exit_code == 0, result.stderr
            shell = events.tool("shell", {"command": "sed -i s/len(values)/len(valuez)/ calc/stats.py"})
            broken = await hook.score(step(shell, box))
            assert broken is not None
            assert broken.components["changed_files"] == ["calc/stats.py"]
            assert (broken.components["d_prev"], broken.components["d"], broken.label) == (0, 1, -1)
    finally:
        await box.close()
