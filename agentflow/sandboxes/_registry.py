"""The sandbox backend registry, the ``@sandbox`` decorator and the functions that create sandboxes by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from agentflow._registry import Registry
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox, SandboxLimits


class SandboxBackend(Protocol):
    """What a backend registers: a class (or object) whose ``create`` makes a ready sandbox."""

    async def create(self, limits: SandboxLimits | None = None) -> Sandbox:
        """Create a sandbox with a fresh, empty workdir and the given limits."""
        ...


BackendT = TypeVar("BackendT", bound=SandboxBackend)

sandbox_backends: Registry[SandboxBackend] = Registry("sandbox", extras={"docker": "docker", "e2b": "e2b"})


def sandbox(name: str) -> Callable[[BackendT], BackendT]:
    """Register a sandbox backend under ``name`` (``@sandbox("docker")`` on a class with an async ``create``).

    Args:
        name: the name workflows and the CLI use (``sandbox: {backend: NAME}``, ``--sandbox NAME``).
    """

    def decorate(backend: BackendT) -> BackendT:
        sandbox_backends.add(name, backend)
        return backend

    return decorate


async def create_sandbox(
    backend: str = "local",
    *,
    limits: SandboxLimits | None = None,
    files: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Sandbox:
    """Create a sandbox of the named backend and copy the workflow's files into it.

    Args:
        backend: a registered backend name (``local``, ``docker``, ``e2b`` or a plugin's).
        limits: resource limits; the embedded defaults when omitted.
        files: maps a directory inside the sandbox (``"/workspace"``, ``"."``, ``"src"``) to a host directory,
            relative to ``base_dir``, whose contents are copied there at creation.
        base_dir: where relative host directories in ``files`` are found (the workflow file's folder);
            the current directory when omitted.

    Raises:
        UnknownBackendError: no backend has that name (the message lists the choices and the extra to install).
        SandboxUnavailableError: the backend cannot run on this machine.
        FileNotFoundError: a host directory in ``files`` does not exist.
    """
    factory = sandbox_backends.get(backend)
    created = await factory.create(limits)
    try:
        for inside, host_dir in (files or {}).items():
            source = Path(host_dir)
            if not source.is_absolute():
                source = (base_dir or Path.cwd()) / source
            await created.copy_in(str(source), inside)
    except BaseException:
        await created.close()
        raise
    return created


async def exec_once(
    cmd: list[str],
    *,
    backend: str = "local",
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
) -> tuple[ExecResult, IsolationReport]:
    """Run one command in a fresh sandbox, close it, and return what it did and the isolation obtained.

    Args:
        cmd: the program and its arguments (no shell).
        backend: a registered backend name.
        timeout: wall-clock seconds; the limits' ``exec_timeout_s`` when omitted.
        limits: resource limits; the embedded defaults when omitted.
    """
    async with await create_sandbox(backend, limits=limits) as fresh:
        result = await fresh.exec(cmd, timeout=timeout)
        return result, fresh.isolation()
