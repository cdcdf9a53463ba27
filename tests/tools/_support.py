"""File helpers for the tool tests that use only the Sandbox API, so the tests hold for any backend."""

from __future__ import annotations

from agentflow.sandboxes._base import Sandbox


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
