"""A warm pool of sandboxes of any backend: started ahead, handed out in microseconds, reset between uses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentflow.errors import PoolExhaustedError, SandboxError
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox

SandboxFactory = Callable[[], Awaitable[Sandbox]]


class SandboxPool:
    """Sandboxes started ahead of need and reused.

    ``acquire()`` hands out an idle sandbox (no container start on the way); ``close()`` on what it returned (or
    ``release()``) resets it (``Sandbox.reset()``; Docker's kills every process and empties the workdir and
    ``/tmp``) and puts it back. A sandbox that misbehaved (no longer ``alive``: its container died; or its reset
    failed) or whose backend cannot reset (``reset()`` returned False) is discarded and replaced in the background.
    A fork of a lent sandbox (``fork()`` on what ``acquire()`` returned) is not the pool's: it is made fresh by the
    backend, closing it destroys it, and ``release()`` refuses it, so a pool never hands out a fork. At most
    ``max_size`` sandboxes exist; an ``acquire()`` past that waits up to its timeout for a release, then
    raises ``PoolExhaustedError``.

    Example::

        async with SandboxPool(lambda: DockerSandbox.create(limits), size=4) as pool:
            async with await pool.acquire() as box:
                await box.exec(["python3", "-c", "print(1)"])
    """

    def __init__(
        self,
        factory: SandboxFactory,
        *,
        size: int = 2,
        max_size: int | None = None,
        acquire_timeout: float = 30.0,
        start_concurrency: int = 2,
    ) -> None:
        """Describe a pool; ``start()`` (or ``async with``) fills it.

        Args:
            factory: makes one fresh sandbox (``lambda: DockerSandbox.create(limits, labels=...)``).
            size: sandboxes kept warm (started ahead, replaced when discarded).
            max_size: the most that may exist at once, in use or idle (``size`` when omitted).
            acquire_timeout: how long ``acquire()`` waits when every sandbox is in use.
            start_concurrency: sandboxes started at the same time while ramping up (starts are heavy).
        """
        if size < 0 or (max_size is not None and max_size < max(size, 1)):
            raise ValueError(f"need 0 <= size <= max_size and max_size >= 1 (size {size}, max_size {max_size})")
        self._factory = factory
        self.size = size
        self.max_size = max_size or max(size, 1)
        self.acquire_timeout = acquire_timeout
        self._starts = asyncio.Semaphore(start_concurrency)
        self._idle: deque[Sandbox] = deque()
        self._in_use: set[Sandbox] = set()
        self._starting = 0
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.start_errors: list[Exception] = []

    # -- filling ------------------------------------------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> SandboxPool:
        """Start ``size`` sandboxes; with ``wait`` return once all are warm (raising the first start error)."""
        for _ in range(self.size - self._total()):
            self._spawn_warm()
        if wait:
            while self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
            if self.start_errors and not self._idle:
                raise self.start_errors[0]
        return self

    async def wait_ready(self, count: int = 1) -> None:
        """Wait until ``count`` sandboxes are idle, or until none is starting (the starts failed: ``start_errors``,
        or the rest are in use), or the pool is closed."""
        async with self._changed:
            while len(self._idle) < count and self._starting > 0 and not self._closed:
                # a start by acquire() ends without notifying: looked at again every half second
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.5)

    def _total(self) -> int:
        return len(self._idle) + len(self._in_use) + self._starting

    def _spawn_warm(self) -> None:
        self._starting += 1
        task = asyncio.create_task(self._warm_one())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _warm_one(self) -> None:
        counted = True  # in `_starting` until it is idle: counted neither twice nor not at all, so never past max_size
        try:
            try:
                created = await self._create()
            except Exception as exc:  # noqa: BLE001 - kept for start() to raise; the pool stays usable
                self.start_errors.append(exc)
                created = None
            async with self._changed:
                self._starting -= 1
                counted = False
                if created is not None:
                    if self._closed:
                        await created.close()
                    else:
                        self._idle.append(created)
                self._changed.notify_all()
        finally:
            if counted:  # cancelled while starting or while waiting for the lock
                self._starting -= 1

    async def _create(self) -> Sandbox:
        async with self._starts:
            # A turn of the event loop first: a factory that never suspends (the local sandbox's, once its probe is
            # done) would otherwise start every sandbox of the ramp in one go, each start taking the semaphore freed
            # by the one before, and hold the loop until the whole pool is warm (50 local sandboxes: 35-115 ms before
            # a bench's first run could begin, `wait_ready()` included).
            await asyncio.sleep(0)
            return await self._factory()

    # -- lending ------------------------------------------------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> PooledSandbox:
        """Hand out a warm sandbox, starting one only when none is idle and the pool is below ``max_size``.

        Args:
            timeout: seconds to wait when every sandbox is in use (the pool's ``acquire_timeout`` when omitted).

        Raises:
            PoolExhaustedError: nothing was released within the timeout.
            SandboxError: the pool is closed, or a sandbox could not be started.
        """
        deadline = time.monotonic() + (self.acquire_timeout if timeout is None else timeout)
        async with self._changed:
            while True:
                if self._closed:
                    raise SandboxError("this sandbox pool is closed")
                while self._idle:
                    candidate = self._idle.popleft()
                    if candidate.alive:
                        self._in_use.add(candidate)
                        return PooledSandbox(candidate, self)
                    self._discard(candidate)
                if self._total() < self.max_size:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolExhaustedError(
                        f"all {self.max_size} sandboxes of the pool stayed in use for "
                        f"{self.acquire_timeout if timeout is None else timeout:g} s; release sandboxes (close what "
                        "acquire() returned) or give the pool a larger max_size"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        try:
            created = await self._create()
        except BaseException:
            self._starting -= 1
            async with self._changed:
                self._changed.notify_all()  # a waiter may start one in its place
            raise
        self._starting -= 1
        self._in_use.add(created)
        return PooledSandbox(created, self)

    async def release(self, box: Sandbox) -> None:
        """Reset a sandbox and make it idle again, or discard it when it cannot be reset.

        A fork (``forked_from`` set; a factory may make them) is never reused: it is closed, as one that cannot
        be reset.

        Raises:
            SandboxError: ``box`` is a fork this pool did not lend (of a sandbox it lent): close it instead.
        """
        inner = box._inner if isinstance(box, PooledSandbox) else box
        if inner not in self._in_use:
            if inner.forked_from is not None:
                raise SandboxError("a forked sandbox is never handed back to a pool: close it, which removes it")
            return
        healthy = not self._closed and inner.alive and inner.forked_from is None
        if healthy and len(self._idle) + len(self._in_use) > self.size:
            healthy = False  # shrunk meanwhile: one fewer to keep, so not reset but closed (in the background)
        if healthy:
            try:
                healthy = await inner.reset()  # False: the backend cannot reset, so a fresh one replaces it
            except (SandboxError, OSError):
                healthy = False
        async with self._changed:
            self._in_use.discard(inner)
            if healthy:
                self._idle.append(inner)
            else:
                self._discard(inner)
                if not self._closed and self._total() < self.size:
                    self._spawn_warm()
            self._changed.notify_all()

    def _discard(self, box: Sandbox) -> None:
        task = asyncio.create_task(box.close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def shrink(self, size: int) -> None:
        """Keep at most ``size`` sandboxes warm from now on: idle ones beyond that are closed now (in the
        background), lent ones when they come back, and none is started to replace them.

        A benchmark whose last runs are in flight needs no more than they hold: its pool is emptied while those
        runs still wait for their model, instead of all at once after the last one.
        """
        self.size = max(0, min(self.size, size))
        while self._idle and self._total() > self.size:
            self._discard(self._idle.pop())

    # -- state and lifecycle --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts of idle, in-use and starting sandboxes."""
        return {"idle": len(self._idle), "in_use": len(self._in_use), "starting": self._starting}

    async def close(self) -> None:
        """Close every sandbox, idle or in use; safe to call twice."""
        async with self._changed:
            self._closed = True
            boxes = [*self._idle, *self._in_use]
            self._idle.clear()
            self._in_use.clear()
            self._changed.notify_all()
        await asyncio.gather(*(box.close() for box in boxes), return_exceptions=True)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class PooledSandbox(Sandbox):
    """A sandbox on loan from a ``SandboxPool``: ``close()`` gives it back (reset) instead of destroying it.

    After ``close()`` this handle refuses every call, so a holder cannot reach the next user's sandbox. A view:
    ``exec`` delegates to the pooled sandbox's ``exec``, which applies the contract once; ``reset()`` is the
    default (False): the pool resets what it lends when it comes back, not while someone holds it.
    """

    def __init__(self, inner: Sandbox, pool: SandboxPool) -> None:
        self._inner = inner
        self._pool = pool
        self._returned = False
        self.backend = inner.backend
        self.limits = inner.limits

    def _box(self) -> Sandbox:
        if self._returned:
            raise SandboxError("this sandbox was given back to its pool")
        return self._inner

    @property
    def inner(self) -> Sandbox:
        """The pooled sandbox itself (for backend-specific calls such as ``copy_out``)."""
        return self._box()

    @property
    def alive(self) -> bool:
        """Whether the underlying sandbox still works (a container killed from outside does not)."""
        return not self._returned and self._inner.alive

    @property
    def known_failures(self) -> tuple[str, ...]:
        """The pooled sandbox's known conformance failures."""
        return self._inner.known_failures

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``cmd`` in the pooled sandbox (see ``Sandbox.exec``)."""
        return await self._box().exec(cmd, stdin=stdin, cwd=cwd, env=env, timeout=timeout)

    async def read_file(self, path: str) -> bytes:
        """Read a file of the pooled sandbox (see ``Sandbox.read_file``)."""
        return await self._box().read_file(path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file in the pooled sandbox (see ``Sandbox.write_file``)."""
        await self._box().write_file(path, data)

    async def list_files(self, path: str = ".") -> list[str]:
        """List files of the pooled sandbox (see ``Sandbox.list_files``)."""
        return await self._box().list_files(path)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        """Copy a host directory in (see ``Sandbox.copy_in``)."""
        await self._box().copy_in(source_dir, dest)

    def isolation(self) -> IsolationReport:
        """The pooled sandbox's report, noting that it came from a pool."""
        report = self._inner.isolation()
        details: dict[str, Any] = {**report.details, "pooled": True}
        return IsolationReport(
            report.backend,
            report.network_isolated,
            report.filesystem_isolated,
            report.pid_namespace,
            report.resource_limits,
            details,
        )

    async def fork(self) -> Sandbox:
        """A fork of the pooled sandbox (see ``Sandbox.fork``): a new sandbox of the backend, not the pool's, which
        its closing destroys; it is never handed back to the pool."""
        return await self._box().fork()

    @property
    def workdir(self) -> str:
        """The pooled sandbox's workdir."""
        return self._inner.workdir

    async def close(self) -> None:
        """Give the sandbox back to its pool (reset, or discarded when it misbehaved); safe to call twice."""
        if self._returned:
            return
        self._returned = True
        await self._pool.release(self._inner)
