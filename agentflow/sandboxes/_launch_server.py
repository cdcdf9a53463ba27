"""The host's end of the local sandbox's launch server (the server itself is ``_nsinit.py --serve``).

One server per agentflow process forks the launcher of every local exec, so an exec costs a fork of a warm,
single-threaded interpreter rather than the start of a new one. The server is started from a thread of its own
that then reads its answers: Linux ties the server's parent-death signal to the thread that started it, so that
thread lives exactly as long as the server, whichever event loop (or thread) asked for the first exec. A forked
agentflow process gets a server of its own on its first exec.

Answers are routed to the asyncio loop that asked, with ``call_soon_threadsafe``; a loop closed in the meantime
(a cancelled exec whose run has ended) simply drops its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import SandboxError

LAUNCHER = str(Path(__file__).with_name("_nsinit.py"))


@dataclass
class Launch:
    """One exec's launcher as the server reports it: its pid once forked, its raw wait status once reaped.

    ``exited`` resolves to None when the server stopped before it could report the exit (the launcher was killed
    with it: the exec's result is unknown, an infrastructure failure).
    """

    ident: int
    loop: asyncio.AbstractEventLoop
    started: asyncio.Future[int]
    exited: asyncio.Future[int | None] = field(init=False)
    pid: int | None = None  # set from the reading thread as soon as the server reports it

    def __post_init__(self) -> None:
        self.exited = self.loop.create_future()


def _settle(future: asyncio.Future[Any], value: int | None, error: str | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(SandboxError(error))
    else:
        future.set_result(value)


class LaunchServer:
    """A running launch server and the launches it has not reported the end of yet."""

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self._channel, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._launches: dict[int, Launch] = {}
        self._lock = threading.Lock()  # the launch table and the socket's send side, shared by every loop
        self._ids = itertools.count(1)
        self._stopped: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        started = threading.Event()
        start_error: list[OSError] = []
        thread = threading.Thread(
            target=self._serve, args=(server_end, started, start_error), name="agentflow-launch-server", daemon=True
        )
        thread.start()
        started.wait()
        if start_error:
            self._channel.close()
            raise SandboxError(f"could not start the local sandbox's launch server: {start_error[0]}")

    @property
    def alive(self) -> bool:
        return self._stopped is None

    def _serve(self, server_end: socket.socket, started: threading.Event, start_error: list[OSError]) -> None:
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER, "--serve", str(server_end.fileno()), str(os.getpid())],
                pass_fds=(server_end.fileno(),),
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches agentflow, which then kills what it ran
            )
        except OSError as exc:
            start_error.append(exc)
            return
        finally:
            server_end.close()
            started.set()
        try:
            while message := self._channel.recv(256):
                self._answer(message)
        except OSError:
            pass
        finally:
            self._process.wait()
            self._stop(f"the local sandbox's launch server stopped (exit status {self._process.returncode})")

    def _answer(self, message: bytes) -> None:
        kind, ident_text, value_text = message.decode().split(" ")
        ident, value = int(ident_text), int(value_text)
        with self._lock:
            launch = self._launches.get(ident) if kind == "S" else self._launches.pop(ident, None)
        if launch is None:
            return
        if kind == "F":
            reason = f"the local sandbox could not start a command: fork failed: {os.strerror(value)}"
            with contextlib.suppress(RuntimeError):
                launch.loop.call_soon_threadsafe(_settle, launch.started, None, reason)
            return
        if kind == "S":
            launch.pid = value
        future = launch.started if kind == "S" else launch.exited
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits for this answer any more
            launch.loop.call_soon_threadsafe(_settle, future, value, None)

    def _stop(self, reason: str) -> None:
        with self._lock:
            self._stopped = reason
            launches = list(self._launches.values())
            self._launches.clear()
        for launch in launches:
            # Orphaned: the server can no longer kill them (in process mode a command outlives its launcher's
            # parent). Unreaped by us, they may have been reaped by init already; their groups are killed anyway,
            # as a process-mode exec's group always was after its end.
            if launch.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(launch.pid, signal.SIGKILL)
            with contextlib.suppress(RuntimeError):
                launch.loop.call_soon_threadsafe(_settle, launch.started, None, reason)
                launch.loop.call_soon_threadsafe(_settle, launch.exited, None, None)
        self._channel.close()

    async def launch(self, *, config_fd: int, stdio: tuple[int, int, int], status_fd: int) -> Launch:
        """Fork a launcher with these descriptors (the caller keeps and closes its own copies).

        Raises:
            SandboxError: the server has stopped.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._stopped is not None:
                raise SandboxError(self._stopped)
            launch = Launch(next(self._ids), loop, loop.create_future())
            self._launches[launch.ident] = launch
            try:
                socket.send_fds(self._channel, [b"L %d" % launch.ident], [config_fd, *stdio, status_fd])
            except OSError as exc:
                del self._launches[launch.ident]
                raise SandboxError(f"the local sandbox's launch server is gone: {exc}") from exc
        try:
            await asyncio.shield(launch.started)
        except asyncio.CancelledError:
            self.kill(launch)  # forked or about to be: the server kills it as soon as it knows its pid
            raise
        return launch

    def kill(self, launch: Launch) -> None:
        """Kill a launch's process group, unless the server has reaped it already (then its pid may be reused)."""
        with self._lock:
            if self._stopped is not None or launch.ident not in self._launches:
                return
            with contextlib.suppress(OSError):
                self._channel.send(b"K %d" % launch.ident)


_server: LaunchServer | None = None
_server_lock = threading.Lock()


def _current_server() -> LaunchServer:
    global _server  # noqa: PLW0603 - one server per process, shared by every local sandbox and event loop
    with _server_lock:
        if _server is None or not _server.alive or _server.owner_pid != os.getpid():
            _server = LaunchServer()
        return _server


async def launch_server() -> LaunchServer:
    """This process's launch server, started on first use (off the event loop: it takes an interpreter start)."""
    server = _server
    if server is not None and server.alive and server.owner_pid == os.getpid():
        return server
    return await asyncio.to_thread(_current_server)
