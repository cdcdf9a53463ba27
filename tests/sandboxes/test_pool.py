"""SandboxPool: warm start, reuse with reset, bounded size, exhaustion, discarding a broken sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest

from agentflow.errors import PoolExhaustedError, SandboxError
from agentflow.sandboxes import LocalSandbox, SandboxPool
from agentflow.sandboxes._docker import DockerSandbox, docker_client

from ._docker_support import require_docker
from .conftest import require_namespaces


@pytest.mark.parametrize("mode", ["namespaces", "process"])
async def test_a_local_pool_reuses_a_reset_sandbox(mode: str) -> None:
    if mode == "namespaces":
        require_namespaces()
    async with SandboxPool(lambda: LocalSandbox.create(mode=mode), size=1, max_size=1) as pool:  # type: ignore[arg-type]
        box = await pool.acquire()
        workdir = box.inner._host_workdir  # type: ignore[attr-defined]
        await box.write_file("deep/er/file.txt", "x")
        made = await box.exec(["sh", "-c", 'echo t > "$TMPDIR/t"; chmod 000 deep; (sleep 39.25 &)'])
        assert made.exit_code == 0, made.stderr
        await box.close()
        await box.close()  # twice is fine
        with pytest.raises(SandboxError, match="given back"):
            await box.exec(["true"])
        again = await pool.acquire()
        assert again.inner._host_workdir == workdir  # type: ignore[attr-defined]  # the same sandbox, reset
        assert await again.list_files() == []
        # the file itself is gone (not "$TMPDIR is empty": a project kept under /tmp shows its mount point there)
        assert "t" not in (await again.exec(["sh", "-c", 'ls -A "$TMPDIR"'])).stdout.split()
        assert "sleep 39.25" not in (await asyncio.to_thread(_host_processes))
        await again.write_file("deep/er/file.txt", "y")
        assert await again.read_file("deep/er/file.txt") == b"y"
        await again.close()


async def test_a_local_pool_discards_what_it_cannot_reset_and_stays_full(monkeypatch: pytest.MonkeyPatch) -> None:
    async def cannot_reset(self: LocalSandbox) -> bool:
        return False  # as process mode without root: a process that left its group cannot be found

    monkeypatch.setattr(LocalSandbox, "reset", cannot_reset)
    async with SandboxPool(LocalSandbox.create, size=2) as pool:
        assert pool.stats() == {"idle": 2, "in_use": 0, "starting": 0}
        box = await pool.acquire()
        workdir = box.inner._host_workdir  # type: ignore[attr-defined]
        await box.write_file("mine.txt", "x")
        await box.close()
        await pool.start()  # waits for the replacement
        assert pool.stats() == {"idle": 2, "in_use": 0, "starting": 0}
        assert not workdir.exists()  # discarded, not reused
        again = await pool.acquire()
        assert await again.list_files() == []
        await again.close()


def _host_processes() -> str:
    commands = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                commands.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(commands)


async def test_an_exhausted_pool_waits_then_fails_clearly() -> None:
    async with SandboxPool(LocalSandbox.create, size=1, max_size=1, acquire_timeout=0.3) as pool:
        held = await pool.acquire()
        with pytest.raises(PoolExhaustedError, match=r"stayed in use for 0\.3 s"):
            await pool.acquire()
        assert isinstance(PoolExhaustedError("x"), TimeoutError)
        # a release during the wait hands the sandbox to the waiter
        waiter = asyncio.create_task(pool.acquire(timeout=10))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await held.close()
        second = await asyncio.wait_for(waiter, 10)
        await second.close()


async def test_acquirers_racing_the_warm_up_never_take_the_pool_past_max_size() -> None:
    # Warm-ups that finished starting and wait for the pool's lock to put their sandbox out are still counted: an
    # acquirer that saw them as neither starting nor idle started sandboxes of its own (97 for a pool of 50).
    created: list[LocalSandbox] = []

    async def factory() -> LocalSandbox:
        box = await LocalSandbox.create()
        created.append(box)
        return box

    pool = await SandboxPool(factory, size=20, max_size=20, start_concurrency=2).start(wait=False)
    try:

        async def use() -> None:
            for _ in range(3):
                async with await pool.acquire():
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(use() for _ in range(20)))
        assert len(created) == 20
        assert pool.stats() == {"idle": 20, "in_use": 0, "starting": 0}
    finally:
        await pool.close()


async def test_a_shrunk_pool_closes_what_it_no_longer_keeps_and_starts_no_replacement() -> None:
    async with SandboxPool(LocalSandbox.create, size=4) as pool:
        lent = [await pool.acquire() for _ in range(3)]
        inner = [box.inner for box in lent]
        pool.shrink(2)  # the one idle sandbox is one too many now
        assert pool.stats() == {"idle": 0, "in_use": 3, "starting": 0}
        await lent[0].close()  # three kept with it, two wanted: closed, not reset
        await lent[1].close()  # two with it: reset and kept
        await asyncio.sleep(0.05)  # let the background close finish
        assert pool.stats() == {"idle": 1, "in_use": 1, "starting": 0}
        with pytest.raises(SandboxError):
            await inner[0].exec(["true"])
        assert (await inner[1].exec(["true"])).exit_code == 0
        await lent[2].close()
        assert pool.stats() == {"idle": 2, "in_use": 0, "starting": 0}


async def test_wait_ready_returns_once_a_sandbox_is_warm_or_every_start_failed() -> None:
    pool = await SandboxPool(LocalSandbox.create, size=3).start(wait=False)
    try:
        await asyncio.wait_for(pool.wait_ready(), 30)
        assert pool.stats()["idle"] >= 1
    finally:
        await pool.close()

    async def broken() -> LocalSandbox:
        raise SandboxError("no sandbox here")

    failing = await SandboxPool(broken, size=2).start(wait=False)
    await asyncio.wait_for(failing.wait_ready(), 30)  # returns: nothing is starting any more
    assert [str(error) for error in failing.start_errors] == ["no sandbox here"] * 2
    await failing.close()


async def test_the_warm_up_ramps_even_when_the_factory_never_suspends() -> None:
    # The local sandbox's factory runs to its end without awaiting anything: without a turn of the event loop per
    # start the whole pool started in one go, and wait_ready() (a benchmark's first run) waited for all of it.
    size, created = 12, 0
    interleaved: list[int] = []  # sandboxes created each time another task of the loop got to run

    async def factory() -> LocalSandbox:
        nonlocal created
        created += 1
        return await LocalSandbox.create()

    async def other_work() -> None:
        while created < size:
            interleaved.append(created)
            await asyncio.sleep(0)

    await (await LocalSandbox.create()).close()  # the namespace probe done: from now on a start never suspends
    pool = await SandboxPool(factory, size=size, start_concurrency=2).start(wait=False)
    try:
        watcher = asyncio.create_task(other_work())
        await asyncio.wait_for(pool.wait_ready(), 30)
        assert created < size, "wait_ready() returned only when the whole pool had started"
        await pool.start()  # the rest of the ramp
        await watcher
        assert max(b - a for a, b in itertools.pairwise(interleaved)) <= 2  # at most start_concurrency per turn
        assert pool.stats() == {"idle": size, "in_use": 0, "starting": 0}
    finally:
        await pool.close()


async def test_a_closed_pool_refuses_and_closes_what_it_lent() -> None:
    pool = await SandboxPool(LocalSandbox.create, size=1).start()
    lent = await pool.acquire()
    await pool.close()
    with pytest.raises(SandboxError, match="closed"):
        await pool.acquire()
    with pytest.raises(SandboxError):
        await lent.exec(["true"])


async def test_a_docker_pool_acquires_without_starting_and_reuses_a_reset_container() -> None:
    require_docker()
    async with SandboxPool(DockerSandbox.create, size=1, max_size=1) as pool:
        first = await pool.acquire()
        container = first.inner.container_id  # type: ignore[attr-defined]
        await first.write_file("deep/er/file.txt", "x")
        await first.exec(["sh", "-c", "echo t > /tmp/t; echo s > /dev/shm/s; chmod 000 deep"])
        await first.close()
        second = await pool.acquire()
        assert second.inner.container_id == container  # type: ignore[attr-defined]
        assert await second.list_files() == []
        leftovers = await second.exec(["sh", "-c", "ls -A /tmp /dev/shm"])
        assert leftovers.stdout == "/dev/shm:\n\n/tmp:\n"
        await second.close()


async def test_a_docker_pool_replaces_a_container_killed_from_outside() -> None:
    require_docker()
    async with SandboxPool(DockerSandbox.create, size=1, max_size=1) as pool:
        box = await pool.acquire()
        killed = box.inner.container_id  # type: ignore[attr-defined]
        await asyncio.to_thread(docker_client().api.kill, killed)
        with pytest.raises(SandboxError):
            await box.exec(["sleep", "5"])
        await box.close()  # discarded, and a replacement starts
        fresh = await pool.acquire(timeout=60)
        assert fresh.inner.container_id != killed  # type: ignore[attr-defined]
        assert (await fresh.exec(["echo", "ok"])).stdout == "ok\n"
        await fresh.close()
