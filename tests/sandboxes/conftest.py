"""Fixtures for the sandbox tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from agentflow.sandboxes import LocalSandbox, SandboxLimits
from agentflow.sandboxes._local import probe_namespaces
from tests.support.require import require


def require_namespaces() -> None:
    available, reason = probe_namespaces()
    require(available, f"the local sandbox cannot use Linux namespaces here: {reason}")


@pytest.fixture
async def sandbox() -> AsyncIterator[LocalSandbox]:
    """A local sandbox in whatever mode this machine allows."""
    created = await LocalSandbox.create()
    yield created
    await created.close()


@pytest.fixture
async def namespaced() -> AsyncIterator[LocalSandbox]:
    """A local sandbox isolated with namespaces (skips, or fails under AGENTFLOW_REQUIRE_ALL=1, without them)."""
    require_namespaces()
    created = await LocalSandbox.create(mode="namespaces")
    yield created
    await created.close()


@pytest.fixture
async def process_mode() -> AsyncIterator[LocalSandbox]:
    """A local sandbox in process mode (no namespaces), as on a machine that does not allow them."""
    created = await LocalSandbox.create(SandboxLimits(), mode="process")
    yield created
    await created.close()


class LoopbackServer:
    """A TCP server on the host's 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def loopback_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()
