"""The Sandbox base: ``exec`` checks, completes and caps every command once, for any backend that implements
``_exec``; views over another sandbox leave that to the sandbox underneath; ``reset``, ``alive``,
``known_failures`` and ``cleanup`` have declared defaults."""

from __future__ import annotations

import pytest

from agentflow.errors import SandboxError
from agentflow.sandboxes import (
    ExecOutput,
    ExecRequest,
    ExecResult,
    IsolationReport,
    LocalSandbox,
    Sandbox,
    SandboxLimits,
    SandboxPool,
)
from agentflow.sandboxes._base import ObservedSandbox
from agentflow.sandboxes.conformance import run_conformance


class _ScriptedBackend(Sandbox):
    """The smallest backend: ``_exec`` answers with the output it was given and keeps every request it received;
    files live in a dict. It has no checks, defaults or cap of its own, so whatever holds comes from the base."""

    backend = "scripted"

    def __init__(self, limits: SandboxLimits, output: ExecOutput) -> None:
        self.limits = limits
        self.output = output
        self.requests: list[ExecRequest] = []
        self.files: dict[str, bytes] = {}

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        self.requests.append(request)
        return self.output

    async def read_file(self, path: str) -> bytes:
        return self.files[path]

    async def write_file(self, path: str, data: str | bytes) -> None:
        self.files[path] = data.encode() if isinstance(data, str) else data

    async def list_files(self, path: str = ".") -> list[str]:
        return sorted(self.files)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        raise NotImplementedError("not needed by these tests")

    def isolation(self) -> IsolationReport:
        return IsolationReport(self.backend, False, False, False, False)

    @property
    def workdir(self) -> str:
        return "/scripted"

    async def close(self) -> None:
        self._closed = True


def _backend(output: ExecOutput | None = None, **limits: float) -> _ScriptedBackend:
    return _ScriptedBackend(SandboxLimits(**limits), output or ExecOutput(0, b"", b""))  # type: ignore[arg-type]


async def test_exec_completes_the_request_before_the_backend_sees_it() -> None:
    box = _backend(exec_timeout_s=7)
    await box.exec(["echo", "hi"], stdin="héllo", env={"A": "1"}, cwd="sub")
    await box.exec(["cat"], timeout=2.5)
    first, second = box.requests
    assert first == ExecRequest(argv=["echo", "hi"], stdin="héllo".encode(), cwd="sub", env={"A": "1"}, timeout=7)
    assert (second.stdin, second.env, second.cwd, second.timeout) == (None, {}, None, 2.5)
    await box.exec(["cat"], stdin=b"\x00\xff")
    assert box.requests[-1].stdin == b"\x00\xff"


async def test_exec_refuses_an_empty_command_and_a_closed_sandbox_before_the_backend_runs() -> None:
    box = _backend()
    with pytest.raises(ValueError, match="empty list"):
        await box.exec([])
    await box.close()
    assert not box.alive
    with pytest.raises(SandboxError, match="this scripted sandbox is closed"):
        await box.exec(["true"])
    assert box.requests == []


async def test_exec_caps_and_decodes_the_output_once_for_the_backend() -> None:
    flood = ExecOutput(3, b"x" * 100, "é".encode() * 3, timed_out=True)
    result = await _backend(flood, output_bytes=5).exec(["flood"])
    # stderr cut inside the third "é" (two bytes each): the broken byte is replaced, not raised
    assert (result.exit_code, result.stdout, result.stderr) == (3, "xxxxx", "éé\ufffd")
    assert result.timed_out and result.truncated
    within = await _backend(ExecOutput(0, b"12345", b""), output_bytes=5).exec(["fits"])
    assert (within.stdout, within.truncated) == ("12345", False)
    # a backend that dropped output while reading it (to bound memory) says so; the result keeps saying it
    dropped = await _backend(ExecOutput(0, b"12", b"", truncated=True), output_bytes=5).exec(["dropped"])
    assert dropped.truncated


async def test_a_view_leaves_the_contract_to_the_sandbox_underneath() -> None:
    inner = _backend(ExecOutput(0, b"x" * 10, b""), exec_timeout_s=9, output_bytes=4)
    seen: list[ExecResult] = []
    view = ObservedSandbox(inner, lambda cmd, cwd, result: seen.append(result))
    result = await view.exec(["flood"])
    assert [r.timeout for r in inner.requests] == [9]  # one run, with the inner sandbox's default
    assert seen == [result] and (result.stdout, result.truncated) == ("xxxx", True)
    assert view.alive and view.known_failures == ()
    await view.close()
    assert not view.alive
    with pytest.raises(SandboxError, match="closed"):
        await view.exec(["true"])


async def test_the_base_declares_what_a_backend_may_lack() -> None:
    box = _backend()
    assert await box.reset() is False  # cannot reset: a pool discards it
    assert box.alive
    assert box.known_failures == ()
    assert _ScriptedBackend.cleanup() == []
    assert _ScriptedBackend.leftover_kind == "leftover"


class _ResetsOnce(LocalSandbox):
    """A local sandbox that can reset (empty its workdir) once, and then answers that it cannot."""

    resets = 0

    async def reset(self) -> bool:
        self.resets += 1
        if self.resets > 1:
            return False
        emptied = await self.exec(["sh", "-c", 'rm -rf -- "$HOME"/* "$HOME"/.[!.]*'])
        return emptied.exit_code == 0


async def test_a_pool_reuses_what_reset_and_discards_what_answers_it_cannot() -> None:
    async with SandboxPool(_ResetsOnce.create, size=1, max_size=1) as pool:
        first = await pool.acquire()
        original = first.inner
        await first.write_file("mine.txt", "x")
        await first.close()  # reset() -> True: kept
        second = await pool.acquire()
        assert second.inner is original
        assert await second.list_files() == []
        await second.close()  # reset() -> False: discarded, a fresh one takes its place
        third = await pool.acquire()
        assert third.inner is not original
        await third.close()


class _DeclaresStdinBroken(LocalSandbox):
    """A backend that loses its commands' input, and says so in ``known_failures`` (not in its isolation report)."""

    @property
    def known_failures(self) -> tuple[str, ...]:
        return ("stdin",)

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        return await super()._exec(ExecRequest(request.argv, None, request.cwd, request.env, request.timeout))


async def test_the_conformance_runner_reads_known_failures_from_the_sandbox() -> None:
    async def declared() -> Sandbox:
        return await _DeclaresStdinBroken.create()

    (result,) = await run_conformance(declared, only=["stdin"])
    assert result.status == "known_failure", str(result)
    (undeclared,) = await run_conformance(declared, only=["stdin"], known_failures=())
    assert undeclared.status == "failed"
