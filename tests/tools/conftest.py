"""Fixtures for the tool tests: a real sandbox directory and a ToolContext that records every exec."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from agentflow.errors import PathOutsideWorkdirError
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox
from agentflow.tools import ToolContext


class SubprocessSandbox(Sandbox):
    """A plain subprocess in a temporary directory: enough of the Sandbox contract to test tools for real.

    It confines paths like a real backend (resolving symlinks) but isolates nothing else; the tools' tests need
    real files and real processes, not isolation.
    """

    backend = "test-subprocess"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        # The test interpreter's folder first, so python3 inside the sandbox has pytest like the test run does.
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _resolve(self, path: str) -> Path:
        candidate = (self.root / path).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise PathOutsideWorkdirError(f"{path!r} resolves outside the workdir")
        return candidate

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        process = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=self._resolve(cwd or "."),
            env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data = stdin.encode() if isinstance(stdin, str) else stdin
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(data), timeout or 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            return ExecResult(exit_code=-9, stdout="", stderr="", timed_out=True)
        return ExecResult(exit_code=process.returncode or 0, stdout=stdout.decode(), stderr=stderr.decode())

    async def read_file(self, path: str) -> bytes:
        return self._resolve(path).read_bytes()

    async def write_file(self, path: str, data: str | bytes) -> None:
        target = self._resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)

    async def list_files(self, path: str = ".") -> list[str]:
        base = self._resolve(path)
        if not base.is_dir():
            raise FileNotFoundError(path)
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        raise NotImplementedError

    def isolation(self) -> IsolationReport:
        return IsolationReport(self.backend, False, False, False, False)

    @property
    def workdir(self) -> str:
        return str(self.root)

    async def close(self) -> None:
        return None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    root.mkdir()
    return root


@pytest.fixture
async def sandbox(workdir: Path) -> AsyncIterator[Sandbox]:
    box = SubprocessSandbox(workdir)
    yield box
    await box.close()


@pytest.fixture
def execs() -> list[list[str]]:
    """The argv of every command a tool ran, in order (what the trace would record)."""
    return []


@pytest.fixture
def ctx(sandbox: Sandbox, execs: list[list[str]]) -> ToolContext:
    return ToolContext(sandbox=sandbox, run_id="run-test", node="node", on_exec=lambda cmd, _result: execs.append(cmd))
