"""Fixtures for the tool tests: a real sandbox and a ToolContext that records every exec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow.sandboxes._base import Sandbox
from agentflow.tools import ToolContext
from tests.tools._support import SandboxFiles, SubprocessSandbox


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = await _real_or_fake_sandbox(tmp_path)
    yield box
    await box.close()


async def _real_or_fake_sandbox(tmp_path: Path) -> Sandbox:
    try:
        from agentflow.sandboxes._local import LocalSandbox  # noqa: PLC0415 - lands separately; see the report
    except ImportError:
        root = tmp_path / "work"
        root.mkdir()
        return SubprocessSandbox(root)
    return await LocalSandbox.create()


@pytest.fixture
def files(sandbox: Sandbox) -> SandboxFiles:
    return SandboxFiles(sandbox)


@pytest.fixture
def execs() -> list[list[str]]:
    """The argv of every command a tool ran, in order (what the trace would record)."""
    return []


@pytest.fixture
def ctx(sandbox: Sandbox, execs: list[list[str]]) -> ToolContext:
    return ToolContext(sandbox=sandbox, run_id="run-test", node="node", on_exec=lambda cmd, _result: execs.append(cmd))
