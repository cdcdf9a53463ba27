"""The sandbox backend registry, the ``@sandbox`` decorator and the functions that create sandboxes by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from agentflow._registry import Registry
from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox, SandboxLimits


class SandboxBackend(Protocol):
    """What a backend registers: a class (or object) whose ``create`` makes a ready sandbox, and ``cleanup`` removes
    what dead processes' sandboxes left behind. A ``Sandbox`` subclass has both ``cleanup`` and ``leftover_kind``
    from the base (nothing to remove) and overrides what it has."""

    leftover_kind: str
    """What ``cleanup`` removes, in words (``container``)."""

    async def create(
        self,
        limits: SandboxLimits | None = None,
        *,
        image: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Sandbox:
        """Create a sandbox with a fresh, empty workdir and the given limits.

        ``image`` names the system the sandbox runs (a container image, an E2B template; backends without one
        ignore it) and ``labels`` tag what the backend creates (the run id, the workflow) so leftovers can be traced
        back and cleaned up.
        """
        ...

    def cleanup(self, *, everything: bool = False) -> list[str]:
        """Remove leftovers of sandboxes whose process is gone (``everything``: also of running ones); return
        their names."""
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
    image: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Sandbox:
    """Create a sandbox of the named backend and copy the workflow's files into it.

    Args:
        backend: a registered backend name (``local``, ``docker``, ``e2b`` or a plugin's).
        limits: resource limits; the embedded defaults when omitted.
        files: maps a directory inside the sandbox (``"/workspace"``, ``"."``, ``"src"``) to a host directory,
            relative to ``base_dir``, whose contents are copied there at creation.
        base_dir: where relative host directories in ``files`` are found (the workflow file's folder);
            the current directory when omitted.
        image: the system image for backends that have one (docker image, E2B template); the backend's default
            when omitted. The local sandbox runs on the host's own system and ignores it.
        labels: tags for what the backend creates (``agentflow.run_id``, ``agentflow.workflow``).

    Raises:
        UnknownBackendError: no backend has that name (the message lists the choices and the extra to install).
        SandboxUnavailableError: the backend cannot run on this machine.
        FileNotFoundError: a host directory in ``files`` does not exist.
    """
    factory = sandbox_backends.get(backend)
    created = await factory.create(limits, image=image, labels=labels)
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
    image: str | None = None,
) -> tuple[ExecResult, IsolationReport]:
    """Run one command in a fresh sandbox, close it, and return what it did and the isolation obtained.

    Args:
        cmd: the program and its arguments (no shell).
        backend: a registered backend name.
        timeout: wall-clock seconds; the limits' ``exec_timeout_s`` when omitted.
        limits: resource limits; the embedded defaults when omitted.
        image: the system image of backends that have one (see :func:`create_sandbox`).
    """
    async with await create_sandbox(backend, limits=limits, image=image) as fresh:
        result = await fresh.exec(cmd, timeout=timeout)
        return result, fresh.isolation()
