"""The exec server channel: requests to the server inside a container over its attached stdio, replies by id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

from agentflow.errors import SandboxError

_FRAME = struct.Struct("!II")
_DOCKER_FRAME = struct.Struct(">BxxxL")  # the engine's stream multiplexing header: stream type, payload length


class _Channel:
    """Requests to the exec server over the container's attached stdio, with replies matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, container: str) -> None:
        self._reader = reader
        self._writer = writer
        self._container = container
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self._next_id = 1
        self._server_stderr = bytearray()
        self.closed_reason: str | None = None
        self.ready: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        self._pending[0] = self.ready
        self._task = asyncio.create_task(self._read_replies())

    async def _read_replies(self) -> None:
        stdout = bytearray()
        try:
            while True:
                stream, size = _DOCKER_FRAME.unpack(await self._reader.readexactly(_DOCKER_FRAME.size))
                data = await self._reader.readexactly(size)
                if stream != 1:
                    self._server_stderr = (self._server_stderr + data)[-4000:]
                    continue
                stdout += data
                while len(stdout) >= _FRAME.size:
                    header_len, payload_len = _FRAME.unpack_from(stdout)
                    end = _FRAME.size + header_len + payload_len
                    if len(stdout) < end:
                        break
                    header = json.loads(bytes(stdout[_FRAME.size : _FRAME.size + header_len]))
                    payload = bytes(stdout[_FRAME.size + header_len : end])
                    del stdout[:end]
                    future = self._pending.pop(int(header.get("id") or 0), None)
                    if future is not None and not future.done():
                        future.set_result((header, payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        stderr = self._server_stderr.decode(errors="replace").strip()
        self.closed_reason = self.closed_reason or (
            f"the sandbox container {self._container[:12]} stopped (killed from outside, out of memory, or the "
            "engine went away)" + (f"; its exec server said: {stderr[-500:]}" if stderr else "")
        )
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SandboxError(self.closed_reason))
        self._pending.clear()

    @property
    def alive(self) -> bool:
        return self.closed_reason is None and not self._task.done()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> asyncio.Future[tuple[dict[str, Any], bytes]]:
        """Send one request; the future resolves to the reply (or fails when the container stops)."""
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_exception(SandboxError(self.closed_reason or "the sandbox container is gone"))
            return future
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = future
        encoded = json.dumps({**header, "id": request_id}).encode()
        self._writer.write(_FRAME.pack(len(encoded), len(payload)) + encoded)
        if payload:
            self._writer.write(payload)
        header["id"] = request_id
        return future

    async def request(
        self, header: dict[str, Any], payload: bytes = b"", *, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        future = self.send(header, payload)
        await self._writer.drain()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.closed_reason = f"the exec server of container {self._container[:12]} did not answer in {timeout:g} s"
            self.close()
            raise SandboxError(self.closed_reason) from None

    def close(self) -> None:
        """Close stdin: the server kills every process and exits, and the engine removes the container."""
        if self.closed_reason is None:
            self.closed_reason = "the sandbox is closed"
        with contextlib.suppress(Exception):
            self._writer.close()
        self._task.cancel()
