"""Fixtures for the tool tests: a real sandbox and a ToolContext that records every exec."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentflow.sandboxes import Sandbox, create_sandbox
from agentflow.tools import ToolContext
from tests.tools._support import SandboxFiles


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await create_sandbox("local")
    yield box
    await box.close()


@pytest.fixture
def files(sandbox: Sandbox) -> SandboxFiles:
    return SandboxFiles(sandbox)


@pytest.fixture
def execs() -> list[list[str]]:
    """The argv of every command a tool ran, in order (what the trace would record)."""
    return []


@pytest.fixture
def ctx(sandbox: Sandbox, execs: list[list[str]]) -> ToolContext:
    return ToolContext(
        sandbox=sandbox, run_id="run-test", node="node", on_exec=lambda cmd, _cwd, _result: execs.append(cmd)
    )
