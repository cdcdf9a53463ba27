"""The local sandbox's launch server: one per process, it forks every exec's launcher; its faults are infrastructure
faults, never a command's result, and nothing it started outlives agentflow."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentflow.errors import SandboxError
from agentflow.sandboxes import LocalSandbox, _launch_server, create_sandbox


def _sleep_seconds(whole: int) -> str:
    """A sleep length no other process on the machine has in its command line (leftovers of an earlier run)."""
    return f"{whole}.{secrets.randbelow(10**6):06d}"


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command:
            found.append(int(entry.name))
    return found


def _wait_until_gone(marker: str, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _server_pid() -> int:
    server = _launch_server._server
    assert server is not None and server._process is not None
    return server._process.pid


async def test_every_exec_of_a_process_goes_through_one_server(sandbox: LocalSandbox) -> None:
    await sandbox.exec(["true"])
    first = _server_pid()
    other = await create_sandbox("local")
    try:
        results = await asyncio.gather(*(box.exec(["sh", "-c", "echo $$"]) for box in (sandbox, other, sandbox)))
    finally:
        await other.close()
    assert [result.exit_code for result in results] == [0, 0, 0]
    assert _server_pid() == first


async def test_a_server_that_dies_under_a_command_is_an_infrastructure_error(sandbox: LocalSandbox) -> None:
    seconds = _sleep_seconds(31)
    running = asyncio.create_task(sandbox.exec(["sleep", seconds], timeout=60))
    deadline = time.monotonic() + 10
    while not _processes_with(f"sleep {seconds}"):
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)
    os.kill(_server_pid(), signal.SIGKILL)
    with pytest.raises(SandboxError, match="launch server stopped"):
        await running  # not an exit code: the command did not fail, the sandbox did
    assert not _wait_until_gone(f"sleep {seconds}"), "the command outlived its launch server"
    # the next exec starts a new server
    result = await sandbox.exec(["sh", "-c", "echo again"])
    assert (result.exit_code, result.stdout) == (0, "again\n")


async def test_a_cancelled_exec_kills_its_command(sandbox: LocalSandbox) -> None:
    seconds = _sleep_seconds(32)
    running = asyncio.create_task(sandbox.exec(["sh", "-c", f"sleep {seconds}; echo never"], timeout=60))
    deadline = time.monotonic() + 10
    while not _processes_with(f"sleep {seconds}"):
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not _wait_until_gone(f"sleep {seconds}")
    assert (await sandbox.exec(["true"])).exit_code == 0


def test_execs_from_event_loops_in_several_threads() -> None:
    outputs: dict[int, list[str]] = {}

    def worker(index: int) -> None:
        async def run() -> list[str]:
            box = await create_sandbox("local")
            try:
                return [(await box.exec(["sh", "-c", f"echo {index}-{turn}"])).stdout for turn in range(5)]
            finally:
                await box.close()

        outputs[index] = asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outputs == {index: [f"{index}-{turn}\n" for turn in range(5)] for index in range(3)}


def _exec_in_forked_child(queue: multiprocessing.Queue[tuple[int, str, int]]) -> None:
    async def run() -> tuple[int, str, int]:
        box = await create_sandbox("local")
        try:
            result = await box.exec(["sh", "-c", "echo from-the-fork"])
        finally:
            await box.close()
        return result.exit_code, result.stdout, _server_pid()

    queue.put(asyncio.run(run()))


async def test_a_forked_process_gets_a_server_of_its_own(sandbox: LocalSandbox) -> None:
    await sandbox.exec(["true"])
    parent_server = _server_pid()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[int, str, int]] = context.Queue()
    child = context.Process(target=_exec_in_forked_child, args=(queue,))
    child.start()
    exit_code, stdout, child_server = await asyncio.to_thread(queue.get, True, 60)
    await asyncio.to_thread(child.join, 30)
    assert (exit_code, stdout) == (0, "from-the-fork\n")
    assert child_server != parent_server
    assert (await sandbox.exec(["true"])).exit_code == 0  # the parent's server still serves it


def test_the_server_and_its_commands_die_with_a_killed_agentflow_process(tmp_path: Path) -> None:
    seconds = _sleep_seconds(33)
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from agentflow.sandboxes import create_sandbox

        async def main():
            box = await create_sandbox("local")
            print("started", flush=True)
            await box.exec(["sleep", "{seconds}"], timeout=120)

        asyncio.run(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=tmp_path)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 20
        while not _processes_with(f"sleep {seconds}"):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.02)
        servers = [pid for pid in _processes_with("--serve") if _parent_of(pid) == process.pid]
        assert len(servers) == 1
        process.kill()
        process.wait(timeout=10)
        assert not _wait_until_gone(f"sleep {seconds}"), "the command outlived agentflow"
        assert not [pid for pid in servers if _alive(pid)], "the launch server outlived agentflow"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for this machine's init to reap it has ended)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line[:6] == "State:")
        except (OSError, StopIteration):
            return False
        if "Z" in state.split()[1]:
            return False
        time.sleep(0.05)
    return True


def _parent_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def test_a_launch_the_server_could_not_fork_fails_alone(sandbox: LocalSandbox) -> None:
    # The server answers F when fork() fails (out of processes or memory); a real one cannot be provoked here (the
    # server runs as root, which RLIMIT_NPROC does not bind), so the answer is handed to the host's reader directly.
    await sandbox.exec(["true"])
    server = await _launch_server.launch_server()
    loop = asyncio.get_running_loop()
    launch = _launch_server.Launch(10**9, loop, loop.create_future())
    with server._lock:
        server._launches[launch.ident] = launch
    await asyncio.to_thread(server._answer, f"F {launch.ident} 11".encode())
    with pytest.raises(SandboxError, match="fork failed"):
        await launch.started
    assert launch.ident not in server._launches
    assert (await sandbox.exec(["sh", "-c", "echo still"])).stdout == "still\n"  # the server goes on
