"""Test helpers for the tool tests: a fallback subprocess sandbox and file helpers that use only the Sandbox API."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from agentflow.errors import PathOutsideWorkdirError
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox


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


class SandboxFiles:
    """Arrange and inspect the sandbox's files through the Sandbox API, so the tests run on any backend."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def put(self, path: str, data: str | bytes) -> None:
        await self.sandbox.write_file(path, data)

    async def text(self, path: str) -> str:
        return (await self.sandbox.read_file(path)).decode()

    async def exists(self, path: str) -> bool:
        try:
            await self.sandbox.read_file(path)
        except FileNotFoundError:
            return False
        return True

    async def snapshot(self) -> dict[str, bytes]:
        return {path: await self.sandbox.read_file(path) for path in await self.sandbox.list_files(".")}

    async def link(self, path: str, target: str) -> None:
        result = await self.sandbox.exec(["ln", "-s", target, path])
        assert result.exit_code == 0, result.stderr
